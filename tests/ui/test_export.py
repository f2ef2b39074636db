"""A run as a file, without a browser: its JSON and HTML from the engine's real Steps, reading it back, replaying it."""

import asyncio
import copy
import json
import re
from html import escape

import gradio as gr
import pytest

from gpt2demo.errors import DemoError
from gpt2demo.generation import generate_steps, generate_text
from gpt2demo.pieces import TokenPiece
from gpt2demo.serving.interface import Candidate, Request, Step
from gpt2demo.settings import SamplingSettings
from gpt2demo.ui.context import PageContext
from gpt2demo.ui.i18n import describe_error
from gpt2demo.ui.views.export import (MAX_RUN_BYTES, Run, download, load_run, parse_run, run_html, run_json, run_text,
                                      sent_size, step_box)
from gpt2demo.ui.sessions import RecentRuns
from gpt2demo.ui.views.generate import GenerateHandlers
from gpt2demo.ui.views.inside import InsideHandlers, TokenView
from gpt2demo.ui.widgets.styles import CSS
from gpt2demo.ui.widgets.tokens import piece_label, text_html

from conftest import TUTORIAL_PROMPT
from handlers import collect, selected

EOS = 50256
END = TokenPiece(EOS, "<|endoftext|>", b"<|endoftext|>")


def browser(language: str = "en-US,en;q=0.9", session: str = "tab-1") -> gr.Request:
    """What Gradio passes a handler for one browser tab."""
    return gr.Request(headers={"accept-language": language}, session_hash=session)




def inside_run(engine, session: str = "tab-1") -> tuple[PageContext, TokenView]:
    """The Inside tab's handler run through the real engine: 12 tokens of the tutorial's prompt, seed 21."""
    ctx = PageContext(engine)
    asyncio.run(collect(InsideHandlers(ctx).generate(TUTORIAL_PROMPT, 12, 10, 1.0, 1.0, "21", browser(session=session))))
    return ctx, ctx.sessions.get(session, "inside")


@pytest.fixture
def inside(engine):
    return inside_run(engine)


def problem(text: str, language: str = "en") -> str:
    """The words the page shows for a file that cannot be read."""
    with pytest.raises(DemoError) as refused:
        parse_run(text)
    return describe_error(refused.value, language)


# ---------------------------------------------------------------- run -> JSON


def test_a_runs_json_holds_the_model_the_settings_the_seed_and_every_step_the_engine_sent(inside, engine, tiny_model):
    _, view = inside
    record = run_json(view.run())
    expected = generate_text(tiny_model, TUTORIAL_PROMPT, SamplingSettings(max_new_tokens=12, seed=21))
    assert {key: value for key, value in record.items() if key != "tokens"} == {
        "format": "gpt2demo-run", "version": 1,
        "model": {"name": engine.state.facts.name, "eos_token_id": EOS, "candidates": True},
        "settings": {"max_new_tokens": 12, "top_k": 10, "top_p": 1.0, "temperature": 1.0, "repetition_penalty": 1.0,
                     "greedy": False, "seed": 21},
        "seed": 21, "prompt": TUTORIAL_PROMPT, "finish_reason": "length"}
    assert [token["id"] for token in record["tokens"]] == expected.token_ids
    assert "".join(token["text"] for token in record["tokens"]) == expected.text
    for index, (token, step) in enumerate(zip(record["tokens"], view.steps, strict=True)):
        assert token == {
            "index": index, "id": step.token_id, "piece": step.piece.piece, "bytes": step.piece.data.hex(),
            "text": step.text, "probability": step.probability,
            "candidates": [{"id": c.token_id, "piece": c.piece.piece, "bytes": c.piece.data.hex(), "text": c.piece.text,
                            "probability": c.probability, "kept": c.kept} for c in step.candidates]}
        assert len(token["candidates"]) == 15 and [c["kept"] for c in token["candidates"]] == [True] * 10 + [False] * 5


def test_the_file_is_compact_json_with_one_token_a_line(inside):
    _, view = inside
    text = run_text(view.run())
    lines = text.split("\n")
    assert lines[0].startswith('{"format":"gpt2demo-run","version":1,"model":{') and lines[0].endswith('"tokens":[')
    assert [json.loads(line.rstrip(",")) for line in lines[1:13]] == run_json(view.run())["tokens"]
    assert lines[13:] == [']' + ',"finish_reason":"length"}', ""]
    assert json.loads(text) == run_json(view.run())


# ---------------------------------------------------------------- JSON -> run -> the same view


