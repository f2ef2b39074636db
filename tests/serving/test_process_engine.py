"""The engine in its own process: the same interface, the same texts, and no hang when that process dies."""

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from gpt2demo.errors import BadRequest, EngineUnavailable, ModelSourceError
from gpt2demo.generation import generate_text
from gpt2demo.serving.interface import Request
from gpt2demo.serving.process import ProcessEngine
from gpt2demo.settings import SamplingSettings

from conftest import DEADLINE_SECONDS, TUTORIAL_IDS, TUTORIAL_PROMPT
from launching import wait_until


@pytest.fixture(scope="module")
def process_engine(tiny_model_dir):
    engine = ProcessEngine(str(tiny_model_dir), "cpu", max_batch=4, queue_size=8)
    state = engine.wait_ready_blocking(DEADLINE_SECONDS)
    assert state.phase == "ready", state.error
    yield engine
    engine.close()


async def collect(ticket):
    await ticket.accepted(DEADLINE_SECONDS)
    steps = []
    while not ticket.done:
        steps += await ticket.take(DEADLINE_SECONDS)
    return steps


def test_it_streams_what_the_model_writes_alone(process_engine, tiny_model):
    settings = SamplingSettings(seed=3, max_new_tokens=40, top_k=20)
    steps = asyncio.run(collect(process_engine.submit(Request(settings, TUTORIAL_PROMPT))))
    alone = generate_text(tiny_model, TUTORIAL_PROMPT, settings)
    assert [s.token_id for s in steps] == alone.token_ids and "".join(s.text for s in steps) == alone.text
    assert [c.piece for c in steps[0].candidates] == [c.piece for c in alone.steps[0].candidates]
    assert process_engine.state.facts.name == tiny_model.facts().name


def test_calls_answer_and_refusals_arrive_as_data(process_engine):
    async def run():
        tokens = await process_engine.tokenize(TUTORIAL_PROMPT)
        fit = await process_engine.fit(" one" * 1100, 100)
        with pytest.raises(BadRequest) as error:
            await process_engine.tokenize("x" * 20_001)
        refused = process_engine.submit(Request(SamplingSettings(top_k=60_000), "x"))
        with pytest.raises(BadRequest) as top_k:
            await refused.accepted(DEADLINE_SECONDS)
        return tokens, fit, error.value, top_k.value

    tokens, fit, error, top_k = asyncio.run(run())
    assert list(tokens.token_ids) == TUTORIAL_IDS and tokens.pieces[0].piece == "Yesterday"
    assert (len(fit.token_ids), fit.cut_from) == (924, 1100)
    assert (error.code, error.facts) == ("prompt_length", {"limit": 20_000, "got": 20_001})
    assert (top_k.code, top_k.facts["parameter"], top_k.facts["high"]) == ("integer", "top_k", 50257)


def test_cancel_reaches_the_engine_process(process_engine):
    async def run():
        ticket = process_engine.submit(Request(SamplingSettings(seed=0, max_new_tokens=1000), TUTORIAL_PROMPT))
        await ticket.accepted(DEADLINE_SECONDS)
        first = await ticket.take(DEADLINE_SECONDS)
        ticket.cancel()
        steps = first
        while not ticket.done:
            steps += await ticket.take(DEADLINE_SECONDS)
        return steps

    steps = asyncio.run(run())
    assert steps[-1].finish_reason == "stopped" and len(steps) < 1000


def test_a_model_that_cannot_load_fails_with_the_reason(tmp_path):
    engine = ProcessEngine(str(tmp_path / "missing"), "cpu", max_batch=1, queue_size=0)
    try:
        state = engine.wait_ready_blocking(DEADLINE_SECONDS)
        assert state.phase == "failed" and isinstance(state.error, ModelSourceError)
        assert (state.error.code, state.error.facts) == ("unknown_spec", {"spec": str(tmp_path / "missing")})
        with pytest.raises(ModelSourceError):
            engine.submit(Request(SamplingSettings(), "x")).accepted_blocking(DEADLINE_SECONDS)
    finally:
        engine.close()


def test_when_the_engine_process_dies_every_waiting_request_is_told(tiny_model_dir):
    engine = ProcessEngine(str(tiny_model_dir), "cpu", max_batch=1, queue_size=4)
    try:
        assert engine.wait_ready_blocking(DEADLINE_SECONDS).phase == "ready"
        ticket = engine.submit(Request(SamplingSettings(seed=0, max_new_tokens=1000), TUTORIAL_PROMPT))
        ticket.accepted_blocking(DEADLINE_SECONDS)
        os.kill(engine.pid, signal.SIGKILL)
        with pytest.raises(EngineUnavailable) as error:
            list(ticket)
        assert (error.value.code, error.value.facts) == ("engine_ended", {"exit_code": -signal.SIGKILL})
        assert engine.state.phase == "failed"
        with pytest.raises(EngineUnavailable):
            engine.submit(Request(SamplingSettings(), "x")).accepted_blocking(DEADLINE_SECONDS)
    finally:
        engine.close()


def test_the_web_server_side_imports_no_torch():
    code = "import sys, app, gpt2demo.ui.server; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert result.stdout.strip() == "[]"


def test_no_one_token_request_loses_its_acceptance_to_its_own_finish(tiny_model_dir):
    # A one-token request is accepted and finished within one round; the engine process's two
    # threads both send what is pending, and the finish once overtook the acceptance, which the
    # front end then dropped: the caller waited for good (6 to 9 requests in, beside a busy process).
    engine = ProcessEngine(str(tiny_model_dir), "cpu", max_batch=1, queue_size=4)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        assert engine.wait_ready_blocking(DEADLINE_SECONDS).phase == "ready"
        for seed in range(100):
            steps = asyncio.run(collect(engine.submit(Request(SamplingSettings(seed=seed, max_new_tokens=1), "Hi"))))
            assert [step.finish_reason for step in steps] == ["length"], seed
    finally:
        busy.kill()
        busy.wait()
        engine.close()


def test_the_front_ends_counters_catch_up_with_an_engine_gone_idle(tiny_model_dir):
    # One-token requests back to back: each is one forward pass, over within the stats interval
    # of the one before and often before the front end saw it wait, so the request counts do
    # not change. The engine's passes must still reach the front end, not wait for a next request.
    engine = ProcessEngine(str(tiny_model_dir), "cpu", max_batch=1, queue_size=4)

    def forward_passes() -> int:
        return sum(engine.stats().forward_threads.values())

    try:
        assert engine.wait_ready_blocking(DEADLINE_SECONDS).phase == "ready"
        expected = 0
        for seed in range(32):
            steps = asyncio.run(collect(engine.submit(Request(SamplingSettings(seed=seed, max_new_tokens=1), "Hi"))))
            expected += len(steps)  # one forward pass a token
            wait_until(lambda: forward_passes() == expected, f"request {seed}'s passes to reach the front end", 10)
        assert (forward_passes(), engine.stats().running) == (expected, 0)
    finally:
        engine.close()
