"""Projector mode, dark mode, a phone's width, and Stop on a busy machine, in a real headless Chromium.

Each look is measured (font sizes, contrast ratios, classes, the address, boxes inside
the viewport) and kept as a screenshot in artifacts/screenshots/.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from gpt2demo.ui.widgets.display import PROJECTOR_SCALE

# app, browser: module fixtures
from launching import app, ARTIFACTS, browser, launched, needs_chromium, open_app_page, settle

TIMEOUT_MS = 60_000
SCREENSHOTS = ARTIFACTS / "screenshots"
PHONE = {"width": 390, "height": 844}  # an iPhone 12-15's CSS pixels
STOP_CLICK_MS = 1000  # the bound: Stop takes effect within a second, busy machine or not
LONG = 1000  # new tokens asked for when only Stop should end a run

pytestmark = [
    pytest.mark.browser,
    needs_chromium,
]

# The contrast ratio (WCAG 2) of an element's text against the first opaque background behind it.
CONTRAST_JS = """(element) => {
  const rgb = (text) => text.match(/[\\d.]+/g).map(Number);
  const luminance = ([r, g, b]) => {
    const linear = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b);
  };
  let behind = element, background = null;
  while (behind && background === null) {
    const fill = rgb(getComputedStyle(behind).backgroundColor);
    if (fill.length === 3 || fill[3] === 1) background = fill.slice(0, 3);
    behind = behind.parentElement;
  }
  const a = luminance(rgb(getComputedStyle(element).color)), b = luminance(background || [255, 255, 255]);
  return {ratio: (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05), background: b};
}"""


def generate_short(page) -> None:
    """Run the Generate tab's default 100 tokens (quick on the tiny model) and wait for the end."""
    from playwright.sync_api import expect

    page.click("#generate", timeout=TIMEOUT_MS)
    ended = "(finished: length reached|结束：达到设定长度)"
    finished = re.compile(rf"^\s*100 (tokens|个 token) · .* · {ended} · ")
    expect(page.locator("#status")).to_have_text(finished, timeout=TIMEOUT_MS)


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"display-{name}.png"), full_page=True)


def font_px(page, selector: str) -> float:
    return float(page.locator(selector).first.evaluate("e => getComputedStyle(e).fontSize").removesuffix("px"))


def contrast(page, selector: str) -> dict:
    return page.locator(selector).first.evaluate(CONTRAST_JS)


def body_classes(page) -> set[str]:
    return set(page.evaluate("document.body.className").split())


def address_query(page) -> dict[str, str]:
    return dict(page.evaluate("[...new URL(location.href).searchParams.entries()]"))


OUTPUT = "#output .gpt2demo-output"
PROMPT_TEXT = "#output .gpt2demo-prompt"
CONTINUATION = "#output .gpt2demo-continuation"


def test_projector_switch_enlarges_the_text_raises_the_contrast_and_is_kept_in_the_address(app, browser):
    from playwright.sync_api import expect

    page = open_app_page(browser, app.url)
    generate_short(page)
    assert body_classes(page) == set() and address_query(page) == {}
    normal = {selector: font_px(page, selector) for selector in (OUTPUT, "#prompt textarea", "#generate")}
    normal_prompt_contrast = contrast(page, PROMPT_TEXT)["ratio"]
    screenshot(page, "light")

    page.click("#projector-switch input")
    expect(page.locator("body")).to_have_class(re.compile(r"\bprojector\b"))
    settle(page)
    assert address_query(page) == {"projector": "1"}
    for selector, size in normal.items():
        assert font_px(page, selector) == pytest.approx(size * PROJECTOR_SCALE), selector
    # High contrast: the model's words black on white, the prompt's grey far darker than Gradio's.
    assert contrast(page, CONTINUATION)["ratio"] == pytest.approx(21)
    prompt_contrast = contrast(page, PROMPT_TEXT)["ratio"]
    assert normal_prompt_contrast < 3 and prompt_contrast > 7
    screenshot(page, "projector")

    page.click("#projector-switch input")
    expect(page.locator("body")).not_to_have_class(re.compile(r"\bprojector\b"))
    settle(page)
    assert address_query(page) == {} and font_px(page, OUTPUT) == normal[OUTPUT]
    page.context.close()


