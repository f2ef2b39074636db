"""Launch the real app, speak its HTTP protocol by hand, and drive a real browser: for the tests in tests/ui/.

launched() builds the app as app.py does: start_engine (the engine in its own
process, as `python app.py` runs it), build_demo, launch. RawApi speaks Gradio 6's
queue protocol over plain httpx:
  POST /gradio_api/call/generate {"data": [...]} -> {"event_id"}, then
  GET  /gradio_api/call/generate/{event_id}: SSE `event: generating|complete|error` + `data: ...`;
  the same under /gradio_api/call/v2/generate with named inputs {"prompt": ..., "top_k": ...};
  POST /gradio_api/queue/join {"data", "fn_index", "session_hash", "event_data"} -> {"event_id"}, then
  GET  /gradio_api/queue/data?session_hash=...: SSE `data: {"msg": ..., ...}` (the browser's door, which
  also reaches the page's private events: the teaching tabs, the tokenizer).
Bodies are written with json.dumps, which (unlike gradio_client) can carry NaN, Infinity and lone
surrogates, so the server's own validation is what answers them.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterator

import gradio as gr
import httpx
import pytest

from gpt2demo.serving import start_engine
from gpt2demo.serving.interface import Engine
from gpt2demo.ui.context import PageContext
from gpt2demo.ui.runs import Runs
from gpt2demo.ui.server import ServerOptions, build_demo, launch
from gpt2demo.ui.widgets.display import STYLE_ID as DISPLAY_STYLE_ID
from tools.ports import free_port

DEADLINE_SECONDS = 60  # anything still pending after this long is a hang
POLL_SECONDS = 0.01  # how often wait_until looks again
CHROMIUM = Path("/usr/bin/chromium")  # Debian's; Playwright cannot download browsers here
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ENGINE_THREAD = "gpt2demo-engine"  # the one thread that may run the model (serving/scheduler.py)

API_ORDER = ("prompt", "max_new_tokens", "top_k", "temperature", "top_p", "repetition_penalty", "seed", "greedy")
QUICK = dict(max_new_tokens=4, top_k=10, temperature=1.0, top_p=1.0, repetition_penalty=1.0, seed="", greedy=False)

# Browser tests skip only outside CI, where a developer may lack Chromium; in CI they always run.
needs_chromium = pytest.mark.skipif(not os.environ.get("CI") and not CHROMIUM.exists(),
                                    reason="no /usr/bin/chromium (required in CI, where this test always runs)")


def wait_until(condition, what: str, seconds: float = DEADLINE_SECONDS) -> None:
    """Look again every POLL_SECONDS until `condition()` holds; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(POLL_SECONDS)


# ---------------------------------------------------------------- the app


@dataclass
class LaunchedApp:
    url: str
    demo: gr.Blocks
    ctx: PageContext

    @property
    def engine(self) -> Engine:
        return self.ctx.engine

    @property
    def runs(self) -> Runs:
        return self.ctx.runs

    def forward_passes(self) -> int:
        """Forward passes the engine has run so far, on any thread."""
        return sum(self.engine.stats().forward_threads.values())

    def idle(self) -> bool:
        """Nothing running or waiting in the engine, and no handler of the page still open."""
        stats = self.engine.stats()
        return stats.running == stats.waiting == stats.jobs == 0 and len(self.runs) == 0


@contextmanager
def launched(model_dir, require_model: bool = True, in_process: bool = False, **options) -> Iterator[LaunchedApp]:
    """The real app as app.py builds it, on a free loopback port, closed afterwards.

    Args:
        require_model: fail unless the model loaded (False for tests of a failed load).
        in_process: a LocalEngine in this process instead of the engine process app.py
            starts; its .model is then this process's (tests that inject a fault into it).
        options: ServerOptions fields (max_batch, queue_size, share, auth, ...).
    """
    options = ServerOptions(port=free_port(), **{"max_batch": 4, "queue_size": 8, **options})
    engine = start_engine(str(model_dir), "cpu", options.max_batch, options.queue_size, in_process=in_process)
    try:
        demo, ctx = build_demo(engine, options)
        try:
            url = launch(demo, ctx, options, block=False)
            state = engine.wait_ready_blocking(DEADLINE_SECONDS)
            assert state.phase != "loading", "the model did not finish loading"
            assert state.phase == "ready" or not require_model, state.error
            yield LaunchedApp(url, demo, ctx)
        finally:
            demo.close()
    finally:
        engine.close()


