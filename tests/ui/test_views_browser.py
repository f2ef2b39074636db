"""Each teaching view in the launched app, driven by a real headless Chromium (tiny stand-in model).

Every test checks what the page shows against the model run in this process with
the same settings and seed, and keeps a screenshot in artifacts/.
"""

from __future__ import annotations

import asyncio
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from gpt2demo.generation import NUM_CANDIDATES, generate_text
from gpt2demo.settings import SamplingSettings
from gpt2demo.teaching.lanes import run_lanes, strategy_lanes
from gpt2demo.ui.widgets.chart import COLORS

from conftest import TUTORIAL_PROMPT
# app, browser: module fixtures
from launching import app, ARTIFACTS, browser, DEADLINE_SECONDS, needs_chromium, open_app_page

TIMEOUT_MS = 60_000
CHOSEN_BAR = COLORS["chosen"]
PROMPT_BOXES = {  # each tab's prompt box (the tokenizer's text box shares the prompt too)
    "generate": "#prompt textarea", "inside": "#inside-prompt textarea", "sampler": "#sampler-prompt textarea",
    "strategies": "#strategies-prompt textarea", "tokenizer": "#tokenizer-text textarea", "cost": "#cost-prompt textarea",
}

pytestmark = [
    pytest.mark.browser,
    needs_chromium,
]


def show_tab(page, tab: str) -> None:
    page.click(f"#tab-{tab}-button", timeout=TIMEOUT_MS)


def open_tab(browser, url: str, tab: str, locale: str = "en-US"):
    """A fresh browser tab on the app, showing one of the teaching tabs."""
    page = open_app_page(browser, url, locale=locale)
    show_tab(page, tab)
    return page


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"views-{name}.png"), full_page=True)


def wait_for_text(page, selector: str, pattern: str) -> str:
    """The element's text, without the blanks around it, once it matches the regular expression (^ and $ included)."""
    from playwright.sync_api import expect

    expect(page.locator(selector)).to_have_text(re.compile(r"^\s*(?:" + pattern + r")\s*$", re.S), timeout=TIMEOUT_MS)
    return page.inner_text(selector).strip()


def token_ids_shown(page, selector: str) -> list[int]:
    return [int(i) for i in page.locator(f"{selector} .tv-box").evaluate_all("boxes => boxes.map(b => b.dataset.tokenId)")]


def open_settings(page, tab: str) -> None:
    page.locator(f"#tab-{tab}").get_by_text("Sampling settings").click()


def test_every_tab_starts_with_the_tutorials_prompt_and_a_prompt_typed_in_one_is_in_the_others(app, browser):
    from playwright.sync_api import expect

    page = open_app_page(browser, app.url)
    for tab, box in PROMPT_BOXES.items():
        show_tab(page, tab)
        expect(page.locator(box)).to_have_value(TUTORIAL_PROMPT, timeout=TIMEOUT_MS)
    show_tab(page, "generate")
    page.fill(PROMPT_BOXES["generate"], "")
    page.locator(PROMPT_BOXES["generate"]).press_sequentially("Once upon a time,")  # typed, key by key
    show_tab(page, "inside")
    expect(page.locator(PROMPT_BOXES["inside"])).to_have_value("Once upon a time,", timeout=TIMEOUT_MS)
    # Put in without a keystroke (as a paste or an input method does): shared when the box is left.
    page.fill(PROMPT_BOXES["inside"], "今天天气很好，")
    for tab in ("generate", "cost", "tokenizer"):
        show_tab(page, tab)
        expect(page.locator(PROMPT_BOXES[tab])).to_have_value("今天天气很好，", timeout=TIMEOUT_MS)
    page.context.close()


