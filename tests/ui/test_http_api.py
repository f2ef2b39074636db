"""The launched app's HTTP surface, spoken by hand: what a script without gradio_client can send.

Every door of Gradio 6's queue protocol is driven here (see launching.RawApi), the
browser's door for every tab that runs the model; and so are the routes that must
stay closed (direct runs that skip the queue, monitoring, uploads), SSR off, the
gradio pin, and the password in front of page and API.
"""

from __future__ import annotations

import importlib.metadata
import re
import uuid
from pathlib import Path

import gradio as gr
import httpx
import pytest
from gradio_client import Client
from packaging.requirements import Requirement
from packaging.version import Version

from gpt2demo.generation import generate_text
from gpt2demo.settings import SamplingSettings
from gpt2demo.ui.i18n import MESSAGES
from gpt2demo.ui.panel import show_server
from gpt2demo.ui.server import PROGRESS_POLL_SECONDS, QUEUE_IDLE_POLL_SECONDS, queue_polling
from gpt2demo.ui.views.generate import render_html

from conftest import TUTORIAL_PROMPT
from launching import API_ORDER, app, BrowserSession, check_still_serving, ENGINE_THREAD, launched, LaunchedApp, raw, RawApi, request_data, wait_until  # app, raw: module fixtures

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- every door works, and fails cleanly


def without_speed(outputs) -> list:
    """Outputs with the tokens/s part of the status dropped: the one part that differs between runs."""
    text, html, status, seed = outputs
    return [text, html, [part for part in status.split(" · ") if "tokens/s" not in part], seed]


def test_the_queue_polls_every_10_ms_and_its_progress_every_50_and_still_serves(app, raw):
    # Gradio's own defaults are 1 ms and 10 ms (see server.py); the settings must reach its queue.
    assert queue_polling(app.demo) == (QUEUE_IDLE_POLL_SECONDS, PROGRESS_POLL_SECONDS) == (0.01, 0.05)
    outcome = raw.call(request_data(prompt="Hello", max_new_tokens=3, greedy=True))
    assert outcome.error is None and outcome.final[0].startswith("Hello") and outcome.final[2].startswith("3 tokens")


def test_every_queue_door_streams_the_same_text_as_gradio_client(app, raw):
    data = request_data("The meaning of life is", max_new_tokens=12, seed="99")
    by_call, by_join, by_name = raw.call(data), raw.join(data), raw.call_v2(dict(zip(API_ORDER, data)))
    expected = without_speed(Client(app.url, verbose=False, analytics_enabled=False).predict(*data, api_name="/generate"))
    assert without_speed(by_call.final) == without_speed(by_join.final) == without_speed(by_name.final) == expected
    assert by_call.events.count("generating") >= 3 and by_call.events[-1] == "complete"


def test_the_generate_html_streams_as_appended_text_after_its_first_update(raw, tiny_model):
    # render_html leaves the output's tags open, so each update starts with the one before
    # and Gradio's diff of it is an "append" of the new text, never a "replace" of the whole.
    outcome = raw.join(request_data(TUTORIAL_PROMPT, max_new_tokens=200, greedy=True))
    first, *later = [update[1] for update in outcome.updates]  # the html is the second output
    assert first == render_html(TUTORIAL_PROMPT, "")  # the first update: the whole value, before any token
    edits = [edit for diff in later for edit in diff]
    assert {(kind, tuple(path)) for kind, path, _ in edits} == {("append", ())}, edits
    assert sum(bool(diff) for diff in later) >= 2  # several updates, each an append
    continuation = generate_text(tiny_model, TUTORIAL_PROMPT, SamplingSettings(max_new_tokens=200, greedy=True)).text
    assert first + "".join(text for _, _, text in edits) == outcome.final[1] == render_html(TUTORIAL_PROMPT, continuation)


@pytest.mark.parametrize(
    "body, message",
    [
        ("not json", "generate: this request does not fit the page (the body is not JSON)"),
        ('{"data": "Hello"}', "generate: this request does not fit the page ('data' must be a list of input values)"),
        ('{"prompt": "Hello"}', "generate: this request does not fit the page ('data' must be a list of input values)"),
    ],
)
def test_malformed_bodies_are_refused_before_the_queue_with_the_reason(app, raw, body, message):
    response = raw.post_json("/gradio_api/call/generate", body)
    assert (response.status_code, response.json()["detail"]) == (400, message)
    check_still_serving(raw, app)


@pytest.mark.parametrize("data", [[], ["Hello"], ["Hello", 3, 10], request_data("Hello") + ["one too many"]],
                         ids=["no-inputs", "one-input", "three-inputs", "nine-inputs"])
def test_a_wrong_number_of_inputs_is_refused_on_both_doors_saying_how_many(app, raw, data):
    for outcome in (raw.call(data), raw.join(data)):
        assert (outcome.refused, outcome.error, outcome.final) == (400, f"generate takes 8 inputs (got {len(data)})", None)
    check_still_serving(raw, app)


