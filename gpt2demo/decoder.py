"""A lean GPT-2 forward pass with a key/value cache that many sequences share.

It runs the loaded transformers GPT2LMHeadModel's own modules (layer norms,
projections, MLPs) and does only the attention bookkeeping itself, so that:
- each sequence (a "row") keeps its own length: rows join and leave between
  steps without re-padding the others (continuous batching);
- a decode step reads every weight once for all rows, which on a CPU costs
  about as much as one row (decoding is bound by reading the weights).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gpt2demo.linear import pick_linear

SEQ_CHUNK = 128  # the cache grows along the sequence in steps of this many positions


class KVCache:
    """Keys and values of every layer for `rows` sequences, each of its own length.

    Rows are kept packed at the front (0..rows-1): a leaving row is replaced by
    the last one, so a step never computes on empty rows.
    """

    def __init__(self, n_layer: int, n_head: int, head_dim: int, dtype: torch.dtype, device: torch.device):
        self.shape_tail = (n_head, head_dim)
        self.keys = [torch.empty(0, n_head, 0, head_dim, dtype=dtype, device=device) for _ in range(n_layer)]
        self.values = [torch.empty(0, n_head, 0, head_dim, dtype=dtype, device=device) for _ in range(n_layer)]
        self.lengths = torch.zeros(0, dtype=torch.long, device=device)  # (rows,) tokens cached per row

    @property
    def rows(self) -> int:
        return self.lengths.shape[0]

    def reserve(self, rows: int, positions: int) -> None:
        """Make room for `rows` rows of `positions` tokens, keeping what is cached."""
        have_rows, _, have_positions, _ = self.keys[0].shape
        if rows <= have_rows and positions <= have_positions:
            return
        new_rows = max(rows, 2 * have_rows)  # doubling keeps reallocations rare as a class joins
        new_positions = max(have_positions, -(-positions // SEQ_CHUNK) * SEQ_CHUNK)
        for layer, (old_k, old_v) in enumerate(zip(self.keys, self.values)):
            # Zeros, not empty(): masked-out positions still enter the attention products,
            # and uninitialised memory can hold NaN, which a mask does not cancel (NaN * 0 = NaN).
            k = old_k.new_zeros(new_rows, self.shape_tail[0], new_positions, self.shape_tail[1])
            v = torch.zeros_like(k)
            k[:have_rows, :, :have_positions] = old_k
            v[:have_rows, :, :have_positions] = old_v
            self.keys[layer], self.values[layer] = k, v

    def add_row(self) -> int:
        """Append an empty row; return its index."""
        self.reserve(self.rows + 1, int(self.lengths.max()) if self.rows else 1)
        self.lengths = torch.cat([self.lengths, self.lengths.new_zeros(1)])
        return self.rows - 1

    def remove_row(self, row: int) -> None:
        """Drop a row by moving the last row into its place (the caller mirrors this move)."""
        last = self.rows - 1
        if row != last:
            used = int(self.lengths[last])
            for k, v in zip(self.keys, self.values):
                k[row, :, :used] = k[last, :, :used]
                v[row, :, :used] = v[last, :, :used]
            self.lengths[row] = self.lengths[last]
        self.lengths = self.lengths[:last].clone()


class GPT2Decoder:
    """Forward passes of a transformers GPT2LMHeadModel over a shared KVCache.

    no_grad rather than inference_mode: the cache is also edited between steps
    (rows join and leave), which inference tensors do not allow outside that mode.
    """

    def __init__(self, model) -> None:
        if getattr(model.config, "model_type", None) != "gpt2":
            raise ValueError(f"gpt2demo runs GPT-2-architecture models (model_type 'gpt2'), not {model.config.model_type!r}")
        self.model = model
        self.config = model.config
        self.n_embd = model.config.n_embd
        self.n_head = model.config.n_head
        self.head_dim = self.n_embd // self.n_head
        weight = model.lm_head.weight  # (vocab, n_embd), tied to the token embedding
        # Stored once as (n_embd, vocab), the blocks' (in, out) layout: read across rows, the
        # (vocab, n_embd) matrix was the slowest layout measured (x @ W^T 9.1 ms, this 2.2 ms per token).
        self.lm_head_t = weight.detach().t().contiguous()  # (n_embd, vocab)
        self._linear = pick_linear(weight.device, weight.dtype)
        # GPT-2's "gelu_new" is the tanh GELU, which the product itself applies (fused on oneDNN);
        # any other activation runs after it.
        self._tanh_gelu = model.config.activation_function == "gelu_new"
        self._activation = (lambda h: h) if self._tanh_gelu else model.transformer.h[0].mlp.act

    def new_cache(self) -> KVCache:
        param = self.lm_head_t
        return KVCache(self.config.n_layer, self.n_head, self.head_dim, param.dtype, param.device)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, _ = x.shape
        return x.view(batch, seq, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, S, D)

    def _blocks(self, x: torch.Tensor, attend) -> torch.Tensor:
        # Pre-norm GPT-2 blocks; `attend(layer, scale, q, k, v)` stores k/v and returns attention output.
        # The modules' own weights through self._linear directly rather than their Conv1D
        # forward: ~50 module calls fewer per token, and the faster kernel (see linear.py).
        batch, seq, width = x.shape
        linear = self._linear
        for layer, block in enumerate(self.model.transformer.h):
            attn, mlp = block.attn, block.mlp
            h = F.layer_norm(x, (width,), block.ln_1.weight, block.ln_1.bias, block.ln_1.eps).view(-1, width)
            q, k, v = linear(h, attn.c_attn.weight, attn.c_attn.bias, False).view(batch, seq, 3 * width).split(width, dim=2)
            y = attend(layer, attn.scaling, self._split_heads(q), self._split_heads(k), self._split_heads(v))
            x = x + linear(y.transpose(1, 2).reshape(-1, width), attn.c_proj.weight, attn.c_proj.bias, False).view(x.shape)
            h = F.layer_norm(x, (width,), block.ln_2.weight, block.ln_2.bias, block.ln_2.eps).view(-1, width)
            h = self._activation(linear(h, mlp.c_fc.weight, mlp.c_fc.bias, self._tanh_gelu))
            x = x + linear(h, mlp.c_proj.weight, mlp.c_proj.bias, False).view(x.shape)
        return x

    def _logits(self, last_hidden: torch.Tensor) -> torch.Tensor:
        # Only each row's last position is ever sampled from: the vocabulary projection runs there alone.
        return self._linear(self.model.transformer.ln_f(last_hidden), self.lm_head_t, None, False)  # (B, vocab)

    @torch.no_grad()
    def prefill(self, cache: KVCache, rows: list[int], prompts: list[list[int]]) -> torch.Tensor:
        """Run new rows' prompts in one pass, caching their keys and values; return next-token logits (len(rows), vocab).

        Prompts are right-padded to the longest: under the causal mask a real token never
        sees the padding after it, so no other mask is needed, and every row keeps the
        positions 0..len-1 it would have alone. The padding's cache entries lie past the
        row's length, where decode() never looks and later tokens overwrite them.
        """
        device = cache.lengths.device
        lengths = torch.tensor([len(p) for p in prompts], device=device)
        longest = int(lengths.max())
        cache.reserve(cache.rows, longest)
        ids = torch.zeros(len(prompts), longest, dtype=torch.long, device=device)
        for i, prompt in enumerate(prompts):
            ids[i, : len(prompt)] = torch.tensor(prompt, device=device)
        row_index = torch.tensor(rows, device=device)
        transformer = self.model.transformer
        x = transformer.wte(ids) + transformer.wpe(torch.arange(longest, device=device))[None]  # (n, T, C)

        def attend(layer, scale, q, k, v):
            cache.keys[layer][row_index, :, :longest] = k
            cache.values[layer][row_index, :, :longest] = v
            return F.scaled_dot_product_attention(q, k, v, is_causal=longest > 1, scale=scale)

        hidden = self._blocks(x, attend)  # (n, T, C)
        cache.lengths[row_index] = lengths
        return self._logits(hidden[torch.arange(len(prompts), device=device), lengths - 1])

    @torch.no_grad()
    def decode(self, cache: KVCache, token_ids: torch.Tensor) -> torch.Tensor:
        """Feed one new token to every row at once; return next-token logits (rows, vocab)."""
        rows = cache.rows
        lengths = cache.lengths  # (B,) each row's new token goes at this position
        total = int(lengths.max()) + 1
        cache.reserve(rows, total)
        transformer = self.model.transformer
        x = (transformer.wte(token_ids) + transformer.wpe(lengths))[:, None, :]  # (B, 1, C)
        row_index = torch.arange(rows, device=lengths.device)
        # Rows shorter than the longest must not see the unused tail of their cache.
        mask = None if rows == 1 else (torch.arange(total, device=lengths.device)[None, :] <= lengths[:, None])[:, None, None, :]

        def attend(layer, scale, q, k, v):
            keys, values = cache.keys[layer], cache.values[layer]
            keys[row_index, :, lengths] = k[:, :, 0]
            values[row_index, :, lengths] = v[:, :, 0]
            return F.scaled_dot_product_attention(q, keys[:rows, :, :total], values[:rows, :, :total], attn_mask=mask, scale=scale)

        logits = self._logits(self._blocks(x, attend)[:, -1, :])
        cache.lengths = lengths + 1
        return logits
