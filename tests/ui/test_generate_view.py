"""The Generate tab without a browser: its view of a generation, and its handlers driven with an in-process engine."""

import asyncio
import threading

import gradio as gr
import pytest
from tqdm import tqdm

from gpt2demo.errors import GenerationFailed
from gpt2demo.generation import generate_steps, generate_text
from gpt2demo.model import load_model
from gpt2demo.pieces import TokenPiece
from gpt2demo.serving.interface import EngineStats, PromptFit, Request, Step
from gpt2demo.serving.local import LocalEngine, loading_progress
from gpt2demo.serving.tickets import Ticket
from gpt2demo.settings import SamplingSettings, check_settings
from gpt2demo.ui.context import PageContext
from gpt2demo.ui.pacing import UPDATE_SECONDS, VIEW_UPDATE_SECONDS, paced, update_spacing
from gpt2demo.ui.views.generate import GenerateHandlers, GenerationView, describe_fit, render_html, reuse_seed

from conftest import DEADLINE_SECONDS, TUTORIAL_PROMPT, local_engine
from handlers import collect

LONG_RUN = SamplingSettings(seed=1, max_new_tokens=1000)


def browser(session: str = "tab-1", language: str = "en-US,en;q=0.9") -> gr.Request:
    """What Gradio passes a handler for one browser tab."""
    return gr.Request(headers={"accept-language": language}, session_hash=session)


def raw_settings(**overrides) -> dict:
    raw = dict(max_new_tokens=20, top_k=10, temperature=1.0, top_p=1.0, repetition_penalty=1.0, seed="7", greedy=False)
    raw.update(overrides)
    return raw



def generate(engine, prompt: str = TUTORIAL_PROMPT, request: gr.Request | None = None, **overrides) -> list[tuple]:
    """Every output of one run of the Generate button, in order."""
    return asyncio.run(collect(GenerateHandlers(PageContext(engine)).generate(prompt, **raw_settings(**overrides),
                                                                              request=request or browser())))


def step(index: int, token_id: int | None, text: str, finish_reason: str | None = None) -> Step:
    piece = None if token_id is None else TokenPiece(token_id, text, text.encode())
    return Step(index, piece, text, 0.5, (), finish_reason)


@pytest.fixture
def one_row(tiny_model_dir):
    """An engine with one batch row and room for two in line: the classroom when it is full."""
    engine = local_engine(tiny_model_dir, max_batch=1, queue_size=2)
    yield engine
    engine.close()


# ---------------------------------------------------------------- the view


def test_generation_view_states():
    view = GenerationView("Hi", seed=3)
    assert view.status("en") == "starting… · seed 3"
    view.waiting, view.ahead = True, 2
    assert view.status("en") == "waiting: 2 ahead of you · seed 3"
    view.add(step(0, 5, " there"), now=10.0)
    assert view.status("en") == "1 tokens · generating… · seed 3"
    view.add(step(1, 6, "!"), now=10.5)
    view.add(step(2, 50256, "", "eos"), now=10.6)
    assert view.text == "Hi there!" and view.tokens == 2  # <|endoftext|> is not a token of the text
    assert view.status("en") == "2 tokens · 2.0 tokens/s · finished: end of text · seed 3"
    assert view.status("zh") == "2 个 token · 每秒 2.0 个 token · 结束：文本结束 · 种子 3"
    assert view.outputs("en") == ("Hi there!", render_html("Hi", " there!"), view.status("en"), "3")
    assert GenerationView("Hi").outputs("en")[3] == ""  # no seed before the engine reports it


def test_a_stopped_view_and_the_window_notice():
    stopped = GenerationView("Hi", seed=4)
    stopped.add(step(0, 5, " a"), now=1.0)
    stopped.add(step(1, None, "", "stopped"), now=1.1)
    assert stopped.status("en") == "1 tokens · stopped · seed 4"
    fit = PromptFit((1,) * 1019, "…", 5, 1024, cut_from=1100)
    assert describe_fit(fit, "en") == "The prompt had 1100 tokens; only its last 1019 fit the model's 1024-token window."
    lowered = PromptFit((1,) * 1000, "…", 24, 1024, lowered_from=100)
    assert GenerationView("Hi", seed=1, fit=lowered).status("en") == (
        "starting… · seed 1 · Length lowered to 24 new tokens, what the window leaves.")
    assert describe_fit(None, "en") == "" and describe_fit(PromptFit((1,), "x", 5, 1024), "zh") == ""


