"""On a GPU: gpt2demo's decoding against transformers' generate, both in the dtype gpt2demo runs there (bfloat16 on CUDA).

    python -m bench.gpu [--device cuda] [--shape small|tiny] [--tokens 100] [--rows 32] [--batch-tokens 64] [--passes 7]

The same measurements as bench.anchors, with transformers' `model.generate` as the
other engine (CTranslate2 is a CPU user's choice; on a GPU the user's default is
generate): on a GPT-2-small-shaped stand-in (tools/standin.py), the tutorial's prompt,
top-k 10,
- batch 1: one request of --tokens new tokens (gpt2demo: generate_text; transformers:
  generate of one sequence, min_new_tokens = max_new_tokens);
- batch 32: --rows requests of --batch-tokens new tokens each, prompts read first
  (gpt2demo: one DecodeBatch, as the engine runs a class; transformers: one generate of
  --rows copies of the prompt, which need no padding).
Both models sit on the device in one process (on a GPU the host's caches matter less
than on a CPU, where bench.anchors keeps every engine in its own); a pass times each
engine once at batch 1 and once at batch 32, their order reversed every other pass; a
ratio is the median of the passes' ratios. `--device cpu` runs the same script in float32
on the CPU (to check the script where there is no GPU; bench.speed is the CPU's
comparison with generate). Prints a table; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch

from bench.harness import decode_together
from gpt2demo.generation import generate_text
from gpt2demo.model import load_model
from gpt2demo.serving.interface import Request
from gpt2demo.settings import SamplingSettings
from tools.standin import GPT2_SMALL, TINY, build_standin

PROMPT = "Yesterday, a man named Jack said he saw an alien,"
TOP_K = 10  # the tutorial's
ENGINES = ("gpt2demo", "generate")
RUNS = ("batch1", "batch_rows")


def timed_rate(run, device: torch.device) -> float:
    """Tokens/s of one call of run() (which returns the tokens it wrote), the device's queue drained at both ends."""
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    synchronize()
    started = time.perf_counter()
    tokens = run()
    synchronize()
    return tokens / (time.perf_counter() - started)


def gpt2demo_runs(loaded, args) -> dict:
    def one(tokens: int = args.tokens) -> int:
        return len(generate_text(loaded, PROMPT, SamplingSettings(top_k=TOP_K, max_new_tokens=tokens, seed=0)).token_ids)

    def many(tokens: int = args.batch_tokens) -> int:
        return decode_together(loaded, [Request(SamplingSettings(top_k=TOP_K, max_new_tokens=tokens, seed=i), PROMPT)
                                        for i in range(args.rows)])

    return {"batch1": one, "batch_rows": many}


def generate_runs(loaded, args) -> dict:
    """transformers' own generate on its own copy of the same checkpoint, in gpt2demo's dtype on the device."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(args.folder, dtype=loaded.model.dtype).to(loaded.device).eval()
    prompt = torch.tensor([loaded.encode(PROMPT)], device=loaded.device)
    eos = loaded.eos_token_id

    def run(rows: int, tokens: int) -> int:
        ids = prompt.repeat(rows, 1)
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=TOP_K,
                                 max_new_tokens=tokens, min_new_tokens=tokens, pad_token_id=eos)
        return rows * (out.shape[1] - ids.shape[1])

    return {"batch1": lambda: run(1, args.tokens), "batch_rows": lambda: run(args.rows, args.batch_tokens)}


def measure(engines: dict, device: torch.device, passes: int) -> list[dict]:
    measured = []
    for number in range(passes):
        order = ENGINES[:: 1 if number % 2 == 0 else -1]
        figures = {engine: {} for engine in ENGINES}
        for run in RUNS:
            for engine in order:
                figures[engine][run] = timed_rate(engines[engine][run], device)
        measured.append(figures)
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--shape", choices=["small", "tiny"], default="small")
    parser.add_argument("--tokens", type=int, default=100, help="new tokens of the batch-1 request")
    parser.add_argument("--rows", type=int, default=32, help="requests of the batch")
    parser.add_argument("--batch-tokens", type=int, default=64, help="new tokens of each batch request")
    parser.add_argument("--passes", type=int, default=7, help="turns each engine takes (see above)")
    args = parser.parse_args()
    torch.manual_seed(0)  # generate's draws
    with tempfile.TemporaryDirectory() as scratch:
        args.folder = str(build_standin(scratch, GPT2_SMALL if args.shape == "small" else TINY))
        loaded = load_model(args.folder, args.device)
        engines = {"gpt2demo": gpt2demo_runs(loaded, args), "generate": generate_runs(loaded, args)}
        for runs in engines.values():  # warm-up: first-call allocations, the device's kernels for these shapes
            for run in runs.values():
                run()
        passes = measure(engines, loaded.device, args.passes)
    rates = {engine: {run: statistics.median(p[engine][run] for p in passes) for run in RUNS} for engine in ENGINES}
    ratios = {run: [p["gpt2demo"][run] / p["generate"][run] for p in passes] for run in RUNS}
    name = torch.cuda.get_device_name(loaded.device) if loaded.device.type == "cuda" else "CPU"
    print(f"{name}, {loaded.model.dtype}, GPT-2 {args.shape} shapes, prompt {PROMPT!r}, top-k {TOP_K}; batch 1: "
          f"{args.tokens} new tokens; batch {args.rows}: {args.batch_tokens} new tokens each; {args.passes} passes")
    print(f"{'engine':>10} {'batch 1 tok/s':>14} {f'batch {args.rows} tok/s':>15}")
    for engine, figures in rates.items():
        print(f"{engine:>10} {figures['batch1']:>14.1f} {figures['batch_rows']:>15.1f}")
    for run, values in ratios.items():
        print(f"gpt2demo / generate at {run}: {statistics.median(values):.2f}x (" + ", ".join(f"{v:.2f}" for v in values) + ")")
    print(json.dumps({"device": name, "dtype": str(loaded.model.dtype), "shape": args.shape, "tokens": args.tokens,
                      "rows": args.rows, "batch_tokens": args.batch_tokens, "passes": args.passes, "rates": rates,
                      "ratios": {run: statistics.median(values) for run, values in ratios.items()},
                      "ratios_by_pass": ratios}))


if __name__ == "__main__":
    main()
