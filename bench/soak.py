"""Soak: phases of a class's day against `python app.py`, the server's memory read after each.

    python -m bench.soak [--shape small|tiny] [--requests 200] [--sessions 100] [--rounds 2] [--door-rounds 20] [--seed 0]

Serves a stand-in GPT-2 (GPT-2 small shapes by default: the tiny model's cache rows
are 72x smaller and hide memory problems) with `python app.py`, and plays, through
light clients (raw SSE over Gradio's queue protocol, as the page does):

1. warm-up: a few short requests (the baseline the growth is counted from);
2. long requests, one at a time, up to the window (1000 new tokens after a 24-token prompt);
3. a busy block: `--requests` mixed requests, 16 at a time, a fifth cancelled mid-stream
   (the connection closed, as a closed tab does), one in twenty with a bad value;
4. `--sessions` sampler sessions ("You are the sampler"): a 20,000-character prompt,
   start and three picks each, then left open;
5. the teaching tabs: strategy comparisons and a cost race beside a class of 8;
   (3 to 5 run --rounds times: memory that only reflects what the allocator has served
   levels off in the second round, a leak does not);
6. the doors (issue #13): `--door-rounds` rounds of every event that runs outside the
   queue sent the largest body allowed, bodies over the limit, and event calls that do
   not fit the page (wrong event, wrong number of inputs, not JSON), each of which must
   get its bounded answer (200/400 for the side events, 413, 400);
7. idle again.

After each phase (and after each long request) it reads the resident memory of the app
and its engine process together, and of the front end alone. Target (issue #11): growth over the warm server <= 600
MB after any single request, and flat over the run. Prints a table; the last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
import uuid
from pathlib import Path

from bench.harness import API_ORDER, DEFAULTS, LightClient, app_process, process_rss_mb, process_tree_rss_mb
from bench.classroom import teaching_fn
from gpt2demo.ui.guards import MAX_BODY_BYTES
from tools.ports import free_port
from tools.standin import GPT2_SMALL, TINY, build_standin

GROWTH_LIMIT_MB = 600
PROMPTS = ["Yesterday, a man named Jack said he saw an alien,", "The teacher asked the class to", "今天天气很好，我们", "",
           "The cat sat on the mat. " * 300]  # ~1,800 tokens: left-truncated
BAD_VALUES = [dict(temperature="nan"), dict(top_k=-1), dict(max_new_tokens=5000), dict(seed="abc"),
              dict(prompt="bell \x07"), dict(prompt="x" * 20001)]
CANCEL_AFTER_UPDATES = 3


async def cancelled_stream(client: LightClient, fn_index: int, data: list) -> str:
    """A stream whose page closes after a few updates (the connection dropped mid-stream)."""
    http = await client.connection()
    base, session = client.url.rstrip("/"), uuid.uuid4().hex
    await http.post(base + "/gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session})
    updates = 0
    async with http.stream("GET", base + "/gradio_api/queue/data", params={"session_hash": session}) as response:
        async for line in response.aiter_lines():
            updates += line.startswith("data: ") and "process_generating" in line
            if updates >= CANCEL_AFTER_UPDATES:
                return "cancelled"
    return "finished before the cancel"


async def busy_block(client: LightClient, count: int, rng: random.Random) -> dict:
    fn_index = await client.fn_index()
    outcomes = {"finished": 0, "cancelled": 0, "refused": 0, "unexpected": 0}

    async def one(index: int) -> None:
        values = {**DEFAULTS, "prompt": rng.choice(PROMPTS), "max_new_tokens": rng.choice([8, 40, 120, 400]),
                  "top_k": rng.choice([0, 10, 50]), "seed": str(index)}
        if index % 20 == 17:  # not also a cancelled one (every fifth)
            values.update(rng.choice(BAD_VALUES))
        data = [values[name] for name in API_ORDER]
        if index % 5 == 4:
            outcome = await cancelled_stream(client, fn_index, data)
            outcomes["cancelled" if outcome == "cancelled" else "finished"] += 1
            return
        result = await client.stream(fn_index, data)
        if result.error is None:
            outcomes["finished"] += 1
        elif index % 20 == 17:
            outcomes["refused"] += 1
        else:
            outcomes["unexpected"] += 1

    semaphore = asyncio.Semaphore(16)

    async def limited(index: int) -> None:
        async with semaphore:
            await one(index)

    await asyncio.gather(*(limited(index) for index in range(count)))
    return outcomes


async def sampler_sessions(client: LightClient, count: int) -> int:
    """Sessions of the sampler tab on a 20,000-character prompt: start, then three picks; left open."""
    start = await teaching_fn(await client.connection(), client.url, "sampler-start")
    pick = await teaching_fn(await client.connection(), client.url, "sampler-sample")
    failures = 0
    prompt = ("The cat sat on the mat. " * 900)[:20_000]
    for _ in range(count):
        session = uuid.uuid4().hex
        result = await client.stream(start, [prompt, 10, 1.0, 1.0, ""], text_output=0, status_output=2, session=session)
        for _ in range(3):
            result = await client.stream(pick, [], text_output=0, status_output=2, session=session)
        failures += result.error is not None
    return failures


async def teaching_block(client: LightClient) -> int:
    compare = await teaching_fn(await client.connection(), client.url, "strategies-compare")
    race = await teaching_fn(await client.connection(), client.url, "cost-run")
    jobs = [client.stream(compare, [PROMPTS[0], 40, "1", 0.8, 40, 1.0, 1.0], status_output=1) for _ in range(4)]
    jobs.append(client.stream(race, [PROMPTS[0], 200], text_output=1, status_output=2))
    jobs += [client.generate(PROMPTS[i % 3], max_new_tokens=64, seed=str(i)) for i in range(8)]
    return sum(result.error is not None for result in await asyncio.gather(*jobs))


async def doors(client: LightClient, rounds: int) -> dict:
    """Every side event with the largest body allowed, oversized bodies, malformed calls; answers counted by status."""
    http = await client.connection()
    base = client.url.rstrip("/")
    config = (await http.get(base + "/config")).json()
    outside = [d for d in config["dependencies"] if not d.get("queue", True)]
    answers: dict[str, int] = {}

    def count(kind: str, status: int) -> None:
        answers[f"{kind} {status}"] = answers.get(f"{kind} {status}", 0) + 1

    for _ in range(rounds):
        for dependency in outside:
            filler = "9" * ((MAX_BODY_BYTES - 2048) // max(1, len(dependency["inputs"])))  # the whole body just fits
            body = {"data": [filler] * len(dependency["inputs"]), "fn_index": dependency["id"],
                    "session_hash": uuid.uuid4().hex, "event_data": {"index": 0, "value": ""}}
            count("side event", (await http.post(base + "/gradio_api/run/predict", json=body)).status_code)
        huge = {"data": ["x" * (MAX_BODY_BYTES + 1)], "fn_index": 0, "session_hash": uuid.uuid4().hex}
        count("oversized", (await http.post(base + "/gradio_api/queue/join", json=huge)).status_code)
        for malformed in ({"data": [], "fn_index": 999, "session_hash": "s"}, {"data": "x", "fn_index": 0, "session_hash": "s"}):
            count("malformed", (await http.post(base + "/gradio_api/queue/join", json=malformed)).status_code)
        count("not JSON", (await http.post(base + "/gradio_api/queue/join", content=b"{not json")).status_code)
    return answers


async def soak(url: str, pid: int, args) -> dict:
    client = LightClient(url)
    rng = random.Random(args.seed)
    readings: list[tuple[str, float, float]] = []  # (phase, app and engine together, the front end alone)

    def read(phase: str) -> None:
        readings.append((phase, round(process_tree_rss_mb(pid), 1), round(process_rss_mb(pid), 1)))

    try:
        for index in range(5):
            await client.generate(PROMPTS[index % 3], max_new_tokens=20, seed=str(index))
        read("warm")
        for new_tokens in (250, 500, 1000):
            result = await client.generate("The cat sat on the mat. " * 4, max_new_tokens=new_tokens, seed="1")
            assert result.error is None, result.error
            read(f"after one request of {new_tokens} tokens")
        outcomes, session_failures, teaching_failures = {}, 0, 0
        for round_number in range(1, args.rounds + 1):  # the same day again: memory that levels off stops growing
            suffix = f" (round {round_number})" if args.rounds > 1 else ""
            for outcome, number in (await busy_block(client, args.requests, rng)).items():
                outcomes[outcome] = outcomes.get(outcome, 0) + number
            read(f"after {args.requests} mixed requests{suffix}")
            session_failures += await sampler_sessions(client, args.sessions)
            read(f"after {args.sessions} sampler sessions{suffix}")
            teaching_failures += await teaching_block(client)
            read(f"after comparisons, a race and a class of 8{suffix}")
        door_answers = await doors(client, args.door_rounds)
        read(f"after {args.door_rounds} rounds of the doors")
        started = time.monotonic()
        while time.monotonic() - started < 5:  # idle: what is given back without any request
            await asyncio.sleep(1)
        read("idle 5 s later")
    finally:
        await client.close()
    return {"readings": readings, "outcomes": outcomes, "session_failures": session_failures,
            "teaching_failures": teaching_failures, "door_answers": door_answers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=["small", "tiny"], default="small")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--door-rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=2, help="times the busy block, the sampler sessions and the teaching tabs run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        build_standin(Path(folder), GPT2_SMALL if args.shape == "small" else TINY)
        port = free_port()
        with app_process(folder, port) as server:
            result = asyncio.run(soak(f"http://127.0.0.1:{port}/", server.pid, args))
    warm = result["readings"][0][1]
    front_warm = result["readings"][0][2]
    print(f"GPT-2 {args.shape} shapes: resident memory of the app and its engine process (growth over warm), "
          f"and of the front end alone")
    for phase, mb, front in result["readings"]:
        print(f"  {phase:<58} {mb:>9.1f} MB  ({mb - warm:+7.1f})   front end {front:>7.1f} MB ({front - front_warm:+7.1f})")
    print(f"mixed requests: {result['outcomes']}; sampler failures {result['session_failures']}; "
          f"teaching failures {result['teaching_failures']}")
    print(f"the doors: {result['door_answers']}")
    growth = max(mb for _, mb, _ in result["readings"]) - warm
    result.update(shape=args.shape, warm_mb=warm, max_growth_mb=round(growth, 1), growth_limit_mb=GROWTH_LIMIT_MB)
    print(f"largest growth over the warm server: {growth:+.1f} MB (limit {GROWTH_LIMIT_MB} MB)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
