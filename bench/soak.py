"""Soak: hundreds of mixed requests against the launched app, a fifth of them cancelled mid-stream.

Launches the real app (build_demo + launch, the Gradio queue, the continuous-batching
scheduler) on a stand-in GPT-2 (GPT-2's tokenizer and 1024-token window, random weights;
tiny shapes by default: the load is on the app's machinery, not on the arithmetic). A
child process plays the users through gradio_client, in alternating blocks: `wave`
requests one after another, then `wave` at once, so concurrency's one-off costs are paid
before the first memory reading. Settings are mixed (lengths, top-k, temperature, top-p,
penalty, greedy, seeds, empty/Chinese/over-the-window prompts); every fifth request is
cancelled after a few partial outputs; one in twenty carries a bad value that must be
refused with the validator's message. Seeded finished runs are compared with the engine
run alone afterwards.

The server's resident memory (this process; the clients live in the child) is read after
the first 50 requests, every 50 after, and at the end; then what is still running (scheduler
rows and line, handler runs, stray gpt2demo threads). Prints a table; the last line is JSON.

Usage: python -m bench.soak [--requests 500] [--wave 10] [--shape tiny|small] [--seed 0]
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import random
import socket
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

API_ORDER = ("prompt", "max_new_tokens", "top_k", "temperature", "top_p", "repetition_penalty", "seed", "greedy")
CANCEL_EVERY = 5  # every fifth request is cancelled mid-stream
BAD_EVERY = 20  # one in twenty carries a bad value (in sequential and concurrent blocks alike)
PARTIAL_OUTPUTS_BEFORE_CANCEL = 4  # the prompt, then three tokens
DEADLINE_SECONDS = 120  # a request still open after this is counted as a hang
MEASURE_EVERY = 50  # requests between memory readings; the first one is "after 50"

PROMPTS = [
    "Yesterday, a man named Jack said he saw an alien,",
    "The teacher asked the class to",
    "Here is my recipe for chocolate cake:",
    "今天天气很好，我们",
    "",  # starts from <|endoftext|>
    "<|endoftext|> typed by a user",
    "The cat sat on the mat. " * 300,  # ~1,800 tokens: left-truncated with a notice
]
BAD_VALUES = [
    dict(temperature="nan"), dict(top_p="inf"), dict(top_k=-1), dict(top_k=50258), dict(max_new_tokens=5000),
    dict(seed="abc"), dict(seed=1.5), dict(repetition_penalty=-2), dict(prompt="bell \x07"), dict(prompt="x" * 20001),
]


@dataclass
class Request:
    index: int
    phase: str  # "sequential" or "concurrent"
    kind: str  # "normal", "cancel" or "bad"
    values: dict


@dataclass
class Record:
    request: Request
    outcome: str  # "finished", "cancelled", "refused" or "unexpected"
    seconds: float
    detail: str = ""
    text: str = ""  # the final text of a finished request


def make_plan(total: int, seed: int, wave: int) -> list[Request]:
    """Blocks of `wave` requests, alternately sequential and concurrent; kinds by position, settings seeded."""
    rng = random.Random(seed)
    plan = []
    for index in range(total):
        bad_position = 2 if (index // BAD_EVERY) % 2 == 0 else BAD_EVERY // 2 + 2
        kind = "cancel" if index % CANCEL_EVERY == CANCEL_EVERY - 1 else "bad" if index % BAD_EVERY == bad_position else "normal"
        values = dict(
            prompt=rng.choice(PROMPTS),
            max_new_tokens=rng.randint(400, 1000) if kind == "cancel" else rng.randint(1, 48),
            top_k=rng.choice([0, 1, 10, 50, 50257]),
            temperature=round(rng.uniform(0.3, 1.5), 2),
            top_p=rng.choice([1.0, 0.9, 0.5]),
            repetition_penalty=rng.choice([1.0, 1.0, 1.2]),
            seed=rng.choice(["", str(rng.randrange(2**32))]),
            greedy=rng.random() < 0.1,
        )
        if kind == "bad":
            values.update(rng.choice(BAD_VALUES))
        phase = "sequential" if (index // wave) % 2 == 0 else "concurrent"
        plan.append(Request(index, phase, kind, values))
    return plan


def refusal(values: dict) -> str | None:
    """The validator's message for these values, as the handler checks them (settings, then prompt)."""
    from gpt2demo.settings import check_prompt, check_settings

    try:
        check_settings(**{name: values[name] for name in API_ORDER[1:]})
        check_prompt(values["prompt"])
    except ValueError as error:
        return str(error)
    return None


def wait_for(condition, seconds: float = DEADLINE_SECONDS) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# ---------------------------------------------------------------- the users (child process)