def test_render_html_escapes_keeps_the_prompt_grey_and_is_left_open():
    assert render_html("<b>a\nb", " & c") == (
        '<div class="gpt2demo-output" style="white-space: pre-wrap; font-size: 1.1em; line-height: 1.6">'
        '<span class="gpt2demo-prompt" style="color: var(--body-text-color-subdued, #888)">&lt;b&gt;a\nb</span>'
        '<span class="gpt2demo-continuation"> &amp; c'
    )


def test_each_html_output_of_a_stream_starts_with_the_one_before(tiny_model):
    settings = SamplingSettings(seed=3, max_new_tokens=20, top_k=0)
    view = GenerationView("<p> & 今天", seed=3)
    before, texts = view.outputs("en")[1], []
    for index, new in enumerate(generate_steps(tiny_model, Request(settings, "<p> & 今天"))):
        view.add(new, now=float(index))
        texts.append(new.text)
        after = view.outputs("en")[1]
        assert after.startswith(before)  # Gradio then sends only the new text
        before = after
    assert len(texts) == 20 and before == render_html("<p> & 今天", "".join(texts))


# ---------------------------------------------------------------- the handler's stream


def is_subsequence(seen: list[str], states: list[str]) -> bool:
    remaining = iter(states)
    return all(any(text == state for state in remaining) for text in seen)


def test_generate_streams_the_prompt_then_the_text_so_far_and_ends_with_the_engines_text(engine, tiny_model):
    outputs = generate(engine)
    expected = generate_text(tiny_model, TUTORIAL_PROMPT, check_settings(**raw_settings()))
    # The texts a stream may show: the prompt, then one more step each time; a paced page skips some.
    states = [TUTORIAL_PROMPT + "".join(s.text for s in expected.steps[:count]) for count in range(len(expected.steps) + 1)]
    texts = [text for text, *_ in outputs]
    assert texts[0] == TUTORIAL_PROMPT and texts[-1] == TUTORIAL_PROMPT + expected.text
    assert is_subsequence(texts, states), texts
    htmls = [html for _, html, _, _ in outputs]
    assert all(later.startswith(earlier) for earlier, later in zip(htmls, htmls[1:]))  # append-only, update by update
    text, html, status, seed_used = outputs[-1]
    assert html == render_html(TUTORIAL_PROMPT, expected.text) and seed_used == "7"
    parts = status.split(" · ")
    assert parts[0] == "20 tokens" and parts[-2:] == ["finished: length reached", "seed 7"]
    # The speed needs two updates apart; a fast model may deliver all 20 tokens in one.
    assert len(parts) in (3, 4) and all(part.endswith(" tokens/s") for part in parts[1:-2])
    assert outputs[0][2] == "starting… · seed 7"  # accepted with a row free: it is about to start


def test_a_blank_seed_is_random_and_the_seed_shown_repeats_the_run(engine, tiny_model):
    text, _, _, seed_used = generate(engine, seed="")[-1]
    again = generate_text(tiny_model, TUTORIAL_PROMPT, check_settings(**raw_settings(seed=seed_used)))
    assert text == TUTORIAL_PROMPT + again.text
    assert reuse_seed(seed_used) == seed_used  # the button copies it into the seed box


def test_status_follows_the_browsers_language(engine):
    parts = generate(engine, "你好", request=browser(language="zh-CN,zh"))[-1][2].split(" · ")
    assert parts[0] == "20 个 token" and parts[-2:] == ["结束：达到设定长度", "种子 7"]
    assert all(part.startswith("每秒 ") for part in parts[1:-2])


