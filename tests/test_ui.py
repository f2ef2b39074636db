"""The page's logic without a browser: handlers called directly as (async) generators."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

import gradio as gr
import pytest
from tqdm import tqdm

from gpt2demo.engine import generate_text, load_model
from gpt2demo.scheduler import SchedulerStats
from gpt2demo.settings import SamplingSettings, check_settings
from gpt2demo.sources import ModelSourceError
from gpt2demo.ui.classroom import describe_queue
from gpt2demo.ui.handlers import Handlers, reuse_seed
from gpt2demo.ui.i18n import LABELS, MESSAGES, pick_language
from gpt2demo.ui.live_output import UPDATE_SECONDS, GenerationView, render_html
from gpt2demo.ui.model_panel import Exposure, describe_banners, describe_model
from gpt2demo.ui.service import ModelService, loading_progress

from conftest import TUTORIAL_PROMPT

DEADLINE_SECONDS = 30  # generous bound for "eventually"; the asserted facts are exact


def browser(session: str = "tab-1", language: str = "en-US,en;q=0.9") -> gr.Request:
    """What Gradio passes a handler for one browser tab."""
    return gr.Request(headers={"accept-language": language}, session_hash=session)


class RecordingProgress:
    """Stands in for gr.Progress: remembers every call."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __call__(self, progress, desc=None, total=None, unit="steps"):
        self.calls.append((progress, desc))


def raw_settings(**overrides) -> dict:
    raw = dict(max_new_tokens=20, top_k=10, temperature=1.0, top_p=1.0, repetition_penalty=1.0, seed="7", greedy=False)
    raw.update(overrides)
    return raw


async def collect(outputs) -> list[tuple]:
    return [item async for item in outputs]


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def start_service(model_dir, **kwargs) -> ModelService:
    service = ModelService(str(model_dir), "cpu", **kwargs).start()
    assert service.ready.wait(DEADLINE_SECONDS) and service.model is not None, service.error
    return service


@pytest.fixture(scope="module")
def service(tiny_model_dir):
    service = start_service(tiny_model_dir, max_batch=4, queue_size=4)
    yield service
    service.close()


@pytest.fixture
def one_row(tiny_model_dir):
    """A scheduler with one batch row and room for two in line: the classroom when it is full."""
    service = start_service(tiny_model_dir, max_batch=1, queue_size=2)
    yield service
    service.close()


def without_repeats(texts: list[str]) -> list[str]:
    return [text for i, text in enumerate(texts) if i == 0 or text != texts[i - 1]]


# ---------------------------------------------------------------- streaming


def is_subsequence(seen: list[str], states: list[str]) -> bool:
    remaining = iter(states)
    return all(any(text == state for state in remaining) for text in seen)


def test_generate_streams_the_prompt_then_the_tokens_and_ends_with_the_engines_text(service):
    raw = raw_settings()
    outputs = asyncio.run(collect(Handlers(service).generate(TUTORIAL_PROMPT, **raw, request=browser())))
    expected = generate_text(service.model, TUTORIAL_PROMPT, check_settings(**raw))
    # The states the text may pass through: the prompt alone, then one more step each time.
    # Updates come at most every UPDATE_SECONDS, so a fast model skips some; the prompt, the
    # first token and the end are always shown, in order.
    states = without_repeats([TUTORIAL_PROMPT] + [TUTORIAL_PROMPT + "".join(s.text for s in expected.steps[: i + 1]) for i in range(len(expected.steps))])
    seen = without_repeats([text for text, *_ in outputs])
    assert seen[:2] == states[:2] and seen[-1] == states[-1]
    assert is_subsequence(seen, states), seen
    text, html, status, seed_used = outputs[-1]
    assert text == TUTORIAL_PROMPT + expected.text
    assert html == render_html(TUTORIAL_PROMPT, expected.text)
    assert seed_used == "7"
    parts = status.split(" · ")
    assert parts[0] == "20 tokens" and parts[1].endswith(" tokens/s")
    assert parts[2:] == ["finished: length reached", "seed 7"]
    assert outputs[0][2] in ("starting… · seed 7", "waiting: 0 ahead of you · seed 7")


@pytest.mark.parametrize(("running", "spacing"), [(0, UPDATE_SECONDS), (1, UPDATE_SECONDS), (6, UPDATE_SECONDS), (11, 0.1), (32, 0.31)])
def test_updates_are_spaced_by_the_page_rate_and_by_how_many_run(running, spacing):
    # Alone, at most 20 updates a second (a model slower than that shows every token);
    # with N running, 10 ms per other running request once that is longer.
    handlers = Handlers(SimpleNamespace(stats=lambda: SchedulerStats(running=running, waiting=0)))
    assert handlers.update_spacing() == pytest.approx(spacing)


