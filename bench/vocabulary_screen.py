"""What the float16 screen of a row alone's vocabulary product (gpt2demo/vocabulary.py) changes, and what it saves.

    python -m bench.vocabulary_screen [--seeds 5] [--turns 12] [--threads 2]

1. Fidelity, on the bundled model (real weights: real text's distributions) and a
   GPT-2-small-shaped stand-in (random weights, GPT-2's tokenizer): --seeds seeded
   generations of 100 tokens from the tutorial's prompt, top-k 10, each run twice
   in this process, once with every logit from the full float32 product and once
   screened (the screen built even where the load-time timing would not choose it).
   Whether the tokens are the same, and how far the probabilities shown (the chosen
   token's and the 15 candidates') moved, relative to their value: median, p99, max
   over the steps; and how many rows a screened step recomputed in float32.
2. Speed, on the stand-in: in one process, generate_text of 100 tokens with the
   screen on and off in alternate turns (--turns each, the order swapped every other
   turn), so both meet the same machine; the median of the turns' ratios.

Prints the figures; the last line is JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from gpt2demo.decoder import GPT2Decoder
from gpt2demo.generation import generate_text
from gpt2demo.model import load_model
from gpt2demo.settings import SamplingSettings
from gpt2demo.vocabulary import ScreenedVocabulary
from tools.standin import GPT2_SMALL, build_standin

PROMPT = "Yesterday, a man named Jack said he saw an alien,"
TOKENS = 100


def full_and_screened(folder: str):
    """The model twice, sharing its weights: every logit from the full product, and a row alone's screened."""
    model = load_model(folder, "cpu")
    full, screened = GPT2Decoder(model.model), GPT2Decoder(model.model)
    full.vocabulary_screen = None
    screened.vocabulary_screen = ScreenedVocabulary(model.model.lm_head.weight)
    return dataclasses.replace(model, decoder=full), dataclasses.replace(model, decoder=screened)


def quantile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def fidelity(folder: str, seeds: int) -> dict:
    full, screened = full_and_screened(folder)
    same, moved = True, []
    for seed in range(seeds):
        settings = SamplingSettings(top_k=10, max_new_tokens=TOKENS, seed=seed)
        expected, got = generate_text(full, PROMPT, settings), generate_text(screened, PROMPT, settings)
        same &= expected.token_ids == got.token_ids
        for theirs, mine in zip(expected.steps, got.steps):
            pairs = zip([theirs.probability, *(c.probability for c in theirs.candidates)],
                        [mine.probability, *(c.probability for c in mine.candidates)])
            moved.append(max(abs(b / a - 1) for a, b in pairs))
    screen = screened.decoder.vocabulary_screen
    recomputed = list(screen.recomputed.elements())
    return {"same_tokens": same, "steps": len(moved), "moved_median": statistics.median(moved),
            "moved_p99": quantile(moved, 0.99), "moved_max": max(moved), "outcomes": dict(screen.outcomes),
            "recomputed_median": statistics.median(recomputed), "recomputed_max": max(recomputed)}


def speed(folder: str, turns: int) -> dict:
    full, screened = full_and_screened(folder)
    settings = SamplingSettings(top_k=10, max_new_tokens=TOKENS, seed=0)

    def rate(model) -> float:
        started = time.perf_counter()
        tokens = len(generate_text(model, PROMPT, settings).token_ids)
        return tokens / (time.perf_counter() - started)

    rate(full), rate(screened)  # warm-up
    rates = {"screened": [], "full": []}
    for turn in range(turns):
        for name in (("screened", "full") if turn % 2 == 0 else ("full", "screened")):
            rates[name].append(rate(screened if name == "screened" else full))
    ratios = [a / b for a, b in zip(rates["screened"], rates["full"])]
    return {"ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "screened_tok_s": statistics.median(rates["screened"]), "full_tok_s": statistics.median(rates["full"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeded generations per model for the fidelity")
    parser.add_argument("--turns", type=int, default=12, help="turns of each for the speed")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bundled = str(Path(__file__).resolve().parents[1] / "gpt2demo" / "bundled")
    with tempfile.TemporaryDirectory() as scratch:
        standin = str(build_standin(Path(scratch) / "small", GPT2_SMALL))
        results = {"fidelity": {"bundled": fidelity(bundled, args.seeds), "standin": fidelity(standin, args.seeds)},
                   "speed": speed(standin, args.turns)}
    for name, figures in results["fidelity"].items():
        print(f"{name}: same tokens {figures['same_tokens']} over {figures['steps']} steps; probabilities shown moved by "
              f"{figures['moved_median']:.2g} of their value (median), {figures['moved_p99']:.2g} (p99), "
              f"{figures['moved_max']:.2g} (max); rows recomputed a step: {figures['recomputed_median']:g} (median), "
              f"{figures['recomputed_max']} (max); {figures['outcomes']}")
    figures = results["speed"]
    print(f"stand-in, {args.threads} threads, {args.turns} turns each: screened / full = {figures['ratio_median']:.3f} "
          f"({figures['ratio_min']:.3f}-{figures['ratio_max']:.3f}); {figures['screened_tok_s']:.1f} against "
          f"{figures['full_tok_s']:.1f} tok/s")
    print(json.dumps({"threads": args.threads, "seeds": args.seeds, "turns": args.turns, **results}))


if __name__ == "__main__":
    main()
