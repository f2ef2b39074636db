"""The launched app's HTTP surface, spoken by hand: what a script without gradio_client can send.

Gradio 6's queue protocol has three doors, and all are driven here:
  POST /gradio_api/call/generate {"data": [...]} -> {"event_id"}, then
  GET  /gradio_api/call/generate/{event_id}: SSE `event: generating|complete|error` + `data: ...`;
  the same under /gradio_api/call/v2/generate with named inputs {"prompt": ..., "top_k": ...};
  POST /gradio_api/queue/join {"data", "fn_index", "session_hash"} -> {"event_id"}, then
  GET  /gradio_api/queue/data?session_hash=...: SSE `data: {"msg": "process_completed", ...}` (the browser's door).
Bodies are written with json.dumps, which (unlike gradio_client) can carry NaN, Infinity and lone
surrogates, so the server's own validation is what answers them.

Also here: the routes that must stay closed (direct runs that skip the queue, monitoring, uploads),
SSR off, the gradio pin, and the password in front of page and API.
"""

from __future__ import annotations

import importlib.metadata
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import gradio as gr
import httpx
import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from gpt2demo.settings import SamplingSettings
from gpt2demo.ui.i18n import MESSAGES
from gpt2demo.ui.server import PROGRESS_POLL_SECONDS, QUEUE_IDLE_POLL_SECONDS

from launching import DEADLINE_SECONDS, LaunchedApp, launched, wait_until

ROOT = Path(__file__).resolve().parents[1]
API_ORDER = ("prompt", "max_new_tokens", "top_k", "temperature", "top_p", "repetition_penalty", "seed", "greedy")
QUICK = dict(max_new_tokens=4, top_k=10, temperature=1.0, top_p=1.0, repetition_penalty=1.0, seed="", greedy=False)


# ---------------------------------------------------------------- launching and speaking the protocol


def request_data(prompt="Hello", **overrides) -> list:
    """The /generate inputs in the API's order, quick defaults overridden."""
    values = {"prompt": prompt, **QUICK, **overrides}
    return [values[name] for name in API_ORDER]


@dataclass
class Outcome:
    """How one raw request ended: its final outputs, or the error message the server sent."""

    final: list | None = None  # (text, html, status, seed used)
    error: str | None = None  # "" when the server failed the request without showing why
    refused: int | None = None  # an HTTP status refusing the request before it was queued
    events: list[str] = field(default_factory=list)


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


class RawApi:
    """Gradio's queue protocol over plain httpx; `body` values go through json.dumps (NaN, surrogates and all)."""

    def __init__(self, url: str, http: httpx.Client | None = None) -> None:
        self.base = url.rstrip("/")
        self.http = http or httpx.Client(timeout=DEADLINE_SECONDS)

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
            return Outcome(refused=posted.status_code)
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

    def fn_index(self) -> int:
        dependencies = self.http.get(self.base + "/config").json()["dependencies"]
        return next(d["id"] for d in dependencies if d.get("api_name") == "generate")

    def join(self, data) -> Outcome:
        """POST /gradio_api/queue/join as the browser does, then read /gradio_api/queue/data to the end."""
        session = uuid.uuid4().hex
        posted = self.post_json("/gradio_api/queue/join", {"data": data, "fn_index": self.fn_index(), "session_hash": session})
        if posted.status_code != 200:
            return Outcome(refused=posted.status_code)
        outcome = Outcome()
        for line in sse_lines(self.http, f"{self.base}/gradio_api/queue/data", session_hash=session):
            message = json.loads(line.removeprefix("data: "))
            outcome.events.append(message["msg"])
            if message["msg"] == "process_completed":
                if message["success"]:
                    outcome.final = message["output"]["data"]
                else:
                    outcome.error = error_text(message["output"])
        assert outcome.events[-1] == "close_stream", outcome.events
        return outcome


@pytest.fixture(scope="module")
def app(tiny_model_dir):
    with launched(tiny_model_dir) as running:
        yield running


@pytest.fixture(scope="module")
def raw(app):
    api = RawApi(app.url)
    yield api
    api.http.close()


def check_still_serving(raw: RawApi, app: LaunchedApp) -> None:
    """A normal request after whatever came before: it completes, and nothing is left running."""
    outcome = raw.call(request_data("Still here", max_new_tokens=3, greedy=True))
    assert outcome.error is None and outcome.final[0].startswith("Still here"), outcome
    wait_until(lambda: app.service.stats().running == 0 and len(app.handlers.runs) == 0, "the batch to empty")


# ---------------------------------------------------------------- every door works, and fails cleanly


def without_speed(outputs) -> list:
    """Outputs with the tokens/s part of the status dropped: the one part that differs between runs."""
    text, html, status, seed = outputs
    return [text, html, [part for part in status.split(" · ") if "tokens/s" not in part], seed]


