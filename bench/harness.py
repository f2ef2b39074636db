"""What the benchmarks share: the app in its own process, a light client, a busy neighbour, memory readings.

The light client speaks Gradio's queue protocol as the page's own JavaScript does
(POST /gradio_api/queue/join, then the session's SSE stream from
/gradio_api/queue/data), applying each update's diffs to the text it holds. Many
students run as coroutines of one asyncio loop, so the harness itself costs the two
cores little; gradio_client polls for news every 50 ms per job and spends a core
on 32 of them.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
API_ORDER = ("prompt", "max_new_tokens", "top_k", "temperature", "top_p", "repetition_penalty", "seed", "greedy")
DEFAULTS = dict(max_new_tokens=100, top_k=10, temperature=1.0, top_p=1.0, repetition_penalty=1.0, seed="", greedy=False)
START_SECONDS = 300  # the app must answer within this (a cold start loads torch and the model)


def serve(model_dir: Path | str, port: int, extra: list[str] = (), env: dict | None = None) -> subprocess.Popen:
    """`python app.py` on `model_dir`, as a user starts it (its engine in a process of its own)."""
    return subprocess.Popen([sys.executable, "app.py", "--model", str(model_dir), "--port", str(port), *extra],
                            cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_until_ready(url: str, seconds: float = START_SECONDS) -> None:
    """Until the page answers and its engine has loaded the model (a request then generates)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            result = asyncio.run(LightClient(url).generate("ok", max_new_tokens=2))
            if result.error is None:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not come up")
        time.sleep(0.5)


@contextmanager
def app_process(model_dir: Path | str, port: int, extra: list[str] = (), env: dict | None = None):
    server = serve(model_dir, port, extra, env)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/")
        yield server
    finally:
        server.terminate()
        server.wait(timeout=60)


@dataclass
class StreamResult:
    """One stream as a student's page saw it."""

    submitted: float
    text: str = ""
    status: str = ""
    first: float | None = None  # when the first token arrived
    last: float | None = None  # when the last one did
    updates: int = 0
    bytes: int = 0  # of the update messages
    error: str | None = None

    def tokens(self) -> int:
        """Tokens written, from the status line ('100 tokens · ...')."""
        head = self.status.split(" ")[0]
        return int(head) if head.isdigit() else 0

    def tokens_per_second(self) -> float | None:
        """From the first token to the last, as the page's own status line counts."""
        if self.first is None or self.last is None or self.last <= self.first:
            return None
        return (self.tokens() - 1) / (self.last - self.first)


@dataclass
class LightClient:
    """Gradio's queue protocol over httpx.AsyncClient; one session per stream."""

    url: str
    http: httpx.AsyncClient | None = None
    fetched: asyncio.Task | None = None  # the page's events from its config, fetched once for every stream of this client

    async def connection(self) -> httpx.AsyncClient:
        if self.http is None:
            self.http = httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=512, max_keepalive_connections=512))
        return self.http

    async def dependencies(self) -> list[dict]:
        """The page's events, as a browser reads them once when the page opens.

        One fetch shared by every stream: 32 students pressing Generate at once used to
        fetch the config 32 times, within the timed class, which no browser does.
        """
        if self.fetched is None:
            self.fetched = asyncio.ensure_future(self._fetch_dependencies())
        return await self.fetched

    async def _fetch_dependencies(self) -> list[dict]:
        http = await self.connection()
        return (await http.get(self.url.rstrip("/") + "/config")).json()["dependencies"]

    async def fn_index(self, api_name: str = "generate") -> int:
        return next(d["id"] for d in await self.dependencies() if d.get("api_name") == api_name)

    async def open_page(self) -> str:
        """A new session as a browser tab opens the page: it runs the page's server-side load events; returns its hash.

        Gradio sets up a session's state (a copy of every component's config, ~30 ms for
        this page here) at its first call. A student's page makes that call when it opens
        (the model panel's load event), long before Generate is pressed.
        """
        http = await self.connection()
        base, session = self.url.rstrip("/"), uuid.uuid4().hex
        loads = [d["id"] for d in await self.dependencies() if d.get("backend_fn")
                 and any(target[1] == "load" for target in d["targets"])]
        for fn_index in loads:
            response = await http.post(base + "/gradio_api/run/predict",
                                       json={"data": [], "fn_index": fn_index, "session_hash": session, "event_data": None})
            response.raise_for_status()
        return session

    async def generate(self, prompt: str, session: str | None = None, **values) -> StreamResult:
        inputs = {"prompt": prompt, **DEFAULTS, **values}
        return await self.stream(await self.fn_index(), [inputs[name] for name in API_ORDER], session=session)

    async def stream(self, fn_index: int, data: list, text_output: int = 0, status_output: int | None = 2,
                     session: str | None = None) -> StreamResult:
        """Run one event through the queue (in `session`, else a new one); output `text_output` is followed through its diffs."""
        http = await self.connection()
        base, session = self.url.rstrip("/"), session or uuid.uuid4().hex
        result = StreamResult(submitted=time.perf_counter())
        joined = await http.post(base + "/gradio_api/queue/join",
                                 json={"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None})
        if joined.status_code != 200:
            result.error = f"HTTP {joined.status_code}: {joined.text[:200]}"
            return result
        values: list = []
        async with http.stream("GET", base + "/gradio_api/queue/data", params={"session_hash": session}) as response:
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                message = json.loads(line[6:])
                kind = message.get("msg")
                if kind in ("process_generating", "process_completed"):
                    now = time.perf_counter()
                    result.updates += 1
                    result.bytes += len(line)
                    output = message.get("output", {})
                    if kind == "process_completed" and not message.get("success", False):
                        result.error = str(output.get("error"))
                        break
                    values = apply(values, output.get("data", []), kind == "process_completed")
                    text = values[text_output] if values else ""
                    if isinstance(text, str) and len(text) > len(result.text) and result.text:
                        result.first = result.first or now
                        result.last = now
                    result.text = text if isinstance(text, str) else result.text
                    if status_output is not None and values:
                        result.status = values[status_output]
                if kind in ("process_completed", "close_stream"):
                    break
        if result.first is None and result.text:  # the whole text came in one update
            result.first = result.last = time.perf_counter()
        return result

    async def close(self) -> None:
        if self.http is not None:
            await self.http.aclose()


def apply(values: list, data: list, final: bool) -> list:
    """The outputs after one update: the first (and the final) message has values, the others diffs."""
    if not values or final:
        return list(data)
    updated = list(values)
    for index, edits in enumerate(data):
        for op, path, value in edits if isinstance(edits, list) else []:
            if path:  # nested values (a chart's data): the benchmarks only follow text outputs
                continue
            if op == "append":
                updated[index] = updated[index] + value
            elif op in ("replace", "add"):
                updated[index] = value
    return updated


def process_rss_mb(pid: int) -> float:
    """Resident memory of one process, in MB (0 if it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0) / 1024


def process_tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (the app and its engine process), in MB."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        total += process_rss_mb(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


@contextmanager
def busy_neighbour():
    """Another program keeping one core busy (a compile, a video call): one spinning process."""
    process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def decode_together(model, requests: list) -> int:
    """Every request decoded in one DecodeBatch, as the engine runs a class; return the tokens written."""
    from gpt2demo.generation import DecodeBatch, Generation

    batch = DecodeBatch(model)
    generations = [Generation(model, request) for request in requests]
    for generation in generations:
        for _ in batch.join(generation):  # a joining request may already yield its first step
            pass
    while batch:
        batch.step()
    return sum(len(generation.new_token_ids) for generation in generations)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]