def send(client, request: Request) -> Record:
    """One request through gradio_client, however it ends; never raises."""
    started = time.perf_counter()
    try:
        job = client.submit(*[request.values[name] for name in API_ORDER], api_name="/generate")
        if request.kind == "cancel":
            outcome, detail, text = cancel(job)
        else:
            outcome, detail, text = finish(job, request)
    except Exception as error:  # counted, not raised: the table reports it
        outcome, detail, text = "unexpected", f"{type(error).__name__}: {error}", ""
    return Record(request, outcome, time.perf_counter() - started, detail, text)


def finish(job, request: Request) -> tuple[str, str, str]:
    from gradio_client.exceptions import AppError

    expected_refusal = refusal(request.values)
    try:
        text, _html, status, _seed = job.result(timeout=DEADLINE_SECONDS)
    except AppError as error:
        return ("refused", "", "") if str(error) == expected_refusal else ("unexpected", f"AppError: {error}", "")
    if expected_refusal is not None:
        return "unexpected", f"accepted a bad request: {expected_refusal}", ""
    if not text.startswith(request.values["prompt"]) or " · finished: " not in status:
        return "unexpected", f"odd final output: {status!r}", ""
    return "finished", "", text


def cancel(job) -> tuple[str, str, str]:
    if not wait_for(lambda: len(job.outputs()) >= PARTIAL_OUTPUTS_BEFORE_CANCEL or job.done()):
        return "unexpected", "no partial outputs came", ""
    if job.done():  # the model wrote <|endoftext|> within the first tokens: a normal end
        text, _html, status, _seed = job.result()
        return ("finished", "ended by itself before the cancel", text) if " · finished: " in status else ("unexpected", status, "")
    job.cancel()
    if not wait_for(lambda: job.done() or job.status().code.name == "CANCELLED", 30):
        return "unexpected", "the cancelled job did not end", ""
    return "cancelled", "", ""


def play_users(url: str, plan: list[Request], wave: int, pipe) -> None:
    """Child process: run the plan block by block; pause every MEASURE_EVERY requests for a reading."""
    from gradio_client import Client

    clients = [Client(url, verbose=False, analytics_enabled=False) for _ in range(wave)]  # one per student
    records: list[Record] = []
    with ThreadPoolExecutor(wave) as pool:
        for first in range(0, len(plan), wave):
            block = plan[first : first + wave]
            if block[0].phase == "sequential":
                records += [send(clients[0], request) for request in block]
            else:
                records += list(pool.map(send, clients[: len(block)], block))
            if len(records) % MEASURE_EVERY == 0:
                pipe.send(("measure", len(records)))
                pipe.recv()  # the server is idle while it reads its memory
    for client in clients:
        client.close()
    pipe.send(("done", records))


# ---------------------------------------------------------------- the server (this process)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mb() -> float:
    """This process's resident memory, after a full collection: the server's, not the users'."""
    gc.collect()
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def drained(service, handlers) -> dict:
    """What is still alive once every request has ended; all zeros when nothing leaked."""
    wait_for(lambda: service.stats().running == service.stats().waiting == len(handlers.runs) == 0, 30)
    expected_threads = ("gpt2demo-scheduler", "gpt2demo-model-loader")
    stray = [t.name for t in threading.enumerate() if t.name.startswith("gpt2demo-") and t.name not in expected_threads]
    stats = service.stats()
    return {"running": stats.running, "waiting": stats.waiting, "batch_rows": len(service.scheduler._batch),
            "handler_runs": len(handlers.runs), "stray_threads": len(stray)}


def serve_and_soak(folder: str, plan: list[Request], wave: int) -> dict:
    from gpt2demo.ui.server import ServerOptions, build_demo, launch
    from gpt2demo.ui.service import ModelService

    options = ServerOptions(port=free_port())  # the app's default batch, line and concurrency
    service = ModelService(folder, "cpu", options.max_batch, options.queue_size).start()
    demo, handlers = build_demo(service, options)
    try:
        url = launch(demo, handlers, options, block=False)
        if not service.ready.wait(DEADLINE_SECONDS) or service.model is None:
            raise SystemExit(f"the model did not load: {service.error}")
        ours, theirs = multiprocessing.Pipe()
        users = multiprocessing.get_context("spawn").Process(target=play_users, args=(url, plan, wave, theirs))
        started = time.perf_counter()
        users.start()
        rss_series = {}
        while True:
            message, value = ours.recv()
            if message == "done":
                break
            rss_series[value] = round(rss_mb(), 1)
            ours.send("go")
        wall = time.perf_counter() - started
        users.join()
        leftovers = drained(service, handlers)
        rss_end = rss_mb()
        threads_end = threading.active_count()
        mismatches = compare_with_engine(service.model, value)
    finally:
        demo.close()
        service.close()
    return {"records": value, "wall": wall, "leftovers": leftovers, "rss_series": rss_series, "rss_end_mb": rss_end,
            "rss_after_50_mb": rss_series.get(MEASURE_EVERY, rss_end), "threads_end": threads_end, "mismatches": mismatches}


