"""Each teaching view in the launched app, driven by a real headless Chromium (tiny stand-in model).

Every test checks what the page shows against the engine run in-process with the
same settings and seed, and keeps a screenshot in artifacts/.
"""

from __future__ import annotations

import re
import time

import pytest

from gpt2demo.engine import NUM_CANDIDATES, generate_text
from gpt2demo.settings import SamplingSettings
from gpt2demo.teaching.lanes import run_lanes, strategy_lanes


from conftest import TUTORIAL_PROMPT
from launching import ARTIFACTS, chromium_browser, launched, needs_chromium

TIMEOUT_MS = 60_000
CHOSEN_BAR = "#f97316"  # next_token_chart.COLORS["chosen"]

pytestmark = [
    pytest.mark.browser,
    needs_chromium,
]


@pytest.fixture(scope="module")
def app(tiny_model_dir):
    """The real app, as app.py builds it (launch() passes prevent_thread_lock=True), closed in finally."""
    with launched(tiny_model_dir) as running:
        yield running.url, running.handlers


@pytest.fixture(scope="module")
def browser():
    with chromium_browser() as chromium:
        yield chromium


def open_tab(browser, url: str, tab: str, locale: str = "en-US"):
    """A fresh browser tab on the app, showing one of the teaching tabs."""
    page = browser.new_context(locale=locale, viewport={"width": 1280, "height": 1000}).new_page()
    page.goto(url)
    page.click(f"#tab-{tab}-button", timeout=TIMEOUT_MS)
    return page


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"views-{name}.png"), full_page=True)


def wait_for_text(page, selector: str, pattern: str) -> str:
    """The element's text once it matches the regular expression."""
    from playwright.sync_api import expect

    expect(page.locator(selector)).to_have_text(re.compile(pattern), timeout=TIMEOUT_MS)
    return page.inner_text(selector)


def token_ids_shown(page, selector: str) -> list[int]:
    return [int(i) for i in page.locator(f"{selector} .tv-box").evaluate_all("boxes => boxes.map(b => b.dataset.tokenId)")]


def open_settings(page, tab: str) -> None:
    page.locator(f"#tab-{tab}").get_by_text("Sampling settings").click()


def test_token_view_shades_each_token_and_shows_a_selected_steps_candidates(app, browser):
    url, handlers = app
    page = open_tab(browser, url, "inside")
    page.fill("#inside-prompt textarea", TUTORIAL_PROMPT)
    page.click("#inside-generate")
    status = wait_for_text(page, "#inside-status", r"finished")
    seed = int(re.search(r"seed (\d+)", status).group(1))
    expected = generate_text(handlers.service.model, TUTORIAL_PROMPT, SamplingSettings(max_new_tokens=40, seed=seed))

    assert status.startswith("40 tokens")
    assert token_ids_shown(page, "#inside-tokens") == expected.token_ids
    box = page.locator("#inside-tokens .tv-box").nth(5)
    shade = 0.08 + 0.77 * expected.steps[5].probability  # common.box_html: darker = more likely
    assert f"rgba(59, 130, 246, {shade:.3f})" in box.get_attribute("style")

    box.click()
    wait_for_text(page, "#inside-detail", r"Step 5: chose")
    rows = page.locator("#inside-detail tr[data-index]")
    assert [int(v) for v in rows.evaluate_all("rows => rows.map(r => r.dataset.value)")] == [
        c.token_id for c in expected.steps[5].candidates]
    assert page.locator("#inside-detail tr.tv-chosen").get_attribute("data-value") == str(expected.token_ids[5])
    assert page.locator("#inside-tokens .tv-selected").get_attribute("data-index") == "5"
    screenshot(page, "token-view")
    page.context.close()


def chart_state(page) -> str:
    bars = page.locator("#inside-chart svg path[aria-roledescription='bar']")
    return "|".join(bars.evaluate_all("bars => bars.map(b => b.getAttribute('aria-label') + b.getAttribute('fill'))"))


def test_live_chart_follows_every_step_and_marks_the_chosen_token_and_the_cut(app, browser):
    url, _ = app
    page = open_tab(browser, url, "inside")
    open_settings(page, "inside")
    length = page.locator('#inside-max-new-tokens input[type="number"]')
    length.fill("1000")
    length.press("Enter")
    top_k = page.locator("#inside-top-k input")
    top_k.fill("4")
    top_k.press("Enter")
    page.fill("#inside-prompt textarea", TUTORIAL_PROMPT)
    page.click("#inside-generate")

    states = []  # the chart while the text is still being written
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while len(states) < 2:
        assert time.monotonic() < deadline, f"saw only {len(states)} chart states while generating"
        status = page.inner_text("#inside-status")
        state = chart_state(page)
        if "generating" in status and state and (not states or state != states[-1]):
            states.append(state)
        page.wait_for_timeout(20)
    page.click("#inside-stop")  # long before the 1000th token
    status = wait_for_text(page, "#inside-status", r"stopped")
    assert int(status.split()[0]) < 1000
    bars = page.locator("#inside-chart svg path[aria-roledescription='bar']")
    fills = bars.evaluate_all("bars => bars.map(b => b.getAttribute('fill'))")
    assert len(fills) == NUM_CANDIDATES and fills.count(CHOSEN_BAR) == 1
    labels = bars.evaluate_all("bars => bars.map(b => b.getAttribute('aria-label'))")
    cut = [label for label in labels if "cut off" in label]
    assert len(cut) == NUM_CANDIDATES - 4  # top-k = 4: the 5th candidate on is grey
    # The chart is the newest step, as the step table (drawn from the same Step) lists it.
    bar_tokens = [re.search(r"\d+\. (.*?); %:", label).group(1) for label in labels]
    table_tokens = page.locator("#inside-detail tr[data-index] code").evaluate_all("codes => codes.map(c => c.textContent)")
    assert bar_tokens == table_tokens
    assert f"4 of the {NUM_CANDIDATES} most likely stay in the running (top-k = 4)" in page.inner_text("#inside-cutoff")
    screenshot(page, "next-token-chart")
    page.context.close()


