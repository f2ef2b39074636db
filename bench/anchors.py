"""Where gpt2demo stands: its float32 and int8 decoding against CTranslate2's, and the memory-bandwidth bound.

    pip install -r bench/requirements.txt      # CTranslate2: for this benchmark only
    python -m bench.anchors [--shape small|tiny] [--tokens 100] [--rows 32] [--batch-tokens 64] [--threads 2,1] [--passes 9]

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

At each thread count the four engines and the bandwidth probe are loaded once, each in
its own process, and then take turns: a pass reads the bandwidth, times one batch-1 run
of every engine, then one batch run of every engine, the engines' order reversed every
other pass, each process idle (blocked on its input) while another runs. On a shared
machine the speed drifts by 20% or more within minutes, so the engines are compared
pass by pass, each ratio from runs seconds apart, and a ratio is the median of the
passes' (as is each pass's fraction of the bound, from that pass's bandwidth); an
engine's tokens/s is the median of its runs. A run counts the tokens actually written
(a random model may write <|endoftext|> early). Prints a table and each pass's ratios;
the last line is JSON.
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
RUNS = ("batch1", "batch_rows")


def rate(run) -> float:
    """Tokens/s of one call of run(), which returns the tokens it wrote."""
    started = time.perf_counter()
    tokens = run()
    return tokens / (time.perf_counter() - started)


def gpt2demo_runs(job: dict) -> tuple[dict, dict]:
    import torch

    torch.set_num_threads(job["threads"])
    from bench.harness import decode_together
    from gpt2demo.generation import generate_text
    from gpt2demo.model import load_model
    from gpt2demo.serving.interface import Request
    from gpt2demo.settings import SamplingSettings

    model = load_model(job["folder"], "cpu", job["precision"])

    def one(tokens: int = job["tokens"]) -> int:
        return len(generate_text(model, PROMPT, SamplingSettings(top_k=TOP_K, max_new_tokens=tokens, seed=0)).token_ids)

    def many(tokens: int = job["batch_tokens"]) -> int:
        return decode_together(model, [Request(SamplingSettings(top_k=TOP_K, max_new_tokens=tokens, seed=i), PROMPT)
                                       for i in range(job["rows"])])

    one(4), many(4)  # warm-up: first-call allocations, oneDNN's kernels for these shapes
    # Whether a row alone's vocabulary product is screened in float16 here (gpt2demo/vocabulary.py): timed at load.
    facts = {"load_seconds": model.facts().load_seconds, "vocabulary_screen": model.decoder.vocabulary_screen is not None}
    return facts, {"batch1": lambda: rate(one), "batch_rows": lambda: rate(many)}


def ctranslate2_runs(job: dict) -> tuple[dict, dict]:
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
    facts = {"load_seconds": round(load_seconds, 2), "compute_type": generator.compute_type}
    return facts, {"batch1": lambda: rate(lambda: generate(1, job["tokens"])),
                   "batch_rows": lambda: rate(lambda: generate(job["rows"], job["batch_tokens"]))}


def bandwidth_runs(job: dict) -> tuple[dict, dict]:
    """Read bandwidth: the best of a few sums of a tensor far larger than the caches; copy for reference."""
    import torch

    torch.set_num_threads(job["threads"])
    data = torch.ones(job["bandwidth_mb"] * 2**20 // 4)
    target = torch.empty_like(data)
    size = data.numel() * 4

    def measure() -> dict:
        reads, copies = [], []
        for _ in range(5):
            started = time.perf_counter()
            data.sum()
            reads.append(time.perf_counter() - started)
            started = time.perf_counter()
            target.copy_(data)
            copies.append(time.perf_counter() - started)
        return {"read_gb_s": size / min(reads) / 1e9, "copy_gb_s": 2 * size / min(copies) / 1e9}

    measure()  # the pages faulted in
    return {}, {"memory": measure}


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


WORKERS = {"gpt2demo": gpt2demo_runs, "ctranslate2": ctranslate2_runs, "bandwidth": bandwidth_runs}


def serve(kind: str, job: dict) -> None:
    """The worker's side: load, say what was loaded, then run each measurement named on stdin."""
    facts, runs = WORKERS[kind](job)
    print(json.dumps(facts), flush=True)
    for line in sys.stdin:
        print(json.dumps(runs[line.strip()]()), flush=True)


