"""Where gpt2demo stands: its float32 and int8 decoding against CTranslate2's, and the memory-bandwidth bound.

    pip install -r bench/requirements.txt      # CTranslate2: for this benchmark only
    python -m bench.anchors [--shape small|tiny] [--tokens 100] [--rows 32] [--batch-tokens 64] [--threads 2,1] [--rounds 3]

On a GPT-2-small-shaped stand-in (tools/standin.py: GPT-2's tokenizer, random weights;
speed does not depend on the weights' values), converted with CTranslate2's own
converter (`ct2-transformers-converter`, float32 and `--quantization int8`), measures
in one run, each engine in a process of its own so that none shares another's caches
or threads, with the same prompt (the tutorial's), top-k 10 and the same thread count
(torch's intra-op threads = CTranslate2's intra_threads):

- batch 1: one request of --tokens new tokens (gpt2demo: generate_text; CTranslate2:
  generate_batch of one);
- batch 32: --rows requests of --batch-tokens new tokens each, prompts read first
  (gpt2demo: one DecodeBatch, as the engine runs a class; CTranslate2: generate_batch);
- the memory's read bandwidth (a large tensor summed, the same threads) and the bound
  it puts on one sequence's decoding: bandwidth / the weight bytes one token reads
  (every weight once; in int8 the products' weights are one byte each).

Tokens/s are the median of --repeats runs after a warm-up; a run counts the tokens
actually written (a random model may write <|endoftext|> early). The whole sequence
runs --rounds times, the engines' order reversed every other round, and each figure is
the median over the rounds: on a shared machine the speed drifts by 20% or more within
minutes, and an engine measured only once, in a slow minute, would be judged by it.
Prints a table and each round's ratios; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Yesterday, a man named Jack said he saw an alien,"
TOP_K = 10  # the tutorial's
ENGINES = (("gpt2demo", "float32"), ("gpt2demo", "int8"), ("ctranslate2", "float32"), ("ctranslate2", "int8"))
CT2_COMPUTE = {"float32": "float32", "int8": "int8_float32"}  # int8 products, float32 everything else, as ours


def median_rate(run, repeats: int) -> float:
    """Tokens/s of run() (which returns the tokens it wrote): the median of `repeats` timed runs."""
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        tokens = run()
        rates.append(tokens / (time.perf_counter() - started))
    return statistics.median(rates)


def gpt2demo_rates(job: dict) -> dict:
    import torch

    torch.set_num_threads(job["threads"])
    from gpt2demo.generation import DecodeBatch, Generation, generate_text
    from gpt2demo.model import load_model
    from gpt2demo.serving.interface import Request
    from gpt2demo.settings import SamplingSettings

    model = load_model(job["folder"], "cpu", job["precision"])

    def one(tokens: int = job["tokens"]) -> int:
        return len(generate_text(model, PROMPT, SamplingSettings(top_k=TOP_K, max_new_tokens=tokens, seed=0)).token_ids)

    def many(tokens: int = job["batch_tokens"]) -> int:
        batch = DecodeBatch(model)
        generations = [Generation(model, Request(SamplingSettings(top_k=TOP_K, max_new_tokens=tokens, seed=i), PROMPT))
                       for i in range(job["rows"])]
        for generation in generations:
            for _ in batch.join(generation):  # a joining request may already yield its first step
                pass
        while batch:
            batch.step()
        return sum(len(generation.new_token_ids) for generation in generations)

    one(4), many(4)  # warm-up: first-call allocations, oneDNN's kernels for these shapes
    return {"batch1": median_rate(one, job["repeats"]), "batch_rows": median_rate(many, job["repeats"]),
            "load_seconds": model.facts().load_seconds}


def ctranslate2_rates(job: dict) -> dict:
    import ctranslate2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(job["folder"])
    prompt = tokenizer.convert_ids_to_tokens(tokenizer.encode(PROMPT))
    started = time.perf_counter()
    generator = ctranslate2.Generator(job["ct2_folder"], device="cpu", compute_type=CT2_COMPUTE[job["precision"]],
                                      intra_threads=job["threads"], inter_threads=1)
    load_seconds = time.perf_counter() - started
    ctranslate2.set_random_seed(0)

    def generate(rows: int, tokens: int) -> int:
        results = generator.generate_batch([prompt] * rows, max_batch_size=rows, max_length=tokens,
                                           sampling_topk=TOP_K, include_prompt_in_result=False)
        return sum(len(result.sequences_ids[0]) for result in results)

    generate(1, 4), generate(job["rows"], 4)  # warm-up
    return {"batch1": median_rate(lambda: generate(1, job["tokens"]), job["repeats"]),
            "batch_rows": median_rate(lambda: generate(job["rows"], job["batch_tokens"]), job["repeats"]),
            "load_seconds": round(load_seconds, 2), "compute_type": generator.compute_type}


def bandwidth(job: dict) -> dict:
    """Read bandwidth: the best of a few sums of a tensor far larger than the caches; copy for reference."""
    import torch

    torch.set_num_threads(job["threads"])
    data = torch.ones(job["bandwidth_mb"] * 2**20 // 4)
    target = torch.empty_like(data)
    reads, copies = [], []
    for _ in range(5):
        started = time.perf_counter()
        data.sum()
        reads.append(time.perf_counter() - started)
        started = time.perf_counter()
        target.copy_(data)
        copies.append(time.perf_counter() - started)
    size = data.numel() * 4
    return {"read_gb_s": size / min(reads) / 1e9, "copy_gb_s": 2 * size / min(copies) / 1e9}


def weight_bytes(folder: str) -> dict:
    """Bytes of weights one decoded token reads: every matrix once, one row of each embedding."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    config = model.config
    embedding_rows = (config.vocab_size + config.n_positions) * config.n_embd  # looked up, not read whole
    everything = sum(p.numel() for p in model.parameters())  # the tied lm_head / wte counted once
    products = sum(module.weight.numel() for block in model.transformer.h
                   for module in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj))
    products += config.vocab_size * config.n_embd  # the lm_head, read whole at every step
    rest = everything - embedding_rows - (products - config.vocab_size * config.n_embd)
    return {"float32": 4 * (products + rest), "int8": products + 4 * rest, "parameters": everything}