def test_a_blank_seed_is_random_and_the_seed_shown_repeats_the_run(service):
    raw = raw_settings(seed="")
    outputs = asyncio.run(collect(Handlers(service).generate(TUTORIAL_PROMPT, **raw)))
    text, _, _, seed_used = outputs[-1]
    again = generate_text(service.model, TUTORIAL_PROMPT, check_settings(**raw_settings(seed=seed_used)))
    assert text == TUTORIAL_PROMPT + again.text


def test_status_follows_the_browsers_language(service):
    outputs = asyncio.run(collect(Handlers(service).generate("你好", **raw_settings(), request=browser(language="zh-CN,zh"))))
    parts = outputs[-1][2].split(" · ")
    assert parts[0] == "20 个 token" and parts[1].startswith("每秒 ")
    assert parts[2:] == ["结束：达到设定长度", "种子 7"]


def test_a_prompt_too_long_for_the_window_shows_the_engines_notice(service):
    prompt = "word " * 1100
    outputs = asyncio.run(collect(Handlers(service).generate(prompt, **raw_settings(max_new_tokens=5))))
    expected = generate_text(service.model, prompt, check_settings(**raw_settings(max_new_tokens=5)))
    assert expected.notice and outputs[-1][2].endswith(" · " + expected.notice)
    assert outputs[-1][0] == prompt + expected.text  # the page shows what was typed; the notice says what was cut


@pytest.mark.parametrize(
    "bad, named",
    [
        (dict(top_k=-1), "top_k"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(max_new_tokens=5000), "max_new_tokens"),
        (dict(top_p=0), "top_p"),
        (dict(seed="abc"), "seed"),
        (dict(max_new_tokens=10.5), "max_new_tokens"),
    ],
)
def test_bad_settings_are_a_gr_error_naming_the_parameter_and_nothing_runs(service, bad, named):
    with pytest.raises(gr.Error) as caught:
        asyncio.run(collect(Handlers(service).generate(TUTORIAL_PROMPT, **raw_settings(**bad))))
    assert caught.value.message.startswith(f"{named} must be ")
    assert " / " in caught.value.message  # the Chinese half of settings.py's message is kept
    assert service.stats() == SchedulerStats(running=0, waiting=0)


def test_top_k_above_the_models_vocabulary_is_refused(service):
    with pytest.raises(gr.Error) as caught:
        asyncio.run(collect(Handlers(service).generate(TUTORIAL_PROMPT, **raw_settings(top_k=50258))))
    assert caught.value.message.startswith("top_k must be an integer from 0 to 50257 (got 50258)")


def test_a_bad_prompt_is_a_gr_error(service):
    with pytest.raises(gr.Error, match="unsupported character U\\+0000"):
        asyncio.run(collect(Handlers(service).generate("a\x00b", **raw_settings())))


# ---------------------------------------------------------------- stopping


async def first_outputs(outputs, count: int) -> list[tuple]:
    return [await anext(outputs) for _ in range(count)]


def the_only_ticket(handlers: Handlers):
    (run,) = handlers.runs.snapshot()
    return run.ticket


def test_closing_the_stream_cancels_the_generation_within_one_token(service):
    """What Gradio does on a closed tab or an API cancel: it closes (or cancels) the handler."""
    handlers = Handlers(service)

    async def scenario():
        outputs = handlers.generate(TUTORIAL_PROMPT, **raw_settings(max_new_tokens=1000))
        await first_outputs(outputs, 4)
        generation = the_only_ticket(handlers).generation
        made_before_close = len(generation.new_token_ids)
        await outputs.aclose()
        return generation, made_before_close

    generation, made_before_close = asyncio.run(scenario())
    assert generation.cancel.is_set()
    wait_until(lambda: service.stats().running == 0, "the batch to empty")
    # The step running when cancel came finishes (+1); one more may have begun between our count and the cancel.
    assert len(generation.new_token_ids) - made_before_close <= 2
    assert generation.finish_reason == "stopped"
    assert service.stats().rows == 0 and len(handlers.runs) == 0


