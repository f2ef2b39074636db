"""Continuous batching on the engine's thread: every request's output equals running it alone."""

import threading

import pytest

from gpt2demo.errors import BadRequest, EngineBusy, GenerationFailed
from gpt2demo.generation import generate_text
from gpt2demo.serving.interface import KV_CACHE, TUTORIAL, Request
from gpt2demo.serving.scheduler import ENGINE_THREAD
from gpt2demo.settings import SamplingSettings

from conftest import DEADLINE_SECONDS, TUTORIAL_PROMPT

PROMPTS = ["Hello", TUTORIAL_PROMPT, "你好，世界", "a b c d e f g h i j k l m n o p q r s t", ""]
SETTINGS = [
    SamplingSettings(greedy=True, max_new_tokens=30),
    SamplingSettings(seed=1, max_new_tokens=45, top_k=0, top_p=0.9, temperature=0.7, repetition_penalty=1.3),
    SamplingSettings(seed=2, max_new_tokens=12, top_k=50, temperature=1.3),
    SamplingSettings(seed=3, max_new_tokens=38, top_k=5, repetition_penalty=0.8),
    SamplingSettings(seed=4, max_new_tokens=25),
]


class Gate:
    """Holds the engine thread inside its next decode step until opened; `entered` says it got there."""

    def __init__(self, model, monkeypatch) -> None:
        self.entered, self.opened = threading.Event(), threading.Event()
        original = model.decoder.decode

        def held(cache, token_ids, exact_top=None):
            self.entered.set()
            assert self.opened.wait(DEADLINE_SECONDS), "the test never opened the gate"
            return original(cache, token_ids, exact_top)

        monkeypatch.setattr(model.decoder, "decode", held)

    def open(self) -> None:
        self.opened.set()


def texts(ticket):
    steps = list(ticket)
    return "".join(s.text for s in steps), [s.token_id for s in steps if s.token_id is not None], steps[-1].finish_reason


def test_requests_submitted_while_others_run_match_running_alone(engine, tiny_model):
    alone = [generate_text(tiny_model, p, s) for p, s in zip(PROMPTS, SETTINGS)]
    tickets = [engine.submit(Request(s, p)) for p, s in zip(PROMPTS, SETTINGS)]  # they join at different steps
    assert [texts(t) for t in tickets] == [(a.text, a.token_ids, a.finish_reason) for a in alone]
    assert (engine.stats().running, engine.stats().waiting) == (0, 0)


def test_a_full_line_refuses_at_once_and_says_how_many_are_ahead(tiny_model_dir, tiny_model, monkeypatch):
    from conftest import local_engine

    engine = local_engine(tiny_model_dir, max_batch=1, queue_size=1)
    gate = Gate(tiny_model, monkeypatch)
    try:
        first = engine.submit(Request(SamplingSettings(seed=0, max_new_tokens=5), "a"))
        assert gate.entered.wait(DEADLINE_SECONDS)  # admitted and decoding: the engine holds it in the gate
        second = engine.submit(Request(SamplingSettings(seed=0, max_new_tokens=5), "b"))
        third = engine.submit(Request(SamplingSettings(seed=0, max_new_tokens=5), "c"))
        assert (second.accepted_blocking(1).ahead, second.admitted) == (0, False)
        with pytest.raises(EngineBusy) as refused:
            third.accepted_blocking(1)
        assert (refused.value.code, refused.value.facts) == ("busy", {"ahead": 2})
        gate.open()
        assert texts(first)[2] == texts(second)[2] == "length"
    finally:
        gate.open()
        engine.close()


def test_a_bad_prompt_is_refused_with_its_problem_as_data(engine):
    ticket = engine.submit(Request(SamplingSettings(), "a\x00b"))
    with pytest.raises(BadRequest) as error:
        ticket.accepted_blocking(DEADLINE_SECONDS)
    assert (error.value.code, error.value.facts) == ("prompt_character", {"codepoint": "U+0000", "position": 1})


