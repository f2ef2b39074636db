"""Continuous batching: every request's output equals running it alone."""

import asyncio
import threading
import time

import pytest

from gpt2demo.engine import DecodeBatch, Generation, Step, generate_text
from gpt2demo.scheduler import Scheduler, SchedulerStats, ServerBusy, Ticket
from gpt2demo.settings import SamplingSettings

from conftest import TUTORIAL_PROMPT

PROMPTS = ["Hello", TUTORIAL_PROMPT, "你好，世界", "a b c d e f g h i j k l m n o p q r s t", ""]
SETTINGS = [
    SamplingSettings(greedy=True, max_new_tokens=30),
    SamplingSettings(seed=1, max_new_tokens=45, top_k=0, top_p=0.9, temperature=0.7, repetition_penalty=1.3),
    SamplingSettings(seed=2, max_new_tokens=12, top_k=50, temperature=1.3),
    SamplingSettings(seed=3, max_new_tokens=38, top_k=5, repetition_penalty=0.8),
    SamplingSettings(seed=4, max_new_tokens=25),
]


def test_a_mixed_batch_with_late_joiners_matches_each_request_alone(tiny_model):
    alone = [generate_text(tiny_model, p, s).token_ids for p, s in zip(PROMPTS, SETTINGS)]
    batch = DecodeBatch(tiny_model)
    generations = [Generation(tiny_model, p, s) for p, s in zip(PROMPTS, SETTINGS)]
    join_at = {0: [0, 1], 3: [2], 10: [3, 4]}  # requests join between steps
    step_number = 0
    while step_number == 0 or batch:
        for index in join_at.get(step_number, []):
            batch.add(generations[index])
        batch.step()
        step_number += 1
    assert [g.new_token_ids for g in generations] == alone
    assert batch.cache.rows == 0  # every finished request's cache row was freed


def test_a_cancelled_request_leaves_the_batch_at_the_next_step(tiny_model):
    batch = DecodeBatch(tiny_model)
    staying = Generation(tiny_model, "Hello", SamplingSettings(seed=0, max_new_tokens=20))
    leaving = Generation(tiny_model, "Bye", SamplingSettings(seed=0, max_new_tokens=20))
    batch.add(staying)
    batch.add(leaving)
    batch.step()
    leaving.cancel.set()
    results = batch.step()
    assert [(g is leaving, s.finish_reason) for g, s in results] == [(True, "stopped"), (False, None)]
    assert batch.rows == [staying] and batch.cache.rows == 1
    while batch:
        batch.step()
    assert staying.new_token_ids == generate_text(tiny_model, "Hello", SamplingSettings(seed=0, max_new_tokens=20)).token_ids


def collect(scheduler, prompt, settings, results, index, delay=0.0):
    time.sleep(delay)
    ticket = scheduler.submit(prompt, settings)
    steps = list(ticket)
    results[index] = ("".join(s.text for s in steps), ticket.generation.new_token_ids, steps[-1].finish_reason)


