"""The teaching tabs without a browser: what each view draws, and its handlers driven with an in-process engine."""

import asyncio
import re
import threading
from html import escape

import gradio as gr
import pytest

from gpt2demo.generation import NUM_CANDIDATES, generate_steps, generate_text
from gpt2demo.model import load_model
from gpt2demo.serving.interface import KV_CACHE, TUTORIAL, CostPoint, Request, Step, Tokens
from gpt2demo.serving.local import LocalEngine
from gpt2demo.serving.tickets import Ticket
from gpt2demo.settings import SamplingSettings
from gpt2demo.teaching.lanes import LaneRun, first_divergence, repeated_ngrams, run_lanes, strategy_lanes
from gpt2demo.ui import views
from gpt2demo.ui.context import PageContext
from gpt2demo.ui.i18n import describe_error
from gpt2demo.ui.pacing import VIEW_UPDATE_SECONDS
from gpt2demo.ui.views.cost import CostHandlers, cost_frame, cost_table
from gpt2demo.ui.views.inside import InsideHandlers, TokenView
from gpt2demo.ui.views.sampler import SamplerHandlers, session_outputs
from gpt2demo.ui.views.strategies import StrategyHandlers, lane_title, lanes_html
from gpt2demo.ui.views.tokenizer import TOKENS_SHOWN, TokenizerHandlers, tokenizer_html

from conftest import DEADLINE_SECONDS, TUTORIAL_PROMPT
from handlers import collect, selected

EOS = 50256


def browser(language: str = "en-US,en;q=0.9", session: str = "tab-1") -> gr.Request:
    """What Gradio passes a handler for one browser tab."""
    return gr.Request(headers={"accept-language": language}, session_hash=session)




def run_all(outputs) -> list:
    return asyncio.run(collect(outputs))


def recorded_spacings(monkeypatch, module) -> list[float]:
    """The spacing a view's paced() loop asks for at each update."""
    spacings = []
    original = module.paced

    def recording(ticket, spacing):
        return original(ticket, lambda: spacings.append(spacing()) or spacings[-1])

    monkeypatch.setattr(module, "paced", recording)
    return spacings


# ---------------------------------------------------------------- inside each step


def test_the_token_view_draws_one_shaded_box_per_step_and_the_selected_steps_candidates(tiny_model):
    settings = SamplingSettings(top_k=4, seed=3, max_new_tokens=6)
    steps = list(generate_steps(tiny_model, Request(settings, "今天")))
    view = TokenView("今天", settings, EOS, seed=3)
    for step in steps:
        view.add(step)
    html, chart, cutoff, detail, status = view.outputs("en", selected=2)
    assert html.count('class="tv-box') == 6 and html.count("tv-selected") == 1
    assert [int(i) for i in re.findall(r'data-token-id="(\d+)"', html)] == [s.token_id for s in steps]
    assert "Step 2: chose" in detail and detail.count("★") == 1 and detail.count("tv-cutoff") == 1
    assert status == "6 tokens · finished: length reached · seed 3"
    assert cutoff == f"4 of the {NUM_CANDIDATES} most likely stay in the running (top-k = 4); the rest can never be drawn."
    chosen = steps[2]
    assert chart["percent"].tolist() == [100 * c.probability for c in chosen.candidates]
    assert chart["status"].tolist() == [
        "chosen" if c.token_id == chosen.token_id else "in the running" if c.kept else "cut off" for c in chosen.candidates]
    assert chart["token"].tolist()[0].startswith("1. ")
    _, chinese_chart, _, chinese_detail, _ = view.outputs("zh")  # the newest step, in Chinese
    assert "选中" in chinese_chart["status"].tolist() and "第 5 步" in chinese_detail


def test_a_token_view_before_any_step_and_after_a_stop():
    view = TokenView("Hi", SamplingSettings(), EOS, seed=1)
    html, chart, cutoff, detail, status = view.outputs("en")
    assert html == '<div class="tv-text"><span class="tv-prompt">Hi</span>' and chart.empty and cutoff == ""
    assert detail == '<p class="tv-note">Nothing selected yet: click a token.</p>' and status == "starting… · seed 1"
    view.add(Step(0, None, "", None, (), "stopped"))  # what a Stop before the first token delivers
    assert view.status("en") == "0 tokens · stopped · seed 1" and view.steps == []


