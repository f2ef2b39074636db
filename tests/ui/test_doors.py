"""Every door of the launched app: login on every route, login attempts limited, bounded bodies,
event calls that do not fit the page, the side events outside the queue, one admission limit."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from gpt2demo.ui.guards import LOGIN_ATTEMPTS, MAX_BODY_BYTES, PUBLIC_PATHS, PUBLIC_PREFIXES

from conftest import DEADLINE_SECONDS, TUTORIAL_PROMPT
from launching import app, check_still_serving, launched, raw, RawApi, request_data, wait_until  # app, raw: module fixtures

PASSWORD = ("teacher", "s3cret")


def served_routes(routes, prefix: str = ""):
    """(path, methods) of every route the app serves, from its own route table (included routers too)."""
    for route in routes:
        if hasattr(route, "original_router"):  # FastAPI's included router: Gradio's /gradio_api
            yield from served_routes(route.original_router.routes, prefix + route.include_context.prefix)
        else:
            yield prefix + route.path, tuple(sorted(getattr(route, "methods", None) or ["WEBSOCKET"]))


def concrete(path: str) -> str:
    """A route's path with its parameters filled in: /gradio_api/heartbeat/{session_hash} -> .../x."""
    while "{" in path:
        start = path.index("{")
        path = path[:start] + "x" + path[path.index("}", start) + 1:]
    return path


def public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


@pytest.fixture(scope="module")
def protected(tiny_model_dir):
    with launched(tiny_model_dir, auth=PASSWORD) as running:
        yield running


def test_with_a_password_every_route_but_the_login_pages_own_needs_the_session(protected):
    routes = sorted(set(served_routes(protected.demo.server_app.routes)))
    assert len(routes) > 60 and ("/gradio_api/heartbeat/{session_hash}", ("GET",)) in routes  # the whole table
    base = protected.url.rstrip("/")
    with httpx.Client(timeout=DEADLINE_SECONDS) as nobody, httpx.Client(timeout=DEADLINE_SECONDS) as teacher:
        bad = {f"access-token-{protected.demo.server_app.cookie_id}": "forged", "access-token": "forged"}
        assert teacher.post(base + "/login", data={"username": PASSWORD[0], "password": PASSWORD[1]}).status_code == 200
        forger = httpx.Client(timeout=DEADLINE_SECONDS, cookies=bad)
        for path, methods in routes:
            if methods == ("WEBSOCKET",) or public(concrete(path)):
                continue
            method = "GET" if "GET" in methods else methods[0]
            url = base + concrete(path)
            for who, stranger in (("no cookie", nobody), ("a forged cookie", forger)):
                response = stranger.request(method, url)
                assert response.status_code == 401, (who, method, path, response.status_code)
                if method != "HEAD":  # a HEAD answer has no body to read
                    assert response.json()["detail"] == "Log in first: this demo is protected by a password."
            with teacher.stream(method, url) as response:  # event streams: the status line is enough
                assert response.status_code != 401, (method, path)
        forger.close()


def test_login_attempts_are_limited_per_address_with_a_message(protected):
    base = protected.url.rstrip("/")
    with httpx.Client(timeout=DEADLINE_SECONDS, headers={"accept-language": "zh-CN"}) as guesser:
        answers = [guesser.post(base + "/login", data={"username": "teacher", "password": f"guess{i}"}).status_code
                   for i in range(LOGIN_ATTEMPTS)]
        assert answers == [400] * LOGIN_ATTEMPTS  # wrong, and told so each time
        refused = guesser.post(base + "/login", data={"username": PASSWORD[0], "password": PASSWORD[1]})
        assert refused.status_code == 429  # even the right password waits now
        detail = refused.json()["detail"]
        assert detail.startswith(f"这个地址输错密码的次数太多（一分钟内 {LOGIN_ATTEMPTS} 次）；请 ") and detail.endswith(" 秒后再试。")


def test_a_body_over_the_limit_is_refused_before_any_work(app, raw):
    huge = {"data": request_data("x" * (MAX_BODY_BYTES + 1)), "fn_index": raw.fn_index(), "session_hash": "s"}
    for path in ("/gradio_api/queue/join", "/gradio_api/run/predict", "/gradio_api/call/generate"):
        response = raw.post_json(path, huge)
        assert (response.status_code, response.json()["detail"]) == (413, "The request is too large (at most 512 KB).")
    check_still_serving(raw, app)


