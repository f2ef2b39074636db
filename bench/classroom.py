"""A class at once: N students streaming through `python app.py`, a mixed class, and the bare batch.

    python -m bench.classroom [--streams 1,8,16,32] [--new-tokens 64] [--clients light,gradio] [--shape small|tiny]

Serves a GPT-2-small-shaped stand-in (124M parameters, random weights, GPT-2's
tokenizer) with `python app.py`, as a user starts it, and measures:

- plain class: N = 1, 8, 16, 32 students pressing Generate together (each with the page
  already open: its load events ran, as a browser runs them), 64 new tokens each,
  mixed prompts, top-k 10, each stream's text checked against the same request run
  alone (a mismatch counts as an error). Students are light clients (raw SSE over
  Gradio's queue protocol, as the page's JavaScript does, all in one asyncio loop) and,
  at the largest N, gradio_client jobs watched every 10 ms;
- mixed class: 8 generating while 2 classmates compare strategies (4 lanes each) and 1
  runs the cost race; the 8's aggregate against a plain class of 8's, the two alternated
  --mixed-pairs times and the median of the pairs' ratios taken;
- in a bare process, no server: the engine's DecodeBatch and transformers' own batched
  `generate` on 32 rows of the same requests. The DecodeBatch runs in turns with a
  class of 32 through the server, --server-pairs times (the order swapped every other
  pair), and the server/batch ratio is the median of the pairs'; generate runs once,
  against the median of those classes.

Targets (issue #11): mixed/plain aggregate >= 0.7; at N = 32 the server's aggregate
>= 0.8 of the bare DecodeBatch and >= transformers' batched generate. Prints tables;
the last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.harness import ROOT, LightClient, app_process, median, percentile
from tools.ports import free_port
from tools.standin import GPT2_SMALL, TINY, build_standin

PROMPTS = [
    "Yesterday, a man named Jack said he saw an alien,",
    "The teacher asked the class to",
    "In 1969, the first people to walk on the moon",
    "昨天，一个名叫杰克的人说",
]
TARGETS = {"mixed/plain": 0.7, "server/batch at 32": 0.8, "server/generate at 32": 1.0}


def expected_texts(folder: str, new_tokens: int) -> list[str]:
    from gpt2demo.generation import generate_text
    from gpt2demo.model import load_model
    from gpt2demo.settings import SamplingSettings

    model = load_model(folder, "cpu")
    return [prompt + generate_text(model, prompt, SamplingSettings(max_new_tokens=new_tokens, top_k=10, seed=i)).text
            for i, prompt in enumerate(PROMPTS)]


def summarise(results: list, new_tokens: int, expected: list[str], started: float) -> dict:
    done = [r for r in results if r.error is None]
    errors = [r.error or "wrong text" for i, r in enumerate(results)
              if r.error is not None or r.text != expected[i % len(PROMPTS)]]
    wall = max(r.last or r.submitted for r in done) - started if done else float("nan")
    per_stream = [new_tokens / ((r.last or r.submitted) - r.submitted) for r in done]
    ttft = [(r.first or r.submitted) - r.submitted for r in done]
    return {
        "streams": len(results),
        "aggregate_tok_s": round(new_tokens * len(done) / wall, 2),
        "per_stream_median_tok_s": round(median(per_stream), 2),
        "per_stream_min_tok_s": round(min(per_stream), 2),
        "ttft_median_s": round(median(ttft), 2),
        "ttft_p95_s": round(percentile(ttft, 0.95), 2),
        # by prompt (PROMPTS' order): which prompts wait longest for their first token
        "ttft_max_by_prompt_s": [round(max(((r.first or r.submitted) - r.submitted for k, r in enumerate(results)
                                            if k % len(PROMPTS) == i and r.error is None), default=float("nan")), 2)
                                 for i in range(len(PROMPTS))],
        "errors": len(errors),
        "error_examples": errors[:3],
    }


async def light_class(url: str, streams: int, new_tokens: int, expected: list[str]) -> dict:
    client = LightClient(url)
    try:
        sessions = await asyncio.gather(*(client.open_page() for _ in range(streams)))  # the class has the page open
        started = time.perf_counter()
        results = await asyncio.gather(*(client.generate(PROMPTS[i % len(PROMPTS)], session=sessions[i],
                                                         max_new_tokens=new_tokens, seed=str(i % len(PROMPTS)))
                                         for i in range(streams)))
    finally:
        await client.close()
    return summarise(list(results), new_tokens, expected, started)


def gradio_class(url: str, streams: int, new_tokens: int, expected: list[str]) -> dict:
    """The same class through gradio_client jobs, watched every 10 ms from one thread."""
    from gradio_client import Client

    from bench.harness import StreamResult

    clients = [Client(url, verbose=False) for _ in range(streams)]
    started = time.perf_counter()
    results, jobs = [], []
    for i, client in enumerate(clients):
        results.append(StreamResult(submitted=time.perf_counter()))
        jobs.append(client.submit(prompt=PROMPTS[i % len(PROMPTS)], max_new_tokens=new_tokens, top_k=10,
                                  seed=str(i % len(PROMPTS)), api_name="/generate"))
    deadline = time.perf_counter() + 600
    while time.perf_counter() < deadline and not all(job.done() for job in jobs):
        now = time.perf_counter()
        for i, job in enumerate(jobs):
            outputs = job.outputs()
            if outputs and results[i].first is None and len(outputs[-1][0]) > len(PROMPTS[i % len(PROMPTS)]):
                results[i].first = now
        time.sleep(0.01)
    for i, job in enumerate(jobs):
        try:
            final = job.outputs()[-1]
            results[i].text, results[i].last = final[0], results[i].last or time.perf_counter()
        except Exception as error:  # noqa: BLE001 - a failed stream is counted, not raised
            results[i].error = f"{type(error).__name__}: {error}"
        results[i].last = results[i].last or time.perf_counter()
    for client in clients:
        client.close()
    return summarise(results, new_tokens, expected, started)


async def teaching_fn(http: httpx.AsyncClient, url: str, elem_id: str) -> int:
    """The fn_index of the click event of the button `elem_id` (teaching events have no API name)."""
    config = (await http.get(url.rstrip("/") + "/config")).json()
    component = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id)
    return next(d["id"] for d in config["dependencies"] if [component, "click"] in [list(t) for t in d["targets"]])


async def mixed_class(url: str, new_tokens: int, expected: list[str]) -> dict:
    """8 generating while 2 compare strategies (40 tokens, 4 lanes each) and 1 runs the cost race (100 tokens)."""
    client = LightClient(url)
    http = await client.connection()
    compare = await teaching_fn(http, url, "strategies-compare")
    race = await teaching_fn(http, url, "cost-run")
    prompt = PROMPTS[0]
    compare_inputs = [prompt, 40, "1", 0.8, 40, 1.0, 1.0]  # prompt, max_new_tokens, seed, temperature, top_k, top_p, penalty
    sessions = await asyncio.gather(*(client.open_page() for _ in range(8 + 3)))  # every page open
    others = [client.stream(compare, compare_inputs, text_output=0, status_output=1, session=sessions[8 + i])
              for i in range(2)]
    others.append(client.stream(race, [prompt, 100], text_output=1, status_output=2, session=sessions[10]))
    try:
        background = [asyncio.create_task(coroutine) for coroutine in others]
        await asyncio.sleep(1.0)  # the comparisons and the race are under way when the class presses Generate
        started = time.perf_counter()
        results = await asyncio.gather(*(client.generate(PROMPTS[i % len(PROMPTS)], session=sessions[i],
                                                         max_new_tokens=new_tokens, seed=str(i % len(PROMPTS)))
                                         for i in range(8)))
        busy_until_end = all(not task.done() for task in background)
        teaching = await asyncio.gather(*background)
    finally:
        await client.close()
    row = summarise(list(results), new_tokens, expected, started)
    row["teaching_errors"] = [r.error for r in teaching if r.error]
    row["teaching_still_running_at_end"] = busy_until_end
    return row


BARE = """
import json, sys, time, torch
from gpt2demo.threads import configure_threads
threads = configure_threads()
folder, new_tokens, rows, prompts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
from gpt2demo.model import load_model
from gpt2demo.generation import DecodeBatch, Generation
from gpt2demo.serving.interface import Request
from gpt2demo.settings import SamplingSettings
model = load_model(folder, "cpu")
requests = [Request(SamplingSettings(max_new_tokens=new_tokens, top_k=10, seed=i % 4), prompts[i % 4]) for i in range(rows)]
def ours():
    batch = DecodeBatch(model)
    for request in requests:
        batch.join(Generation(model, request))
    while batch:
        batch.step()
