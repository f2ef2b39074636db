"""Launch the real app and a real browser for the tests that need them."""

from __future__ import annotations

import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import gradio as gr
import pytest

from gpt2demo.ui.handlers import Handlers
from gpt2demo.ui.server import ServerOptions, build_demo, launch
from gpt2demo.ui.service import ModelService

DEADLINE_SECONDS = 60  # anything still pending after this long is a hang
CHROMIUM = Path("/usr/bin/chromium")  # Debian's; Playwright cannot download browsers here
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"

# Browser tests skip only outside CI, where a developer may lack Chromium; in CI they always run.
needs_chromium = pytest.mark.skipif(not os.environ.get("CI") and not CHROMIUM.exists(),
                                    reason="no /usr/bin/chromium (required in CI, where this test always runs)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class LaunchedApp:
    url: str
    handlers: Handlers
    demo: gr.Blocks

    @property
    def service(self) -> ModelService:
        return self.handlers.service


@contextmanager
def launched(model_dir, require_model: bool = True, **options) -> Iterator[LaunchedApp]:
    """The real app (build_demo + launch, as app.py does) on a free loopback port, closed afterwards."""
    options = ServerOptions(port=free_port(), **{"max_batch": 4, "queue_size": 8, **options})
    service = ModelService(str(model_dir), "cpu", max_batch=options.max_batch, queue_size=options.queue_size).start()
    demo, handlers = build_demo(service, options)
    try:
        url = launch(demo, handlers, options, block=False)
        assert service.ready.wait(DEADLINE_SECONDS), "the model did not finish loading"
        assert service.model is not None or not require_model, service.error
        yield LaunchedApp(url, handlers, demo)
    finally:
        demo.close()
        service.close()


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


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