def test_the_queue_polls_every_10_ms_and_its_progress_every_50_and_still_serves(app, raw):
    # Gradio's own defaults are 1 ms and 10 ms (see server.py); the settings must reach its queue.
    assert app.demo._queue.sleep_when_free == QUEUE_IDLE_POLL_SECONDS == 0.01
    assert app.demo._queue.progress_update_sleep_when_free == PROGRESS_POLL_SECONDS == 0.05
    outcome = raw.call(request_data(prompt="Hello", max_new_tokens=3, greedy=True))
    assert outcome.error is None and outcome.final[0].startswith("Hello") and outcome.final[2].startswith("3 tokens")


def test_every_queue_door_streams_the_same_text_as_gradio_client(app, raw):
    from gradio_client import Client

    data = request_data("The meaning of life is", max_new_tokens=12, seed="99")
    by_call, by_join, by_name = raw.call(data), raw.join(data), raw.call_v2(dict(zip(API_ORDER, data)))
    expected = without_speed(Client(app.url, verbose=False, analytics_enabled=False).predict(*data, api_name="/generate"))
    assert without_speed(by_call.final) == without_speed(by_join.final) == without_speed(by_name.final) == expected
    assert by_call.events.count("generating") >= 3 and by_call.events[-1] == "complete"


@pytest.mark.parametrize(
    "body, status",
    [
        ("not json", 422),
        ('{"data": "Hello"}', 422),  # data must be a list
        ('{"prompt": "Hello"}', 422),  # no data at all
    ],
)
def test_malformed_bodies_are_refused_before_the_queue(app, raw, body, status):
    assert raw.post_json("/gradio_api/call/generate", body).status_code == status
    check_still_serving(raw, app)


@pytest.mark.parametrize("data", [[], ["Hello"], ["Hello", 3, 10]], ids=["no-inputs", "one-input", "three-inputs"])
def test_too_few_inputs_end_in_an_error_event_not_a_hang(app, raw, data):
    # Gradio refuses these before our handler runs; it does not show its message (show_error is off).
    for outcome in (raw.call(data), raw.join(data)):
        assert outcome.final is None and outcome.error == "", outcome
    check_still_serving(raw, app)


@pytest.mark.parametrize("values", [{}, {"prompt": "Hello", "bogus": 1}], ids=["no-prompt", "unknown-name"])
def test_bad_named_inputs_are_refused_and_the_server_goes_on(app, raw, values):
    # Gradio raises a TypeError in the route (a 500, and the connection is dropped): refused all the same.
    with httpx.Client(timeout=DEADLINE_SECONDS) as http:
        assert RawApi(app.url, http).call_v2(values).refused == 500
    check_still_serving(raw, app)


def test_named_inputs_left_out_take_the_documented_defaults(app, raw):
    by_name = raw.call_v2({"prompt": "Hello", "seed": "5", "max_new_tokens": 3})
    defaults = SamplingSettings()
    in_full = raw.call(request_data("Hello", seed="5", max_new_tokens=3, top_k=defaults.top_k, temperature=defaults.temperature,
                                    top_p=defaults.top_p, repetition_penalty=defaults.repetition_penalty, greedy=defaults.greedy))
    assert without_speed(by_name.final) == without_speed(in_full.final)


def test_extra_inputs_are_ignored(app, raw):
    outcome = raw.call(request_data("Hello") + ["one too many"])
    assert outcome.error is None and outcome.final[0].startswith("Hello")


# ---------------------------------------------------------------- routes that must stay closed


def test_the_queue_cannot_be_skipped_through_direct_run_routes(app, raw):
    # With api_open left at Gradio's default (True off Spaces), POST /run/<api_name> runs the
    # handler outside the queue: no max_size, no concurrency limit, one partial output back.
    generate_index = raw.fn_index()
    attempts = {
        "/gradio_api/run/generate": {"data": request_data()},
        "/gradio_api/api/generate": {"data": request_data()},
        "/gradio_api/run/predict": {"data": request_data(), "fn_index": generate_index},
    }
    for path, payload in attempts.items():
        response = raw.post_json(path, payload)
        assert response.status_code == 404, f"{path} ran generate outside the queue: {response.status_code} {response.text[:200]}"
        assert "does not accept direct HTTP POST requests" in response.text
    assert app.service.stats().running == 0 and len(app.handlers.runs) == 0


def test_monitoring_stays_off_even_with_its_secret_key(app, raw):
    key = app.demo.server_app.analytics_key
    assert raw.http.get(f"{raw.base}/monitoring/{key}", follow_redirects=False).status_code == 403
    for path in ("/gradio_api/monitoring", "/gradio_api/monitoring/summary", f"/gradio_api/monitoring/{key}"):
        assert raw.http.get(raw.base + path).status_code == 404