def test_token_view_shades_each_token_and_shows_a_selected_steps_candidates(app, browser, tiny_model):
    page = open_tab(browser, app.url, "inside")
    page.click("#inside-generate")  # on the tutorial's prompt, which the box starts with
    status = wait_for_text(page, "#inside-status", r"40 tokens · finished: length reached · seed \d+")
    seed = int(re.search(r"seed (\d+)", status).group(1))
    expected = generate_text(tiny_model, TUTORIAL_PROMPT, SamplingSettings(max_new_tokens=40, seed=seed))

    assert status == f"40 tokens · finished: length reached · seed {seed}"
    assert token_ids_shown(page, "#inside-tokens") == expected.token_ids
    box = page.locator("#inside-tokens .tv-box").nth(5)
    shade = 0.08 + 0.77 * expected.steps[5].probability  # widgets.tokens.box_html: darker = more likely
    assert f"rgba(59, 130, 246, {shade:.3f})" in box.get_attribute("style")

    box.click()
    wait_for_text(page, "#inside-detail h4", r"Step 5: chose .* with p = [\d.]+%")
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


def chart_and_table_tokens(page) -> tuple[list[str], list[str]]:
    """The chart's candidates and the step table's, in order: the same Step draws both."""
    labels = page.locator("#inside-chart svg path[aria-roledescription='bar']").evaluate_all(
        "bars => bars.map(b => b.getAttribute('aria-label'))")
    bar_tokens = [re.search(r"\d+\. (.*?); %:", label).group(1) for label in labels]
    table_tokens = page.locator("#inside-detail tr[data-index] code").evaluate_all("codes => codes.map(c => c.textContent)")
    return bar_tokens, table_tokens


def test_live_chart_follows_every_step_and_marks_the_chosen_token_and_the_cut(app, browser):
    from playwright.sync_api import expect

    page = open_tab(browser, app.url, "inside")
    open_settings(page, "inside")
    # A short run first: the chart's first drawing loads its plotting library, which on a
    # fast machine took longer than the tiny model's whole 1000-token run below.
    page.click("#inside-generate")
    wait_for_text(page, "#inside-status", r"\d+ tokens · (?!generating).+ · seed \d+")
    expect(page.locator("#inside-chart svg path[aria-roledescription='bar']")).to_have_count(NUM_CANDIDATES,
                                                                                               timeout=TIMEOUT_MS)
    length = page.locator('#inside-max-new-tokens input[type="number"]')
    length.fill("1000")
    length.press("Enter")
    top_k = page.locator("#inside-top-k input")
    top_k.fill("4")
    top_k.press("Enter")
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
    status = wait_for_text(page, "#inside-status", r"\d+ tokens · stopped · seed \d+")
    assert int(status.split()[0]) < 1000
    bars = page.locator("#inside-chart svg path[aria-roledescription='bar']")
    fills = bars.evaluate_all("bars => bars.map(b => b.getAttribute('fill'))")
    assert len(fills) == NUM_CANDIDATES and fills.count(CHOSEN_BAR) == 1
    labels = bars.evaluate_all("bars => bars.map(b => b.getAttribute('aria-label'))")
    cut = [label for label in labels if "cut off" in label]
    assert len(cut) == NUM_CANDIDATES - 4  # top-k = 4: the 5th candidate on is grey
    # The chart is the newest step, as the step table (drawn from the same Step) lists it, once the
    # browser has drawn the last update (the chart is drawn after the table).
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while (tokens := chart_and_table_tokens(page))[0] != tokens[1]:
        assert time.monotonic() < deadline, f"the chart never showed the table's step: {tokens}"
        page.wait_for_timeout(20)
    assert (page.inner_text("#inside-cutoff")
            == f"4 of the {NUM_CANDIDATES} most likely stay in the running (top-k = 4); the rest can never be drawn.")
    screenshot(page, "next-token-chart")
    page.context.close()