def test_cancelling_the_task_cancels_the_generation(service):
    """Gradio's cancels=[...] and the API's cancel end the task with CancelledError."""
    handlers = Handlers(service)

    async def scenario():
        outputs = handlers.generate(TUTORIAL_PROMPT, **raw_settings(max_new_tokens=1000))
        await first_outputs(outputs, 3)
        generation = the_only_ticket(handlers).generation
        task = asyncio.ensure_future(anext(outputs))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await outputs.aclose()
        return generation

    generation = asyncio.run(scenario())
    wait_until(lambda: service.stats().running == 0, "the batch to empty")
    assert generation.finish_reason == "stopped" and len(generation.new_token_ids) < 1000


def test_stop_ends_this_tabs_stream_with_a_stopped_status_and_leaves_other_tabs_alone(service):
    handlers = Handlers(service)

    async def scenario():
        mine = handlers.generate(TUTORIAL_PROMPT, **raw_settings(max_new_tokens=1000), request=browser("tab-1"))
        await first_outputs(mine, 3)
        handlers.stop(browser("tab-2"))  # another tab's Stop
        await first_outputs(mine, 3)  # still streaming
        generation = the_only_ticket(handlers).generation
        handlers.stop(browser("tab-1"))
        made_at_stop = len(generation.new_token_ids)
        rest = await collect(mine)
        return generation, made_at_stop, rest

    generation, made_at_stop, rest = asyncio.run(scenario())
    assert generation.finish_reason == "stopped"
    assert len(generation.new_token_ids) - made_at_stop <= 2
    parts = rest[-1][2].split(" · ")
    tokens = len(generation.new_token_ids)
    assert parts[0] == f"{tokens} tokens" and parts[-2:] == ["stopped", "seed 7"]
    wait_until(lambda: service.stats().running == 0, "the batch to empty")  # the step is handed over, then the row freed
    assert len(handlers.runs) == 0


def test_the_stop_handler_is_what_a_closed_tab_triggers_too(service):
    handlers = Handlers(service)
    assert handlers.stop(browser("nobody")) is None  # no run: nothing happens
    assert handlers.runs.stop_session(None) == 0  # API calls without a session are never stopped by a tab


# ---------------------------------------------------------------- the classroom: a full batch


def test_a_waiting_request_shows_its_place_and_runs_when_a_row_frees(one_row):
    handlers = Handlers(one_row)
    scheduler = one_row.scheduler
    long_settings = SamplingSettings(max_new_tokens=1000, seed=1)

    async def scenario():
        running = scheduler.submit(TUTORIAL_PROMPT, long_settings)
        wait_until(lambda: one_row.stats().running == 1, "the first request to run")
        in_line = scheduler.submit(TUTORIAL_PROMPT, long_settings)  # one ahead of ours
        outputs = handlers.generate(TUTORIAL_PROMPT, **raw_settings(), request=browser())
        (first,) = await first_outputs(outputs, 1)
        running.cancel()
        waits = []
        while True:  # ticks while in line: the other waiting request runs now, we are next
            output = await anext(outputs)
            waits.append(output[2])
            if output[2].startswith("waiting: 0 ahead of you"):
                break
        in_line.cancel()
        rest = await collect(outputs)
        return first, rest

    first, rest = asyncio.run(scenario())
    assert first[2] == "waiting: 1 ahead of you · seed 7"
    expected = generate_text(one_row.model, TUTORIAL_PROMPT, check_settings(**raw_settings()))
    assert rest[-1][0] == TUTORIAL_PROMPT + expected.text
    wait_until(lambda: one_row.stats() == SchedulerStats(running=0, waiting=0), "the scheduler to empty")


def test_stop_while_waiting_in_line_ends_at_once(one_row):
    handlers = Handlers(one_row)

    async def scenario():
        running = one_row.scheduler.submit(TUTORIAL_PROMPT, SamplingSettings(max_new_tokens=1000, seed=1))
        wait_until(lambda: one_row.stats().running == 1, "the first request to run")
        outputs = handlers.generate(TUTORIAL_PROMPT, **raw_settings(), request=browser("tab-9"))
        (first,) = await first_outputs(outputs, 1)
        handlers.stop(browser("tab-9"))
        rest = await collect(outputs)
        running.cancel()
        return first, rest

    first, rest = asyncio.run(scenario())
    assert first[2] == "waiting: 0 ahead of you · seed 7"
    assert rest[-1][2] == "0 tokens · stopped · seed 7"
    assert rest[-1][0] == TUTORIAL_PROMPT
    wait_until(lambda: one_row.stats() == SchedulerStats(running=0, waiting=0), "the scheduler to empty")