def test_a_prompt_too_long_for_the_window_shows_the_engines_notice(engine, tiny_model):
    prompt = "word " * 1100
    outputs = generate(engine, prompt, max_new_tokens=5)
    expected = generate_text(tiny_model, prompt, check_settings(**raw_settings(max_new_tokens=5)))
    notice = f"The prompt had {len(tiny_model.encode(prompt))} tokens; only its last 1019 fit the model's 1024-token window."
    assert describe_fit(expected.prompt, "en") == notice
    assert outputs[-1][2].endswith(" · " + notice)
    assert outputs[-1][0] == prompt + expected.text  # the page shows what was typed; the notice says what was cut


@pytest.mark.parametrize(
    "bad, named, got",
    [
        (dict(top_k=-1), "top_k", "-1"),
        (dict(temperature=float("nan")), "temperature", "nan"),
        (dict(max_new_tokens=5000), "max_new_tokens", "5000"),
        (dict(top_p=0), "top_p", "0"),
        (dict(seed="abc"), "seed", "'abc'"),
        (dict(max_new_tokens=10.5), "max_new_tokens", "10.5"),
        (dict(top_k=50258), "top_k", "50258"),  # above GPT-2's vocabulary
    ],
)
def test_bad_settings_are_a_gr_error_in_the_readers_language_and_nothing_runs(engine, bad, named, got):
    with pytest.raises(gr.Error) as english:
        generate(engine, **bad)
    assert english.value.message.startswith(f"{named} must be ") and english.value.message.endswith(f"(got {got})")
    with pytest.raises(gr.Error) as chinese:
        generate(engine, request=browser(language="zh-CN"), **bad)
    assert chinese.value.message.startswith(f"{named} 必须是") and chinese.value.message.endswith(f"（收到 {got}）")
    assert (engine.stats().running, engine.stats().waiting) == (0, 0)


def test_a_huge_bad_value_is_quoted_as_a_short_excerpt(engine):
    with pytest.raises(gr.Error) as caught:
        generate(engine, seed="9" * 100_000)
    assert caught.value.message.startswith("seed must be an integer from 0 to 4294967295 (got '9999")
    assert len(caught.value.message) < 120


def test_a_bad_prompt_is_a_gr_error(engine):
    with pytest.raises(gr.Error, match="unsupported character U\\+0000 at position 1"):
        generate(engine, "a\x00b")
    with pytest.raises(gr.Error, match="prompt must be text"):
        generate(engine, 12)


# ---------------------------------------------------------------- pacing


@pytest.mark.parametrize(("running", "spacing", "view_spacing"), [
    (0, UPDATE_SECONDS, VIEW_UPDATE_SECONDS), (1, UPDATE_SECONDS, VIEW_UPDATE_SECONDS), (6, UPDATE_SECONDS, 0.25),
    (11, 0.1, 0.25), (32, 0.31, 0.31),
])
def test_updates_are_spaced_by_the_page_rate_and_by_how_many_run(running, spacing, view_spacing):
    # Alone, at most 20 updates a second (4 for the teaching views); with N running, 10 ms per other request.
    assert (UPDATE_SECONDS, VIEW_UPDATE_SECONDS) == (0.05, 0.25)
    assert update_spacing(EngineStats(running=running)) == pytest.approx(spacing)
    assert update_spacing(EngineStats(running=running), VIEW_UPDATE_SECONDS) == pytest.approx(view_spacing)


def test_paced_sends_the_first_batch_at_once_ends_with_the_last_and_raises_an_error_after_its_items():
    async def scenario():
        ticket = Ticket()
        ticket.deliver([step(0, 1, "a")])
        batches = paced(ticket, lambda: 60.0)
        assert await anext(batches) == [step(0, 1, "a")]
        assert await anext(batches) == []  # a quiet tick still yields: Gradio notices a closed tab there
        ticket.deliver([step(1, 2, "b")])
        ticket.deliver([step(2, 3, "c", "length")], finished=True)
        assert await anext(batches) == [step(1, 2, "b"), step(2, 3, "c", "length")]  # the end is never held back
        with pytest.raises(StopAsyncIteration):
            await anext(batches)

        failing = Ticket()
        failing.deliver([step(0, 1, "a")])
        failing.fail(GenerationFailed("step_failed", kind="RuntimeError", detail="x"))
        batches = paced(failing, lambda: 0.0)
        assert await anext(batches) == [step(0, 1, "a")]
        with pytest.raises(GenerationFailed):
            await anext(batches)

    asyncio.run(scenario())


