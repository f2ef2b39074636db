"""Tokens/s of three ways to write 100 tokens with top-k = 10, on GPT-2 small shapes.

1. the tutorial's loop: re-run the whole sequence at every step, pick among the top 10;
2. transformers' model.generate(do_sample=True, top_k=10);
3. gpt2demo's generator (KV cache, lean forward, per-step facts for the views).

Random weights (no weights can be downloaded here) with GPT-2's real tokenizer and
124M-parameter shapes: speed does not depend on the weights' values. Prints a table;
the last line is JSON. Usage: python -m bench.speed [--repeats 3] [--new-tokens 100]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time

import torch

from gpt2demo.generation import generate_steps
from gpt2demo.model import load_model
from gpt2demo.serving.interface import Request
from gpt2demo.settings import SamplingSettings
from gpt2demo.threads import configure_threads
from tools.standin import GPT2_SMALL, build_standin

PROMPT = "Yesterday, a man named Jack said he saw an alien,"


def tutorial_loop(model, tokenizer, new_tokens: int) -> int:
    """The tutorial's method: full forward over all tokens each step, random pick among the top 10."""
    indexed_tokens = tokenizer.encode(PROMPT)
    for _ in range(new_tokens):
        with torch.no_grad():
            predictions = model(torch.tensor([indexed_tokens])).logits
        top10 = predictions[0, -1, :].sort(descending=True).indices[:10]
        indexed_tokens.append(random.choice(top10.tolist()))
    return new_tokens


def hf_generate(model, tokenizer, new_tokens: int) -> int:
    ids = torch.tensor([tokenizer.encode(PROMPT)])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=10, max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=tokenizer.eos_token_id)
    return out.shape[1] - ids.shape[1]


def ours(loaded, new_tokens: int) -> int:
    steps = list(generate_steps(loaded, Request(SamplingSettings(top_k=10, max_new_tokens=new_tokens, seed=0), PROMPT)))
    return sum(s.token_id is not None for s in steps)


def tokens_per_second(run) -> float:
    started = time.perf_counter()
    count = run()
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each method; the median is reported")
    parser.add_argument("--new-tokens", type=int, default=100)
    args = parser.parse_args()
    configure_threads()  # as the engine does; all three methods run under it
    random.seed(0)
    with tempfile.TemporaryDirectory() as folder:
        build_standin(folder, GPT2_SMALL)
        loaded = load_model(folder, "cpu")
        model, tokenizer = loaded.model, loaded.tokenizer
        methods = {
            "seed_loop": lambda: tutorial_loop(model, tokenizer, args.new_tokens),
            "hf_generate": lambda: hf_generate(model, tokenizer, args.new_tokens),
            "ours": lambda: ours(loaded, args.new_tokens),
        }
        ours(loaded, 5)  # warm-up: first-call allocations and the token-text table
        hf_generate(model, tokenizer, 5)
        rates = {name: [] for name in methods}
        for _ in range(args.repeats):  # interleaved, so drifting machine load hits all three alike
            for name, run in methods.items():
                rates[name].append(tokens_per_second(run))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    print(f"GPT-2 small shapes (124M), {args.new_tokens} new tokens, top-k 10, torch threads {torch.get_num_threads()}, median of {args.repeats}")
    for name, value in medians.items():
        print(f"  {name:12s} {value:6.1f} tok/s   runs: {', '.join(f'{v:.1f}' for v in rates[name])}")
    ratio_hf = medians["ours"] / medians["hf_generate"]
    ratio_loop = medians["ours"] / medians["seed_loop"]
    print(f"  ours / generate = {ratio_hf:.2f}x (target >= 1.15)   ours / tutorial loop = {ratio_loop:.2f}x (target >= 6)")
    print(json.dumps({
        "seed_loop_tok_s": round(medians["seed_loop"], 2),
        "hf_generate_tok_s": round(medians["hf_generate"], 2),
        "ours_tok_s": round(medians["ours"], 2),
        "ours_over_generate": round(ratio_hf, 3),
        "ours_over_seed_loop": round(ratio_loop, 3),
    }))


if __name__ == "__main__":
    main()