def test_a_full_line_is_a_gr_error_saying_how_many_are_ahead(tiny_model_dir):
    service = start_service(tiny_model_dir, max_batch=1, queue_size=0)
    try:
        running = service.scheduler.submit(TUTORIAL_PROMPT, SamplingSettings(max_new_tokens=1000, seed=1))
        with pytest.raises(gr.Error, match=r"1 requests are ahead of you"):
            asyncio.run(collect(Handlers(service).generate(TUTORIAL_PROMPT, **raw_settings())))
        running.cancel()
    finally:
        service.close()


# ---------------------------------------------------------------- loading the model


SHOWN_AT_FOUR = ((4.0, 10), "Loading the model: model.safetensors")


def test_a_request_during_loading_waits_and_mirrors_the_loaders_progress(tiny_model_dir):
    release = threading.Event()

    def slow_loader(spec, device):
        with tqdm(total=10, desc="model.safetensors") as bar:
            bar.update(4)
            release.wait(DEADLINE_SECONDS)
        return load_model(spec, device)

    service = ModelService(str(tiny_model_dir), "cpu", max_batch=2, queue_size=2, loader=slow_loader).start()
    progress = RecordingProgress()

    async def scenario():
        outputs = Handlers(service).generate(TUTORIAL_PROMPT, **raw_settings(), progress=progress)
        pending = asyncio.ensure_future(collect(outputs))
        deadline = time.monotonic() + DEADLINE_SECONDS
        # Wait for the bar's 4 of 10 (its first mirror may still show the 0 it was created with).
        while SHOWN_AT_FOUR not in progress.calls and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        release.set()
        return await pending

    try:
        outputs = asyncio.run(scenario())
    finally:
        release.set()
        service.close()
    # The bar closes before loading ends, so later ticks may report plain "loading": look for it anywhere.
    assert SHOWN_AT_FOUR in progress.calls
    expected = generate_text(service.model, TUTORIAL_PROMPT, check_settings(**raw_settings()))
    assert outputs[-1][0] == TUTORIAL_PROMPT + expected.text


def test_stop_during_loading_ends_the_request_without_running_it(tiny_model_dir):
    release = threading.Event()
    service = ModelService(str(tiny_model_dir), "cpu", loader=lambda spec, device: release.wait(DEADLINE_SECONDS) and load_model(spec, device)).start()
    handlers = Handlers(service)

    async def scenario():
        pending = asyncio.ensure_future(collect(handlers.generate(TUTORIAL_PROMPT, **raw_settings(), request=browser("tab-3"))))
        while len(handlers.runs) == 0:
            await asyncio.sleep(0.01)
        handlers.stop(browser("tab-3"))
        return await pending

    try:
        outputs = asyncio.run(scenario())
        assert outputs == [(TUTORIAL_PROMPT, render_html(TUTORIAL_PROMPT, ""), "0 tokens · stopped", "")]
    finally:
        release.set()
        service.close()


def test_a_failed_load_is_a_gr_error_and_shown_in_the_model_panel(tiny_model_dir):
    def failing_loader(spec, device):
        raise ModelSourceError("GPT-2 could not be had. Tried: no network.")

    service = ModelService("gpt2", "cpu", loader=failing_loader).start()
    assert service.ready.wait(DEADLINE_SECONDS)
    with pytest.raises(gr.Error, match="could not be loaded. GPT-2 could not be had. Tried: no network."):
        asyncio.run(collect(Handlers(service).generate(TUTORIAL_PROMPT, **raw_settings())))
    assert describe_model(service, "en") == "**Model:** could not be loaded. GPT-2 could not be had. Tried: no network."


def test_loading_progress_reports_the_newest_open_bar():
    with tqdm(total=100, desc="older") as older:
        older.update(50)
        time.sleep(0.01)  # bars are told apart by their start time
        with tqdm(total=None, desc="newer: ") as newer:
            newer.update(3)
            state = loading_progress()
            assert (state.desc, state.done, state.total) == ("newer", 3.0, None)
        state = loading_progress()
        assert (state.desc, state.done, state.total) == ("older", 50.0, 100)


# ---------------------------------------------------------------- the other handlers and views


