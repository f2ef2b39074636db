"""A real headless Chromium against the launched app: watch the text grow, Stop it, close a tab.

Runs the GPT-2-small-shaped stand-in (124M parameters) so that a long generation
takes long enough to click Stop in the middle of it.
"""

from __future__ import annotations

import re
import time

import pytest

from gpt2demo.generation import generate_text
from gpt2demo.model import load_model
from gpt2demo.settings import SamplingSettings

from conftest import TUTORIAL_PROMPT
# browser: a module fixture
from launching import ARTIFACTS, browser, launched, needs_chromium, open_app_page, wait_until

LONG = 1000  # new tokens asked for: minutes of work, so only Stop can end it in time
SEED = 1234  # so the stopped text can be checked against the model run alone
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


def start_long_generation(page) -> None:
    # The prompt box starts with the tutorial's prompt; the length's change event keeps the
    # length (it only lowers one the window cannot hold).
    assert page.input_value("#prompt textarea") == TUTORIAL_PROMPT
    length = page.locator('#max-new-tokens input[type="number"]')
    length.fill(str(LONG))
    length.press("Enter")
    page.fill("#seed input", str(SEED))
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


def test_text_grows_token_by_token_and_stop_really_stops(app, browser, small_model_dir):
    from playwright.sync_api import expect

    wait_until(app.idle, "an idle engine")
    before = app.forward_passes()
    page = open_app_page(browser, app.url)
    expect(page.locator("#model-panel")).to_contain_text("124,439,808 parameters")
    start_long_generation(page)
    watch_states(page, 3)
    assert app.engine.stats().running == 1

    page.click("#stop")
    expect(page.locator("#status")).to_contain_text("stopped", timeout=TIMEOUT_MS)
    page.click("#plain-text-panel .label-wrap")  # the plain text sits in a closed accordion
    final_text = page.input_value("#plain-text textarea")
    status = page.inner_text("#status")

    # The engine stopped: the request left the batch and nothing runs for it any more.
    wait_until(app.idle, "the batch to empty and the page's handler to end")
    assert app.engine.stats().cache_bytes == 0
    passes = app.forward_passes()
    tokens = int(re.match(r"(\d+) tokens · ", status).group(1))
    assert 0 < tokens < LONG and passes - before < LONG
    # The page shows exactly what the model writes with that seed, and says why it ended.
    assert status.split(" · ")[-2:] == ["stopped", f"seed {SEED}"]
    model = load_model(str(small_model_dir), "cpu")  # the engine process's weights, in this process
    expected = generate_text(model, TUTORIAL_PROMPT, SamplingSettings(max_new_tokens=tokens, seed=SEED))
    assert final_text == TUTORIAL_PROMPT + expected.text
    # ... and the text no longer grows: its handler has ended, so nothing more can come.
    expect(page.locator("#classroom")).to_have_text("Requests running: 0 · waiting: 0", timeout=TIMEOUT_MS)
    assert page.input_value("#plain-text textarea") == final_text and app.forward_passes() == passes

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-stopped.png"), full_page=True)
    page.context.close()


def test_closing_the_tab_stops_its_generation(app, browser):
    wait_until(app.idle, "an idle engine")
    before = app.forward_passes()
    page = open_app_page(browser, app.url)
    start_long_generation(page)
    watch_states(page, 3)
    assert app.engine.stats().running == 1

    page.context.close()
    wait_until(app.idle, "the batch to empty and the page's handler to end")  # it ends at its next yield
    assert app.forward_passes() - before < LONG and app.engine.stats().cache_bytes == 0


def test_the_page_follows_a_chinese_browser(app, browser):
    from playwright.sync_api import expect

    page = open_app_page(browser, app.url, locale="zh-CN")
    expect(page.locator("#generate")).to_have_text("生成")
    expect(page.locator("#stop")).to_have_text("停止")
    expect(page.locator("#model-panel")).to_contain_text("模型：")
    expect(page.locator("#classroom")).to_contain_text("正在生成：")
    page.context.close()