def test_a_growing_token_view_only_appends_so_streaming_sends_only_new_boxes(tiny_model):
    settings = SamplingSettings(seed=3, max_new_tokens=20)
    view = TokenView(TUTORIAL_PROMPT, settings, EOS)
    before = view.html()
    for step in generate_steps(tiny_model, Request(settings, TUTORIAL_PROMPT)):
        view.add(step)
        after = view.html()
        if all(box.piece.whole for box in view.boxes[-2:]):  # a completed half character reframes its group
            assert after.startswith(before)
        before = after


def test_the_inside_tab_streams_the_engines_steps_and_a_click_shows_a_step(engine, tiny_model, monkeypatch):
    spacings = recorded_spacings(monkeypatch, views.inside)
    ctx = PageContext(engine)
    events = InsideHandlers(ctx)
    assert events.select(selected(0), browser()) == (gr.skip(),) * 4  # nothing generated yet
    outputs = run_all(events.generate(TUTORIAL_PROMPT, 12, 10, 1.0, 1.0, "21", browser()))
    view = ctx.sessions.get("tab-1", "inside")  # what the tab's clicks will look at
    expected = generate_text(tiny_model, TUTORIAL_PROMPT, SamplingSettings(max_new_tokens=12, seed=21))
    assert [s.token_id for s in view.steps] == expected.token_ids
    assert outputs[0][4] == "starting… · seed 21" and outputs[-1][4] == "12 tokens · finished: length reached · seed 21"
    assert spacings and set(spacings) == {VIEW_UPDATE_SECONDS}  # at most 4 updates a second
    html, chart, cutoff, detail = events.select(selected(3), browser("zh-CN"))
    assert "tv-selected" in html and "第 3 步" in detail and len(chart) == NUM_CANDIDATES
    assert events.select(selected(12), browser()) == (gr.skip(),) * 4  # a box that is not there
    assert events.select(selected(3), browser(session="tab-2")) == (gr.skip(),) * 4  # another tab generated nothing
    for index in ("3", float("nan"), float("inf"), True):  # what only a hand-made event sends
        with pytest.raises(gr.Error, match="select: this request does not fit the page"):
            events.select(gr.SelectData(None, {"index": index, "value": ""}), browser())


# ---------------------------------------------------------------- you are the sampler


def test_the_sampler_tab_picks_goes_back_and_undoes(engine):
    ctx = PageContext(engine)
    events = SamplerHandlers(ctx)

    async def scenario():
        assert (await events.sample(browser()))[2].startswith("Press Start.")  # before Start
        text, candidates, status = await events.start(TUTORIAL_PROMPT, 10, 1.0, 1.0, "8", browser())
        session = ctx.sessions.get("tab-1", "sampler")
        assert status == "0 tokens · 0 picked by you, 0 by the sampler · seed 8"
        assert candidates.count("data-index=") == NUM_CANDIDATES
        assert text == f'<div class="tv-text"><span class="tv-prompt">{escape(TUTORIAL_PROMPT)}</span>'
        third = session.candidates[2].token_id
        await events.choose(selected(2), browser())
        await events.sample(browser())
        _, _, status = await events.sample(browser())
        assert session.token_ids[0] == third and status == "3 tokens · 1 picked by you, 2 by the sampler · seed 8"
        text, _, status = await events.go_back(selected(1), browser("zh-CN"))
        assert session.token_ids == [third] and status.startswith("1 个 token") and text.count("tv-you") == 1
        await events.undo(browser())
        assert session.picks == []
        # A row of a page drawn before the last pick: nothing is taken, the page is drawn again as it is.
        assert await events.choose(selected(NUM_CANDIDATES), browser()) == session_outputs(session, "en")
        assert session.picks == []
        with pytest.raises(gr.Error, match="top_k must be an integer from 0 to 50257"):
            await events.start(TUTORIAL_PROMPT, -1, 1.0, 1.0, "8", browser())

    asyncio.run(scenario())


def test_the_sampler_tab_says_when_the_text_has_ended(engine):
    events = SamplerHandlers(PageContext(engine))

    async def scenario():
        await events.start(" one" * 1022, 10, 1.0, 1.0, "2", browser())  # room for two tokens
        await events.sample(browser())
        _, candidates, status = await events.sample(browser())
        assert candidates == '<p class="tv-note">finished: the context window is full</p>'
        assert status == "2 tokens · 0 picked by you, 2 by the sampler · seed 2"
        with pytest.raises(gr.Error) as ended:
            await events.sample(browser())
        assert ended.value.message == "This text has ended; go back to an earlier token to continue."
        with pytest.raises(gr.Error) as chinese:
            await events.sample(browser("zh"))
        assert chinese.value.message == "这段文本已经结束；回到前面的某个 token 才能继续。"

    asyncio.run(scenario())