def test_a_failed_step_ends_the_running_streams_and_the_next_request_works(engine, tiny_model, monkeypatch):
    original = tiny_model.decoder.decode
    failures = iter([RuntimeError("simulated failure")])

    def failing_once(cache, token_ids, exact_top=None):
        error = next(failures, None)
        if error is not None:
            raise error
        return original(cache, token_ids, exact_top)

    monkeypatch.setattr(tiny_model.decoder, "decode", failing_once)
    ticket = engine.submit(Request(SamplingSettings(seed=0, max_new_tokens=5), "Hello"))
    with pytest.raises(GenerationFailed) as error:
        list(ticket)
    assert (error.value.code, error.value.facts) == ("step_failed", {"kind": "RuntimeError", "detail": "simulated failure"})
    again = engine.submit(Request(SamplingSettings(seed=0, max_new_tokens=5), "Hello"))
    assert texts(again)[1] == generate_text(tiny_model, "Hello", SamplingSettings(seed=0, max_new_tokens=5)).token_ids


def test_a_cancelled_request_leaves_the_batch_before_its_next_token(engine):
    ticket = engine.submit(Request(SamplingSettings(seed=0, max_new_tokens=500), TUTORIAL_PROMPT))
    steps = []
    for step in ticket:
        steps.append(step)
        if len(steps) == 5:
            ticket.cancel()
    assert [s.finish_reason for s in steps][-2:] == [None, "stopped"]
    assert len(steps) <= 7  # at most the tokens already delivered when cancel() ran
    assert engine.stats().running == 0


def test_a_request_cancelled_while_in_line_leaves_the_line_at_once(tiny_model_dir, tiny_model, monkeypatch):
    from conftest import local_engine

    engine = local_engine(tiny_model_dir, max_batch=1, queue_size=4)
    gate = Gate(tiny_model, monkeypatch)
    try:
        running = engine.submit(Request(SamplingSettings(seed=0, max_new_tokens=3), "a"))
        assert gate.entered.wait(DEADLINE_SECONDS)
        waiting = engine.submit(Request(SamplingSettings(seed=0, max_new_tokens=3), "b"))
        behind = engine.submit(Request(SamplingSettings(seed=0, max_new_tokens=3), "c"))
        assert (running.admitted, waiting.admitted, behind.accepted_blocking(1).ahead) == (True, False, 1)
        assert (engine.stats().running, engine.stats().waiting) == (1, 2)
        waiting.cancel()
        assert [s.finish_reason for s in waiting] == ["stopped"]
        assert (engine.stats().waiting, behind.ahead) == (1, 0)
        gate.open()
        assert texts(behind)[2] == "length"
    finally:
        gate.open()
        engine.close()


def test_a_cost_race_runs_between_batch_steps_and_the_class_keeps_decoding(engine, tiny_model):
    fit = engine.fit_now(TUTORIAL_PROMPT, 25)
    class_ticket = engine.submit(Request(SamplingSettings(seed=9, max_new_tokens=200), TUTORIAL_PROMPT))
    race = engine.race(fit.token_ids, 25)
    points = list(race)
    assert [p.method for p in points] == [TUTORIAL, KV_CACHE] * 25
    tutorial = [p.token_id for p in points if p.method == TUTORIAL]
    assert tutorial == [p.token_id for p in points if p.method == KV_CACHE]  # both greedy: the same text
    assert tutorial == generate_text(tiny_model, TUTORIAL_PROMPT, SamplingSettings(greedy=True, max_new_tokens=25)).token_ids
    assert texts(class_ticket)[1] == generate_text(tiny_model, TUTORIAL_PROMPT, SamplingSettings(seed=9, max_new_tokens=200)).token_ids
    assert engine.stats().jobs == 0


def test_a_race_longer_than_the_window_allows_is_cut_and_a_cancelled_one_ends(engine):
    ids = tuple(engine.fit_now(" one" * 1020, 4).token_ids)
    assert len(list(engine.race(ids, 200))) == 2 * (1024 - len(ids))
    race = engine.race(tuple(engine.fit_now(TUTORIAL_PROMPT, 200).token_ids), 200)
    points = []
    for point in race:
        points.append(point)
        if len(points) == 4:
            race.cancel()
    assert 4 <= len(points) < 400 and race.done


def test_every_forward_pass_runs_on_the_engine_thread(tiny_model_dir):
    from conftest import local_engine

    engine = local_engine(str(tiny_model_dir) + "/./", max_batch=4)  # its own model, so its own count
    try:
        texts(engine.submit(Request(SamplingSettings(seed=0, max_new_tokens=5), "Hello")))
        list(engine.race(tuple(engine.fit_now("Hello", 3).token_ids), 3))
        assert set(engine.stats().forward_threads) == {ENGINE_THREAD}
    finally:
        engine.close()