def test_a_bookmarked_projector_address_opens_in_projector_mode_with_larger_token_boxes(app, browser):
    from playwright.sync_api import expect

    normal = open_app_page(browser, app.url)
    normal.click("#tab-inside-button")
    projector = open_app_page(browser, app.url, "?projector=1")
    expect(projector.locator("body")).to_have_class(re.compile(r"\bprojector\b"))
    expect(projector.locator("#projector-switch input")).to_be_checked()
    projector.click("#tab-inside-button")
    for page in (normal, projector):
        page.click("#inside-generate")
        expect(page.locator("#inside-status")).to_contain_text("finished", timeout=TIMEOUT_MS)
        settle(page)
    box = "#inside-tokens .tv-box"
    assert font_px(projector, box) == pytest.approx(font_px(normal, box) * PROJECTOR_SCALE)
    heights = [page.locator(box).first.bounding_box()["height"] for page in (normal, projector)]
    assert heights[1] >= 1.4 * heights[0]
    assert projector.locator(box).first.evaluate("e => getComputedStyle(e).borderTopWidth") == "2px"
    screenshot(projector, "projector-inside")
    normal.context.close()
    projector.context.close()


def is_dark(page) -> bool:
    return "dark" in body_classes(page)


@pytest.mark.parametrize("color_scheme, query, dark", [
    ("dark", "", True),  # the browser's preference
    ("light", "", False),
    ("light", "?__theme=dark", True),  # the address wins over the browser
    ("dark", "?__theme=light", False),
])
def test_dark_mode_follows_the_browser_unless_the_address_says_otherwise(app, browser, color_scheme, query, dark):
    from playwright.sync_api import expect

    page = open_app_page(browser, app.url, query, color_scheme=color_scheme)
    switch = page.locator("#dark-switch input")
    expect(switch).to_be_checked(checked=dark)
    settle(page)
    assert is_dark(page) == dark
    assert (contrast(page, "#model-panel p")["background"] < 0.05) == dark  # a dark page behind the text
    page.context.close()


def test_dark_switch_sets_the_theme_and_keeps_it_in_the_address(app, browser):
    from playwright.sync_api import expect

    page = open_app_page(browser, app.url)
    generate_short(page)
    page.click("#dark-switch input")
    expect(page.locator("body")).to_have_class(re.compile(r"\bdark\b"))
    settle(page)
    assert address_query(page) == {"__theme": "dark"}
    reading = contrast(page, CONTINUATION)
    assert reading["background"] < 0.05 and reading["ratio"] > 7
    screenshot(page, "dark")

    page.click("#projector-switch input")
    expect(page.locator("body")).to_have_class(re.compile(r"\bprojector\b"))
    settle(page)
    assert address_query(page) == {"__theme": "dark", "projector": "1"}
    assert contrast(page, CONTINUATION)["ratio"] > 18  # white on (nearly) black
    assert contrast(page, PROMPT_TEXT)["ratio"] > 7
    screenshot(page, "projector-dark")
    # The address now opens the page as it was left.
    bookmarked = open_app_page(browser, page.url)
    expect(bookmarked.locator("body")).to_have_class(re.compile(r"\bprojector\b"))
    expect(bookmarked.locator("body")).to_have_class(re.compile(r"\bdark\b"))
    expect(bookmarked.locator("#dark-switch input")).to_be_checked()
    expect(bookmarked.locator("#projector-switch input")).to_be_checked()

    page.click("#dark-switch input")
    expect(page.locator("body")).not_to_have_class(re.compile(r"\bdark\b"))
    # "light", not no parameter: the bookmark stays light in a browser that prefers dark.
    assert address_query(page) == {"__theme": "light", "projector": "1"}
    page.context.close()
    bookmarked.context.close()


def inside_viewport(page, selector: str) -> bool:
    """Scrolled into view, the element lies wholly inside the viewport and nothing covers its centre."""
    element = page.locator(selector)
    element.evaluate("e => e.scrollIntoView({block: 'center'})")  # not just touching the edge, a subpixel out
    box, width, height = element.bounding_box(), PHONE["width"], PHONE["height"]
    inside = box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= width and box["y"] + box["height"] <= height
    centre = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    on_top = page.evaluate("([x, y, id]) => !!document.elementFromPoint(x, y)?.closest('#' + id)",
                           [*centre, selector.removeprefix("#")])
    return inside and on_top


