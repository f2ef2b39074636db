"""Train the small GPT-2 that ships in gpt2demo/bundled/ (the offline fallback).

    python -m tools.train_bundled            # full run: ~50 min on one thread (2-core box, busy)
    python -m tools.train_bundled --smoke    # seconds: checks the pipeline

Same scheme as GPT-2: a byte-level BPE tokenizer with <|endoftext|> as its one
special token, and a transformers GPT2LMHeadModel, so the demo loads the result
exactly as it loads real GPT-2. The corpus is Jane Austen's novels from the
Debian package r-cran-janeaustenr (see gpt2demo/corpus.py). Everything is seeded
and the run length is a step count, not a time limit, so a rerun gives the same
weights on the same torch build.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast, GenerationConfig

from tools import corpus

BUNDLED_DIR = Path(__file__).resolve().parents[1] / "gpt2demo" / "bundled"


@dataclass
class TrainConfig:
    seed: int = 1234  # fixes all randomness: weight init and batch order
    vocab_size: int = 4096  # "a few thousand": small embedding, still whole words
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads (64 dims each)
    n_embd: int = 256  # model width
    n_positions: int = 512  # longest context the model accepts
    block_size: int = 256  # training window; long enough for the demo's replies
    long_block_every: int = 8  # every Nth step trains on a full n_positions window
    batch_size: int = 16  # sequences per step
    max_steps: int = 1200  # ~5 passes over the corpus; a count, so reruns are identical
    learning_rate: float = 2e-3  # peak; small models tolerate a high rate
    min_lr: float = 2e-4  # cosine decay floor
    warmup_steps: int = 100  # linear warm-up
    weight_decay: float = 0.1
    dropout: float = 0.1  # ~5 passes over a 0.94M-token corpus: guards against memorising
    threads: int = 1  # the machine is shared; one core keeps others responsive
    log_every: int = 50  # steps between progress lines
    eval_every: int = 200  # steps between held-out loss checks
    out_dir: str = str(BUNDLED_DIR)


SMOKE = dict(vocab_size=512, n_layer=1, n_embd=64, n_head=2, n_positions=128, block_size=64,
             long_block_every=4, batch_size=4, max_steps=20, warmup_steps=5, log_every=5,
             eval_every=10, out_dir="/tmp/gpt2demo-bundled-smoke")  # never the shipped one


def train_tokenizer(text: str, vocab_size: int, max_length: int) -> GPT2TokenizerFast:
    """Byte-level BPE exactly as GPT-2 builds it, wrapped for transformers."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[corpus.EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodable
        show_progress=False)
    # split on EOS first so the special token is never merged into text pieces
    tok.train_from_iterator(text.split(corpus.EOS), trainer=trainer)
    return GPT2TokenizerFast(
        tokenizer_object=tok, bos_token=corpus.EOS, eos_token=corpus.EOS,
        unk_token=corpus.EOS, model_max_length=max_length)


def encode(tokenizer: GPT2TokenizerFast, text: str) -> torch.Tensor:
    """Token ids of the whole text; EOS between novels stays a single id."""
    # the backend directly: the wrapper warns about texts longer than n_positions
    ids = tokenizer.backend_tokenizer.encode(text, add_special_tokens=False).ids
    return torch.tensor(ids, dtype=torch.long)  # (N,)


def build_model(cfg: TrainConfig, tokenizer: GPT2TokenizerFast) -> GPT2LMHeadModel:
    eos = tokenizer.eos_token_id
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=cfg.n_positions, n_embd=cfg.n_embd,
        n_layer=cfg.n_layer, n_head=cfg.n_head, resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout, bos_token_id=eos, eos_token_id=eos)
    return GPT2LMHeadModel(config)