def test_concurrent_submissions_match_running_alone(tiny_model):
    alone = [generate_text(tiny_model, p, s) for p, s in zip(PROMPTS, SETTINGS)]
    scheduler = Scheduler(tiny_model, max_batch=3, queue_size=10)
    results = {}
    try:
        threads = [threading.Thread(target=collect, args=(scheduler, p, s, results, i, 0.02 * i)) for i, (p, s) in enumerate(zip(PROMPTS, SETTINGS))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert [results[i] for i in range(len(PROMPTS))] == [(a.text, a.token_ids, a.finish_reason) for a in alone]
        assert scheduler.stats().running == 0 and scheduler.stats().waiting == 0
    finally:
        scheduler.close()


def test_a_full_queue_refuses_with_a_clear_message(tiny_model):
    scheduler = Scheduler(tiny_model, max_batch=1, queue_size=1)
    hold = threading.Event()
    original = scheduler._batch.step

    def slow_step():
        hold.wait(timeout=30)
        return original()

    scheduler._batch.step = slow_step
    try:
        first = scheduler.submit("a", SamplingSettings(seed=0, max_new_tokens=5))
        time.sleep(0.5)  # let the scheduler admit it; it now blocks in slow_step
        second = scheduler.submit("b", SamplingSettings(seed=0, max_new_tokens=5))
        assert second.ahead == 0
        with pytest.raises(ServerBusy, match="The server is busy; 2 requests are ahead of you"):
            scheduler.submit("c", SamplingSettings(seed=0, max_new_tokens=5))
        hold.set()
        assert [s.finish_reason for s in first][-1] == "length"
        assert [s.finish_reason for s in second][-1] == "length"
    finally:
        hold.set()
        scheduler.close()


def test_an_error_inside_a_step_reaches_the_stream_and_the_next_request_works(tiny_model):
    scheduler = Scheduler(tiny_model, max_batch=4)
    broken = scheduler._batch
    broken.step = lambda: (_ for _ in ()).throw(RuntimeError("simulated failure"))
    try:
        ticket = scheduler.submit("Hello", SamplingSettings(seed=0, max_new_tokens=5))
        with pytest.raises(RuntimeError, match="Generation failed: RuntimeError: simulated failure"):
            list(ticket)
        assert scheduler._batch is not broken
        ticket = scheduler.submit("Hello", SamplingSettings(seed=0, max_new_tokens=5))
        assert [s.finish_reason for s in ticket][-1] == "length"
        assert ticket.generation.new_token_ids == generate_text(tiny_model, "Hello", SamplingSettings(seed=0, max_new_tokens=5)).token_ids
    finally:
        scheduler.close()


def test_async_iteration_and_cancel(tiny_model):
    import asyncio

    scheduler = Scheduler(tiny_model, max_batch=2)

    async def consume():
        ticket = scheduler.submit(TUTORIAL_PROMPT, SamplingSettings(seed=0, max_new_tokens=500))
        steps = []
        async for step in ticket:
            steps.append(step)
            if len(steps) == 5:
                ticket.cancel()
        return steps

    try:
        steps = asyncio.run(consume())
        assert [s.finish_reason for s in steps][-2:] == [None, "stopped"]
        assert len(steps) in (6, 7)  # at most one token already in flight when cancel() ran
        time.sleep(0.2)
        assert scheduler.stats().running == 0 and len(scheduler._batch) == 0
    finally:
        scheduler.close()


def test_a_request_cancelled_while_in_line_leaves_the_line_at_once(tiny_model):
    scheduler = Scheduler(tiny_model, max_batch=1, queue_size=4)
    hold = threading.Event()
    original = scheduler._batch.step
    scheduler._batch.step = lambda: (hold.wait(timeout=30), original())[1]
    try:
        running = scheduler.submit("a", SamplingSettings(seed=0, max_new_tokens=3))
        time.sleep(0.5)
        waiting = scheduler.submit("b", SamplingSettings(seed=0, max_new_tokens=3))
        behind = scheduler.submit("c", SamplingSettings(seed=0, max_new_tokens=3))
        assert (running.admitted, waiting.admitted, behind.ahead) == (True, False, 1)
        assert scheduler.stats() == SchedulerStats(running=1, waiting=2, rows=1)
        waiting.cancel()
        assert [s.finish_reason for s in waiting] == ["stopped"]
        assert (scheduler.stats().waiting, behind.ahead) == (1, 0)
        hold.set()
        assert [s.finish_reason for s in behind][-1] == "length"
    finally:
        hold.set()
        scheduler.close()


def test_requests_joining_together_share_one_prefill_and_match_running_alone(tiny_model, monkeypatch):
    alone = [generate_text(tiny_model, p, s).token_ids for p, s in zip(PROMPTS, SETTINGS)]
    batch = DecodeBatch(tiny_model)
    calls = []
    original = tiny_model.decoder.prefill
    monkeypatch.setattr(tiny_model.decoder, "prefill", lambda cache, rows, prompts: calls.append(len(rows)) or original(cache, rows, prompts))
    generations = [Generation(tiny_model, p, s) for p, s in zip(PROMPTS, SETTINGS)]
    first_steps = batch.add_many(generations)
    assert calls == [len(PROMPTS)]  # one pass for the five prompts of different lengths
    assert [s.token_id for s in first_steps] == [ids[0] for ids in alone]
    while batch:
        batch.step()
    assert [g.new_token_ids for g in generations] == alone


def test_a_large_joining_group_is_prefilled_in_passes_of_bounded_size(tiny_model, monkeypatch):
    from gpt2demo import engine

    monkeypatch.setattr(engine, "PREFILL_TOKENS", 20)
    calls = []
    original = tiny_model.decoder.prefill
    monkeypatch.setattr(tiny_model.decoder, "prefill", lambda cache, rows, prompts: calls.append([len(p) for p in prompts]) or original(cache, rows, prompts))
    prompts = [" one" * 8, " two" * 8, " three" * 15, " four" * 30]
    generations = [Generation(tiny_model, p, SamplingSettings(greedy=True, max_new_tokens=3)) for p in prompts]
    DecodeBatch(tiny_model).add_many(generations)
    assert calls == [[8, 8], [15], [30]]  # a prompt longer than the budget still gets its own pass


# ---------------------------------------------------------------- take(): steps in batches for a paced page


def step(index: int, finish_reason: str | None = None) -> Step:
    return Step(index, 100 + index, f"t{index}", f"t{index}", 0.5, (), finish_reason)


def deliver_later(ticket: Ticket, items: list, delay: float) -> threading.Thread:
    """Deliver items from another thread, as the scheduler does, after `delay` seconds."""

    def run():
        time.sleep(delay)
        for item in items:
            ticket.deliver(item)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def timed_take(ticket: Ticket, timeout: float, hold: float) -> tuple[list, float]:
    async def take():
        started = time.perf_counter()
        steps = await ticket.take(timeout, hold)
        return steps, time.perf_counter() - started

    return asyncio.run(take())


def test_take_returns_every_step_delivered_so_far_and_nothing_twice():
    ticket = Ticket(generation=None)
    for index in range(3):
        ticket.deliver(step(index))
    assert timed_take(ticket, 1.0, 0.0)[0] == [step(0), step(1), step(2)]
    deliver_later(ticket, [step(3)], 0.05).join()
    assert timed_take(ticket, 1.0, 0.0)[0] == [step(3)]


def test_take_waits_for_the_first_step_then_returns_at_once():
    ticket = Ticket(generation=None)
    thread = deliver_later(ticket, [step(0)], 0.1)
    steps, seconds = timed_take(ticket, 10.0, 0.0)
    thread.join()
    assert steps == [step(0)] and 0.1 <= seconds < 10.0


def test_while_holding_only_the_last_step_wakes_the_page():
    ticket = Ticket(generation=None)
    thread = deliver_later(ticket, [step(0), step(1)], 0.05)  # ordinary steps: held back
    steps, seconds = timed_take(ticket, 10.0, hold=0.4)
    thread.join()
    assert steps == [step(0), step(1)] and seconds >= 0.4
    thread = deliver_later(ticket, [step(2), step(3, "length")], 0.05)  # the end: at once
    steps, seconds = timed_take(ticket, 10.0, hold=5.0)
    thread.join()
    assert steps == [step(2), step(3, "length")] and seconds < 5.0


def test_take_gives_nothing_after_its_timeout_and_a_later_delivery_is_kept():
    ticket = Ticket(generation=None)
    steps, seconds = timed_take(ticket, 0.1, 0.0)
    assert steps == [] and seconds >= 0.1
    ticket.deliver(step(0))  # no waiter left behind to wake
    assert timed_take(ticket, 1.0, 0.0)[0] == [step(0)]


def test_take_raises_the_error_that_ended_the_request():
    ticket = Ticket(generation=None)
    deliver_later(ticket, [step(0), RuntimeError("Generation failed: simulated")], 0.05).join()
    with pytest.raises(RuntimeError, match="Generation failed: simulated"):
        timed_take(ticket, 1.0, hold=5.0)