WORKERS = {"gpt2demo": gpt2demo_rates, "ctranslate2": ctranslate2_rates, "bandwidth": bandwidth}


def in_own_process(kind: str, job: dict) -> dict:
    """One measurement in a fresh interpreter, with OpenMP held to the job's threads as well."""
    env = {**os.environ, "OMP_NUM_THREADS": str(job["threads"])}
    result = subprocess.run([sys.executable, "-m", "bench.anchors", "--worker", kind, json.dumps(job)],
                            cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{kind} {job.get('precision', '')} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def convert(folder: Path, precision: str) -> Path:
    """The stand-in converted by CTranslate2's own converter."""
    out = folder.parent / f"ct2-{precision}"
    subprocess.run(["ct2-transformers-converter", "--model", str(folder), "--output_dir", str(out),
                    "--quantization", precision], check=True, capture_output=True, text=True)
    return out


def measure_round(folder: Path, ct2_folders: dict, base: dict, threads: list[int], engines) -> tuple[list[dict], dict]:
    """One pass over every thread count: the bandwidth, then each engine in `engines` order."""
    rows, memory = [], {}
    for count in threads:
        job = {**base, "threads": count, "folder": str(folder)}
        memory[count] = in_own_process("bandwidth", job)
        for engine, precision in engines:
            measured = in_own_process(engine, {**job, "precision": precision, "ct2_folder": ct2_folders[precision]})
            rows.append({"threads": count, "engine": engine, "precision": precision, **measured})
    return rows, memory


def combine_rounds(rounds: list[tuple[list[dict], dict]], threads: list[int]) -> tuple[list[dict], dict]:
    """Every figure as the median over the rounds, in the first round's order."""
    first, _ = rounds[0]
    rows = []
    for row in first:
        same = [r for measured, _ in rounds for r in measured
                if (r["threads"], r["engine"], r["precision"]) == (row["threads"], row["engine"], row["precision"])]
        rows.append({**row, **{key: statistics.median(r[key] for r in same) for key in ("batch1", "batch_rows", "load_seconds")}})
    memory = {count: {key: statistics.median(m[count][key] for _, m in rounds) for key in ("read_gb_s", "copy_gb_s")}
              for count in threads}
    return rows, memory


def pair(rows: list[dict], count: int, precision: str) -> tuple[dict, dict]:
    """gpt2demo's and CTranslate2's rows at one thread count and precision."""
    by_engine = {r["engine"]: r for r in rows if r["threads"] == count and r["precision"] == precision}
    return by_engine["gpt2demo"], by_engine["ctranslate2"]


def print_table(rows: list[dict], job: dict) -> None:
    batch = f"batch {job['rows']} tok/s"
    print(f"{'threads':>7} {'engine':>12} {'precision':>9} {'batch 1 tok/s':>14} {batch:>15} {'load s':>7}")
    for row in rows:
        print(f"{row['threads']:>7} {row['engine']:>12} {row['precision']:>9} {row['batch1']:>14.1f} "
              f"{row['batch_rows']:>15.1f} {row['load_seconds']:>7}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=["small", "tiny"], default="small")
    parser.add_argument("--tokens", type=int, default=100, help="new tokens of the batch-1 request")
    parser.add_argument("--rows", type=int, default=32, help="requests of the batch")
    parser.add_argument("--batch-tokens", type=int, default=64, help="new tokens of each batch request")
    parser.add_argument("--threads", default="2,1", help="thread counts to measure at, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="times the whole sequence runs (see above)")
    parser.add_argument("--bandwidth-mb", type=int, default=1024, help="size of the tensor the bandwidth is read from")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "JOB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(WORKERS[args.worker[0]](json.loads(args.worker[1]))))
        return
    from tools.standin import GPT2_SMALL, TINY, build_standin

    threads = [int(count) for count in args.threads.split(",")]
    base = dict(tokens=args.tokens, rows=args.rows, batch_tokens=args.batch_tokens, repeats=args.repeats,
                bandwidth_mb=args.bandwidth_mb)
    with tempfile.TemporaryDirectory() as scratch:
        folder = build_standin(Path(scratch) / "hf", GPT2_SMALL if args.shape == "small" else TINY)
        ct2_folders = {precision: str(convert(folder, precision)) for precision in ("float32", "int8")}
        weights = weight_bytes(str(folder))
        rounds = [measure_round(folder, ct2_folders, base, threads, ENGINES[:: 1 if number % 2 == 0 else -1])
                  for number in range(args.rounds)]
    rows, memory = combine_rounds(rounds, threads)
    print(f"{args.rounds} rounds, each figure the median over them")
    print(f"GPT-2 {args.shape} shapes ({weights['parameters']:,} parameters), prompt {PROMPT!r}, top-k {TOP_K}; "
          f"batch 1: {args.tokens} new tokens; batch {args.rows}: {args.batch_tokens} new tokens each, prompts read first")
    print_table(rows, base)
    bounds = {}
    for count, figures in memory.items():
        bounds[count] = {precision: figures["read_gb_s"] * 1e9 / weights[precision] for precision in ("float32", "int8")}
        print(f"threads {count}: memory read {figures['read_gb_s']:.1f} GB/s (copy {figures['copy_gb_s']:.1f} GB/s); "
              f"one sequence's bound: float32 {bounds[count]['float32']:.1f} tok/s "
              f"({weights['float32'] / 1e6:.0f} MB a token), int8 {bounds[count]['int8']:.1f} tok/s "
              f"({weights['int8'] / 1e6:.0f} MB)")
    for count in threads:
        for precision in ("float32", "int8"):
            ours, theirs = pair(rows, count, precision)
            each = [pair(measured, count, precision) for measured, _ in rounds]
            print(f"threads {count} {precision}: gpt2demo / CTranslate2 = {ours['batch1'] / theirs['batch1']:.2f}x at batch 1, "
                  f"{ours['batch_rows'] / theirs['batch_rows']:.2f}x at batch {args.rows}; batch 1 at "
                  f"{100 * ours['batch1'] / bounds[count][precision]:.0f}% of the bound; by round: batch 1 "
                  + ", ".join(f"{a['batch1'] / b['batch1']:.2f}x" for a, b in each) + f", batch {args.rows} "
                  + ", ".join(f"{a['batch_rows'] / b['batch_rows']:.2f}x" for a, b in each))
    print(json.dumps({"shape": args.shape, **base, "rounds": args.rounds, "weight_bytes": weights, "memory": memory,
                      "bounds": bounds, "rows_measured": rows, "rounds_measured": [measured for measured, _ in rounds]}))


if __name__ == "__main__":
    main()