def compare_with_engine(model, records: list[Record]) -> list[int]:
    """Indexes of seeded finished requests whose text differs from the engine's run of the same request alone."""
    from gpt2demo.engine import generate_text
    from gpt2demo.settings import check_settings

    differing = []
    for record in records:
        values = record.request.values
        if record.outcome == "finished" and values["seed"]:
            settings = check_settings(**{name: values[name] for name in API_ORDER[1:]})
            if record.text != values["prompt"] + generate_text(model, values["prompt"], settings).text:
                differing.append(record.request.index)
    return differing


# ---------------------------------------------------------------- report


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))] if ordered else float("nan")


def report(result: dict, args: argparse.Namespace) -> None:
    records = result["records"]
    print(f"Soak: {len(records)} requests, GPT-2 {args.shape} stand-in (random weights, GPT-2 tokenizer), "
          f"blocks of {args.wave} sequential / {args.wave} concurrent, seed {args.seed}, {result['wall']:.0f} s")
    print(f"{'phase':<11} {'requests':>8} {'finished':>8} {'cancelled':>9} {'refused':>7} {'unexpected':>10} "
          f"{'median s':>8} {'p95 s':>6}")
    for phase in ("sequential", "concurrent"):
        rows = [r for r in records if r.request.phase == phase]
        count = {outcome: sum(r.outcome == outcome for r in rows) for outcome in ("finished", "cancelled", "refused", "unexpected")}
        seconds = [r.seconds for r in rows]
        print(f"{phase:<11} {len(rows):>8} {count['finished']:>8} {count['cancelled']:>9} {count['refused']:>7} "
              f"{count['unexpected']:>10} {statistics.median(seconds):>8.2f} {percentile(seconds, 0.95):>6.2f}")
    growth = result["rss_end_mb"] - result["rss_after_50_mb"]
    print(f"server resident memory: {result['rss_after_50_mb']:.1f} MB after {MEASURE_EVERY} requests, "
          f"{result['rss_end_mb']:.1f} MB at the end (growth {growth:+.1f} MB); {result['threads_end']} threads at the end")
    print("  every 50 requests: " + ", ".join(f"{n}: {mb}" for n, mb in result["rss_series"].items()))
    print("still alive at the end: " + ", ".join(f"{name} {value}" for name, value in result["leftovers"].items()))
    seeded = sum(r.outcome == "finished" and bool(r.request.values["seed"]) for r in records)
    print(f"seeded finished runs whose text differs from the same request run alone: {len(result['mismatches'])} of {seeded}"
          + (f" (#{', #'.join(map(str, result['mismatches']))})" if result["mismatches"] else ""))
    ended_early = [r for r in records if r.detail == "ended by itself before the cancel"]
    if ended_early:
        print(f"to be cancelled, but ended by itself first (<|endoftext|>): {len(ended_early)}")
    unexpected = [r for r in records if r.outcome == "unexpected"]
    for record in unexpected[:10]:
        print(f"  unexpected #{record.request.index} ({record.request.kind}): {record.detail[:200]}")
    print(json.dumps({
        "model": f"{args.shape} stand-in (random weights, GPT-2 tokenizer)",
        "requests": len(records),
        "cancelled": sum(r.outcome == "cancelled" for r in records),
        "refused": sum(r.outcome == "refused" for r in records),
        "finished": sum(r.outcome == "finished" for r in records),
        "rss_after_50_mb": round(result["rss_after_50_mb"], 1),
        "rss_end_mb": round(result["rss_end_mb"], 1),
        "rss_growth_mb": round(growth, 1),
        "rss_series_mb": result["rss_series"],
        "live_generations_end": sum(result["leftovers"].values()),
        "leftovers": result["leftovers"],
        "unexpected_errors": len(unexpected),
        "differs_from_alone": len(result["mismatches"]),
        "wall_seconds": round(result["wall"], 1),
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--wave", type=int, default=10, help="requests per block; concurrent blocks send them at once")
    parser.add_argument("--shape", choices=["tiny", "small"], default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from gpt2demo.standin import GPT2_SMALL, TINY, build_standin

    plan = make_plan(args.requests, args.seed, args.wave)
    with tempfile.TemporaryDirectory() as folder:
        build_standin(folder, TINY if args.shape == "tiny" else GPT2_SMALL)
        result = serve_and_soak(folder, plan, args.wave)
    report(result, args)


if __name__ == "__main__":
    main()