def test_step_mode_picks_undoes_and_branches(app, browser):
    page = open_tab(browser, app.url, "sampler")
    page.click("#sampler-start")
    picked = []
    for count, rank in enumerate((2, 0, 7), start=1):
        row = page.locator(f"#sampler-candidates tr[data-index='{rank}']")
        picked.append(int(row.get_attribute("data-value")))
        row.click()
        wait_for_text(page, "#sampler-status", rf"{count} tokens · {count} picked by you, 0 by the sampler · seed \d+")
    page.click("#sampler-sample")
    wait_for_text(page, "#sampler-status", r"4 tokens · 3 picked by you, 1 by the sampler · seed \d+")
    shown = token_ids_shown(page, "#sampler-text")
    assert shown[:3] == picked and len(shown) == 4
    assert page.locator("#sampler-text .tv-box.tv-you").count() == 3

    page.locator("#sampler-text .tv-box").nth(1).click()  # back to just before the second token
    wait_for_text(page, "#sampler-status", r"1 tokens · 1 picked by you, 0 by the sampler · seed \d+")
    assert token_ids_shown(page, "#sampler-text") == picked[:1]
    branch = page.locator("#sampler-candidates tr[data-index='9']")
    branch_id = int(branch.get_attribute("data-value"))
    branch.click()
    wait_for_text(page, "#sampler-status", r"2 tokens · 2 picked by you, 0 by the sampler · seed \d+")
    assert token_ids_shown(page, "#sampler-text") == [picked[0], branch_id]
    page.click("#sampler-undo")
    wait_for_text(page, "#sampler-status", r"1 tokens · 1 picked by you, 0 by the sampler · seed \d+")
    assert token_ids_shown(page, "#sampler-text") == picked[:1]
    screenshot(page, "step-mode")
    page.context.close()


def final_lanes(engine, prompt: str, lanes):
    """The lanes as run_lanes leaves them, on an engine of this process."""

    async def run():
        async for runs in run_lanes(engine, prompt, lanes):
            pass
        return runs

    # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, run()).result(timeout=DEADLINE_SECONDS)


def test_strategies_side_by_side_show_the_engines_lanes(app, browser, engine):
    page = open_tab(browser, app.url, "strategies")
    length = page.locator('#strategies-max-new-tokens input[type="number"]')
    length.fill("20")
    length.press("Enter")
    page.fill("#strategies-seed input", "7")
    page.click("#strategies-compare")
    # One batch step per token: the four prompts are read together, then decoded together.
    wait_for_text(page, "#strategies-status", r"20 batch steps for 4 lanes · seed 7")

    lanes = strategy_lanes(SamplingSettings(max_new_tokens=20, seed=7, temperature=0.8, top_k=40))
    runs = final_lanes(engine, TUTORIAL_PROMPT, lanes)  # another engine on the same weights
    for run in runs:
        assert token_ids_shown(page, f"#strategies-lanes [data-lane='{run.lane.key}']") == run.token_ids
    assert page.locator("#strategies-lanes .tv-lane").count() == 4
    assert page.locator("#strategies-lanes [data-lane='greedy'] .tv-diverge").count() == 0
    screenshot(page, "strategies")
    page.context.close()


def test_tokenizer_view_in_a_chinese_browser(app, browser):
    from playwright.sync_api import expect

    page = open_tab(browser, app.url, "tokenizer", locale="zh-CN")
    expect(page.locator("#tab-tokenizer-button")).to_have_text("分词器")
    page.fill("#tokenizer-text textarea", "今天 Hello")
    wait_for_text(page, "#tokenizer-table .tk-ids", r"indexed_tokens = \[20015, 232, 25465, 18435\]")
    assert "8 个字符 → 4 个 token；1 个字符被拆成了多个 token" in page.inner_text("#tokenizer-table")
    assert page.locator("#tokenizer-table .tk-split").count() == 1
    assert page.locator("#tokenizer-table .tk-split .tv-box").all_inner_texts() == ["‹e4 bb›", "‹8a›"]
    screenshot(page, "tokenizer")
    page.context.close()


def test_cost_lesson_times_both_methods(app, browser):
    page = open_tab(browser, app.url, "cost")
    page.locator("#cost-count").get_by_role("radio", name="25").check()
    page.click("#cost-run")
    status = wait_for_text(page, "#cost-status", r".* · Both wrote the same text\.")
    assert re.fullmatch(r"tutorial: whole text every step: [\d.]+ tokens/s · KV cache: newest token only: [\d.]+ tokens/s"
                        r" · Both wrote the same text\.", status), status
    table = page.inner_text("#cost-table")
    assert "first 25 tokens" in table and "KV cache is" in table
    lines = page.locator("#cost-plot svg path[aria-roledescription='line mark']")
    assert lines.count() == 2
    screenshot(page, "cost")
    page.context.close()