def test_even_an_empty_upload_is_refused(app, raw):
    response = raw.http.post(raw.base + "/gradio_api/upload", files={"files": ("empty.txt", b"")})
    assert response.status_code in (403, 404, 413), response.text


def test_ssr_is_off_and_no_node_server_runs(app):
    assert app.demo.ssr_mode is False
    assert getattr(app.demo, "node_process", None) is None and getattr(app.demo, "node_port", None) is None


def test_gradio_is_pinned_to_a_release_with_the_security_fixes():
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    (pin,) = [Requirement(line) for line in lines if line.strip().lower().startswith("gradio") and "client" not in line]
    assert pin.name == "gradio"
    assert not any(pin.specifier.contains(old) for old in ("5.50.0", "6.0.0", "6.21.9")), pin
    assert pin.specifier.contains("6.22.0")
    installed = importlib.metadata.version("gradio")
    assert Version(installed) >= Version("6.22") and pin.specifier.contains(installed), installed


# ---------------------------------------------------------------- password and share link


@pytest.fixture
def local_share_tunnel(monkeypatch):
    """Make Gradio's share tunnel "succeed" with a loopback address that nothing ever contacts."""
    made = []

    def fake_tunnel(local_host, local_port, *args, **kwargs):
        made.append(local_port)
        return f"https://127.0.0.1:{local_port}"

    monkeypatch.setattr(gr.networking, "setup_tunnel", fake_tunnel)
    return made


def page_banners(app: LaunchedApp) -> list[str]:
    _model, banners, _classroom = app.handlers.show_server(None)  # what the page's load event shows
    return banners["value"].split("\n\n") if banners["visible"] else []


def test_a_share_link_without_a_password_warns_on_the_console_and_the_page(tiny_model_dir, local_share_tunnel, capsys):
    with launched(tiny_model_dir, share=True) as running:
        console = capsys.readouterr().out
        banners = page_banners(running)
    warning = MESSAGES["en"]["public_no_auth"]
    assert local_share_tunnel and f"[gpt2demo] WARNING: {warning}" in console
    assert banners == [warning, MESSAGES["en"]["share_url"].format(url=running.demo.share_url)]


def test_a_share_link_with_a_password_does_not_warn(tiny_model_dir, local_share_tunnel, capsys):
    with launched(tiny_model_dir, share=True, auth=("teacher", "s3cret")) as running:
        console = capsys.readouterr().out
        banners = page_banners(running)
    assert local_share_tunnel and "WARNING" not in console
    assert banners == [MESSAGES["en"]["share_url"].format(url=running.demo.share_url)]


def test_with_a_password_page_and_api_refuse_everyone_without_it(tiny_model_dir, local_share_tunnel):
    # share=True with the tunnel faked: the routes are exactly those a share link would reach.
    with launched(tiny_model_dir, share=True, auth=("teacher", "s3cret:x")) as running, httpx.Client(timeout=30) as http:
        base = running.url.rstrip("/")
        body = {"data": request_data()}
        closed = [
            http.get(base + "/config"),
            http.get(base + "/gradio_api/info"),
            http.post(base + "/gradio_api/call/generate", json=body),
            http.post(base + "/gradio_api/call/v2/generate", json={"prompt": "Hello"}),
            http.post(base + "/gradio_api/queue/join", json={**body, "fn_index": 1, "session_hash": "guess"}),
            http.get(base + "/gradio_api/queue/data", params={"session_hash": "guess"}),
            http.post(base + "/gradio_api/run/generate", json=body),
            http.post(base + "/gradio_api/upload", files={"files": ("a.txt", b"hello")}),
            http.get(base + "/gradio_api/call/generate/guess"),
        ]
        # Every route wants the login, but the upload route is closed to everyone (403) before that.
        expected = [403 if str(r.url).rstrip("/").endswith("/upload") else 401 for r in closed]
        assert [r.status_code for r in closed] == expected, [(str(r.url), r.status_code) for r in closed]
        page = http.get(base + "/")
        assert page.status_code == 200 and '"auth_required":true' in page.text.replace(" ", "")
        assert "Here is my recipe for chocolate cake" not in page.text  # none of the page's content
        assert http.post(base + "/login", data={"username": "teacher", "password": "s3cret"}).status_code == 400
        assert not http.cookies and http.get(base + "/config").status_code == 401
        assert running.service.stats().running == 0 and len(running.handlers.runs) == 0  # nothing ran

        assert http.post(base + "/login", data={"username": "teacher", "password": "s3cret:x"}).status_code == 200
        assert "Here is my recipe for chocolate cake" in http.get(base + "/").text
        outcome = RawApi(running.url, http).call(request_data("Hello"))
    assert outcome.error is None and outcome.final[0].startswith("Hello")
