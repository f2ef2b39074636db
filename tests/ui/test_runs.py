"""Stop, for every tab, through one mechanism (ui/runs.py): a tab's Stop, a closed page, a closed or cancelled handler."""

import asyncio
import threading

import gradio as gr

from gpt2demo.generation import generate_text
from gpt2demo.model import load_model
from gpt2demo.serving.interface import Request
from gpt2demo.serving.local import LocalEngine
from gpt2demo.serving.tickets import Ticket
from gpt2demo.settings import SamplingSettings
from gpt2demo.ui.context import PageContext
from gpt2demo.ui.runs import Runs
from gpt2demo.ui.views.cost import CostHandlers
from gpt2demo.ui.views.generate import GenerateHandlers, render_html
from gpt2demo.ui.views.inside import InsideHandlers
from gpt2demo.ui.views.strategies import StrategyHandlers

from conftest import DEADLINE_SECONDS, TUTORIAL_PROMPT, local_engine
from handlers import collect

LONG_RUN = SamplingSettings(seed=1, max_new_tokens=1000)


def browser(session: str = "tab-1", language: str = "en-US,en;q=0.9") -> gr.Request:
    """What Gradio passes a handler for one browser tab."""
    return gr.Request(headers={"accept-language": language}, session_hash=session)


def raw_settings(**overrides) -> dict:
    raw = dict(max_new_tokens=1000, top_k=10, temperature=1.0, top_p=1.0, repetition_penalty=1.0, seed="7", greedy=False)
    raw.update(overrides)
    return raw



async def first_outputs(outputs, count: int) -> list:
    return [await anext(outputs) for _ in range(count)]


def recorded_tickets(engine, monkeypatch) -> list[Ticket]:
    """Every ticket the engine hands out from now on, in order."""
    tickets = []
    submit = engine.submit

    def recording(request):
        tickets.append(submit(request))
        return tickets[-1]

    monkeypatch.setattr(engine, "submit", recording)
    return tickets


# ---------------------------------------------------------------- the mechanism


def test_stop_reaches_the_runs_of_one_tab_of_one_browser_session():
    runs = Runs()
    mine, other_tab, other_session = runs.open(browser("s1"), "generate"), runs.open(browser("s1"), "inside"), runs.open(browser("s2"), "generate")
    tickets = [run.attach(Ticket()) for run in (mine, other_tab, other_session)]
    assert len(runs) == 3
    assert runs.stop("s1", "generate") == 1
    assert [ticket.cancelled for ticket in tickets] == [True, False, False]
    assert runs.stop("s1") == 2  # every tab of the session (a closed page)
    assert [ticket.cancelled for ticket in tickets] == [True, True, False]
    assert runs.stop(None) == 0 and not tickets[2].cancelled  # API calls without a session are never stopped by a tab
    runs.close(other_session)  # its handler ended: its requests stop too, and it is forgotten
    assert tickets[2].cancelled and len(runs) == 2


def test_a_stop_before_any_ticket_cancels_the_tickets_attached_later():
    run = Runs().open(browser(), "generate")
    run.stop()  # pressed while the model was still loading
    assert run.stop_requested and run.attach(Ticket()).cancelled


def test_the_stop_button_and_a_closed_page_go_through_the_same_runs():
    runs = Runs()
    generating, comparing = runs.open(browser("s1"), "generate"), runs.open(browser("s1"), "strategies")
    first, second = generating.attach(Ticket()), comparing.attach(Ticket())
    stop = runs.stop_button("strategies")
    assert stop.__name__ == "stop_strategies" and stop(browser("s1")) is None
    assert (first.cancelled, second.cancelled) == (False, True)
    assert runs.close_page(browser("nobody")) is None and not first.cancelled  # no run there: nothing happens
    runs.close_page(browser("s1"))
    assert first.cancelled


# ---------------------------------------------------------------- the Generate tab