@pytest.mark.parametrize("path, body, message", [
    ("/gradio_api/queue/join", {"data": [], "fn_index": 999, "session_hash": "s"}, "queue: this request does not fit the page (no event number 999)"),
    ("/gradio_api/queue/join", {"data": [], "fn_index": -1, "session_hash": "s"}, "queue: this request does not fit the page (no event number -1)"),
    ("/gradio_api/run/predict", {"data": [], "fn_index": "x", "session_hash": "s"}, "queue: this request does not fit the page (no event number x)"),
    ("/gradio_api/queue/join", {"data": [], "fn_index": "generate", "session_hash": "s"}, "generate takes 8 inputs (got 0)"),
    ("/gradio_api/queue/join", {"data": ["Hello"], "fn_index": "generate", "session_hash": "s"}, "generate takes 8 inputs (got 1)"),
    ("/gradio_api/queue/join", {"data": ["Hello"] * 9, "fn_index": "generate", "session_hash": "s"}, "generate takes 8 inputs (got 9)"),
    ("/gradio_api/queue/join", {"data": "Hello", "fn_index": "generate", "session_hash": "s"}, "generate: this request does not fit the page ('data' must be a list of input values)"),
    ("/gradio_api/call/generate", {"data": ["Hello"] * 100}, "generate takes 8 inputs (got 100)"),
    ("/gradio_api/call/v2/generate", {"prompt": "Hi", "frobnicate": 1}, "generate has no input named frobnicate (its inputs: prompt, max_new_tokens, top_k, temperature, top_p, repetition_penalty, seed, greedy)"),
    ("/gradio_api/call/nothing", {"data": []}, "nothing: this request does not fit the page (no such event)"),
    ("/gradio_api/queue/join", "{not json", "join: this request does not fit the page (the body is not JSON)"),
])
def test_an_event_call_that_does_not_fit_the_page_is_told_why(app, raw, path, body, message):
    if isinstance(body, dict) and body.get("fn_index") == "generate":
        body = {**body, "fn_index": raw.fn_index()}
    response = raw.post_json(path, body)
    assert (response.status_code, response.json()["detail"]) == (400, message)


def test_the_side_events_outside_the_queue_give_bounded_answers_fast(app, raw):
    # Every event the page runs outside the queue, sent the biggest body allowed: each answers
    # within a second, and no answer is larger than the largest view the page draws (~1 MB).
    outside = [d for d in raw.config["dependencies"] if not d.get("queue", True)]
    components = {c["id"]: c for c in raw.config["components"]}
    assert len(outside) >= 5
    for dependency in outside:
        filler = "9" * ((MAX_BODY_BYTES - 2048) // max(1, len(dependency["inputs"])))  # the whole body just fits
        body = {"data": [filler] * len(dependency["inputs"]), "fn_index": dependency["id"], "session_hash": uuid.uuid4().hex,
                "event_data": {"index": 0, "value": ""}}
        started = time.monotonic()
        response = raw.post_json("/gradio_api/run/predict", body)
        seconds = time.monotonic() - started
        assert response.status_code in (200, 400) and len(response.content) < 1_000_000, (dependency["id"], len(response.content))
        assert "Traceback" not in response.text and seconds < DEADLINE_SECONDS
        if response.status_code == 400:  # the app's own words, naming the problem
            examples = [len(components[i]["props"]["samples"]) for i in dependency["inputs"]
                        if components[i]["type"] == "dataset"]
            expected = (f"an example's number is expected, 0 to {examples[0] - 1})" if examples
                        else "it runs in the browser, not on the server)")
            assert response.json()["detail"].split(": this request does not fit the page (")[1] == expected
    check_still_serving(raw, app)


def test_one_admission_limit_and_the_refusal_is_the_apps_own_with_the_number_ahead(tiny_model_dir):
    # One batch row and one place in line: the third request, on any door, hears how many are ahead.
    with launched(tiny_model_dir, max_batch=1, queue_size=1) as running, RawApi(running.url) as raw:
        long = request_data(TUTORIAL_PROMPT, max_new_tokens=1000)
        sessions = [uuid.uuid4().hex for _ in range(2)]
        for session in sessions:
            assert raw.post_join(long, raw.fn_index(), session).status_code == 200
        wait_until(lambda: (running.engine.stats().running, running.engine.stats().waiting) == (1, 1), "a full engine")
        busy = "The server is busy; 2 requests are ahead of you. Please try again in a moment."
        assert raw.call(request_data("Hello")).error == busy
        assert raw.join(request_data("Hello")).error == busy
        chinese = RawApi(running.url, language="zh-CN")
        assert chinese.call(request_data("Hello")).error == "服务器繁忙，前面还有 2 个请求，请稍后再试。"
        chinese.http.close()
        for session in sessions:  # the page's Stop for both
            raw.run_now("stop_generate", session=session)
        wait_until(running.idle, "the engine to empty")
        check_still_serving(raw, running)


def test_reuse_seed_answers_only_a_seed(app, raw):
    assert raw.run_now("reuse_seed", ["12345"]) == ["12345"]
    assert raw.run_now("reuse_seed", ["x" * 100_000]) == [""]  # not a seed: nothing is echoed back
    assert json.dumps(raw.run_now("reuse_seed", [None])) == '[""]'
