"""A real headless Chromium against the launched app: watch the text grow, Stop it, close a tab.

Runs the GPT-2-small-shaped stand-in (124M parameters) so that a long generation
takes long enough to click Stop in the middle of it.
"""

from __future__ import annotations

import time

import pytest

from conftest import TUTORIAL_PROMPT
from launching import ARTIFACTS, chromium_browser, launched, needs_chromium, wait_until

LONG = 1000  # new tokens asked for: minutes of work, so only Stop can end it in time
TIMEOUT_MS = 60_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    needs_chromium,
]


@pytest.fixture(scope="module")
def app(small_model_dir):
    with launched(small_model_dir) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    with chromium_browser() as chromium:
        yield chromium


def open_page(browser, url: str, locale: str = "en-US"):
    page = browser.new_context(locale=locale, viewport={"width": 1280, "height": 1000}).new_page()
    page.goto(url)
    page.wait_for_selector("#generate", timeout=TIMEOUT_MS)
    return page


def start_long_generation(page) -> None:
    # The length first: the prompt's change event then keeps it (it only lowers a length the window cannot hold).
    length = page.locator('#max-new-tokens input[type="number"]')
    length.fill(str(LONG))
    length.press("Enter")
    page.fill("#prompt textarea", TUTORIAL_PROMPT)
    page.click("#generate")


def watch_states(page, count: int) -> list[str]:
    """The output's texts until `count` different ones were seen, each extending the one before."""
    states: list[str] = []
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while len(states) < count:
        assert time.monotonic() < deadline, f"saw only {states!r}"
        text = page.inner_text("#output .gpt2demo-output") if page.locator("#output .gpt2demo-output").count() else ""
        if text.startswith(TUTORIAL_PROMPT) and (not states or text != states[-1]):
            assert not states or text.startswith(states[-1])
            states.append(text)
        page.wait_for_timeout(20)
    return states


def the_only_generation(handlers):
    wait_until(lambda: len(handlers.runs.snapshot()) == 1, "the page's run")
    (run,) = handlers.runs.snapshot()
    wait_until(lambda: run.ticket is not None, "the run's ticket")
    return run.ticket.generation


def test_text_grows_token_by_token_and_stop_really_stops(app, browser):
    from playwright.sync_api import expect

    handlers, service = app.handlers, app.handlers.service
    page = open_page(browser, app.url)
    expect(page.locator("#model-panel")).to_contain_text("124,439,808 parameters")
    start_long_generation(page)
    watch_states(page, 3)
    generation = the_only_generation(handlers)

    page.click("#stop")
    expect(page.locator("#status")).to_contain_text("stopped", timeout=TIMEOUT_MS)
    page.click("#plain-text-panel .label-wrap")  # the plain text sits in a closed accordion
    final_text = page.input_value("#plain-text textarea")
    status = page.inner_text("#status")

    # The engine stopped: the request left the batch and nothing runs for it any more.
    assert generation.finish_reason == "stopped" and len(generation.new_token_ids) < LONG
    wait_until(lambda: service.stats().running == 0, "the batch to empty")
    assert service.stats().rows == 0
    # The page shows exactly what the engine made, and says why it ended.
    tokens = len(generation.new_token_ids)
    assert final_text == TUTORIAL_PROMPT + service.model.tokenizer.decode(generation.new_token_ids)
    assert status.split(" · ")[0] == f"{tokens} tokens"
    assert status.split(" · ")[-2:] == ["stopped", f"seed {generation.seed}"]
    # ... and the text no longer grows: its handler has ended, so nothing more can come.
    wait_until(lambda: len(handlers.runs) == 0, "the page's handler to end")
    expect(page.locator("#classroom")).to_have_text("Requests running: 0 · waiting: 0", timeout=TIMEOUT_MS)
    assert page.input_value("#plain-text textarea") == final_text

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-stopped.png"), full_page=True)
    page.context.close()


def test_closing_the_tab_stops_its_generation(app, browser):
    handlers, service = app.handlers, app.handlers.service
    page = open_page(browser, app.url)
    start_long_generation(page)
    watch_states(page, 3)
    generation = the_only_generation(handlers)

    page.context.close()
    wait_until(lambda: generation.finish_reason is not None, "the generation to end")
    assert generation.finish_reason == "stopped" and len(generation.new_token_ids) < LONG
    wait_until(lambda: service.stats().running == 0, "the batch to empty")
    assert service.stats().rows == 0
    wait_until(lambda: len(handlers.runs) == 0, "the page's handler to end")  # it ends at its next yield


def test_the_page_follows_a_chinese_browser(app, browser):
    from playwright.sync_api import expect

    page = open_page(browser, app.url, locale="zh-CN")
    expect(page.locator("#generate")).to_have_text("生成")
    expect(page.locator("#stop")).to_have_text("停止")
    expect(page.locator("#model-panel")).to_contain_text("模型：")
    expect(page.locator("#classroom")).to_contain_text("正在生成：")
    page.context.close()