def test_paced_holds_an_item_only_after_an_update_that_carried_items():
    # A first token after a wait (in line, or its prompt being read) goes at once: only an
    # update that sent tokens starts the spacing, not a quiet tick.
    class RecordingTicket(Ticket):
        def __init__(self):
            super().__init__()
            self.holds = []

        async def take(self, timeout, hold=0.0):
            self.holds.append(hold)
            return await super().take(timeout, hold)

    async def scenario():
        ticket = RecordingTicket()
        batches = paced(ticket, lambda: 60.0)
        assert await anext(batches) == []  # nothing yet: a quiet tick
        ticket.deliver([step(0, 1, "a")])
        assert await anext(batches) == [step(0, 1, "a")]
        ticket.deliver([step(1, 2, "b", "length")], finished=True)
        assert await anext(batches) == [step(1, 2, "b", "length")]
        return ticket.holds

    holds = asyncio.run(scenario())
    assert holds[:2] == [0.0, 0.0]  # the first token was not held after the quiet tick
    assert 59.0 < holds[2] <= 60.0  # the next one was, after the update that carried a token


# ---------------------------------------------------------------- the length slider


def test_limit_length_allows_what_the_window_leaves_after_the_prompt(engine, tiny_model):
    limit = lambda prompt, value: asyncio.run(GenerateHandlers(PageContext(engine)).limit_length(prompt, value))  # noqa: E731
    assert limit(TUTORIAL_PROMPT, 100) == gr.update(maximum=1012, value=100)  # 1024 - 12 tokens
    assert limit(TUTORIAL_PROMPT, 1024) == gr.update(maximum=1012, value=1012)
    long_prompt = "word " * 700
    room = 1024 - len(tiny_model.encode(long_prompt))
    assert limit(long_prompt, 1000) == gr.update(maximum=room, value=room)
    # A prompt that fills the window is cut to its last 512 tokens, leaving 512 to write.
    assert limit("word " * 1100, 100) == gr.update(maximum=512, value=100)
    with pytest.raises(gr.Error, match="unsupported character U\\+0000"):
        limit("a\x00", 100)


def test_limit_length_leaves_the_slider_alone_until_the_model_is_ready(tiny_model_dir):
    unstarted = LocalEngine(str(tiny_model_dir), "cpu")  # never started: loading for ever
    assert asyncio.run(GenerateHandlers(PageContext(unstarted)).limit_length(TUTORIAL_PROMPT, 100)) == gr.update()


# ---------------------------------------------------------------- the classroom: a full batch


def test_a_waiting_request_shows_its_place_and_runs_when_a_row_frees(one_row, tiny_model):
    handlers = GenerateHandlers(PageContext(one_row))

    async def scenario():
        running = one_row.submit(Request(LONG_RUN, TUTORIAL_PROMPT))
        next(iter(running))  # it has the one row
        in_line = one_row.submit(Request(LONG_RUN, TUTORIAL_PROMPT))  # one ahead of ours
        outputs = handlers.generate(TUTORIAL_PROMPT, **raw_settings(), request=browser())
        first = await anext(outputs)
        running.cancel()
        while True:  # ticks while in line: the other waiting request runs now, ours is next
            output = await anext(outputs)
            if output[2].startswith("waiting: you are next"):
                break
            assert output[2] == "waiting: 1 ahead of you · seed 7"
        in_line.cancel()
        return first, output, await collect(outputs)

    first, next_in_line, rest = asyncio.run(scenario())
    assert first[2] == "waiting: 1 ahead of you · seed 7"
    assert next_in_line[2] == "waiting: you are next · seed 7"
    expected = generate_text(tiny_model, TUTORIAL_PROMPT, check_settings(**raw_settings()))
    assert rest[-1][0] == TUTORIAL_PROMPT + expected.text
    assert (one_row.stats().running, one_row.stats().waiting) == (0, 0)


