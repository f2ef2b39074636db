"""A lean GPT-2 forward pass with a key/value cache that many sequences share.

It runs the loaded transformers GPT2LMHeadModel's own modules (layer norms,
projections, MLPs) and does only the attention bookkeeping itself, so that:
- each sequence (a "row") keeps its own length: rows join and leave between
  steps without re-padding the others (continuous batching);
- a decode step reads every weight once for all rows, which on a CPU costs
  about as much as one row (decoding is bound by reading the weights).
The matrix products go through one function (linear.py's, or int8.py's for
precision "int8", which reads its own int8 copies of the weights).
"""

from __future__ import annotations

import threading
from collections import Counter
from functools import cache, partial
from typing import NamedTuple

import torch
import torch.nn.functional as F

from gpt2demo.int8 import int8_linear, quantize_conv1d, quantize_weight, selected_kernel
from gpt2demo.kvcache import PAGE, KVCache, pages_for
from gpt2demo.linear import Linear, pick_linear, prepare_weight
from gpt2demo.serving.interface import PRECISIONS
from gpt2demo.vocabulary import screen_for


def block_products(block) -> tuple:
    """A block's c_attn, attn.c_proj, c_fc and mlp.c_proj: its four matrix products, in order."""
    return block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj


def block_weights(block, prepare) -> tuple[tuple, ...]:
    """(weight, bias) of each of a block's products, each weight as `prepare` makes it."""
    return tuple((prepare(module.weight.detach()), module.bias) for module in block_products(block))


class Layer(NamedTuple):
    """What one block's forward pass reads, looked up once at load.

    A module's attribute lookup runs through nn.Module's Python __getattr__; a token's
    blocks asked for dozens of them, and right after a product has streamed a block's
    weights through the caches each costs far more than it does in a micro-benchmark.
    """

    ln_1: tuple  # (weight, bias, eps) of the norm before attention
    ln_2: tuple  # the same before the MLP
    scale: float  # of attention's scores
    attn_in: tuple  # (weight, bias) of c_attn, as the product's kernel reads it
    attn_out: tuple
    mlp_in: tuple
    mlp_out: tuple


def norm_parameters(norm) -> tuple:
    return norm.weight, norm.bias, norm.eps