def test_step_mode_picks_undoes_and_branches(app, browser):
    url, _ = app
    page = open_tab(browser, url, "sampler")
    page.fill("#sampler-prompt textarea", TUTORIAL_PROMPT)
    page.click("#sampler-start")
    picked = []
    for count, rank in enumerate((2, 0, 7), start=1):
        row = page.locator(f"#sampler-candidates tr[data-index='{rank}']")
        picked.append(int(row.get_attribute("data-value")))
        row.click()
        wait_for_text(page, "#sampler-status", rf"{count} tokens ·")
    page.click("#sampler-sample")
    wait_for_text(page, "#sampler-status", r"4 tokens · 3 picked by you, 1 by the sampler")
    shown = token_ids_shown(page, "#sampler-text")
    assert shown[:3] == picked and len(shown) == 4
    assert page.locator("#sampler-text .tv-box.tv-you").count() == 3

    page.locator("#sampler-text .tv-box").nth(1).click()  # back to just before the second token
    wait_for_text(page, "#sampler-status", r"1 tokens ·")
    assert token_ids_shown(page, "#sampler-text") == picked[:1]
    branch = page.locator("#sampler-candidates tr[data-index='9']")
    branch_id = int(branch.get_attribute("data-value"))
    branch.click()
    wait_for_text(page, "#sampler-status", r"2 tokens ·")
    assert token_ids_shown(page, "#sampler-text") == [picked[0], branch_id]
    page.click("#sampler-undo")
    wait_for_text(page, "#sampler-status", r"1 tokens ·")
    screenshot(page, "step-mode")
    page.context.close()


def test_strategies_side_by_side_show_the_engines_lanes(app, browser):
    url, handlers = app
    page = open_tab(browser, url, "strategies")
    length = page.locator('#strategies-max-new-tokens input[type="number"]')
    length.fill("20")
    length.press("Enter")
    page.fill("#strategies-seed input", "7")
    page.fill("#strategies-prompt textarea", TUTORIAL_PROMPT)
    page.click("#strategies-compare")
    wait_for_text(page, "#strategies-status", r"19 batch steps for 4 lanes · seed 7")

    lanes = strategy_lanes(SamplingSettings(max_new_tokens=20, seed=7, temperature=0.8, top_k=40))
    *_, runs = run_lanes(handlers.service.model, TUTORIAL_PROMPT, lanes)
    for run in runs:
        assert token_ids_shown(page, f"#strategies-lanes [data-lane='{run.lane.key}']") == run.token_ids
    assert page.locator("#strategies-lanes .tv-lane").count() == 4
    assert page.locator("#strategies-lanes [data-lane='greedy'] .tv-diverge").count() == 0
    screenshot(page, "strategies")
    page.context.close()


def test_tokenizer_view_in_a_chinese_browser(app, browser):
    from playwright.sync_api import expect

    url, handlers = app
    page = open_tab(browser, url, "tokenizer", locale="zh-CN")
    expect(page.locator("#tab-tokenizer-button")).to_have_text("分词器")
    page.fill("#tokenizer-text textarea", "今天 Hello")
    wait_for_text(page, "#tokenizer-table", r"indexed_tokens = \[20015, 232, 25465, 18435\]")
    assert "8 个字符 → 4 个 token；1 个字符被拆成了多个 token" in page.inner_text("#tokenizer-table")
    assert page.locator("#tokenizer-table .tk-split").count() == 1
    assert page.locator("#tokenizer-table .tk-split .tv-box").all_inner_texts() == ["‹e4 bb›", "‹8a›"]
    screenshot(page, "tokenizer")
    page.context.close()


def test_cost_lesson_times_both_methods(app, browser):
    url, _ = app
    page = open_tab(browser, url, "cost")
    page.fill("#cost-prompt textarea", TUTORIAL_PROMPT)
    page.locator("#cost-count").get_by_role("radio", name="25").check()
    page.click("#cost-run")
    status = wait_for_text(page, "#cost-status", r"Both wrote the same text")
    assert re.search(r"tutorial: whole text every step: [\d.]+ tokens/s · KV cache: newest token only: [\d.]+ tokens/s", status)
    table = page.inner_text("#cost-table")
    assert "first 25 tokens" in table and "KV cache is" in table
    lines = page.locator("#cost-plot svg path[aria-roledescription='line mark']")
    assert lines.count() == 2
    screenshot(page, "cost")
    page.context.close()
