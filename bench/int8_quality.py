"""What --precision int8 costs in quality: perplexity and next-token KL against float32.

    python -m bench.int8_quality [--shape small|tiny] [--windows N]

1. The bundled model (real weights, trained on Jane Austen): held-out perplexity in
   float32 and in int8, over the same windows as bench.bundled_quality (the last 5%
   of each novel, consecutive full-context windows; needs the Debian package
   r-cran-janeaustenr). Every token goes through the engine's own path: the first of
   a window read as a prompt, each next one as a decode step of a batch of windows,
   so int8 is measured exactly as it serves.
2. The same model's and a GPT-2-small-shaped stand-in's (random weights, GPT-2's
   tokenizer) next-token distributions over a fixed text: mean KL(float32 || int8)
   per position and how often the most likely token is the same. The stand-in has
   GPT-2's shapes, not its weights: its distributions are nearly flat, so its KL
   says little about real GPT-2; the bundled model's is the telling figure.
3. A class on the bundled model: 32 seeded requests (8 prompts, a quarter greedy, 100
   new tokens) decoded together in one batch, each against the same request alone:
   how many texts are the same token for token, and where the others part.

Prints the figures; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time

import torch
import torch.nn.functional as F

from gpt2demo.generation import DecodeBatch, Generation, generate_text
from gpt2demo.model import load_model
from gpt2demo.serving.interface import Request
from gpt2demo.settings import SamplingSettings
from tools.standin import GPT2_SMALL, TINY, build_standin

THREADS = 1  # as bench.bundled_quality: the figures do not depend on it, and it leaves a core free
ROWS = 16  # windows decoded together
TEXT = ("Yesterday, a man named Jack said he saw an alien, and nobody in the village believed him. "
        "He had been walking home along the river when a light came down over the trees, brighter "
        "than the moon, and a voice asked him, quite politely, the way to the nearest town.")
CLASS_PROMPTS = ("Yesterday, a man named Jack said he saw an alien,", "The teacher asked the class to",
                 "In 1969, the first people", "She was", "It is a truth universally acknowledged", "Elizabeth",
                 "Mr. Darcy walked into the room and said nothing at all for a long while, until", "")


@torch.no_grad()
def logits_along(decoder, windows: torch.Tensor):
    """Yield the next-token logits (B, vocab) after each position of equal-length windows (B, T), as the engine runs."""
    cache = decoder.new_cache()
    rows = list(range(windows.shape[0]))
    for _ in rows:
        cache.add_row()
    yield decoder.extend(cache, rows, [[int(token)] for token in windows[:, 0]])
    for position in range(1, windows.shape[1]):
        yield decoder.decode(cache, windows[:, position])


def windows_of(ids: torch.Tensor, length: int, limit: int = 0) -> list[torch.Tensor]:
    """Consecutive windows of length + 1 tokens (input and next-token targets), grouped by size, as mean_loss cuts them."""
    cut = [ids[start:start + length + 1] for start in range(0, len(ids) - 1, length)]
    cut = [window for window in cut if len(window) >= 2][: limit or None]
    groups: dict[int, list[torch.Tensor]] = {}
    for window in cut:
        groups.setdefault(len(window), []).append(window)
    return [torch.stack(group[i:i + ROWS]) for group in groups.values() for i in range(0, len(group), ROWS)]


def perplexity(decoder, batches: list[torch.Tensor]) -> float:
    total, count = 0.0, 0
    for batch in batches:
        for position, logits in enumerate(logits_along(decoder, batch[:, :-1])):
            total += F.cross_entropy(logits, batch[:, position + 1], reduction="sum").item()
            count += batch.shape[0]
    return math.exp(total / count)


def agreement(reference, quantized, ids: list[int]) -> dict:
    """Mean KL(reference || quantized) of the next-token distributions along `ids`, and top-1 agreement."""
    window = torch.tensor([ids])
    kls, same = [], 0
    for exact, approx in zip(logits_along(reference, window), logits_along(quantized, window)):
        exact, approx = exact.log_softmax(dim=-1), approx.log_softmax(dim=-1)
        kls.append(F.kl_div(approx, exact, log_target=True, reduction="sum").item())
        same += int(exact.argmax() == approx.argmax())
    return {"positions": len(kls), "mean_kl": sum(kls) / len(kls), "max_kl": max(kls), "top1_same": same / len(kls)}


def together_and_alone(model, requests: int = 32, new_tokens: int = 100) -> dict:
    """Each request's tokens decoded in one batch with the others, against the same request alone."""
    class_requests = [Request(SamplingSettings(max_new_tokens=new_tokens, top_k=10, seed=i, greedy=i % 4 == 3),
                              CLASS_PROMPTS[i % len(CLASS_PROMPTS)]) for i in range(requests)]
    alone = [generate_text(model, request.prompt, request.settings).token_ids for request in class_requests]
    batch, generations = DecodeBatch(model), [Generation(model, request) for request in class_requests]
    for generation in generations:
        for _ in batch.join(generation):
            pass
    while batch:
        batch.step()
    parted = [next((i for i, (a, b) in enumerate(zip(lone, generation.new_token_ids)) if a != b), None)
              for lone, generation in zip(alone, generations)]
    return {"requests": requests, "same": sum(index is None for index in parted),
            "parted_at_token": [index for index in parted if index is not None]}