def test_an_unknown_named_input_is_refused_and_the_server_goes_on(app, raw):
    outcome = raw.call_v2({"prompt": "Hello", "bogus": 1})
    assert (outcome.refused, outcome.error) == (400, "generate has no input named bogus (its inputs: prompt, max_new_tokens, "
                                                     "top_k, temperature, top_p, repetition_penalty, seed, greedy)")
    check_still_serving(raw, app)


@pytest.mark.parametrize("prompt", ["Hello", None], ids=["prompt", "no-prompt"])
def test_named_inputs_left_out_take_the_documented_defaults(raw, prompt):
    # The prompt too: the page's prompt box starts with the tutorial's prompt, and so does the API.
    by_name = raw.call_v2({"seed": "5", "max_new_tokens": 3} if prompt is None else {"prompt": prompt, "seed": "5", "max_new_tokens": 3})
    defaults = SamplingSettings()
    in_full = raw.call(request_data(prompt or TUTORIAL_PROMPT, seed="5", max_new_tokens=3, top_k=defaults.top_k,
                                    temperature=defaults.temperature, top_p=defaults.top_p,
                                    repetition_penalty=defaults.repetition_penalty, greedy=defaults.greedy))
    assert without_speed(by_name.final) == without_speed(in_full.final)
    assert by_name.final[0].startswith(prompt or TUTORIAL_PROMPT)


# ---------------------------------------------------------------- one door to the model


def test_every_tab_runs_the_model_on_the_engines_one_thread(app, raw, tiny_model):
    """The one-door invariant: whatever tab asks, every forward pass ran on the engine's thread (in its process)."""
    session = uuid.uuid4().hex  # one browser tab: the sampler's clicks share its state

    def runs_the_model(what: str, outcome) -> list:
        assert outcome.error is None and outcome.final is not None, (what, outcome)
        wait_until(lambda: app.forward_passes() > before, f"{what} to run the model")
        return outcome.final

    before = app.forward_passes()
    text, *_ = runs_the_model("generate", raw.call(request_data(TUTORIAL_PROMPT, max_new_tokens=5)))
    assert text.startswith(TUTORIAL_PROMPT)
    before = app.forward_passes()
    *_, status = runs_the_model("inside", raw.trigger("inside-generate", "click", {"inside-max-new-tokens": 5},
                                                            session))
    assert status.startswith("5 tokens · finished: length reached · seed ")
    before = app.forward_passes()
    _text, _candidates, status = runs_the_model("sampler start", raw.trigger("sampler-start", "click", {}, session))
    assert re.fullmatch(r"0 tokens · 0 picked by you, 0 by the sampler · seed \d+", status), status
    before = app.forward_passes()
    _text, _candidates, status = runs_the_model(
        "sampler pick", raw.trigger("sampler-candidates", "select", {}, session, event_data={"index": 0, "value": ""}))
    assert re.fullmatch(r"1 tokens · 1 picked by you, 0 by the sampler · seed \d+", status), status
    before = app.forward_passes()
    _text, _candidates, status = runs_the_model("sampler draw", raw.trigger("sampler-sample", "click", {}, session))
    assert re.fullmatch(r"2 tokens · 1 picked by you, 1 by the sampler · seed \d+", status), status
    before = app.forward_passes()
    _lanes, status = runs_the_model("strategies", raw.trigger(
        "strategies-compare", "click", {"strategies-max-new-tokens": 5, "strategies-seed": "7"}, session))
    assert status == "5 batch steps for 4 lanes · seed 7"
    before = app.forward_passes()
    *_, status = runs_the_model("cost race", raw.trigger("cost-run", "click", {"cost-count": 25}, session))
    assert status.endswith("Both wrote the same text.")

    # The tokenizer and the length slider ask the engine too (no forward pass: only its tokenizer).
    (table,) = raw.trigger("tokenizer-run", "click", {"tokenizer-text": "<|endoftext|>"}, session).final
    assert "<code>indexed_tokens = [27, 91, 437, 1659, 5239, 91, 29]</code>" in table  # typed: plain text, not the token
    (length,) = raw.trigger("prompt", "change", {"prompt": TUTORIAL_PROMPT, "max-new-tokens": 100}, session).final
    assert (length["maximum"], length["value"]) == (1024 - len(tiny_model.encode(TUTORIAL_PROMPT)), 100)

    wait_until(app.idle, "every tab's work to end")
    forward_threads = app.engine.stats().forward_threads
    assert list(forward_threads) == [ENGINE_THREAD], forward_threads


# ---------------------------------------------------------------- one Stop mechanism for every tab

