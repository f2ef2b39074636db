"""A run's files in the launched app, driven by a real headless Chromium (tiny stand-in model).

The Download buttons make their files in the browser and the Load button reads one
there (the server takes no uploads): each test checks a file's contents against
what the page showed, and a replayed file against the run it came from.
"""

from __future__ import annotations

import json
import math
import re

import pytest

from gpt2demo.generation import generate_text
from gpt2demo.pieces import TokenPiece
from gpt2demo.settings import SamplingSettings
from gpt2demo.ui.views.export import MAX_RUN_BYTES, parse_run, run_html, run_text, sent_size
from gpt2demo.ui.widgets.tokens import piece_label

from conftest import TUTORIAL_PROMPT
from launching import app, ARTIFACTS, browser, needs_chromium, open_app_page  # app, browser: module fixtures

TIMEOUT_MS = 60_000
EOS = 50256

pytestmark = [
    pytest.mark.browser,
    needs_chromium,
]


def open_tab(browser, url: str, tab: str, locale: str = "en-US"):
    """A fresh browser tab (a context of its own: a session of its own) showing one of the app's tabs."""
    page = open_app_page(browser, url, locale=locale, accept_downloads=True)
    page.click(f"#tab-{tab}-button", timeout=TIMEOUT_MS)
    return page


def wait_for_text(page, selector: str, pattern: str) -> str:
    """The element's text, without the blanks around it, once it matches the regular expression (^ and $ included)."""
    from playwright.sync_api import expect

    expect(page.locator(selector)).to_have_text(re.compile(r"^\s*(?:" + pattern + r")\s*$", re.S), timeout=TIMEOUT_MS)
    return page.inner_text(selector).strip()


def boxes(page, selector: str) -> list[tuple[int, str, str]]:
    """Each token box: (token id, the text on it, its style)."""
    return [(int(token_id), text, style) for token_id, text, style in page.locator(f"{selector} .tv-box").evaluate_all(
        "boxes => boxes.map(b => [b.dataset.tokenId, b.textContent, b.getAttribute('style') || ''])")]


def downloaded(page, button: str, folder, name: str):
    """Click a Download button; the file the browser saved, and the name it suggested."""
    with page.expect_download(timeout=TIMEOUT_MS) as started:
        page.click(button)
    download = started.value
    path = folder / name
    download.save_as(path)
    return path, download.suggested_filename


def load_file(page, path) -> None:
    """Choose `path` in the file chooser the Load button opens."""
    with page.expect_file_chooser(timeout=TIMEOUT_MS) as chooser:
        page.click("#inside-load-run")
    chooser.value.set_files(str(path))


def shown_box(token: dict) -> tuple[int, str, str]:
    """A file's token as the token view draws it (widgets.tokens: darker = more likely)."""
    piece = TokenPiece(token["id"], token["piece"], bytes.fromhex(token["bytes"]))
    return token["id"], piece_label(piece, EOS), f"background: rgba(59, 130, 246, {0.08 + 0.77 * token['probability']:.3f})"


def error_toast(page) -> str:
    from playwright.sync_api import expect

    toast = page.locator(".toast-body.error [data-testid='toast-text']")
    expect(toast).to_have_count(1, timeout=TIMEOUT_MS)
    return toast.inner_text().strip()