@pytest.mark.parametrize("locale, query, name", [
    ("en-US", "", "phone-en"),
    ("zh-CN", "", "phone-zh"),
    ("en-US", "?projector=1", "phone-projector"),
    ("zh-CN", "?projector=1&__theme=dark", "phone-projector-dark-zh"),
])
def test_at_a_phones_width_nothing_scrolls_sideways_and_generate_and_stop_can_be_clicked(app, browser, locale, query,
                                                                                          name):
    from playwright.sync_api import expect

    page = open_app_page(browser, app.url, query, locale=locale, viewport=PHONE)
    expect(page.locator("#generate")).to_have_text("生成" if locale == "zh-CN" else "Generate")
    for button in ("#generate", "#stop"):
        assert inside_viewport(page, button), button
    generate_short(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    output = page.locator(OUTPUT)
    box = output.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    assert output.evaluate("e => e.scrollWidth <= e.clientWidth")  # no line runs out of the text's box
    screenshot(page, name)
    page.context.close()


# ---------------------------------------------------------------- Stop on a busy machine


@pytest.fixture
def busy_core():
    """A separate Python process spinning on a core for the whole test, killed afterwards."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        assert spinner.poll() is None
        yield spinner
    finally:
        spinner.kill()
        spinner.wait(timeout=10)


@pytest.fixture(scope="module")
def small_app(small_model_dir):
    """The GPT-2-small-shaped stand-in: a long run takes long enough that only Stop ends it."""
    with launched(small_model_dir) as running:
        yield running


def set_length(page, selector: str, length: int) -> None:
    box = page.locator(selector)
    box.fill(str(length))
    box.press("Enter")


def click_within(page, selector: str, limit_ms: int) -> float:
    """Click; fail if the page cannot take the click within limit_ms. Returns the seconds it took."""
    started = time.monotonic()
    page.click(selector, timeout=limit_ms)  # a page too busy to take it fails here: TimeoutError
    return time.monotonic() - started


@pytest.mark.slow
def test_stop_is_clickable_within_a_second_beside_a_busy_process(small_app, browser, busy_core):
    from playwright.sync_api import expect

    page = open_app_page(browser, small_app.url)
    # The Inside tab: the live chart and the token boxes redraw while Stop is clicked.
    page.click("#tab-inside-button")
    page.locator("#tab-inside").get_by_text("Sampling settings").click()
    set_length(page, '#inside-max-new-tokens input[type="number"]', LONG)
    page.click("#inside-generate")
    expect(page.locator("#inside-status")).to_contain_text("generating", timeout=TIMEOUT_MS)
    expect(page.locator("#inside-tokens .tv-box").nth(2)).to_be_attached(timeout=TIMEOUT_MS)  # drawing by now
    seconds = click_within(page, "#inside-stop", STOP_CLICK_MS)
    assert busy_core.poll() is None  # still spinning while the click went through
    assert seconds <= STOP_CLICK_MS / 1000
    expect(page.locator("#inside-status")).to_have_text(re.compile(r"^\s*\d+ tokens · stopped · seed \d+\s*$"),
                                                        timeout=TIMEOUT_MS)
    assert int(page.inner_text("#inside-status").split()[0]) < LONG

    # The Generate tab: the text growing at up to 20 updates a second.
    page.click("#tab-generate-button")
    set_length(page, '#max-new-tokens input[type="number"]', LONG)
    page.click("#generate")
    expect(page.locator("#status")).to_contain_text("generating", timeout=TIMEOUT_MS)
    seconds = click_within(page, "#stop", STOP_CLICK_MS)
    assert busy_core.poll() is None
    assert seconds <= STOP_CLICK_MS / 1000
    expect(page.locator("#status")).to_contain_text("stopped", timeout=TIMEOUT_MS)
    assert int(page.inner_text("#status").split()[0]) < LONG
    page.context.close()
