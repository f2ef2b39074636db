"""A class pressing Generate at once: N concurrent gradio_client streams against the app.

Starts the real app (`python app.py`: continuous batching scheduler, Gradio queue) on GPT-2 small
shapes (124M parameters, random weights, GPT-2's tokenizer) and, for N = 1, 8, 16, 32,
submits N streams of 64 new tokens each, mixed prompts, all at once. Every stream's
final text is checked against the same request run alone (a mismatch counts as an
error). Prints a table; the last line is JSON.

Usage: python -m bench.classroom [--streams 1,8,16,32] [--new-tokens 64] [--shape small|tiny]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import tempfile
import time
from pathlib import Path

from gradio_client import Client

from gpt2demo.engine import generate_text, load_model
from gpt2demo.scheduler import DEFAULT_MAX_BATCH, DEFAULT_QUEUE_SIZE
from gpt2demo.settings import SamplingSettings
from gpt2demo.standin import GPT2_SMALL, TINY, build_standin
from bench.streaming import connect, serve, watch

PROMPTS = [
    "Yesterday, a man named Jack said he saw an alien,",
    "The teacher asked the class to",
    "In 1969, the first people to walk on the moon",
    "昨天，一个名叫杰克的人说",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def measure(url: str, streams: int, new_tokens: int, expected: list[str]) -> dict:
    clients = [Client(url, verbose=False) for _ in range(streams)]  # one per student: own session
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(streams)]
    records = [{} for _ in range(streams)]
    jobs = []
    for i, (client, prompt) in enumerate(zip(clients, prompts)):  # submit() returns at once: all start together
        records[i]["submitted"] = time.perf_counter()
        jobs.append(client.submit(prompt=prompt, max_new_tokens=new_tokens, top_k=10, seed=str(i % len(PROMPTS)), api_name="/generate"))
    watch(jobs, prompts, records)  # one watcher for the class (see its docstring)
    for record in records:
        if "outputs" in record:
            record["text"] = record["outputs"][0]
    done = [r for r in records if "text" in r]
    errors = [r.get("error", "wrong text") for i, r in enumerate(records) if "text" not in r or r["text"] != expected[i % len(PROMPTS)]]
    for client in clients:
        client.close()
    per_stream = [new_tokens / (r["end"] - r["submitted"]) for r in done]
    ttft = [r["first"] - r["submitted"] for r in done]
    wall = max(r["end"] for r in done) - min(r["submitted"] for r in done) if done else float("nan")
    return {
        "streams": streams,
        "aggregate_tok_s": round(new_tokens * len(done) / wall, 2),
        "per_stream_median_tok_s": round(statistics.median(per_stream), 2),
        "per_stream_min_tok_s": round(min(per_stream), 2),
        "ttft_median_s": round(statistics.median(ttft), 2),
        "ttft_p95_s": round(percentile(ttft, 0.95), 2),
        "errors": len(errors),
        "error_examples": errors[:3],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="1,8,16,32")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--shape", choices=["small", "tiny"], default="small")
    parser.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH)
    args = parser.parse_args()
    counts = [int(n) for n in args.streams.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        build_standin(folder, GPT2_SMALL if args.shape == "small" else TINY)
        alone_model = load_model(folder, "cpu")
        expected = [
            prompt + generate_text(alone_model, prompt, SamplingSettings(max_new_tokens=args.new_tokens, top_k=10, seed=i)).text
            for i, prompt in enumerate(PROMPTS)
        ]
        # The app in its own process, as `python app.py` runs it: the students' clients
        # (here, threads of this process) must not share the server's interpreter lock.
        port = free_port()
        server = serve(Path(folder), port, ["--max-batch", str(args.max_batch), "--queue-size", str(DEFAULT_QUEUE_SIZE)])
        try:
            url = f"http://127.0.0.1:{port}/"
            connect(url).close()  # waits until the app answers
            measure(url, 1, 4, expected=[""] * len(PROMPTS))  # warm-up: first-request costs
            rows = [measure(url, n, args.new_tokens, expected) for n in counts]
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"GPT-2 {args.shape} shapes, {args.new_tokens} new tokens per stream, top-k 10, max batch {args.max_batch}")
    print(f"{'N':>4} {'aggregate tok/s':>16} {'per-stream med':>15} {'per-stream min':>15} {'TTFT med s':>11} {'TTFT p95 s':>11} {'errors':>7}")
    for row in rows:
        print(f"{row['streams']:>4} {row['aggregate_tok_s']:>16} {row['per_stream_median_tok_s']:>15} {row['per_stream_min_tok_s']:>15} "
              f"{row['ttft_median_s']:>11} {row['ttft_p95_s']:>11} {row['errors']:>7}")
        for example in row["error_examples"]:
            print(f"      error: {example[:200]}")
    by_n = {row["streams"]: row for row in rows}
    summary = {"rows": rows}
    if 1 in by_n and 32 in by_n:
        summary["speedup_32_over_1"] = round(by_n[32]["aggregate_tok_s"] / by_n[1]["aggregate_tok_s"], 2)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