def test_the_inside_tabs_run_downloads_as_json_and_html_and_replays_from_the_file_in_a_fresh_page(
        app, browser, tiny_model, tmp_path):
    page = open_tab(browser, app.url, "inside")
    page.click("#inside-generate")  # on the tutorial's prompt, 40 tokens
    status = wait_for_text(page, "#inside-status", r"40 tokens · finished: length reached · seed \d+")
    seed = int(re.search(r"seed (\d+)", status).group(1))
    shown = boxes(page, "#inside-tokens")

    json_path, json_name = downloaded(page, "#inside-download-json", tmp_path, "run.json")
    text = json_path.read_text(encoding="utf-8")
    record = json.loads(text)
    model = app.engine.state.facts.name
    assert json_name == f"gpt2demo-run-{seed}.json"
    assert (record["format"], record["version"], record["model"], record["seed"], record["prompt"], record["finish_reason"]) == (
        "gpt2demo-run", 1, {"name": model, "eos_token_id": EOS, "candidates": True}, seed, TUTORIAL_PROMPT, "length")
    assert [shown_box(token) for token in record["tokens"]] == shown  # ids, texts and shading as the page drew them
    expected = generate_text(tiny_model, TUTORIAL_PROMPT, SamplingSettings(max_new_tokens=40, seed=seed))
    assert [token["id"] for token in record["tokens"]] == expected.token_ids
    assert text == run_text(parse_run(text))  # the file the format writes, byte for byte

    html_path, html_name = downloaded(page, "#inside-download-html", tmp_path, "run.html")
    html = html_path.read_text(encoding="utf-8")
    assert html_name == f"gpt2demo-run-{seed}.html" and html == run_html(parse_run(text), "en")
    slide = page.context.new_page()  # the page on its own, from disk: nothing else is fetched
    fetched = []
    slide.on("request", lambda request: fetched.append(request.url))
    slide.goto(html_path.as_uri())
    assert boxes(slide, ".gpt2demo-run") == shown and fetched == [html_path.as_uri()]
    assert slide.locator(".tv-prompt").inner_text() == TUTORIAL_PROMPT
    ARTIFACTS.mkdir(exist_ok=True)
    slide.screenshot(path=str(ARTIFACTS / "export-slide.png"), full_page=True)
    page.context.close()

    home = open_tab(browser, app.url, "inside")  # another browser session: the file, not the server, holds the run
    passes = app.forward_passes()
    load_file(home, json_path)
    wait_for_text(home, "#inside-status", re.escape(f"{status} · replayed from a file (model {model})"))
    assert boxes(home, "#inside-tokens") == shown
    home.locator("#inside-tokens .tv-box").nth(5).click()
    wait_for_text(home, "#inside-detail h4", r"Step 5: chose .* with p = [\d.]+%")
    rows = home.locator("#inside-detail tr[data-index]")
    assert [int(v) for v in rows.evaluate_all("rows => rows.map(r => r.dataset.value)")] == [
        candidate["id"] for candidate in record["tokens"][5]["candidates"]]
    assert home.locator("#inside-detail tr.tv-chosen").get_attribute("data-value") == str(record["tokens"][5]["id"])
    assert home.locator("#inside-tokens .tv-selected").get_attribute("data-index") == "5"
    assert app.forward_passes() == passes  # replayed without the model
    ARTIFACTS.mkdir(exist_ok=True)
    home.screenshot(path=str(ARTIFACTS / "export-replayed.png"), full_page=True)
    home.context.close()


def test_the_generate_tabs_last_run_downloads_as_json(app, browser, tmp_path):
    page = open_tab(browser, app.url, "generate")
    page.locator("#generate-download-json").click()
    assert error_toast(page) == "Nothing to download yet: generate a text first."
    page.fill("#seed input", "11")
    page.click("#generate")
    wait_for_text(page, "#status", r"100 tokens · .* · finished: length reached · seed 11")
    path, name = downloaded(page, "#generate-download-json", tmp_path, "generate.json")
    record = json.loads(path.read_text(encoding="utf-8"))
    assert name == "gpt2demo-run-11.json" and record["settings"]["seed"] == 11 and len(record["tokens"]) == 100
    continuation = page.locator("#output .gpt2demo-continuation").inner_text()
    assert "".join(token["text"] for token in record["tokens"]) == continuation
    page.context.close()


def test_a_file_that_is_not_a_run_is_refused_in_the_pages_language(app, browser, tmp_path):
    page = open_tab(browser, app.url, "inside", locale="zh-CN")
    note = tmp_path / "notes.json"
    note.write_text('{"format": "gpt2demo-run", "version": 2}', encoding="utf-8")
    load_file(page, note)
    assert error_toast(page) == "这个生成文件的版本是 2；本 gpt2demo 读取版本 1。"
    page.locator(".toast-body.error [data-testid='toast-close']").click()
    from playwright.sync_api import expect

    expect(page.locator(".toast-body.error")).to_have_count(0, timeout=TIMEOUT_MS)  # gone, not fading out
    # Too large to send: the page sends only its size (the server would refuse the body with a bare 413).
    big = tmp_path / "big.json"
    big.write_text('{"notes": "' + "a" * MAX_RUN_BYTES + '"}', encoding="utf-8")
    load_file(page, big)
    size = math.ceil(sent_size(big.read_text(encoding="utf-8")) / 1024)
    assert error_toast(page) == f"这个生成文件太大，无法载入（需发送 {size} KB；最多 448 KB）。"
    assert page.locator("#inside-tokens .tv-box").count() == 0
    page.context.close()