# ---------------------------------------------------------------- strategies side by side


async def last(updates):
    runs = None
    async for runs in updates:
        pass
    return runs


def test_lanes_html_marks_repeats_and_the_first_token_off_the_greedy_path(engine):
    lanes = strategy_lanes(SamplingSettings(max_new_tokens=12, seed=4))
    runs = asyncio.run(last(run_lanes(engine, TUTORIAL_PROMPT, lanes)))
    html = lanes_html(TUTORIAL_PROMPT, runs, EOS, "en")
    greedy = runs[0].token_ids
    assert re.findall(r'class="tv-lane" data-lane="(\w+)"', html) == ["greedy", "top_k", "top_p", "custom"]
    assert html.count("tv-repeat") == sum(sum(repeated_ngrams(run.token_ids)) for run in runs)
    assert html.count("tv-diverge") == sum(first_divergence(greedy, run.token_ids) is not None for run in runs[1:])
    assert "Top-k = 10 (the tutorial)" in html and "Yours: top-k = 10" in html
    assert html.startswith(f'<div class="tv-text"><span class="tv-prompt">{escape(TUTORIAL_PROMPT)}</span></div>')


def test_your_lanes_title_names_its_rule_in_the_readers_language():
    custom = strategy_lanes(SamplingSettings(top_k=40, temperature=0.8, repetition_penalty=1.3, seed=1))[3]
    run = LaneRun(custom, Ticket())
    assert lane_title(run, "en") == "Yours: top-k = 40 · T = 0.8 · penalty 1.3"
    assert lane_title(run, "zh") == "你的：top-k = 40 · T = 0.8 · 重复惩罚 1.3"


def test_the_strategies_tab_compares_four_lanes_to_the_end(engine, tiny_model, monkeypatch):
    spacings = []
    original = views.strategies.run_lanes

    def recording(engine, prompt, lanes, attach, spacing):
        spacings.append(spacing)
        return original(engine, prompt, lanes, attach, spacing)

    monkeypatch.setattr(views.strategies, "run_lanes", recording)
    outputs = run_all(StrategyHandlers(PageContext(engine)).compare(TUTORIAL_PROMPT, 10, "3", 0.8, 40, 1.0, 1.0, browser()))
    html, status = outputs[-1]
    assert status == "10 batch steps for 4 lanes · seed 3" and html.count('class="tv-lane"') == 4
    assert spacings == [VIEW_UPDATE_SECONDS]
    greedy = generate_text(tiny_model, TUTORIAL_PROMPT, SamplingSettings(greedy=True, max_new_tokens=10, seed=3))
    assert re.findall(r'data-token-id="(\d+)"', html.split('data-lane="top_k"')[0]) == [str(i) for i in greedy.token_ids]
    _, chinese = run_all(StrategyHandlers(PageContext(engine)).compare("你好", 3, "3", 0.8, 40, 1.0, 1.0, browser("zh")))[-1]
    assert chinese == "4 条线共 3 个批次步骤 · 种子 3"


# ---------------------------------------------------------------- the tokenizer


def tokens_of(model, text: str) -> Tokens:
    ids = model.encode(text)
    return Tokens(tuple(ids), tuple(model.pieces.many(ids)))


def test_the_tokenizer_view_lists_indexed_tokens_and_groups(tiny_model):
    tokens = tokens_of(tiny_model, "今天 Hello")
    html = tokenizer_html("今天 Hello", tokens, EOS, "en")
    assert "indexed_tokens = [20015, 232, 25465, 18435]" in html
    assert "8 characters → 4 tokens; 1 characters split over several tokens" in html
    assert html.count('class="tk-group tk-split"') == 1 and html.count('class="tk-group"') == 2
    assert "<small>e4 bb</small>" in html and "<small>20 48 65 6c 6c 6f</small>" in html
    assert "4 个 token" in tokenizer_html("今天 Hello", tokens, EOS, "zh")