def test_a_file_reads_back_as_the_same_run_and_writes_the_same_file(inside):
    _, view = inside
    run = view.run()
    text = run_text(run)
    assert parse_run(text) == run  # every Step, TokenPiece and Candidate, every float exactly
    assert run_text(parse_run(text)) == text


def test_a_replayed_run_draws_and_clicks_as_the_live_one(inside):
    _, live = inside
    replayed = TokenView.replay(parse_run(run_text(live.run())))
    for language in ("en", "zh"):
        for index in (None, 0, 5, 11):
            html, chart, cutoff, detail, _ = replayed.outputs(language, selected=index)
            live_html, live_chart, live_cutoff, live_detail, _ = live.outputs(language, selected=index)
            assert (html, cutoff, detail) == (live_html, live_cutoff, live_detail) and chart.equals(live_chart)
    assert live.status("en") == "12 tokens · finished: length reached · seed 21"
    assert replayed.status("en") == f"12 tokens · finished: length reached · seed 21 · replayed from a file (model {live.model})"
    assert replayed.status("zh") == f"12 个 token · 结束：达到设定长度 · 种子 21 · 从文件重放（模型 {live.model}）"


def test_half_characters_the_end_of_text_and_a_stopped_run_read_back_exactly(tiny_model):
    settings = SamplingSettings(max_new_tokens=8, seed=4)
    steps = list(generate_steps(tiny_model, Request(settings, "今天")))
    run = Run.of("tiny", EOS, True, "今天", settings, 4, steps)
    assert parse_run(run_text(run)) == run
    # The model wrote <|endoftext|> (shown as its own box, italic), or was stopped before its next token.
    end = Step(0, END, "", 0.25, (Candidate(END, 0.25, True), Candidate(TokenPiece(13, ".", b"."), 0.125, False)), "eos")
    stopped = Step(1, None, "", None, (), "stopped")
    half = Step(0, TokenPiece(20015, "ä»", b"\xe4\xbb"), "", 0.5, (Candidate(TokenPiece(20015, "ä»", b"\xe4\xbb"), 0.5, True),))
    for steps, finish_reason in (([end], "eos"), ([half, stopped], "stopped"), ([stopped], "stopped"), ([], None)):
        run = Run.of("tiny", EOS, True, "", SamplingSettings(max_new_tokens=8), None, steps)
        assert run.finish_reason == finish_reason and parse_run(run_text(run)) == run
    record = run_json(Run.of("tiny", EOS, True, "", SamplingSettings(max_new_tokens=8), None, [half, stopped]))
    assert record["tokens"][0]["candidates"][0] == {"id": 20015, "piece": "ä»", "bytes": "e4bb", "text": "\ufffd",
                                                    "probability": 0.5, "kept": True}
    assert record["tokens"][0]["text"] == "" and record["finish_reason"] == "stopped"


def test_a_run_without_candidates_reads_back_and_says_so(tiny_model):
    plain = Step(0, TokenPiece(318, "Ġis", b" is"), " is", None, (), "length")
    run = Run.of("remote", EOS, False, "It", SamplingSettings(max_new_tokens=1), 2, [plain])
    assert parse_run(run_text(run)) == run
    view = TokenView.replay(run)
    assert view.cutoff(0, "en") == ("The server sends no candidates or probabilities, so this view cannot show them "
                                    "(the text still comes). Start vLLM with --logprobs-mode processed_logprobs to see them.")
    assert 'title="#0 · id 318 · p = –"' in view.html()


# ---------------------------------------------------------------- the HTML page


def test_the_html_page_is_the_token_view_with_its_styles_and_nothing_to_fetch(inside):
    _, view = inside
    run = view.run()
    page = run_html(run, "en")
    tokens = text_html(TUTORIAL_PROMPT, [step_box(step) for step in run.steps], EOS) + "</div>"
    assert page.startswith('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">')
    assert tokens in page and tokens == view.html() + "</div>"  # the boxes the tab drew, shading and titles
    assert f".gpt2demo-run {{\n{CSS}\n}}" in page
    assert "<title>GPT-2, one token at a time</title>" in page
    assert (f'<p class="tv-note">model {escape(view.model)} · top-k = 10 · seed 21 · 12 tokens · finished: length reached</p>'
            in page)
    for step in run.steps:
        assert f">{escape(piece_label(step.piece, EOS))}</span>" in page
    assert re.findall(r'data-token-id="(\d+)"', page) == [str(step.token_id) for step in run.steps]
    around = page.replace(tokens, "")  # the tokens' own text could be anything, "http" too
    for outside in ("<script", "<link", "src=", "href=", "url(", "@import", "http"):
        assert outside not in around
    assert "<script" not in tokens and "href=" not in tokens and "src=" not in tokens
    chinese = run_html(run, "zh")
    assert '<html lang="zh">' in chinese and "<h1>GPT-2，一次一个 token</h1>" in chinese
    assert "种子 21 · 12 个 token · 结束：达到设定长度" in chinese