def random_batch(ids: torch.Tensor, block: int, batch: int, gen: torch.Generator):
    """Random windows of the token stream: inputs and the same shifted by one."""
    starts = torch.randint(0, len(ids) - block - 1, (batch,), generator=gen)
    x = torch.stack([ids[s:s + block] for s in starts.tolist()])  # (B, T)
    y = torch.stack([ids[s + 1:s + block + 1] for s in starts.tolist()])  # (B, T)
    return x, y


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to min_lr."""
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (cfg.learning_rate - cfg.min_lr) * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def mean_loss(model: GPT2LMHeadModel, ids: torch.Tensor, block: int, max_windows: int = 0) -> float:
    """Token-weighted loss over consecutive non-overlapping windows of `ids`."""
    model.eval()
    total, count = 0.0, 0
    starts = range(0, len(ids) - 1, block)
    for i, s in enumerate(starts):
        if max_windows and i >= max_windows:
            break
        x = ids[s:s + block + 1]
        if len(x) < 2:
            break
        logits = model(x[None, :-1]).logits[0]  # (T, vocab)
        total += torch.nn.functional.cross_entropy(logits, x[1:], reduction="sum").item()
        count += len(x) - 1
    model.train()
    return total / count


def make_optimizer(model: GPT2LMHeadModel, cfg: TrainConfig) -> torch.optim.AdamW:
    # decay matrices only; biases and LayerNorm gains stay free (nanoGPT's rule)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(0.9, 0.95))


def train(cfg: TrainConfig) -> dict:
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    started = time.perf_counter()
    split = corpus.load_split()
    tokenizer = train_tokenizer(split.train, cfg.vocab_size, cfg.n_positions)
    train_ids, heldout_ids = encode(tokenizer, split.train), encode(tokenizer, split.heldout)
    print(f"corpus: {len(split.train):,} train chars -> {len(train_ids):,} tokens; "
          f"held-out {len(heldout_ids):,} tokens; vocab {len(tokenizer)}", flush=True)

    model = build_model(cfg, tokenizer)
    print(f"model: {sum(p.numel() for p in model.parameters()):,} parameters", flush=True)
    optimizer, gen = make_optimizer(model, cfg), torch.Generator().manual_seed(cfg.seed)
    for step in range(cfg.max_steps):
        long_step = cfg.long_block_every and step % cfg.long_block_every == 0
        # a few full-length windows so positions past block_size are trained too
        block = cfg.n_positions if long_step else cfg.block_size
        batch = cfg.batch_size * cfg.block_size // block  # same tokens per step
        x, y = random_batch(train_ids, block, batch, gen)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = _shifted_loss(model, x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % cfg.log_every == 0 or step == cfg.max_steps - 1:
            elapsed = time.perf_counter() - started
            print(f"step {step:5d}/{cfg.max_steps}  loss {loss.item():.3f}  "
                  f"lr {lr_at(step, cfg):.2e}  {elapsed / 60:.1f} min", flush=True)
        if (step + 1) % cfg.eval_every == 0:
            heldout = mean_loss(model, heldout_ids, cfg.block_size, max_windows=40)
            print(f"  held-out loss {heldout:.3f} (ppl {math.exp(heldout):.1f}, first 40 windows)",
                  flush=True)

    heldout_loss = mean_loss(model, heldout_ids, cfg.n_positions)
    result = {"heldout_loss": heldout_loss, "heldout_ppl": math.exp(heldout_loss),
              "train_tokens": len(train_ids), "heldout_tokens": len(heldout_ids),
              "minutes": (time.perf_counter() - started) / 60}
    save(model, tokenizer, cfg, result)
    return result


def _shifted_loss(model: GPT2LMHeadModel, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model(x).logits  # (B, T, vocab)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())


def save(model: GPT2LMHeadModel, tokenizer: GPT2TokenizerFast, cfg: TrainConfig,
         result: dict) -> None:
    """Write model (fp32, as real GPT-2 ships), tokenizer and a training record."""
    out = Path(cfg.out_dir)
    if out.exists():
        shutil.rmtree(out)  # stale files from another shape must not linger
    eos = tokenizer.eos_token_id
    model.generation_config = GenerationConfig(bos_token_id=eos, eos_token_id=eos,
                                               pad_token_id=eos)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    record = {"config": asdict(cfg) | {"out_dir": None}, "result": result,
              "corpus": "Debian r-cran-janeaustenr (Jane Austen's novels, public domain)",
              "torch": torch.__version__}
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved to {out}: held-out perplexity {result['heldout_ppl']:.2f}", flush=True)


def parse_args() -> TrainConfig:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true",
                        help="tiny model and 20 steps, to check the pipeline")
    for field in fields(TrainConfig):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default),
                            default=None)
    args = parser.parse_args()
    overrides = SMOKE if args.smoke else {}
    chosen = {f.name: getattr(args, f.name) for f in fields(TrainConfig)
              if getattr(args, f.name) is not None}
    return TrainConfig(**(overrides | chosen))


if __name__ == "__main__":
    print(json.dumps(train(parse_args())))