@pytest.fixture(scope="module")
def app(tiny_model_dir):
    """The real app on the tiny stand-in, one per test module that imports this fixture."""
    with launched(tiny_model_dir) as running:
        yield running


@pytest.fixture(scope="module")
def raw(app):
    """Raw HTTP on that module's app."""
    with RawApi(app.url) as api:
        yield api


def connect(url: str, **options):
    """A gradio_client on `url`, quiet and without analytics."""
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False, **options)


# ---------------------------------------------------------------- the queue protocol by hand


def request_data(prompt="Hello", **overrides) -> list:
    """The /generate inputs in the API's order, quick defaults overridden."""
    values = {"prompt": prompt, **QUICK, **overrides}
    return [values[name] for name in API_ORDER]


@dataclass
class Outcome:
    """How one raw request ended: its final outputs, or the error message the server sent."""

    final: list | None = None  # (text, html, status, seed used) for /generate
    error: str | None = None  # "" when the server failed the request without showing why
    refused: int | None = None  # an HTTP status refusing the request before it was queued
    events: list[str] = field(default_factory=list)  # SSE event names, or the queue's "msg"s
    updates: list[list] = field(default_factory=list)  # each process_generating's output data (the queue door)

    @property
    def completed(self) -> bool:
        return "process_completed" in self.events or "complete" in self.events or "error" in self.events


