"""Tokens/s through the web app (as a gradio_client sees them) vs the raw generator.

    python -m bench.streaming

Builds a GPT-2-small-shaped stand-in (124M parameters, random weights: same speed
as GPT-2), serves it with `python app.py` in its own process, and times 100 new
tokens from the tutorial's prompt, same seed and settings, once each after two
warm-up runs of the same length: the engine's generate_steps() in this process, then the app's
/generate endpoint streamed by gradio_client. Both clocks run from the request
to the last token, so the client's figure includes everything the app adds
(queue, HTTP, page updates); the client's job is watched every 10 ms (see watch()).
Prints a table, then one JSON line.

The two paths alternate `--repeats` times (default 7) and the medians are compared:
this machine's speed drifts by ±15% from one second to the next (other tenants share its
memory bandwidth), so one pair alone gave ratios from 0.86 to 0.98.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpt2demo.generation import generate_steps  # noqa: E402
from gpt2demo.model import load_model  # noqa: E402
from gpt2demo.serving.interface import Request  # noqa: E402
from gpt2demo.settings import SamplingSettings  # noqa: E402
from gpt2demo.threads import configure_threads  # noqa: E402
from tools.ports import free_port  # noqa: E402
from tools.standin import GPT2_SMALL, build_standin  # noqa: E402

PROMPT = "Yesterday, a man named Jack said he saw an alien,"  # the tutorial's prompt
SETTINGS = SamplingSettings(max_new_tokens=100, top_k=10, seed=0)  # the tutorial's top-k, a fixed seed
WARMUP = SamplingSettings(max_new_tokens=100, top_k=10, seed=1)  # same length: the first long run pays one-off costs
WARMUP_RUNS = 2
TARGET_RATIO = 0.9


def time_raw(model, settings: SamplingSettings) -> tuple[float, int, str]:
    """Seconds from the call to the last token, tokens made, and the continuation."""
    started = time.perf_counter()
    steps = list(generate_steps(model, Request(settings, PROMPT)))
    return time.perf_counter() - started, sum(s.token_id is not None for s in steps), "".join(s.text for s in steps)


WATCH_SECONDS = 0.01  # how often a watcher looks at its jobs


def watch(jobs: list, prompts: list[str], records: list[dict], deadline_seconds: float = 600) -> None:
    """Record each job's first token, end and text (or error), looking at all of them every WATCH_SECONDS.

    A watcher polls like a page repainting. Iterating a job (`for outputs in job`) makes
    gradio_client poll 1000 times a second, on the two cores the app decodes on: one
    such loop cost the app about 3% here, and 32 of them (bench/classroom.py) spent the
    cores on the harness. A student's browser does not run on the server.
    """
    deadline = time.perf_counter() + deadline_seconds
    while time.perf_counter() < deadline and any("end" not in r for r in records):
        now = time.perf_counter()
        for job, prompt, record in zip(jobs, prompts, records):
            if "end" in record:
                continue
            outputs = job.outputs()
            if "first" not in record and outputs and len(outputs[-1][0]) > len(prompt):
                record["first"] = now
            if job.done():
                record.setdefault("first", now)
                record["end"] = now
                try:
                    record["outputs"] = job.result()
                except Exception as error:  # counted, not raised: the tables report errors
                    record["error"] = f"{type(error).__name__}: {error}"
        time.sleep(WATCH_SECONDS)


def time_client(client, settings: SamplingSettings) -> tuple[float, int, str]:
    """Seconds from submit to the final result, tokens made, and the continuation."""
    record = {"submitted": time.perf_counter()}
    job = client.submit(prompt=PROMPT, max_new_tokens=settings.max_new_tokens, top_k=settings.top_k,
                        seed=str(settings.seed), api_name="/generate")
    watch([job], [PROMPT], [record])
    text, _html, status, _seed = record["outputs"]
    tokens = int(status.split(" ")[0])  # "100 tokens · ..."
    return record["end"] - record["submitted"], tokens, text[len(PROMPT):]


def serve(model_dir: Path, port: int, flags: list[str] = ()) -> subprocess.Popen:
    """`python app.py` on the stand-in, in its own process."""
    return subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--model", str(model_dir), "--device", "cpu",
                             "--port", str(port), *flags], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def connect(url: str, deadline_seconds: float = 120):
    from gradio_client import Client

    deadline = time.monotonic() + deadline_seconds
    while True:
        try:
            return Client(url, verbose=False, analytics_enabled=False)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def measure(repeats: int) -> tuple[list[tuple], list[tuple]]:
    """(seconds, tokens, text) of each measured raw and client run."""
    with tempfile.TemporaryDirectory() as folder:
        model_dir = build_standin(Path(folder) / "gpt2-small", GPT2_SMALL, seed=0)
        port = free_port()
        server = serve(model_dir, port)
        try:
            client = connect(f"http://127.0.0.1:{port}/")
            configure_threads()  # as the engine process does
            model = load_model(str(model_dir), "cpu")
            for _ in range(WARMUP_RUNS):  # the first runs of a process pay one-off costs (allocator, thread pool)
                time_client(client, WARMUP)  # the first also waits for the app's model
                time_raw(model, WARMUP)
            raw, client_runs = [], []
            for _ in range(repeats):
                raw.append(time_raw(model, SETTINGS))
                client_runs.append(time_client(client, SETTINGS))
            return raw, client_runs
        finally:
            server.terminate()
            server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="measured runs of each path, alternating (medians compared)")
    repeats = parser.parse_args().repeats
    raw, client_runs = measure(repeats)
    raw_rates = [tokens / seconds for seconds, tokens, _ in raw]
    client_rates = [tokens / seconds for seconds, tokens, _ in client_runs]
    raw_tok_s, client_tok_s = statistics.median(raw_rates), statistics.median(client_rates)
    ratio = client_tok_s / raw_tok_s
    same_text = all(c[2] == r[2] for c, r in zip(client_runs, raw))
    print(f"GPT-2 small shapes, CPU, {SETTINGS.max_new_tokens} new tokens, top_k={SETTINGS.top_k}, seed={SETTINGS.seed}, "
          f"{repeats} measured run(s) each")
    print(f"{'path':<28}{'tokens':>8}{'seconds':>10}{'tokens/s':>10}")
    for name, runs in (("raw generate_steps()", raw), ("gradio_client via app", client_runs)):
        for seconds, tokens, _ in runs:
            print(f"{name:<28}{tokens:>8}{seconds:>10.2f}{tokens / seconds:>10.2f}")
    print(f"ratio client/raw (medians): {ratio:.3f} (target >= {TARGET_RATIO}); same text: {same_text}")
    print(json.dumps({"raw_tok_s": round(raw_tok_s, 2), "client_tok_s": round(client_tok_s, 2), "ratio": round(ratio, 3),
                      "same_text": same_text, "tokens": SETTINGS.max_new_tokens, "repeats": repeats}))


if __name__ == "__main__":
    main()