def test_the_html_page_escapes_the_prompt_and_the_tokens():
    tag = Step(0, TokenPiece(1279, "<", b"<"), "<", 0.5, (), None)
    amp = Step(1, TokenPiece(5, "&", b"&"), "&", 0.25, (), "length")
    page = run_html(Run.of("tiny", EOS, True, '<b>"Tom" & Jerry</b>', SamplingSettings(max_new_tokens=2), 1, [tag, amp]), "en")
    assert '<span class="tv-prompt">&lt;b&gt;&quot;Tom&quot; &amp; Jerry&lt;/b&gt;</span>' in page and "<b>" not in page
    assert ">&lt;</span>" in page and ">&amp;</span>" in page


# ---------------------------------------------------------------- files that cannot be read


def edited(view: TokenView, change) -> str:
    record = copy.deepcopy(run_json(view.run()))
    change(record)
    return json.dumps(record)


def setter(path: tuple, value):
    def change(record):
        target = record
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


def remover(path: tuple):
    def change(record):
        target = record
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return change


BAD_FILES = [
    (setter(("version",), 2), "This run file has version 2; this gpt2demo reads version 1."),
    (setter(("version",), True), "This run file has version True; this gpt2demo reads version 1."),
    (setter(("format",), "gpt3demo-run"), 'This file is not a gpt2demo run: its "format" must be "gpt2demo-run".'),
    (remover(("tokens",)), "The run file has no tokens."),
    (setter(("notes",), "for Monday"), "The run file has a field gpt2demo does not know: notes."),
    (setter(("model",), "gpt2"), "In the run file, model must be an object (got 'gpt2')."),
    (setter(("model", "candidates"), "yes"), "In the run file, model.candidates must be true or false (got 'yes')."),
    (setter(("seed",), -3), "In the run file, seed must be an integer from 0 to 4294967295 (got -3)."),
    (setter(("settings", "top_k"), -1), "settings.top_k must be an integer from 0 to 50257 (got -1)"),
    (remover(("settings", "greedy")), "The run file has no settings.greedy."),
    (setter(("settings", "max_new_tokens"), 5), "In the run file, tokens has 12 entries; at most 5 are allowed."),
    (setter(("prompt",), 7), "In the run file, prompt must be text (got 7)."),
    (setter(("prompt",), "a\x00b"), "prompt contains an unsupported character U+0000 at position 1"),
    (setter(("finish_reason",), "paused"),
     "In the run file, finish_reason must be null or one of eos, length, context, stopped (got 'paused')."),
    (setter(("tokens",), {}), "In the run file, tokens must be a list (got {})."),
    (setter(("tokens", 3, "probability"), "0.5"), "In the run file, tokens[3].probability must be a number from 0 to 1 (got '0.5')."),
    (setter(("tokens", 3, "probability"), 1.5), "In the run file, tokens[3].probability must be a number from 0 to 1 (got 1.5)."),
    (setter(("tokens", 1, "index"), 5), "In the run file, tokens[1].index must be 1 (got 5): tokens are numbered in order from 0."),
    (setter(("tokens", 2, "id"), 2.0), "In the run file, tokens[2].id must be an integer from 0 to 2147483647 (got 2.0)."),
    (setter(("tokens", 2, "bytes"), "zz"), "In the run file, tokens[2].bytes must be bytes in hex, like \"e4bb\" (got 'zz')."),
    (remover(("tokens", 4, "candidates")), "The run file has no tokens[4].candidates."),
    (setter(("tokens", 0, "candidates", 2, "kept"), 1), "In the run file, tokens[0].candidates[2].kept must be true or false (got 1)."),
    (setter(("tokens", 0, "candidates", 0, "text"), "nope"),
     "In the run file, tokens[0].candidates[0].text does not match the candidate's bytes."),
    (lambda record: record["tokens"][0]["candidates"].append(record["tokens"][0]["candidates"][0]),
     "In the run file, tokens[0].candidates has 16 entries; at most 15 are allowed."),
]


@pytest.mark.parametrize("change, words", BAD_FILES, ids=[words[:50] for _, words in BAD_FILES])
def test_a_file_that_is_not_a_run_is_refused_naming_what_is_wrong(inside, change, words):
    _, view = inside
    assert problem(edited(view, change)) == words