def sse_lines(http: httpx.Client, url: str, **params) -> Iterator[str]:
    """The lines of an event stream, failing the test if it outlives DEADLINE_SECONDS."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    with http.stream("GET", url, params=params, timeout=DEADLINE_SECONDS) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            assert time.monotonic() < deadline, f"the stream {url} hung"
            if line:
                yield line


def error_text(data) -> str:
    # An error event carries {"error": message, ...}; an exception Gradio does not show, None ("").
    return (data.get("error") if isinstance(data, dict) else data) or ""


def refusal(response: httpx.Response) -> Outcome:
    """A request refused before it was queued: its status and the message the app gave ("" if none)."""
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    return Outcome(refused=response.status_code, error=detail if isinstance(detail, str) else "")


class RawApi:
    """Gradio's queue protocol over plain httpx; `body` values go through json.dumps (NaN, surrogates and all)."""

    def __init__(self, url: str, http: httpx.Client | None = None, language: str | None = None) -> None:
        self.base = url.rstrip("/")
        headers = {"accept-language": language} if language else None
        self.http = http or httpx.Client(timeout=DEADLINE_SECONDS, headers=headers)

    def __enter__(self) -> RawApi:
        return self

    def __exit__(self, *exc) -> None:
        self.http.close()

    def post_json(self, path: str, payload) -> httpx.Response:
        body = payload if isinstance(payload, str) else json.dumps(payload)  # NaN -> NaN, "\ud800" -> "\\ud800"
        return self.http.post(self.base + path, content=body, headers={"content-type": "application/json"})

    def call(self, data) -> Outcome:
        """POST /gradio_api/call/generate with the inputs in order, then read its event stream to the end."""
        return self._call("/gradio_api/call/generate", {"data": data})

    def call_v2(self, values: dict) -> Outcome:
        """POST /gradio_api/call/v2/generate with named inputs (missing ones take the API's defaults)."""
        return self._call("/gradio_api/call/v2/generate", values)

    def _call(self, path: str, payload) -> Outcome:
        posted = self.post_json(path, payload)
        if posted.status_code != 200:
            return refusal(posted)
        outcome, event = Outcome(), None
        for line in sse_lines(self.http, f"{self.base}{path}/{posted.json()['event_id']}"):
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
                outcome.events.append(event)
            elif line.startswith("data: "):
                data = json.loads(line.removeprefix("data: "))
                if event == "complete":
                    outcome.final = data
                elif event == "error":
                    outcome.error = error_text(data)
        return outcome

    # ------------------------------------------------------------ the browser's door

    @cached_property
    def config(self) -> dict:
        """The page's components and events, as the browser loads them."""
        return self.http.get(self.base + "/config").json()

    def fn_index(self, api_name: str = "generate") -> int:
        return next(d["id"] for d in self.config["dependencies"] if d.get("api_name") == api_name)

    def component_id(self, elem_id: str) -> int:
        return next(c["id"] for c in self.config["components"] if c["props"].get("elem_id") == elem_id)

    def event(self, elem_id: str, trigger: str) -> tuple[int, list[int]]:
        """The dependency that `trigger` ("click", "select", ...) of the component `elem_id` runs: (fn_index, inputs)."""
        target = self.component_id(elem_id)
        dependency = next(d for d in self.config["dependencies"] if [target, trigger] in d["targets"])
        return dependency["id"], dependency["inputs"]

    def page_values(self, inputs: list[int], values: dict) -> list:
        """What the page would send: each input's starting value, those named by elem_id replaced."""
        components = {c["id"]: c for c in self.config["components"]}
        sent = []
        for component_id in inputs:
            props = components[component_id]["props"]
            sent.append(values.get(props.get("elem_id"), props.get("value")))
        return sent

    def join(self, data, fn_index: int | None = None, session: str | None = None, event_data=None) -> Outcome:
        """POST /gradio_api/queue/join as the browser does, then read /gradio_api/queue/data to the end.

        Args:
            fn_index: the event to run (default: /generate).
            session: the browser session; events of one session share its gr.State values.
            event_data: what a select event reports ({"index": ..., "value": ...}).
        """
        session = session or uuid.uuid4().hex
        posted = self.post_join(data, self.fn_index() if fn_index is None else fn_index, session, event_data)
        if posted.status_code != 200:
            return refusal(posted)
        outcome = Outcome()
        for line in sse_lines(self.http, f"{self.base}/gradio_api/queue/data", session_hash=session):
            record(outcome, json.loads(line.removeprefix("data: ")))
        assert outcome.events[-1] == "close_stream", outcome.events
        return outcome

    def post_join(self, data, fn_index: int, session: str, event_data=None) -> httpx.Response:
        body = {"data": data, "fn_index": fn_index, "session_hash": session, "event_data": event_data}
        return self.post_json("/gradio_api/queue/join", body)

    def run_now(self, api_name: str, data: list | None = None, session: str | None = None) -> list:
        """POST /gradio_api/run/predict for an event outside the queue (the model panel's, Stop): its outputs."""
        body = {"data": data or [], "fn_index": self.fn_index(api_name), "session_hash": session or uuid.uuid4().hex}
        response = self.post_json("/gradio_api/run/predict", body)
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def trigger(self, elem_id: str, trigger: str, values: dict | None = None, session: str | None = None,
                event_data=None) -> Outcome:
        """Run what `trigger` of `elem_id` runs, with the page's starting values except those in `values`."""
        fn_index, inputs = self.event(elem_id, trigger)
        return self.join(self.page_values(inputs, values or {}), fn_index, session, event_data)


def record(outcome: Outcome, message: dict) -> None:
    """Take in one message of the queue's event stream."""
    outcome.events.append(message["msg"])
    if message["msg"] == "process_generating":
        outcome.updates.append(message["output"]["data"])
    elif message["msg"] == "process_completed":
        if message["success"]:
            outcome.final = message["output"]["data"]
        else:
            outcome.error = error_text(message["output"])


