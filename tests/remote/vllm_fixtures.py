"""What the vLLM tests share: one real server per test module, engines and the app on it, the server's own counters.

Each module starts its server once (tools/vllm_server.py builds the cached venv on
the first run, ~5 minutes, then reuses it) and stops it in a finally. At most one
server runs at a time: pytest ends a module's fixtures before the next module starts.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Iterator

import httpx
import pytest

from gpt2demo.serving import start_engine
from gpt2demo.serving.remote import RemoteEngine
from gpt2demo.ui.server import ServerOptions, build_demo, launch
from launching import DEADLINE_SECONDS, LaunchedApp, free_port
from tools.vllm_server import VllmServer


def asked_for(config) -> bool:
    """True when the run's -m expression names vllm itself (-m vllm), not when another -m replaced pytest.ini's."""
    expression = config.getoption("markexpr") or ""
    return "vllm" in expression and "not vllm" not in expression


@contextmanager
def vllm_server(request, model, **options) -> Iterator[VllmServer]:
    """A started vLLM server on a checkpoint folder, stopped afterwards however the tests ended.

    `bash tests/run.sh -m "not browser"` replaces pytest.ini's -m "not vllm": the tests
    are then collected, but skipped here rather than starting servers nobody asked for.
    """
    if not asked_for(request.config):
        pytest.skip("vLLM tests run only when asked for: python -m pytest -m vllm tests/remote")
    server = VllmServer(model, **options)
    try:
        yield server.start()
    finally:
        server.stop()


def ready_remote(url: str, spec: str | None = None, **options) -> RemoteEngine:
    """A started RemoteEngine, ready (the caller closes it)."""
    engine = RemoteEngine(url, spec, **options).start()
    state = engine.wait_ready_blocking(DEADLINE_SECONDS)
    assert state.phase == "ready", state.error
    return engine


@contextmanager
def launched_remote(url: str, **options) -> Iterator[LaunchedApp]:
    """The app as `python app.py --engine URL` builds it, on a free loopback port, closed afterwards."""
    options = ServerOptions(port=free_port(), **options)  # app.py's defaults: 32 in the batch, 64 waiting
    engine = start_engine(None, None, options.max_batch, options.queue_size, engine_url=url)
    try:
        demo, ctx = build_demo(engine, options)
        try:
            local_url = launch(demo, ctx, options, block=False)
            state = engine.wait_ready_blocking(DEADLINE_SECONDS)
            assert state.phase == "ready", state.error
            yield LaunchedApp(local_url, demo, ctx)
        finally:
            demo.close()
    finally:
        engine.close()


def server_counter(server: VllmServer, name: str) -> float:
    """One of the server's Prometheus numbers (e.g. vllm:num_requests_running), summed over its labels."""
    text = httpx.get(server.url.removesuffix("/v1") + "/metrics", timeout=DEADLINE_SECONDS).text
    values = re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.eE+-]+)$", text, flags=re.MULTILINE)
    assert values, f"the server reports no {name}"
    return sum(float(value) for value in values)


def requests_running(server: VllmServer) -> float:
    return server_counter(server, "vllm:num_requests_running")


def tokens_generated(server: VllmServer) -> float:
    return server_counter(server, "vllm:generation_tokens_total")