def bundled_figures(windows: int) -> dict:
    from tools import corpus
    from tools.train_bundled import encode

    float32, int8 = load_model("bundled", "cpu", "float32"), load_model("bundled", "cpu", "int8")
    try:
        # Before any LoadedModel.encode: its split_special_tokens=True stays set on the backend
        # tokenizer that train_bundled.encode reads, which would then split the novels' <|endoftext|>.
        heldout = encode(float32.tokenizer, corpus.load_split().heldout)
    except FileNotFoundError as error:
        print(f"perplexity skipped: {error}")
        heldout = None
    figures = {"kl": agreement(float32.decoder, int8.decoder, float32.encode(TEXT)),
               "together": {"float32": together_and_alone(float32), "int8": together_and_alone(int8)}}
    if heldout is None:
        return figures
    batches = windows_of(heldout, float32.window, windows)
    for name, model in (("float32", float32), ("int8", int8)):
        started = time.perf_counter()
        figures[f"heldout_ppl_{name}"] = perplexity(model.decoder, batches)
        figures[f"seconds_{name}"] = round(time.perf_counter() - started, 1)
    figures["windows"] = sum(batch.shape[0] for batch in batches)
    figures["ppl_change_percent"] = 100 * (figures["heldout_ppl_int8"] / figures["heldout_ppl_float32"] - 1)
    return figures


def standin_figures(shape: dict) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        build_standin(folder, shape)
        float32, int8 = load_model(folder, "cpu", "float32"), load_model(folder, "cpu", "int8")
        return agreement(float32.decoder, int8.decoder, float32.encode(TEXT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=["small", "tiny"], default="small", help="the stand-in's shape")
    parser.add_argument("--windows", type=int, default=0, help="held-out windows for perplexity (0 = all)")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    bundled = bundled_figures(args.windows)
    standin = standin_figures(GPT2_SMALL if args.shape == "small" else TINY)
    if "heldout_ppl_int8" in bundled:
        print(f"bundled model, held-out perplexity over {bundled['windows']} windows: float32 "
              f"{bundled['heldout_ppl_float32']:.3f}, int8 {bundled['heldout_ppl_int8']:.3f} "
              f"({bundled['ppl_change_percent']:+.3f}%)")
    for name, kl in (("bundled model", bundled["kl"]), (f"GPT-2 {args.shape} stand-in", standin)):
        print(f"{name}, {kl['positions']} positions of a fixed text: mean KL(float32 || int8) {kl['mean_kl']:.2e} "
              f"(max {kl['max_kl']:.2e}), same most likely token {100 * kl['top1_same']:.1f}%")
    for name, together in bundled["together"].items():
        print(f"bundled model, {name}: {together['same']} of {together['requests']} requests decoded together wrote "
              f"their alone text token for token; the others parted at tokens {together['parted_at_token']}")
    print(json.dumps({"bundled": bundled, f"standin_{args.shape}": standin, "threads": THREADS}))


if __name__ == "__main__":
    main()