def test_stop_ends_this_tabs_stream_with_a_stopped_status_and_leaves_other_tabs_alone(engine, tiny_model):
    ctx = PageContext(engine)

    async def scenario():
        mine = GenerateHandlers(ctx).generate(TUTORIAL_PROMPT, **raw_settings(), request=browser("tab-1"))
        await first_outputs(mine, 3)
        assert ctx.runs.stop("tab-2", "generate") == 0  # another browser's Stop
        assert ctx.runs.stop("tab-1", "inside") == 0  # this browser's Stop on another tab
        await first_outputs(mine, 3)  # still streaming
        ctx.runs.stop_button("generate")(browser("tab-1"))
        return await collect(mine)

    rest = asyncio.run(scenario())
    text, _, status, _ = rest[-1]
    parts = status.split(" · ")
    count = int(parts[0].removesuffix(" tokens"))
    assert parts[0] == f"{count} tokens" and parts[-2:] == ["stopped", "seed 7"] and count < 1000
    # The text stopped where it was: the first `count` tokens of the same seeded run.
    alone = generate_text(tiny_model, TUTORIAL_PROMPT, SamplingSettings(seed=7, max_new_tokens=count))
    assert text == TUTORIAL_PROMPT + alone.text
    assert len(ctx.runs) == 0 and (engine.stats().running, engine.stats().waiting) == (0, 0)


def test_closing_the_stream_cancels_the_generation(engine, monkeypatch):
    """What Gradio does on a closed tab or an API cancel: it closes the handler."""
    ctx = PageContext(engine)
    tickets = recorded_tickets(engine, monkeypatch)

    async def scenario():
        outputs = GenerateHandlers(ctx).generate(TUTORIAL_PROMPT, **raw_settings(), request=browser())
        await first_outputs(outputs, 4)
        await outputs.aclose()

    asyncio.run(scenario())
    (ticket,) = tickets
    assert ticket.cancelled and len(ctx.runs) == 0
    rest = list(ticket)  # what the engine delivered after the close, up to its end
    assert rest[-1].finish_reason == "stopped" and len(rest) < 1000
    assert engine.stats().running == 0


def test_cancelling_the_task_cancels_the_generation(engine, monkeypatch):
    """Gradio's cancels=[...] and the API's cancel end the handler's task with CancelledError."""
    ctx = PageContext(engine)
    tickets = recorded_tickets(engine, monkeypatch)

    async def scenario():
        outputs = GenerateHandlers(ctx).generate(TUTORIAL_PROMPT, **raw_settings(), request=browser())
        await first_outputs(outputs, 3)
        task = asyncio.ensure_future(anext(outputs))
        task.cancel()  # the cancel reaches the handler wherever it waits
        (result,) = await asyncio.gather(task, return_exceptions=True)
        await outputs.aclose()
        return result

    assert isinstance(asyncio.run(scenario()), asyncio.CancelledError)
    (ticket,) = tickets
    assert ticket.cancelled and len(ctx.runs) == 0
    assert list(ticket)[-1].finish_reason == "stopped" and engine.stats().running == 0


def test_stop_while_waiting_in_line_ends_at_once(tiny_model_dir):
    engine = local_engine(tiny_model_dir, max_batch=1, queue_size=2)
    ctx = PageContext(engine)

    async def scenario():
        running = engine.submit(Request(LONG_RUN, TUTORIAL_PROMPT))
        next(iter(running))  # it has the one row
        outputs = GenerateHandlers(ctx).generate(TUTORIAL_PROMPT, **raw_settings(max_new_tokens=20), request=browser("tab-9"))
        first = await anext(outputs)
        ctx.runs.stop_button("generate")(browser("tab-9"))
        rest = await collect(outputs)
        running.cancel()
        assert list(running)[-1].finish_reason == "stopped"
        return first, rest

    try:
        first, rest = asyncio.run(scenario())
        assert first[2] == "waiting: you are next · seed 7"
        assert rest[-1][:3] == (TUTORIAL_PROMPT, render_html(TUTORIAL_PROMPT, ""), "0 tokens · stopped · seed 7")
        assert (engine.stats().running, engine.stats().waiting) == (0, 0)
    finally:
        engine.close()