def test_text_that_is_not_json_and_json_that_is_not_a_run():
    assert problem("Yesterday, a man named Jack") == "This file is not JSON (the error is at line 1, column 1)."
    assert problem('{"format": "gpt2demo-run",\n "version": 1,,}') == "This file is not JSON (the error is at line 2, column 15)."
    assert problem("[" * 100_000) == "This file is not JSON (the error is at line 1, column 1)."  # deeper than Python recurses
    assert problem("[1, 2]") == 'This file is not a gpt2demo run: its "format" must be "gpt2demo-run".'
    assert problem(r'{"format": "gpt2demo-run", "version": 1, "prompt": "\ud800"}') == "The run file has no model."
    assert problem('{"format": "gpt2demo-run", "version": 2}', "zh") == "这个生成文件的版本是 2；本 gpt2demo 读取版本 1。"


def test_a_lone_surrogate_and_nan_are_refused(inside):
    _, view = inside
    text = edited(view, setter(("tokens", 0, "text"), "\ud800"))  # json.dumps writes it as \ud800
    assert problem(text) == "In the run file, tokens[0].text must be text (got '\\ud800')."
    text = edited(view, setter(("tokens", 0, "probability"), float("nan")))  # json.dumps writes NaN
    assert problem(text) == "In the run file, tokens[0].probability must be a number from 0 to 1 (got nan)."


def test_what_the_load_button_sends_is_measured_as_the_page_measures_it(inside):
    _, view = inside
    text = run_text(view.run())
    assert load_run(text, sent_size(text)) == view.run()
    assert load_run("", 0) is None  # the file chooser was closed
    assert sent_size('a"b\n中') == len('"a\\"b\\n中"'.encode())  # as JSON.stringify, then UTF-8
    for text, size in (("", MAX_RUN_BYTES + 1), ("x" * MAX_RUN_BYTES, 10)):
        with pytest.raises(DemoError) as refused:
            load_run(text, size)
        assert describe_error(refused.value, "en") == "This run file is too large to load (449 KB to send; at most 448 KB)."
        assert describe_error(refused.value, "zh") == "这个生成文件太大，无法载入（需发送 449 KB；最多 448 KB）。"
    for text, size in ((7, 0), ("{}", True), ("{}", float("nan")), (None, None)):
        with pytest.raises(DemoError) as refused:
            load_run(text, size)
        assert describe_error(refused.value, "en") == "load: this request does not fit the page (expects the file's text and its size)"


# ---------------------------------------------------------------- the handlers


def test_the_inside_tab_downloads_its_run_and_says_when_there_is_none(inside):
    ctx, view = inside
    events = InsideHandlers(ctx)
    assert json.loads(events.download_json(browser())) == {
        "name": "gpt2demo-run-21.json", "type": "application/json", "text": run_text(view.run())}
    assert json.loads(events.download_html(browser("zh-CN"))) == {
        "name": "gpt2demo-run-21.html", "type": "text/html", "text": run_html(view.run(), "zh")}
    with pytest.raises(gr.Error) as nothing:
        events.download_json(browser(session="tab-2"))
    assert nothing.value.message == "Nothing to download yet: generate a text first."


def test_a_loaded_file_replays_in_the_inside_tab_without_any_model(inside):
    _, live = inside
    text = run_text(live.run())
    ctx = PageContext(engine=None)  # no engine at all: any call to one would fail
    events = InsideHandlers(ctx)
    outputs = events.load(text, sent_size(text), browser("zh-CN", session="home"))
    replayed = ctx.sessions.get("home", "inside")
    html, chart, cutoff, detail, _ = replayed.outputs("zh")
    assert replayed.run() == live.run() and (outputs[0], outputs[2], outputs[3]) == (html, cutoff, detail)
    assert outputs[1].equals(chart)
    assert outputs[4] == f"12 个 token · 结束：达到设定长度 · 种子 21 · 从文件重放（模型 {live.model}）"
    html, chart, cutoff, detail = events.select(selected(5), browser(session="home"))  # a click, as on a live run
    live_html, live_chart, live_cutoff, live_detail, _ = live.outputs("en", selected=5)
    assert (html, cutoff, detail) == (live_html, live_cutoff, live_detail) and chart.equals(live_chart)
    assert events.load("", 0, browser(session="home")) == (gr.skip(),) * 5  # the chooser closed: nothing changes
    with pytest.raises(gr.Error) as refused:
        events.load("{}", 4, browser("zh-CN", session="home"))
    assert refused.value.message == "这个文件不是 gpt2demo 的生成记录：它的 \"format\" 必须是 \"gpt2demo-run\"。"
    assert ctx.sessions.get("home", "inside") is replayed  # a refused file leaves the tab as it was