def test_a_full_line_is_a_gr_error_saying_how_many_are_ahead(tiny_model_dir):
    engine = local_engine(tiny_model_dir, max_batch=1, queue_size=0)
    try:
        running = engine.submit(Request(LONG_RUN, TUTORIAL_PROMPT))
        with pytest.raises(gr.Error) as english:
            generate(engine)
        assert english.value.message == "The server is busy; 1 requests are ahead of you. Please try again in a moment."
        with pytest.raises(gr.Error) as chinese:
            generate(engine, request=browser(language="zh"))
        assert chinese.value.message == "服务器繁忙，前面还有 1 个请求，请稍后再试。"
        running.cancel()
        assert list(running)[-1].finish_reason == "stopped"
    finally:
        engine.close()


# ---------------------------------------------------------------- loading the model

SHOWN_AT_FOUR = ((4.0, 10), "Loading the model: model.safetensors")


class RecordingProgress:
    """Stands in for gr.Progress: remembers every call, and runs `on_call` with each."""

    def __init__(self, on_call=lambda progress, desc: None) -> None:
        self.calls: list[tuple] = []
        self.on_call = on_call

    def __call__(self, progress, desc=None, total=None, unit="steps"):
        self.calls.append((progress, desc))
        self.on_call(progress, desc)


def test_a_request_during_loading_waits_and_mirrors_the_loaders_progress(tiny_model_dir, tiny_model):
    release = threading.Event()

    def slow_loader(spec, device, precision):
        with tqdm(total=10, desc="model.safetensors") as bar:
            bar.update(4)
            assert release.wait(DEADLINE_SECONDS), "the page never showed the loader's progress"
        return load_model(spec, device, precision)

    # The loader goes on once the page has shown its 4 of 10 (a first mirror may show the 0 it began with).
    progress = RecordingProgress(lambda done, desc: (done, desc) == SHOWN_AT_FOUR and release.set())
    engine = LocalEngine(str(tiny_model_dir), "cpu", max_batch=2, queue_size=2, loader=slow_loader).start()
    try:
        outputs = asyncio.run(collect(GenerateHandlers(PageContext(engine)).generate(
            TUTORIAL_PROMPT, **raw_settings(), request=browser(), progress=progress)))
    finally:
        release.set()
        engine.close()
    assert SHOWN_AT_FOUR in progress.calls
    expected = generate_text(tiny_model, TUTORIAL_PROMPT, check_settings(**raw_settings()))
    assert outputs[-1][0] == TUTORIAL_PROMPT + expected.text


def test_a_failed_load_is_a_gr_error_with_its_reason(tiny_model_dir):
    def failing_loader(spec, device, precision):
        raise OSError("disk on fire")

    engine = LocalEngine("gpt2", "cpu", loader=failing_loader).start()
    try:
        assert engine.wait_ready_blocking(DEADLINE_SECONDS).phase == "failed"
        with pytest.raises(gr.Error) as caught:
            generate(engine)
        assert caught.value.message == "The model could not be loaded: OSError: disk on fire"
    finally:
        engine.close()


def test_loading_progress_reports_the_newest_open_bar():
    with tqdm(total=100, desc="older") as older:
        older.update(50)
        with tqdm(total=None, desc="newer: ") as newer:
            newer.start_t = older.start_t + 1.0  # bars are told apart by their start time: make the order certain
            newer.update(3)
            state = loading_progress()
            assert (state.desc, state.done, state.total) == ("newer", 3.0, None)
        state = loading_progress()
        assert (state.desc, state.done, state.total) == ("older", 50.0, 100)
    assert loading_progress() is None
