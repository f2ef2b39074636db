"""What several tabs draw, as plain functions of engine facts: token boxes, the candidate table, the chart, controls."""

import gradio as gr

from gpt2demo.pieces import TokenPiece
from gpt2demo.serving.interface import Candidate
from gpt2demo.settings import BOUNDS, SamplingSettings
from gpt2demo.ui.context import PageContext
from gpt2demo.ui.widgets.candidates import candidates_html, cutoff_summary, describe_rule
from gpt2demo.ui.widgets.chart import CHART_COLUMNS, chart_frame
from gpt2demo.ui.widgets.controls import TUTORIAL_PROMPT, element_id, prompt_box, sampling_controls
from gpt2demo.ui.widgets.tokens import TokenBox, box_html, percent, piece_label, render_boxes, text_html, visible

import conftest

EOS = 50256
ENDOFTEXT = TokenPiece(EOS, "<|endoftext|>", b"<|endoftext|>")


def piece(token_id: int, data: bytes) -> TokenPiece:
    return TokenPiece(token_id, "", data)


# ---------------------------------------------------------------- tokens


def test_token_boxes_show_whitespace_and_half_characters():
    assert (visible("\n"), visible("  "), visible(" man"), visible("\t")) == ("↵", "␣␣", " man", "⇥")
    assert piece_label(TokenPiece(20015, "ä»", b"\xe4\xbb"), EOS) == "‹e4 bb›"
    assert piece_label(ENDOFTEXT, EOS) == "<|endoftext|>"
    assert piece_label(TokenPiece(198, "Ċ", b"\n"), EOS) == "↵"


def test_percent_keeps_two_decimals_or_two_significant_digits():
    assert (percent(0.4213), percent(1.0), percent(0.000012345)) == ("42.13%", "100.00%", "0.0012%")


def test_a_box_carries_its_index_token_shade_and_marks():
    html = box_html(TokenBox(piece(5, b" a<b"), shade=0.5, classes=("tv-you",), title='p = "1"'), 3, EOS)
    assert html == ('<span class="tv-box tv-you" data-index="3" data-token-id="5" title="p = &quot;1&quot;" '
                    'style="background: rgba(59, 130, 246, 0.465)"> a&lt;b</span>')
    assert box_html(TokenBox(piece(232, b"\x8a")), 0, EOS) == (
        '<span class="tv-box tv-bytes" data-index="0" data-token-id="232" title="id 232">‹8a›</span>')
    eos = box_html(TokenBox(ENDOFTEXT, shade=0.9, classes=("tv-repeat",)), 1, EOS)
    assert 'class="tv-box tv-repeat tv-eos"' in eos and "style=" not in eos  # a repeat's yellow is not shaded over


def test_tokens_that_form_one_character_share_a_frame_and_a_line_break_breaks_the_line():
    boxes = [TokenBox(piece(1, b"\xe4\xbb")), TokenBox(piece(2, b"\x8a")), TokenBox(piece(3, b"!\n")), TokenBox(piece(4, b"x"))]
    html = render_boxes(boxes, EOS)
    assert html.count('<span class="tv-group">') == 1
    assert html.index('data-index="0"') < html.index('data-index="1"') < html.index('<span class="tv-formed">=今</span>')
    assert html.index("=今") < html.index('data-index="2"') < html.index("<br>") < html.index('data-index="3"')


def test_the_text_is_left_open_so_a_growing_text_only_appends():
    boxes = [TokenBox(piece(1, b" a")), TokenBox(piece(2, b" b"))]
    short, longer = text_html("<Hi>", boxes[:1], EOS), text_html("<Hi>", boxes, EOS)
    assert short.startswith('<div class="tv-text"><span class="tv-prompt">&lt;Hi&gt;</span><span class="tv-box"')
    assert longer.startswith(short) and not longer.endswith("</div>")


# ---------------------------------------------------------------- candidates and the cut


def test_the_candidate_table_draws_the_cut_and_a_pick_outside_the_shown_ones():
    candidates = (Candidate(piece(1, b"a"), 0.5, True), Candidate(piece(2, b"b"), 0.3, True), Candidate(piece(3, b"c"), 0.1, False))
    html = candidates_html(candidates, piece(99, b"x"), 0.01, SamplingSettings(top_k=2), EOS, "en")
    assert html.index('data-index="1"') < html.index("tv-cutoff") < html.index('data-index="2"')
    assert "2 of the 3 most likely stay in the running (top-k = 2)" in html
    assert "★ chosen: x (p = 1.00%), outside the 3 shown" in html and html.count("★") == 1
    assert [part.split('"')[0] for part in html.split('data-value="')[1:]] == ["1", "2", "3"]  # a click names the token
    all_kept = candidates_html(candidates[:2], piece(1, b"a"), 0.5, SamplingSettings(top_k=2), EOS, "zh")
    assert "tv-cutoff" not in all_kept and "显示的 2 个都留在候选中（top-k = 2）" in all_kept
    assert '<tr class="tv-kept tv-chosen" data-index="0" data-value="1"><td>1</td><td>★ <code>a</code>' in all_kept


def test_the_rule_says_which_cut_the_settings_make():
    assert describe_rule(SamplingSettings(greedy=True, top_k=5), "en") == "greedy: only the most likely"
    assert describe_rule(SamplingSettings(top_k=0), "en") == "no cut"
    assert describe_rule(SamplingSettings(top_k=40, top_p=0.9, temperature=0.7), "en") == "top-k = 40 · top-p = 0.9 · T = 0.7"
    assert describe_rule(SamplingSettings(top_k=0), "zh") == "不截断"
    kept = (Candidate(piece(1, b"a"), 0.6, True), Candidate(piece(2, b"b"), 0.4, False))
    assert cutoff_summary(kept, SamplingSettings(top_k=1), "en") == (
        "1 of the 2 most likely stay in the running (top-k = 1); the rest can never be drawn.")


def test_the_chart_of_no_step_is_empty_with_its_columns():
    frame = chart_frame(None, EOS, "en")
    assert frame.empty and list(frame.columns) == CHART_COLUMNS


# ---------------------------------------------------------------- controls


def test_controls_take_their_ranges_from_the_bounds_and_their_defaults_from_the_settings():
    controls = sampling_controls("inside", SamplingSettings(max_new_tokens=40, seed=7), ("max_new_tokens", "top_k", "seed", "greedy"))
    assert list(controls) == ["max_new_tokens", "top_k", "seed", "greedy"]
    length = controls["max_new_tokens"]
    assert (length.minimum, length.maximum, length.value, length.elem_id) == (*BOUNDS.max_new_tokens, 40, "inside-max-new-tokens")
    assert (controls["top_k"].maximum, controls["seed"].value, controls["greedy"].value) == (BOUNDS.top_k[1], "7", False)
    assert (element_id("", "top_p"), element_id("cost", "prompt")) == ("top-p", "cost-prompt")


def test_every_tabs_prompt_box_starts_with_the_tutorials_prompt(engine):
    from gpt2demo.ui.page import build_page

    assert TUTORIAL_PROMPT == conftest.TUTORIAL_PROMPT and prompt_box("x").value == TUTORIAL_PROMPT
    demo, _ = build_page(PageContext(engine), concurrency=4)
    boxes = {block.elem_id: block.value for block in demo.blocks.values() if isinstance(block, gr.Textbox)}
    prompts = ["prompt", "inside-prompt", "sampler-prompt", "strategies-prompt", "tokenizer-text", "cost-prompt"]
    assert {elem_id: boxes[elem_id] for elem_id in prompts} == dict.fromkeys(prompts, TUTORIAL_PROMPT)
