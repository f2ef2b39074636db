"""The server's doors, guarded before Gradio sees a request (ASGI middleware, outermost first).

- RequireLogin: with --auth, every route but the login page and what it loads needs the
  session's cookie, so a route Gradio adds in a later release is closed too;
- LimitLogins: at most LOGIN_ATTEMPTS failed passwords per client address a minute;
- GuardRequests: bodies of at most MAX_BODY_BYTES, uploads refused, and every event call
  (queue join, the /call and /run routes) checked against the page's own events: a known
  event, the number of inputs it takes, named inputs it knows. A refusal is JSON
  {"detail": message, "error": message} in the client's language, never a traceback.

They read the app Gradio builds (its events and login tokens) through scope["app"].
"""

from __future__ import annotations

import inspect
import json
import time
from collections import defaultdict, deque

import gradio as gr

from gpt2demo.errors import BadRequest
from gpt2demo.ui.i18n import describe_error, message, pick_language

MAX_BODY_BYTES = 512 * 1024  # a 20,000-character prompt escaped as JSON is ~120 KB; a whole request with it fits
LOGIN_ATTEMPTS = 10  # failed logins per client address...
LOGIN_WINDOW_SECONDS = 60.0  # ...in this long; then it waits until the oldest is a minute old
EVENT_ROUTES = ("/gradio_api/queue/join", "/gradio_api/run/", "/gradio_api/api/", "/gradio_api/call/")
# What the login page itself loads before anyone is logged in (Gradio's own page, its files).
PUBLIC_PREFIXES = ("/assets/", "/static/", "/svelte/", "/pwa_icon")
PUBLIC_PATHS = {"/", "/login", "/login/", "/logout", "/config", "/config/", "/favicon.ico", "/theme.css",
                "/robots.txt", "/manifest.json", "/gradio_api/login_check", "/gradio_api/login_check/",
                "/gradio_api/theme.css",  # the login page's look
                "/gradio_api/startup-events"}  # called by launch() itself; it only starts the queue once


def header(scope, name: bytes) -> str:
    return next((value.decode("latin-1") for key, value in scope.get("headers", []) if key == name), "")


def language_of(scope) -> str:
    return pick_language(header(scope, b"accept-language"))


async def refuse(send, status: int, text: str) -> None:
    body = json.dumps({"detail": text, "error": text}, ensure_ascii=False).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json; charset=utf-8"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class RequireLogin:
    """401 for every route but the login page's own, unless the request carries a valid login cookie."""

    def __init__(self, app, enabled: bool = True) -> None:
        self.app, self.enabled = app, enabled

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.enabled or public(scope["path"]) or logged_in(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await refuse(send, 401, message(language_of(scope), "login_required"))


def public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def logged_in(scope) -> bool:
    app = scope.get("app")
    tokens, cookie_id = getattr(app, "tokens", None), getattr(app, "cookie_id", None)
    if tokens is None or cookie_id is None:
        return False
    cookies = {}
    for part in header(scope, b"cookie").split(";"):
        name, _, value = part.strip().partition("=")
        cookies[name] = value
    token = cookies.get(f"access-token-{cookie_id}") or cookies.get(f"access-token-unsecure-{cookie_id}")
    return token is not None and token in tokens


class LimitLogins:
    """At most LOGIN_ATTEMPTS failed logins a minute from one address; then a wait, said in words."""

    def __init__(self, app, attempts: int = LOGIN_ATTEMPTS, window: float = LOGIN_WINDOW_SECONDS, clock=time.monotonic) -> None:
        self.app, self.attempts, self.window, self.clock = app, attempts, window, clock
        self.failures: dict[str, deque[float]] = defaultdict(deque)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].rstrip("/") != "/login":
            await self.app(scope, receive, send)
            return
        address = (scope.get("client") or ("?", 0))[0]
        now = self.clock()
        failures = self.failures[address]
        while failures and now - failures[0] >= self.window:
            failures.popleft()
        if len(failures) >= self.attempts:
            wait = max(1, round(self.window - (now - failures[0])))
            await refuse(send, 429, message(language_of(scope), "login_wait", attempts=self.attempts, seconds=wait))
            return
        status = {}

        async def watch(event) -> None:
            if event["type"] == "http.response.start":
                status["code"] = event["status"]
            await send(event)

        await self.app(scope, receive, watch)
        if status.get("code", 200) >= 400:
            failures.append(self.clock())
        elif not failures:
            self.failures.pop(address, None)  # nothing to remember of an address that logged in cleanly