class Worker:
    """One engine (or the bandwidth probe) loaded once in a fresh interpreter, OpenMP held to the job's threads."""

    def __init__(self, kind: str, job: dict, log) -> None:
        self.kind = kind
        env = {**os.environ, "OMP_NUM_THREADS": str(job["threads"])}
        self.process = subprocess.Popen([sys.executable, "-m", "bench.anchors", "--worker", kind, json.dumps(job)],
                                        cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=log, text=True)
        self.facts = self._answer()

    def _answer(self):
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.kind} worker stopped (its stderr is in the run's log)")
        return json.loads(line)

    def measure(self, name: str):
        self.process.stdin.write(name + "\n")
        self.process.stdin.flush()
        return self._answer()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def measure_threads(folder: Path, ct2_folders: dict, job: dict, passes: int, log) -> list[dict]:
    """Every pass at one thread count: the bandwidth, every engine's batch 1, every engine's batch, in turn."""
    workers = {}
    try:
        workers["bandwidth"] = Worker("bandwidth", job, log)
        for engine, precision in ENGINES:
            workers[engine, precision] = Worker(engine, {**job, "precision": precision,
                                                         "ct2_folder": ct2_folders[precision]}, log)
        measured = []
        for number in range(passes):
            order = ENGINES[:: 1 if number % 2 == 0 else -1]
            figures = {"memory": workers["bandwidth"].measure("memory")}
            for run in RUNS:
                for engine in order:
                    figures.setdefault(engine, {})[run] = workers[engine].measure(run)
            measured.append(figures)
        return [{"facts": {f"{e} {p}": workers[e, p].facts for e, p in ENGINES}}, *measured]
    finally:
        for worker in workers.values():
            worker.close()


def convert(folder: Path, precision: str) -> Path:
    """The stand-in converted by CTranslate2's own converter."""
    out = folder.parent / f"ct2-{precision}"
    subprocess.run(["ct2-transformers-converter", "--model", str(folder), "--output_dir", str(out),
                    "--quantization", precision], check=True, capture_output=True, text=True)
    return out


def summarize(passes: list[dict], weights: dict) -> dict:
    """Medians over the passes: each engine's tokens/s, the bandwidth, and the pass-by-pass ratios and bound fractions."""
    engines = {f"{engine} {precision}": {run: statistics.median(p[engine, precision][run] for p in passes) for run in RUNS}
               for engine, precision in ENGINES}
    memory = {key: statistics.median(p["memory"][key] for p in passes) for key in ("read_gb_s", "copy_gb_s")}
    comparisons = {}
    for precision in ("float32", "int8"):
        ours, theirs = ("gpt2demo", precision), ("ctranslate2", precision)
        each = {run: [p[ours][run] / p[theirs][run] for p in passes] for run in RUNS}
        bound = [p[ours]["batch1"] / (p["memory"]["read_gb_s"] * 1e9 / weights[precision]) for p in passes]
        comparisons[precision] = {**{run: statistics.median(values) for run, values in each.items()},
                                  **{f"{run}_passes": values for run, values in each.items()},
                                  "batch1_of_bound": statistics.median(bound), "batch1_of_bound_passes": bound,
                                  "bound_tok_s": memory["read_gb_s"] * 1e9 / weights[precision]}
    return {"engines": engines, "memory": memory, "comparisons": comparisons}


def print_summary(count: int, summary: dict, args, weights: dict) -> None:
    memory = summary["memory"]
    print(f"threads {count}: memory read {memory['read_gb_s']:.1f} GB/s (copy {memory['copy_gb_s']:.1f} GB/s); "
          f"one sequence's bound: float32 {summary['comparisons']['float32']['bound_tok_s']:.1f} tok/s "
          f"({weights['float32'] / 1e6:.0f} MB a token), int8 {summary['comparisons']['int8']['bound_tok_s']:.1f} tok/s "
          f"({weights['int8'] / 1e6:.0f} MB)")
    screened = summary["facts"]["gpt2demo float32"]["vocabulary_screen"]
    print(f"gpt2demo float32: a row alone's vocabulary product screened in float16: {'yes' if screened else 'no'}")
    print(f"{'engine':>24} {'batch 1 tok/s':>14} {f'batch {args.rows} tok/s':>15}")
    for name, figures in summary["engines"].items():
        print(f"{name:>24} {figures['batch1']:>14.1f} {figures['batch_rows']:>15.1f}")
    for precision, figures in summary["comparisons"].items():
        listed = {run: ", ".join(f"{value:.2f}" for value in figures[f"{run}_passes"]) for run in RUNS}
        print(f"threads {count} {precision}: gpt2demo / CTranslate2 = {figures['batch1']:.2f}x at batch 1 ({listed['batch1']}), "
              f"{figures['batch_rows']:.2f}x at batch {args.rows} ({listed['batch_rows']}); batch 1 at "
              f"{figures['batch1_of_bound']:.2f} of the bound ("
              + ", ".join(f"{value:.2f}" for value in figures["batch1_of_bound_passes"]) + ")")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=["small", "tiny"], default="small")
    parser.add_argument("--tokens", type=int, default=100, help="new tokens of the batch-1 request")
    parser.add_argument("--rows", type=int, default=32, help="requests of the batch")
    parser.add_argument("--batch-tokens", type=int, default=64, help="new tokens of each batch request")
    parser.add_argument("--threads", default="2,1", help="thread counts to measure at, comma-separated")
    parser.add_argument("--passes", type=int, default=9, help="turns every engine takes at each thread count (see above)")
    parser.add_argument("--bandwidth-mb", type=int, default=1024, help="size of the tensor the bandwidth is read from")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "JOB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        serve(args.worker[0], json.loads(args.worker[1]))
        return
    from tools.standin import GPT2_SMALL, TINY, build_standin

    threads = [int(count) for count in args.threads.split(",")]
    base = dict(tokens=args.tokens, rows=args.rows, batch_tokens=args.batch_tokens, bandwidth_mb=args.bandwidth_mb)
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = build_standin(Path(scratch) / "hf", GPT2_SMALL if args.shape == "small" else TINY)
        ct2_folders = {precision: str(convert(folder, precision)) for precision in ("float32", "int8")}
        weights = weight_bytes(str(folder))
        with open(Path(scratch) / "workers.log", "w+") as log:
            try:
                for count in threads:
                    facts, *passes = measure_threads(folder, ct2_folders, {**base, "threads": count, "folder": str(folder)},
                                                     args.passes, log)
                    results[count] = {**summarize(passes, weights), **facts,
                                      "passes": [{("memory" if key == "memory" else " ".join(key)): value
                                                  for key, value in p.items()} for p in passes]}
            except RuntimeError:
                log.seek(0)
                print(log.read()[-3000:], file=sys.stderr)
                raise
    print(f"GPT-2 {args.shape} shapes ({weights['parameters']:,} parameters), prompt {PROMPT!r}, top-k {TOP_K}; "
          f"batch 1: {args.tokens} new tokens; batch {args.rows}: {args.batch_tokens} new tokens each, prompts read first; "
          f"{args.passes} passes, each figure the median over them")
    for count in threads:
        print_summary(count, results[count], args, weights)
    print(json.dumps({"shape": args.shape, **base, "passes": args.passes, "weight_bytes": weights,
                      "threads": {str(count): results[count] for count in threads}}))


if __name__ == "__main__":
    main()