def theirs():
    tok = model.tokenizer
    tok.padding_side = "left"
    tok.pad_token = tok.eos_token
    enc = tok([prompts[i % 4] for i in range(rows)], return_tensors="pt", padding=True)
    with torch.no_grad():
        model.model.generate(**enc, do_sample=True, top_k=10, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                             pad_token_id=tok.eos_token_id)
runs = {"decode_batch": ours, "transformers_generate": theirs}
for run in runs.values():
    run()  # warm-up
print(json.dumps({"threads": threads}), flush=True)
for line in sys.stdin:  # one run of the named kind a line, its tokens/s back
    started = time.perf_counter(); runs[line.strip()](); seconds = time.perf_counter() - started
    print(round(rows * new_tokens / seconds, 2), flush=True)
"""


class BareBatch:
    """The DecodeBatch and transformers' generate on `rows` requests in a process of their own (no server).

    Loaded once and kept waiting while the server runs, so that a bare run can follow a
    class within seconds: this machine's speed drifts by a third within minutes.
    """

    def __init__(self, folder: str, new_tokens: int, rows: int) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", BARE, folder, str(new_tokens), str(rows), json.dumps(PROMPTS)],
                                        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.threads = json.loads(self._answer())["threads"]

    def _answer(self) -> str:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the bare batch's process stopped (exit code {self.process.wait()})")
        return line

    def rate(self, kind: str) -> float:
        """Tokens/s of one run of `kind` ("decode_batch" or "transformers_generate")."""
        self.process.stdin.write(kind + "\n")
        self.process.stdin.flush()
        return float(self._answer())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def server_and_bare(url: str, bare: BareBatch, streams: int, new_tokens: int, expected: list[str],
                    server_first: bool) -> tuple[dict, float]:
    """A class of `streams` through the server and one bare DecodeBatch run, one right after the other."""
    if server_first:
        server = asyncio.run(light_class(url, streams, new_tokens, expected))
        return server, bare.rate("decode_batch")
    rate = bare.rate("decode_batch")
    return asyncio.run(light_class(url, streams, new_tokens, expected)), rate


def print_rows(title: str, rows: list[dict]) -> None:
    print(title)
    print(f"{'N':>4} {'aggregate tok/s':>16} {'per-stream med':>15} {'per-stream min':>15} {'TTFT med s':>11} {'TTFT p95 s':>11} {'errors':>7}")
    for row in rows:
        print(f"{row['streams']:>4} {row['aggregate_tok_s']:>16} {row['per_stream_median_tok_s']:>15} {row['per_stream_min_tok_s']:>15} "
              f"{row['ttft_median_s']:>11} {row['ttft_p95_s']:>11} {row['errors']:>7}")
        for example in row["error_examples"]:
            print(f"      error: {str(example)[:200]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="1,8,16,32")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--clients", default="light,gradio")
    parser.add_argument("--shape", choices=["small", "tiny"], default="small")
    parser.add_argument("--mixed-pairs", type=int, default=3, help="plain and mixed classes of 8, alternated")
    parser.add_argument("--server-pairs", type=int, default=3,
                        help="classes of the most students and bare batches, alternated")
    args = parser.parse_args()
    counts = [int(n) for n in args.streams.split(",")]
    kinds = args.clients.split(",")
    summary: dict = {"targets": TARGETS}
    with tempfile.TemporaryDirectory() as folder:
        build_standin(Path(folder), GPT2_SMALL if args.shape == "small" else TINY)
        expected = expected_texts(folder, args.new_tokens)
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        bare_process = BareBatch(folder, args.new_tokens, max(counts))
        try:
            with app_process(folder, port):
                asyncio.run(light_class(url, 2, 4, [""] * len(PROMPTS)))  # warm-up: first-request costs
                light = [asyncio.run(light_class(url, n, args.new_tokens, expected)) for n in counts] if "light" in kinds else []
                gradio = [gradio_class(url, max(counts), args.new_tokens, expected)] if "gradio" in kinds else []
                # Alternated, and the ratio taken pair by pair: this machine's speed drifts by a third
                # within minutes, and one plain run after one mixed run compared two different machines.
                pairs = [(asyncio.run(light_class(url, 8, args.new_tokens, expected)),
                          asyncio.run(mixed_class(url, args.new_tokens, expected))) for _ in range(args.mixed_pairs)]
                # The same for the server against the bare batch: a class of the most students,
                # then the bare batch seconds later (the order swapped every other pair).
                server_pairs = [server_and_bare(url, bare_process, max(counts), args.new_tokens, expected,
                                                server_first=index % 2 == 0) for index in range(args.server_pairs)]
            bare = {"threads": bare_process.threads, "decode_batch each pair": [rate for _, rate in server_pairs],
                    "transformers_generate": bare_process.rate("transformers_generate")}
        finally:
            bare_process.close()
        bare["decode_batch"] = round(median(bare["decode_batch each pair"]), 2) if server_pairs else float("nan")
    print(f"GPT-2 {args.shape} shapes, {args.new_tokens} new tokens per stream, top-k 10")
    print_rows("light clients (raw SSE, one asyncio loop):", light)
    print_rows("gradio_client jobs:", gradio)
    print_rows("plain class of 8, alternating with the mixed class below:", [plain for plain, _ in pairs])
    print_rows("mixed class: 8 generating + 2 comparing strategies + 1 cost race (the 8's figures):",
               [mixed for _, mixed in pairs])
    print_rows(f"classes of {max(counts)}, each followed or preceded by the bare batch:", [server for server, _ in server_pairs])
    print(f"bare process, {max(counts)} rows: DecodeBatch {bare['decode_batch each pair']} tok/s (median "
          f"{bare['decode_batch']}), transformers generate {bare['transformers_generate']} tok/s ({bare['threads']} torch threads)")
    summary.update(light=light, gradio=gradio, plain8=[plain for plain, _ in pairs], mixed=[mixed for _, mixed in pairs],
                   bare=bare)
    ratios = [mixed["aggregate_tok_s"] / plain["aggregate_tok_s"] for plain, mixed in pairs]
    summary["mixed/plain each pair"] = [round(ratio, 3) for ratio in ratios]
    summary["mixed/plain"] = round(median(ratios), 3)
    summary["server pairs"] = [server for server, _ in server_pairs]
    if server_pairs:
        batch_ratios = [server["aggregate_tok_s"] / rate for server, rate in server_pairs]
        summary["server/batch each pair"] = [round(ratio, 3) for ratio in batch_ratios]
        summary["server/batch at 32"] = round(median(batch_ratios), 3)
        # generate runs once (11 s a run here), against the median of the server's classes
        server_median = median([server["aggregate_tok_s"] for server, _ in server_pairs])
        summary["server/generate at 32"] = round(server_median / bare["transformers_generate"], 3)
    print(f"mixed/plain, pair by pair: {summary['mixed/plain each pair']} (the median below)")
    if server_pairs:
        print(f"server/batch, pair by pair: {summary['server/batch each pair']} (the median below)")
    for key in ("mixed/plain", "server/batch at 32", "server/generate at 32"):
        if key in summary:
            print(f"{key}: {summary[key]} (target >= {TARGETS[key]})")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