@cache
def added_nothing(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """baddbmm's added term, ignored with beta=0: it must still broadcast, and be of q's dtype on q's device
    (a float32 one stopped every lone row's step in bfloat16, which is how CUDA runs)."""
    return torch.zeros((), dtype=dtype, device=device)


def attend_new_positions(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, scale: float,
                         hidden: torch.Tensor | None) -> torch.Tensor:
    """Attention of each row's new position over its cached ones: (B, H, 1, D) over (B, H, T, D),
    or (H, 1, D) over (H, T, D) for a row alone.

    Written out (two batched products and a softmax) rather than scaled_dot_product_attention,
    whose CPU kernel cost 75 us a layer for one row's single query here and was 15% slower
    inside a 32-row step. hidden: (B, 1, 1, T), True where a row must not look (past its
    length); None for a row alone.
    """
    if q.dim() == 3:
        # One batched product with the scale as its alpha: a separate mul_ by a Python float
        # first wraps the float in a tensor, and the two cost ~32 us a layer here against ~20.
        # bmm, not matmul, for the values too: matmul reaches the same bmm through a few views.
        nothing = added_nothing(q.dtype, q.device)
        scores, product = torch.baddbmm(nothing, q, keys.mT, beta=0, alpha=scale), torch.bmm  # (H, 1, T)
    else:
        scores, product = torch.matmul(q, keys.mT).mul_(scale), torch.matmul  # (B, H, 1, T)
    if hidden is not None:
        scores.masked_fill_(hidden, float("-inf"))
    return product(scores.softmax(dim=-1), values)


def attend_pages(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, scale: float,
                 hidden: torch.Tensor) -> torch.Tensor:
    """attend_new_positions() over a page-major cache: q (B, H, 1, D) over keys and values
    (pages, B, H, PAGE, D), each page of the batch one unbroken run of memory (kvcache.py).

    The scores are computed page by page and joined, the values' product summed page by page.
    hidden: (B, 1, 1, pages x PAGE), True where a row must not look.
    """
    rows, heads, _, head_dim = q.shape
    scores = [torch.matmul(q, page.transpose(-1, -2)) for page in keys]  # (B, H, 1, PAGE) each
    scores = (scores[0] if len(scores) == 1 else torch.cat(scores, dim=-1)).mul_(scale)
    weights = scores.masked_fill_(hidden, float("-inf")).softmax(dim=-1)
    out = torch.matmul(weights[..., :PAGE], values[0])  # (B, H, 1, D)
    flat = out.view(rows * heads, 1, head_dim)
    for index in range(1, values.shape[0]):
        page_weights = weights[..., index * PAGE : (index + 1) * PAGE].reshape(rows * heads, 1, PAGE)
        flat.baddbmm_(page_weights, values[index].view(rows * heads, PAGE, head_dim))
    return out


class GPT2Decoder:
    """Forward passes of a transformers GPT2LMHeadModel over a shared KVCache.

    no_grad rather than inference_mode: the cache is also edited between steps
    (rows join and leave), which inference tensors do not allow outside that mode.
    """

    def __init__(self, model, precision: str = "float32", kernel: Linear | None = None,
                 int8_kernel: str | None = None) -> None:
        """kernel: the float products' kernel (linear.py), None to pick the faster here; int8_kernel: one of
        int8.KERNELS, None for the one check_int8() chose."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS} (got {precision!r})")
        if getattr(model.config, "model_type", None) != "gpt2":
            raise ValueError(f"gpt2demo runs GPT-2-architecture models (model_type 'gpt2'), not {model.config.model_type!r}")
        self.model = model
        self.config = model.config
        self.n_embd = model.config.n_embd
        self.n_head = model.config.n_head
        self.head_dim = self.n_embd // self.n_head
        weight = model.lm_head.weight  # (vocab, n_embd), tied to the token embedding
        self.device, self.dtype = weight.device, weight.dtype  # of the cache and the activations: fp32 for int8 too
        if precision == "int8":
            # Own int8 copies of every product's weights (model.py checked that they run here); the
            # lm_head's is separate from the token embedding it is tied to, whose lookup stays fp32.
            self._linear = int8_linear
            int8_kernel = int8_kernel or selected_kernel()
            quantize = partial(quantize_conv1d, kernel=int8_kernel)
            block_products_prepared = [block_weights(block, quantize) for block in model.transformer.h]
            self._lm_head = quantize_weight(weight, int8_kernel)  # (vocab, n_embd) is already (out, in)
            self.vocabulary_screen = None  # int8's product already reads a quarter of the bytes
        else:
            # The faster kernel on this CPU, timed on the first block's own weights (linear.py),
            # then every weight laid out as that kernel reads it fastest.
            first = [module.weight.detach() for module in block_products(model.transformer.h[0])]
            self._linear = kernel or pick_linear(weight.device, weight.dtype, first)
            prepare = partial(prepare_weight, self._linear)
            block_products_prepared = [block_weights(block, prepare) for block in model.transformer.h]
            # As (n_embd, vocab), the blocks' (in, out) layout, before preparing: read across rows,
            # the (vocab, n_embd) matrix was the slowest layout measured for addmm (x @ W^T 9.1 ms,
            # this 2.2 ms per token).
            self._lm_head = prepare(weight.detach().t())
            # A row alone's vocabulary product from a float16 copy first, exact where its picks look
            # (vocabulary.py), where that was the faster here; None: always the full product.
            self.vocabulary_screen = screen_for(weight, self._full_logits)
        self._layers = [Layer(norm_parameters(block.ln_1), norm_parameters(block.ln_2), block.attn.scaling, *products)
                        for block, products in zip(model.transformer.h, block_products_prepared)]
        self._final_norm = norm_parameters(model.transformer.ln_f)
        # GPT-2's "gelu_new" is the tanh GELU, which the product itself applies (fused on oneDNN);
        # any other activation runs after it.
        self._tanh_gelu = model.config.activation_function == "gelu_new"
        self._activation = (lambda h: h) if self._tanh_gelu else model.transformer.h[0].mlp.act
        self.precision = precision if precision == "int8" else str(weight.dtype).removeprefix("torch.")
        # Which threads ran forward passes, and how many: the engine's stats report it, so a
        # test can check that every pass ran on the engine's one thread.
        self.forward_threads: Counter[str] = Counter()

    def weights(self) -> dict[str, object]:
        """What each matrix product multiplies by, by module name, as its kernel reads it (linear.prepare_weight, or an Int8Weight)."""
        names = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
        products = {f"h.{index}.{name}": weight for index, layer in enumerate(self._layers)
                    for name, (weight, _) in zip(names, (layer.attn_in, layer.attn_out, layer.mlp_in, layer.mlp_out))}
        return {**products, "lm_head": self._lm_head}

    def _record_forward(self) -> None:
        self.forward_threads[threading.current_thread().name] += 1

    def new_cache(self) -> KVCache:
        return KVCache(self.config.n_layer, self.n_head, self.head_dim, self.dtype, self.device)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, _ = x.shape
        return x.view(batch, seq, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, S, D)

    def _embed(self, token_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        # The embedding tables indexed directly: nn.Embedding's module call costs more than its lookup.
        transformer = self.model.transformer
        return transformer.wte.weight[token_ids] + transformer.wpe.weight[positions]

    def _blocks(self, x: torch.Tensor, attention) -> torch.Tensor:
        """Pre-norm GPT-2 blocks over x (N, C), N = every position of every row, flattened.

        attention(index, layer, h): h (N, C) normed -> (N, C), the heads' outputs joined before
        attn.c_proj; it runs c_attn, stores keys and values and attends, each caller its own way.
        The modules' own weights go through self._linear directly rather than their Conv1D
        forward: ~50 module calls fewer per token, and the faster kernel (see linear.py),
        which also adds each residual as part of its product.
        """
        width, linear = self.n_embd, self._linear
        for index, layer in enumerate(self._layers):
            y = attention(index, layer, F.layer_norm(x, (width,), *layer.ln_1))
            x = linear(y, *layer.attn_out, False, x)
            h = F.layer_norm(x, (width,), *layer.ln_2)
            h = self._activation(linear(h, *layer.mlp_in, self._tanh_gelu))
            x = linear(h, *layer.mlp_out, False, x)
        return x

    def _full_logits(self, normed: torch.Tensor) -> torch.Tensor:
        return self._linear(normed, self._lm_head, None, False)  # (B, vocab)

    def _logits(self, last_hidden: torch.Tensor, exact_top: int | None = None) -> torch.Tensor:
        # Only each row's last position is ever sampled from: the vocabulary projection runs there alone.
        normed = F.layer_norm(last_hidden, (self.n_embd,), *self._final_norm)
        if exact_top is not None and self.vocabulary_screen is not None and normed.shape[0] == 1:
            logits = self.vocabulary_screen.logits(normed, exact_top)
            if logits is not None:
                return logits
        return self._full_logits(normed)

    @torch.no_grad()
    def extend(self, cache: KVCache, rows: list[int], chunks: list[list[int]]) -> torch.Tensor:
        """Append each row's next prompt tokens to its cache in one pass; return next-token logits (len(rows), vocab).

        A row may already hold tokens (its prompt read in chunks between decode steps), so
        token t of row i sits at position lengths[i] + t and sees everything before it.
        Chunks are right-padded to the longest: a real token never sees the padding after
        it, and the padding's cache entries lie past the row's length, where decode()
        never looks and later tokens overwrite them.
        """
        self._record_forward()
        device = cache.lengths.device
        row_index = torch.tensor(rows, device=device)
        starts = cache.lengths[row_index]  # (n,)
        sizes = torch.tensor([len(chunk) for chunk in chunks], device=device)
        width = int(sizes.max())
        cache.reserve(cache.rows, int(starts.max()) + width)
        ids = torch.zeros(len(chunks), width, dtype=torch.long, device=device)
        for i, chunk in enumerate(chunks):
            ids[i, : len(chunk)] = torch.tensor(chunk, device=device)
        positions = starts[:, None] + torch.arange(width, device=device)  # (n, T)
        x = self._embed(ids, positions.clamp(max=self.config.n_positions - 1))  # (n, T, C)
        fresh = not bool(starts.any())  # every row starts empty: plain causal attention over the chunk
        span = int(starts.max()) + width
        # (n, 1, T, span): token t of row i sees positions up to its own.
        mask = None if fresh else (torch.arange(span, device=device)[None, None, :] <= positions[:, :, None])[:, None]
        n, embd = len(chunks), self.n_embd
        # Where each token's heads go in a layer's keys and values, (n x T x H,) in k's own order (n, T, H).
        slots = cache.slots(row_index, positions).reshape(-1)

        def attention(index, layer, h):
            qkv = self._linear(h, *layer.attn_in, False).view(n, width, 3 * embd)
            q, k, v = (self._split_heads(part) for part in qkv.split(embd, dim=2))  # (n, H, T, D)
            cache.keys(index).view(-1, self.head_dim).index_copy_(0, slots, k.transpose(1, 2).reshape(-1, self.head_dim))
            cache.values(index).view(-1, self.head_dim).index_copy_(0, slots, v.transpose(1, 2).reshape(-1, self.head_dim))
            if fresh:
                y = F.scaled_dot_product_attention(q, k, v, is_causal=width > 1, scale=layer.scale)
            else:
                keys, values = cache.gather(index, row_index, span)
                y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=layer.scale)
            return y.transpose(1, 2).reshape(n * width, embd)

        hidden = self._blocks(x.view(n * width, embd), attention).view(n, width, embd)
        cache.lengths[row_index] = starts + sizes
        return self._logits(hidden[torch.arange(n, device=device), sizes - 1])

    def prefill(self, cache: KVCache, rows: list[int], prompts: list[list[int]]) -> torch.Tensor:
        """Read whole prompts into empty rows: extend() from position 0."""
        return self.extend(cache, rows, prompts)

    @torch.no_grad()
    def decode(self, cache: KVCache, token_ids: torch.Tensor, exact_top: int | None = None) -> torch.Tensor:
        """Feed one new token to every row at once; return next-token logits (rows, vocab).

        exact_top: how many of each row's largest logits the picks read one by one (sampling.exact_top);
        a row alone's others may then come from the float16 screen (vocabulary.py). None: all float32.
        """
        self._record_forward()
        rows, heads, embd = cache.rows, self.n_head, self.n_embd
        lengths = cache.lengths  # (B,) each row's new token goes at this position
        total = int(lengths.max()) + 1
        cache.reserve(rows, total)
        x = self._embed(token_ids, lengths)  # (B, C)
        if rows == 1 and not cache.paged:
            # One student alone, the commonest case: the new position is known, so the cache is
            # written through slices, not the index tensors a batch needs, and nothing is masked.
            position = total - 1

            def attention(index, layer, h):
                q, k, v = self._linear(h, *layer.attn_in, False).view(3, heads, 1, self.head_dim)  # (H, 1, D) each
                keys, values = cache.keys(index)[0], cache.values(index)[0]  # (H, P, D)
                keys[:, position:total] = k
                values[:, position:total] = v
                return attend_new_positions(q, keys[:, :total], values[:, :total], layer.scale, None).view(1, embd)
        else:
            # Rows shorter than the longest must not see the unused tail of their cache; a paged
            # cache is read in whole pages, and the positions past a row's length are hidden too.
            paged = cache.paged
            pages = pages_for(total)
            seen = pages * PAGE if paged else total
            hidden = (torch.arange(seen, device=lengths.device)[None, :] > lengths[:, None])[:, None, None, :]
            # Where each row's head writes its new position, as a row of the layer's cache seen as
            # (-1, head_dim), computed once for every layer: index_copy_ by it cost 98 us a layer
            # against advanced indexing's 129 on 32 rows (1 thread, caches cold).
            flat_slots = cache.position_slots(lengths)  # (B x H,)

            def attention(index, layer, h):
                qkv = self._linear(h, *layer.attn_in, False).view(rows, 3, heads, 1, self.head_dim)
                q, k, v = qkv.unbind(1)  # (B, H, 1, D) each
                keys, values = cache.keys(index), cache.values(index)
                keys.view(-1, self.head_dim).index_copy_(0, flat_slots, k.reshape(rows * heads, self.head_dim))
                values.view(-1, self.head_dim).index_copy_(0, flat_slots, v.reshape(rows * heads, self.head_dim))
                # With one position, (B, H, 1, D) is already each row's heads joined in order.
                if paged:
                    y = attend_pages(q, keys[:pages, :rows], values[:pages, :rows], layer.scale, hidden)
                else:
                    y = attend_new_positions(q, keys[:rows, :, :total], values[:rows, :, :total], layer.scale, hidden)
                return y.view(rows, embd)

        logits = self._logits(self._blocks(x, attention), exact_top)
        cache.lengths = lengths + 1
        return logits

    @torch.no_grad()
    def recompute(self, token_ids: list[int]) -> torch.Tensor:
        """The tutorial's step: the whole sequence through transformers' own forward, no cache; logits (vocab,).

        In int8 the whole sequence goes through this decoder's own int8 products on a cache
        thrown away after: the same work every step, and the cost race then compares methods,
        not precisions (transformers' forward would run fp32).
        """
        if self.precision == "int8":
            cache = self.new_cache()
            cache.add_row()
            return self.extend(cache, [0], [list(token_ids)])[0]
        self._record_forward()
        tokens = torch.tensor([token_ids], device=self.device)
        return self.model(tokens, use_cache=False).logits[0, -1]