def test_loading_a_file_while_the_tab_generates_stops_the_run_and_nothing_draws_over_the_file(engine, inside):
    _, finished = inside
    text = run_text(finished.run())
    ctx = PageContext(engine)
    events = InsideHandlers(ctx)

    async def scenario():
        stream = events.generate(TUTORIAL_PROMPT, 1000, 10, 1.0, 1.0, "5", browser())
        first = await anext(stream)  # the run is accepted, its (empty) view drawn
        assert first[4] == "starting… · seed 5" and len(ctx.runs) == 1
        events.load(text, sent_size(text), browser())
        return await collect(stream)

    assert asyncio.run(scenario()) == []  # no update after the file was drawn
    assert len(ctx.runs) == 0 and ctx.sessions.get("tab-1", "inside").run() == finished.run()


def test_the_generate_tab_keeps_its_last_run_for_the_download_buttons(engine, tiny_model):
    events = GenerateHandlers(PageContext(engine))
    settings = dict(max_new_tokens=9, top_k=10, temperature=1.0, top_p=1.0, repetition_penalty=1.0, seed="3", greedy=False)
    with pytest.raises(gr.Error, match="Nothing to download yet: generate a text first."):
        events.download_json(browser())
    outputs = asyncio.run(collect(events.generate(TUTORIAL_PROMPT, **settings, request=browser())))
    assert all(len(update) == 4 for update in outputs)  # the API's outputs are unchanged: text, html, status, seed
    expected = generate_text(tiny_model, TUTORIAL_PROMPT, SamplingSettings(max_new_tokens=9, seed=3))
    payload = json.loads(events.download_json(browser()))
    record = json.loads(payload["text"])
    assert payload["name"] == "gpt2demo-run-3.json" and record["seed"] == 3 and record["finish_reason"] == "length"
    assert [token["id"] for token in record["tokens"]] == expected.token_ids
    assert outputs[-1][0] == TUTORIAL_PROMPT + "".join(token["text"] for token in record["tokens"])
    run = parse_run(payload["text"])
    assert json.loads(events.download_html(browser()))["text"] == run_html(run, "en")
    assert TokenView.replay(run).status("en") == f"9 tokens · finished: length reached · seed 3 · replayed from a file (model {run.model})"
    asyncio.run(collect(events.generate("Hello", **settings, request=gr.Request(session_hash=None))))
    assert len(events.ctx.recent_runs) == 1  # a request of no page keeps nothing


def test_recent_runs_keep_the_newest_of_each_session_within_their_budget_and_idle_time():
    class Clock:
        now = 0.0

        def __call__(self) -> float:
            return self.now

    def run(seed: int, tokens: int = 1) -> Run:
        piece = TokenPiece(318, "Ġis", b" is")
        steps = [Step(index, piece, " is", 0.5, (Candidate(piece, 0.5, True),), None) for index in range(tokens)]
        return Run.of("tiny", EOS, True, "It", SamplingSettings(max_new_tokens=tokens), seed, steps)

    clock = Clock()
    runs = RecentRuns(budget_tokens=4, idle_seconds=60, clock=clock)
    runs.put("a", run(1))
    runs.put("a", run(2, tokens=2))  # the newer replaces the older
    runs.put("b", run(3, tokens=2))
    assert (runs.get("a"), runs.get("b"), len(runs)) == (run(2, tokens=2), run(3, tokens=2), 2)
    runs.put("c", run(4))  # 5 tokens: over the budget, the oldest goes
    assert (runs.get("a"), runs.get("b"), runs.get("c")) == (None, run(3, tokens=2), run(4))
    clock.now = 59
    runs.put("d", run(5, tokens=2))
    assert (runs.get("b"), runs.get("c"), runs.get("d")) == (None, run(4), run(5, tokens=2))
    clock.now = 120
    assert runs.get("d") is None  # idle too long
    runs.put("e", run(6, tokens=5))  # one run over the whole budget is not kept either
    assert (runs.get("e"), len(runs)) == (None, 0)


def test_a_download_of_each_kind_is_named_by_the_seed():
    run = Run.of("tiny", EOS, True, "", SamplingSettings(max_new_tokens=1), None, [])
    assert json.loads(download(run, "json", "en"))["name"] == "gpt2demo-run.json"
    assert json.loads(download(run, "html", "en"))["type"] == "text/html"