class BrowserSession:
    """Several events of one browser session at once, as the page runs them: one event stream for all.

    Gradio keeps one line of messages per session; two readers of it would take each
    other's messages, so one thread reads it and hands each message to its event's Outcome.
    """

    def __init__(self, raw: RawApi) -> None:
        self.raw, self.session = raw, uuid.uuid4().hex
        self.outcomes: dict[str, Outcome] = {}
        self.reader: threading.Thread | None = None

    def start(self, elem_id: str, trigger: str, values: dict | None = None) -> Outcome:
        """Run what `trigger` of `elem_id` runs (see RawApi.trigger); its Outcome fills in as messages come."""
        fn_index, inputs = self.raw.event(elem_id, trigger)
        posted = self.raw.post_join(self.raw.page_values(inputs, values or {}), fn_index, self.session)
        assert posted.status_code == 200, posted.text
        outcome = self.outcomes[posted.json()["event_id"]] = Outcome()
        if self.reader is None or not self.reader.is_alive():  # the stream ends whenever no event is left
            self.reader = threading.Thread(target=self.read, name="test-session-reader", daemon=True)
            self.reader.start()
        return outcome

    def read(self) -> None:
        for line in sse_lines(self.raw.http, f"{self.raw.base}/gradio_api/queue/data", session_hash=self.session):
            message = json.loads(line.removeprefix("data: "))
            outcome = self.outcomes.get(message.get("event_id"))
            if outcome is not None:
                record(outcome, message)

    def press(self, api_name: str) -> list:
        """Press a button whose event runs outside the queue (a Stop), in this session."""
        return self.raw.run_now(api_name, session=self.session)

    def close(self) -> None:
        if self.reader is not None:
            self.reader.join(DEADLINE_SECONDS)


def check_still_serving(raw: RawApi, app: LaunchedApp) -> None:
    """A normal request after whatever came before: it completes, and nothing is left running."""
    outcome = raw.call(request_data("Still here", max_new_tokens=3, greedy=True))
    assert outcome.error is None and outcome.final[0].startswith("Still here"), outcome
    wait_until(app.idle, "the engine and the page to be idle")


# ---------------------------------------------------------------- the browser


@contextmanager
def chromium_browser():
    """Headless Debian Chromium through Playwright, closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


# Resolves once every transition now running has ended (Gradio eases colours and sizes in over
# 0.15-0.2 s): the browser's own promises, no sleep. Endless animations (spinners) are left out.
SETTLE_JS = """() => Promise.all(document.getAnimations()
  .filter((animation) => animation.effect?.getTiming().iterations !== Infinity)
  .map((animation) => animation.finished.catch(() => null)))"""
PAGE_TIMEOUT_MS = DEADLINE_SECONDS * 1000
DESKTOP_VIEWPORT = {"width": 1280, "height": 1000}


def settle(page) -> None:
    page.evaluate(SETTLE_JS)


def open_app_page(browser, url: str, query: str = "", locale: str = "en-US", viewport=DESKTOP_VIEWPORT,
                  color_scheme: str = "light", accept_downloads: bool = False):
    """A fresh browser tab (a context of its own: a session of its own) on the app, once the page has opened.

    Opened means the page's load script has run (it adds the page's style, applies ?projector=1
    and sets the switches) and the transitions that follow have ended. #generate alone is not
    enough: in 6 of 40 opens on a busy machine it was there while Gradio's loading overlay still
    covered it and projector mode's larger text was not yet laid out.
    """
    page = browser.new_context(locale=locale, viewport=viewport, color_scheme=color_scheme,
                               accept_downloads=accept_downloads).new_page()
    page.goto(url + query)
    page.wait_for_selector("#generate", timeout=PAGE_TIMEOUT_MS)
    page.wait_for_selector(f"#{DISPLAY_STYLE_ID}", state="attached", timeout=PAGE_TIMEOUT_MS)
    settle(page)
    return page


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per test module that imports this fixture."""
    with chromium_browser() as chromium:
        yield chromium