LONG_RUNS = {  # tab: (the button that starts a long run, values for it, its Stop's api name, what shows it runs)
    "generate": ("generate", {"max-new-tokens": 1000}, "stop_generate", "running"),
    "inside": ("inside-generate", {"inside-max-new-tokens": 1000}, "stop_inside", "running"),
    "strategies": ("strategies-compare", {"strategies-max-new-tokens": 1000}, "stop_strategies", "running"),
    "cost": ("cost-run", {"cost-count": 200}, "stop_cost", "jobs"),
}
STOPPED_STATUS = {  # tab: (which output is its status line, what that line says once stopped)
    "generate": (2, r"\d+ tokens · [\d.]+ tokens/s · stopped · seed \d+"),
    "inside": (4, r"\d+ tokens · stopped · seed \d+"),
    "strategies": (1, r"\d+ batch steps for 4 lanes · seed \d+ · stopped"),
    "cost": (2, r"tutorial: whole text every step: [\d.]+ tokens/s · KV cache: newest token only: [\d.]+ tokens/s · stopped"),
}


@pytest.mark.parametrize("tab", list(LONG_RUNS))
def test_a_tabs_stop_ends_that_tabs_run_and_no_other(app, raw, tab):
    wait_until(app.idle, "an idle engine")
    other = "generate" if tab != "generate" else "inside"
    page = BrowserSession(raw)  # one browser tab of the page, running two of its tabs at once
    try:
        button, values, stop, counter = LONG_RUNS[tab]
        stopped = page.start(button, "click", values)
        wait_until(lambda: getattr(app.engine.stats(), counter) >= 1, f"the {tab} run to start")
        button, values, other_stop, _ = LONG_RUNS[other]
        running = page.start(button, "click", values)
        wait_until(lambda: len(app.runs) == 2 and app.engine.stats().running >= 1, f"the {other} run to start too")

        page.press(stop)  # the Stop button: outside the queue
        wait_until(lambda: stopped.completed, f"the {tab} run to end")
        index, status = STOPPED_STATUS[tab]
        assert stopped.error is None and re.fullmatch(status, stopped.final[index]), stopped.final[index]
        assert len(app.runs) == 1 and not running.completed  # the other tab's run goes on

        page.press(other_stop)
        wait_until(lambda: running.completed, f"the {other} run to end")
        assert running.error is None
    finally:
        page.close()
    wait_until(app.idle, "both runs to end")


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
    assert app.idle()


def test_monitoring_stays_off_even_with_its_secret_key(app, raw):
    key = app.demo.server_app.analytics_key
    assert raw.http.get(f"{raw.base}/monitoring/{key}", follow_redirects=False).status_code == 403
    for path in ("/gradio_api/monitoring", "/gradio_api/monitoring/summary", f"/gradio_api/monitoring/{key}"):
        assert raw.http.get(raw.base + path).status_code == 404


def test_even_an_empty_upload_is_refused(raw):
    response = raw.http.post(raw.base + "/gradio_api/upload", files={"files": ("empty.txt", b"")})
    assert (response.status_code, response.json()["detail"]) == (403, "Uploads are not accepted: this page takes no files.")


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
    _model, banners, _classroom = show_server(app.ctx)(None)  # what the page's load event shows
    return banners["value"].split("\n\n") if banners["visible"] else []


def test_a_share_link_without_a_password_warns_on_the_console_and_the_page(tiny_model_dir, local_share_tunnel, capsys):
    with launched(tiny_model_dir, share=True) as running:
        console = capsys.readouterr().err
        banners = page_banners(running)
    warning = MESSAGES["en"]["public_no_auth"]
    assert local_share_tunnel and f"[gpt2demo] WARNING: {warning}" in console
    assert banners == [warning, MESSAGES["en"]["share_url"].format(url=running.demo.share_url)]


def test_a_share_link_with_a_password_does_not_warn(tiny_model_dir, local_share_tunnel, capsys):
    with launched(tiny_model_dir, share=True, auth=("teacher", "s3cret")) as running:
        console = capsys.readouterr().err
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
        # Every route wants the login first, the upload route too (closed to everyone after it: 403).
        expected = [401] * len(closed)
        assert [r.status_code for r in closed] == expected, [(str(r.url), r.status_code) for r in closed]
        page = http.get(base + "/")
        assert page.status_code == 200 and '"auth_required":true' in page.text.replace(" ", "")
        assert "Here is my recipe for chocolate cake" not in page.text  # none of the page's content
        assert http.post(base + "/login", data={"username": "teacher", "password": "s3cret"}).status_code == 400
        assert not http.cookies and http.get(base + "/config").status_code == 401
        assert running.idle() and running.forward_passes() == 0  # nothing ran

        assert http.post(base + "/login", data={"username": "teacher", "password": "s3cret:x"}).status_code == 200
        assert "Here is my recipe for chocolate cake" in http.get(base + "/").text
        outcome = RawApi(running.url, http).call(request_data("Hello"))
    assert outcome.error is None and outcome.final[0].startswith("Hello")