def test_a_long_text_draws_only_its_first_tokens(tiny_model):
    tokens = tokens_of(tiny_model, " one" * 600)
    html = tokenizer_html(" one" * 600, tokens, EOS, "en")
    assert html.count('class="tk-token"') == TOKENS_SHOWN == 512
    listed = html.split("indexed_tokens = [")[1].split("]")[0]
    assert listed.endswith(", …") and listed.count(",") == TOKENS_SHOWN  # the ids listed stop where the drawing stops
    assert "2400 characters → 600 tokens; 0 characters split over several tokens The first 512 tokens are drawn below." in html


def test_the_tokenizer_tab_asks_the_engine(engine):
    events = TokenizerHandlers(PageContext(engine))
    html = asyncio.run(events.tokenize("今天 Hello", browser()))
    assert html == tokenizer_html("今天 Hello", engine.tokenize_now("今天 Hello"), EOS, "en")
    with pytest.raises(gr.Error, match="unsupported character U\\+0000"):
        asyncio.run(events.tokenize("a\x00", browser()))


class LoadsWhenAsked(LocalEngine):
    """A LocalEngine whose loading ends only once someone has seen it loading."""

    def __init__(self, *args, **kwargs) -> None:
        self.asked = threading.Event()
        super().__init__(*args, loader=self.slow_loader, **kwargs)

    def slow_loader(self, spec, device, precision):
        assert self.asked.wait(DEADLINE_SECONDS), "nobody asked while the model was loading"
        return load_model(spec, device, precision)

    @property
    def state(self):
        state = super().state
        if state.phase == "loading":
            self.asked.set()
        return state


def test_a_tab_used_while_the_model_loads_waits_for_it(tiny_model_dir):
    engine = LoadsWhenAsked(str(tiny_model_dir), "cpu").start()
    try:
        html = asyncio.run(TokenizerHandlers(PageContext(engine)).tokenize("今天 Hello", browser()))
    finally:
        engine.asked.set()
        engine.close()
    assert engine.asked.is_set() and "indexed_tokens = [20015, 232, 25465, 18435]" in html


def test_a_tab_used_after_a_failed_load_says_why():
    def failing_loader(spec, device, precision):
        raise OSError("no such folder")

    engine = LocalEngine("gpt2", "cpu", loader=failing_loader).start()
    try:
        state = engine.wait_ready_blocking(DEADLINE_SECONDS)
        for language in ("en", "zh"):
            with pytest.raises(gr.Error) as caught:
                asyncio.run(TokenizerHandlers(PageContext(engine)).tokenize("Hi", browser(language)))
            assert caught.value.message == describe_error(state.error, language)
        assert caught.value.message == "模型无法加载：OSError: no such folder"
    finally:
        engine.close()


# ---------------------------------------------------------------- the cost of re-running


def test_the_cost_table_reports_tokens_per_second_at_each_milestone():
    points = [CostPoint(method, position, 1, seconds) for position in range(50)
              for method, seconds in ((TUTORIAL, 0.1), (KV_CACHE, 0.02))]
    table = cost_table(points, 50, "en")
    assert table.splitlines() == [
        "| method | first 25 tokens | first 50 tokens |",
        "|---|---|---|",
        "| tutorial: whole text every step | 10.0 | 10.0 |",
        "| KV cache: newest token only | 50.0 | 50.0 |",
        "| | KV cache is 5.0× faster | KV cache is 5.0× faster |",
    ]
    assert cost_table(points[:10], 50, "en").splitlines()[2] == "| tutorial: whole text every step |  |  |"  # not there yet
    frame = cost_frame(points[:2], "en")
    assert frame.values.tolist() == [[0, 100.0, "tutorial: whole text every step"], [0, 20.0, "KV cache: newest token only"]]


def test_the_cost_tab_races_to_the_end(engine, monkeypatch):
    spacings = recorded_spacings(monkeypatch, views.cost)
    frame, table, status = run_all(CostHandlers(PageContext(engine)).race(TUTORIAL_PROMPT, 25, browser()))[-1]
    assert len(frame) == 50 and "first 25 tokens" in table and status.endswith(" · Both wrote the same text.")
    assert status.startswith("tutorial: whole text every step: ") and spacings and set(spacings) == {VIEW_UPDATE_SECONDS}
    with pytest.raises(gr.Error) as caught:
        run_all(CostHandlers(PageContext(engine)).race(TUTORIAL_PROMPT, 10, browser()))
    assert caught.value.message == "count must be an integer from 25 to 200 (got 10)"