def test_limit_length_allows_what_the_window_leaves_after_the_prompt(service):
    handlers = Handlers(service)
    assert handlers.limit_length(TUTORIAL_PROMPT, 100) == gr.update(maximum=1012, value=100)  # 1024 - 12 tokens
    assert handlers.limit_length(TUTORIAL_PROMPT, 1024) == gr.update(maximum=1012, value=1012)
    long_prompt = "word " * 700
    room = 1024 - len(service.model.encode(long_prompt))
    assert handlers.limit_length(long_prompt, 1000) == gr.update(maximum=room, value=room)
    # A prompt that fills the window is cut to its last 512 tokens, leaving 512 to write.
    assert handlers.limit_length("word " * 1100, 100) == gr.update(maximum=512, value=100)
    assert handlers.limit_length("a\x00", 100) == gr.update()


def test_show_server_reports_the_model_and_the_classroom(service):
    model_line, banners, classroom = Handlers(service).show_server(browser())
    facts = service.model.describe()
    assert model_line == (
        f"**Model:** {facts['name']} · from a local folder · device cpu (float32) · 3,382,080 parameters · "
        f"window 1024 tokens · loaded in {facts['load_seconds']} s"
    )
    assert banners == gr.update(value="", visible=False)
    assert classroom == "Requests running: 0 · waiting: 0"
    zh_line = Handlers(service).show_server(browser(language="zh-CN"))[0]
    assert zh_line.startswith("**模型：** ") and "来源：本地文件夹" in zh_line


def test_banners_warn_about_the_offline_model_a_public_page_and_a_failed_share_link():
    offline = SimpleNamespace(model=SimpleNamespace(describe=lambda: {"fallback_notice": "Using the bundled model."}))
    public = Exposure(share_requested=True, has_auth=False, local_url="http://127.0.0.1:7860/", share_url=None)
    text = describe_banners(offline, public, "en")
    assert text.split("\n\n") == [
        "⚠️ **Offline model in use.** Using the bundled model.",
        MESSAGES["en"]["public_no_auth"],
        MESSAGES["en"]["share_failed"].format(url="http://127.0.0.1:7860/"),
    ]
    shared = Exposure(share_requested=True, has_auth=True, local_url="http://x/", share_url="https://abc.gradio.live")
    assert describe_banners(SimpleNamespace(model=None), shared, "en") == "Public link: https://abc.gradio.live"
    assert describe_banners(SimpleNamespace(model=None), Exposure(), "en") == ""


def test_generation_view_states():
    view = GenerationView("Hi", seed=3)
    assert view.status("en") == "starting… · seed 3"
    view.waiting, view.ahead = True, 2
    assert view.status("en") == "waiting: 2 ahead of you · seed 3"
    step = SimpleNamespace(token_id=5, text=" there", finish_reason=None)
    view.add(step, now=10.0)
    assert view.status("en") == "1 tokens · generating… · seed 3"
    view.add(SimpleNamespace(token_id=6, text="!", finish_reason=None), now=10.5)
    view.add(SimpleNamespace(token_id=50256, text="", finish_reason="eos"), now=10.6)
    assert view.text == "Hi there!"
    assert view.status("en") == "2 tokens · 2.0 tokens/s · finished: end of text · seed 3"
    assert view.outputs("en")[3] == "3"


def test_render_html_escapes_and_keeps_the_prompt_grey():
    html = render_html("<b>a\nb", " & c")
    assert "<b>" not in html
    assert '<span class="gpt2demo-prompt" style="color: var(--body-text-color-subdued, #888)">&lt;b&gt;a\nb</span>' in html
    assert '<span class="gpt2demo-continuation"> &amp; c</span>' in html


def test_every_label_and_message_exists_in_both_languages():
    assert LABELS["en"].keys() == LABELS["zh"].keys()
    assert MESSAGES["en"].keys() == MESSAGES["zh"].keys()
    assert all(LABELS["zh"][key] for key in LABELS["zh"])


@pytest.mark.parametrize(
    "header, language",
    [("zh-CN,zh;q=0.9,en;q=0.8", "zh"), ("zh-TW", "zh"), ("en-US,zh;q=0.9", "en"), ("", "en"), (None, "en")],
)
def test_pick_language_follows_the_browsers_first_choice(header, language):
    assert pick_language(header) == language


def test_queue_line_and_seed_reuse():
    assert describe_queue(SchedulerStats(running=3, waiting=2), "en") == "Requests running: 3 · waiting: 2"
    assert describe_queue(SchedulerStats(running=3, waiting=2), "zh") == "正在生成：3 个请求 · 排队：2 个"
    assert reuse_seed("12345") == "12345"