def test_stop_during_loading_ends_the_request_without_running_it(tiny_model_dir):
    release = threading.Event()

    def slow_loader(spec, device, precision):
        release.wait(DEADLINE_SECONDS)
        return load_model(spec, device, precision)

    engine = LocalEngine(str(tiny_model_dir), "cpu", loader=slow_loader).start()
    ctx = PageContext(engine)

    class PressesStop:
        """Stands in for gr.Progress: the page shows 'loading', and the visitor presses Stop."""

        def __call__(self, progress, desc=None, total=None, unit="steps"):
            ctx.runs.stop_button("generate")(browser("tab-3"))

    try:
        outputs = asyncio.run(collect(GenerateHandlers(ctx).generate(
            TUTORIAL_PROMPT, **raw_settings(), request=browser("tab-3"), progress=PressesStop())))
        assert outputs == [(TUTORIAL_PROMPT, render_html(TUTORIAL_PROMPT, ""), "0 tokens · stopped", "")]
        assert engine.state.phase == "loading" and len(ctx.runs) == 0
    finally:
        release.set()
        engine.loaded.wait(DEADLINE_SECONDS)  # close() while loading would leave the engine's thread behind
        engine.close()


# ---------------------------------------------------------------- the teaching tabs


def test_stop_ends_the_inside_tabs_stream(engine):
    ctx = PageContext(engine)

    async def scenario():
        stream = InsideHandlers(ctx).generate(TUTORIAL_PROMPT, 1000, 10, 1.0, 1.0, "21", browser())
        first = await anext(stream)
        ctx.runs.stop_button("inside")(browser())
        return [first] + await collect(stream)

    outputs = asyncio.run(scenario())
    view = ctx.sessions.get("tab-1", "inside")
    assert outputs[-1][4] == f"{len(view.steps)} tokens · stopped · seed 21" and len(view.steps) < 1000
    assert len(ctx.runs) == 0 and engine.stats().running == 0


def test_stop_ends_every_lane_of_a_comparison(engine):
    ctx = PageContext(engine)

    async def scenario():
        stream = StrategyHandlers(ctx).compare(TUTORIAL_PROMPT, 500, "3", 0.8, 40, 1.0, 1.0, browser())
        await anext(stream)
        ctx.runs.stop_button("strategies")(browser())
        return await collect(stream)

    html, status = asyncio.run(scenario())[-1]
    steps = int(status.split(" ")[0])
    assert status == f"{steps} batch steps for 4 lanes · seed 3 · stopped" and steps < 500
    assert html.count('class="tv-lane"') == 4 and engine.stats().running == 0 and len(ctx.runs) == 0


def test_stop_ends_the_cost_race(engine):
    ctx = PageContext(engine)

    async def scenario():
        stream = CostHandlers(ctx).race(TUTORIAL_PROMPT, 200, browser())
        await anext(stream)
        ctx.runs.stop_button("cost")(browser())
        return await collect(stream)

    frame, _, status = asyncio.run(scenario())[-1]
    assert status.endswith(" · stopped") and "same text" not in status
    assert len(frame) < 400 and engine.stats().jobs == 0 and len(ctx.runs) == 0


def test_a_closed_page_stops_the_runs_of_all_its_tabs(engine):
    ctx = PageContext(engine)

    async def scenario():
        generating = GenerateHandlers(ctx).generate(TUTORIAL_PROMPT, **raw_settings(), request=browser("page-1"))
        inspecting = InsideHandlers(ctx).generate(TUTORIAL_PROMPT, 1000, 10, 1.0, 1.0, "21", browser("page-1"))
        await anext(generating)
        await anext(inspecting)
        assert len(ctx.runs) == 2
        ctx.runs.close_page(browser("page-1"))
        return await collect(generating), await collect(inspecting)

    generated, inspected = asyncio.run(scenario())
    assert generated[-1][2].endswith(" · stopped · seed 7")
    assert inspected[-1][4].endswith(" · stopped · seed 21")
    assert len(ctx.runs) == 0 and engine.stats().running == 0
