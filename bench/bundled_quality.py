"""How good and how quick is the bundled offline model?

    python -m bench.bundled_quality            # from the repository root

Prints held-out perplexity (needs the Debian corpus package r-cran-janeaustenr),
three seeded top-k samples of the tutorial prompt, and the load time; the last
line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tools import corpus
from tools.train_bundled import BUNDLED_DIR, encode, mean_loss


@dataclass
class BenchConfig:
    model_dir: str = str(BUNDLED_DIR)
    prompt: str = "Yesterday, a man named Jack said he saw an alien,"
    seeds: tuple[int, ...] = (0, 1, 2)  # one sample per seed
    top_k: int = 10  # the tutorial's setting
    max_new_tokens: int = 60
    load_repeats: int = 5  # load time is the median of these
    threads: int = 1  # same single thread as training: figures comparable


def load(model_dir: str):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    return tokenizer, model


def load_seconds(cfg: BenchConfig) -> float:
    times = []
    for _ in range(cfg.load_repeats):
        start = time.perf_counter()
        load(cfg.model_dir)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def heldout_perplexity(tokenizer, model) -> float | None:
    """exp(mean token loss) over the held-out 5%, in full-context windows."""
    try:
        split = corpus.load_split()
    except FileNotFoundError as err:
        print(f"perplexity skipped: {err}")
        return None
    ids = encode(tokenizer, split.heldout)  # (N,)
    return math.exp(mean_loss(model, ids, model.config.n_positions))


@torch.no_grad()
def sample(tokenizer, model, cfg: BenchConfig, seed: int) -> str:
    prompt = tokenizer(cfg.prompt, return_tensors="pt")
    torch.manual_seed(seed)
    out = model.generate(**prompt, do_sample=True, top_k=cfg.top_k, top_p=1.0, temperature=1.0,
                         max_new_tokens=cfg.max_new_tokens, pad_token_id=tokenizer.eos_token_id)
    return tokenizer.decode(out[0, prompt["input_ids"].shape[1]:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", default=BenchConfig.model_dir)
    cfg = BenchConfig(model_dir=parser.parse_args().model_dir)
    torch.set_num_threads(cfg.threads)

    seconds = load_seconds(cfg)
    tokenizer, model = load(cfg.model_dir)
    ppl = heldout_perplexity(tokenizer, model)
    samples = [sample(tokenizer, model, cfg, seed) for seed in cfg.seeds]
    size = sum(f.stat().st_size for f in Path(cfg.model_dir).iterdir() if f.is_file())

    print(f"held-out perplexity: {ppl:.2f}" if ppl else "held-out perplexity: n/a")
    for seed, text in zip(cfg.seeds, samples):
        print(f"--- seed {seed}: {cfg.prompt}{text}")
    print(f"load time (tokenizer + model, median of {cfg.load_repeats}): {seconds:.3f} s")
    print(json.dumps({"heldout_ppl": ppl, "load_s": seconds, "bytes": size,
                      "parameters": sum(p.numel() for p in model.parameters()),
                      "samples": samples}))


if __name__ == "__main__":
    main()