class GuardRequests:
    """Bounded bodies, no uploads, and event calls that fit the page's events (see the module docstring)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        language = language_of(scope)
        path = scope["path"]
        if path.rstrip("/").endswith("/upload"):
            # max_file_size=0 refuses uploads with content, but Gradio still stores an empty file;
            # the page has no upload component, so the route has no legitimate use.
            await refuse(send, 403, message(language, "uploads_refused"))
            return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            event = await receive()
            body += event.get("body", b"")
            more = event.get("more_body", False)
            if len(body) > MAX_BODY_BYTES:
                await refuse(send, 413, message(language, "too_large", limit=MAX_BODY_BYTES // 1024))
                return
        if path.startswith(EVENT_ROUTES) and not path.rstrip("/").endswith("/cancel"):
            problem = check_event_call(scope.get("app"), path, body)
            if problem is not None:
                await refuse(send, 400, describe_error(problem, language))
                return
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()  # a disconnect, after the body
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def check_event_call(app, path: str, body: bytes) -> BadRequest | None:
    """Why a call of one of the page's events cannot run as sent (None when it can)."""
    blocks = app.get_blocks() if app is not None and hasattr(app, "get_blocks") else None
    if blocks is None:
        return None
    try:
        payload = json.loads(body or b"null")
    except ValueError:
        return BadRequest("event", event=path.rsplit("/", 1)[-1], problem="the body is not JSON")
    if path.startswith("/gradio_api/call/"):
        return check_named_call(blocks, path, payload)
    if not isinstance(payload, dict):
        return BadRequest("event", event="queue", problem="the body is not a JSON object")
    fn_index = payload.get("fn_index")
    if isinstance(fn_index, bool) or not isinstance(fn_index, int) or fn_index not in blocks.fns:
        if fn_index is None and path.startswith(("/gradio_api/run/", "/gradio_api/api/")):
            return check_inputs(find_api(blocks, path.rstrip("/").rsplit("/", 1)[-1]), payload.get("data"))
        return BadRequest("event", event="queue", problem=f"no event number {str(fn_index)[:20]}")
    return check_inputs(blocks.fns[fn_index], payload.get("data"))


def find_api(blocks, api_name: str):
    return next((fn for fn in blocks.fns.values() if fn.api_name == api_name), None)


def check_inputs(fn, data, simple: bool = False) -> BadRequest | None:
    if fn is None:
        return BadRequest("event", event="call", problem="no such event")
    inputs = [block for block in fn.inputs if not (simple and block.skip_api)]
    name = fn.api_name or "event"
    if fn.fn is None:  # the page's own JavaScript does the work (Gradio would answer a bare 500)
        return BadRequest("event", event=name, problem="it runs in the browser, not on the server")
    if not isinstance(data, list):
        return BadRequest("event", event=name, problem="'data' must be a list of input values")
    if len(data) != len(inputs):
        return BadRequest("inputs", event=name, expected=len(inputs), got=len(data))
    for block, value in zip(inputs, data):
        if isinstance(block, gr.Dataset) and not example_number(value, len(block.raw_samples)):
            return BadRequest("event", event=name, problem=f"an example's number is expected, 0 to {len(block.raw_samples) - 1}")
    return None


def example_number(value, examples: int) -> bool:
    """What a click on a gr.Dataset sends: the example's index (Gradio fails on anything else with a bare 500)."""
    return value is None or (type(value) is int and 0 <= value < examples)


def check_named_call(blocks, path: str, payload) -> BadRequest | None:
    # /gradio_api/call/{api_name} takes {"data": [...]}; /call/v2/{api_name} takes named inputs.
    parts = path.rstrip("/").split("/")
    if len(parts) != 4 + (parts[3] == "v2"):
        return None  # /call/{api_name}/{event_id}: the result stream, a GET
    api_name = parts[-1]
    fn = find_api(blocks, api_name)
    if fn is None:
        return BadRequest("event", event=api_name[:40], problem="no such event")
    if parts[3] != "v2":
        return check_inputs(fn, payload.get("data") if isinstance(payload, dict) else None, simple=True)
    if not isinstance(payload, dict):
        return BadRequest("event", event=api_name, problem="the body must be an object of named inputs")
    known = set(parameter_names(fn)) | {"oauth_token"}
    unknown = sorted(set(payload) - known)
    if unknown:
        return BadRequest("unknown_inputs", event=api_name, got=", ".join(unknown)[:80],
                          expected=", ".join(parameter_names(fn)))
    return None


def parameter_names(fn) -> list[str]:
    """The handler's own parameter names, which Gradio uses for named inputs."""
    try:
        parameters = inspect.signature(fn.fn).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in parameters if p.name not in ("request", "progress")][: len(fn.inputs)]
