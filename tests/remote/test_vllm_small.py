"""The remote engine on a real vLLM server serving a GPT-2-small-shaped stand-in (124M parameters, GPT-2's tokenizer).

GPT-2's real shapes, vocabulary and 1024-token window; the last test kills the
server mid-stream, so it stays last in this module (pytest runs a module's tests in
file order). Run alone: python -m pytest -m vllm tests/remote
"""

import asyncio

import pytest

from gpt2demo.errors import EngineUnavailable
from gpt2demo.generation import generate_text
from gpt2demo.model import load_model
from gpt2demo.serving.interface import Request
from gpt2demo.settings import SamplingSettings
from gpt2demo.ui.context import PageContext
from gpt2demo.ui.views.generate import GenerateHandlers
from launching import DEADLINE_SECONDS, wait_until
from vllm_fixtures import ready_remote, requests_running, tokens_generated, vllm_server

from conftest import TUTORIAL_IDS, TUTORIAL_PROMPT

pytestmark = pytest.mark.vllm

# New tokens a stopped request would have written. GPT-2 small's shapes on vLLM's CPU backend
# write tens of tokens a second here, so the whole request would take far longer than a Stop
# takes to reach the server (the bundled model wrote 400 in under 2 s: a race, not a test).
LONG = 900


@pytest.fixture(scope="module")
def server(request, small_model_dir):
    with vllm_server(request, small_model_dir) as server:
        yield server


@pytest.fixture(scope="module")
def remote(server):
    engine = ready_remote(server.url)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def small(small_model_dir):
    return load_model(str(small_model_dir), "cpu")


def test_the_stand_in_is_served_with_gpt2s_window_and_tokenizer(remote, small):
    facts = remote.state.facts
    assert (facts.window, facts.vocab_size, facts.eos_token_id, facts.parameters) == (1024, 50257, 50256, small.n_params)
    ticket = remote.submit(Request(SamplingSettings(greedy=True, max_new_tokens=1), TUTORIAL_PROMPT))
    assert list(ticket.accepted_blocking(DEADLINE_SECONDS).prompt.token_ids) == TUTORIAL_IDS
    list(ticket)


def test_greedy_text_equals_the_local_engines(remote, small):
    settings = SamplingSettings(greedy=True, max_new_tokens=30)
    steps = list(remote.submit(Request(settings, TUTORIAL_PROMPT)))
    local = generate_text(small, TUTORIAL_PROMPT, settings)
    assert [s.token_id for s in steps] == local.token_ids and "".join(s.text for s in steps) == local.text


def test_a_seeded_request_repeats_exactly(remote):
    settings = SamplingSettings(seed=77, max_new_tokens=20, top_k=10)
    first, second = (list(remote.submit(Request(settings, TUTORIAL_PROMPT))) for _ in range(2))
    assert [s.token_id for s in first] == [s.token_id for s in second] and len(first) == 20


def test_candidates_arrive_for_every_step_best_first(remote):
    steps = list(remote.submit(Request(SamplingSettings(seed=4, max_new_tokens=12, top_k=0), TUTORIAL_PROMPT)))
    assert len(steps) == 12
    for step in steps:
        probabilities = [c.probability for c in step.candidates]
        assert len(step.candidates) == 15 and all(c.kept for c in step.candidates)  # no cut: no fillers either
        assert probabilities == sorted(probabilities, reverse=True) and 0 < step.probability <= 1


def test_stop_ends_the_server_request(remote, server):
    before = tokens_generated(server)
    ticket = remote.submit(Request(SamplingSettings(greedy=True, max_new_tokens=LONG), TUTORIAL_PROMPT))
    steps = iter(ticket)
    first = [next(steps) for _ in range(3)]
    ticket.cancel()
    rest = list(steps)
    assert rest[-1].finish_reason == "stopped" and len(first) + len(rest) < LONG
    wait_until(lambda: requests_running(server) == 0, "the server to drop the request")
    assert tokens_generated(server) - before < LONG / 2 and remote.stats().running == 0


def test_a_closed_tab_ends_the_server_request(remote, server):
    """What Gradio does on a closed tab: it closes the handler, whose finally cancels the ticket."""
    before = tokens_generated(server)
    ctx = PageContext(remote)

    async def scenario():
        outputs = GenerateHandlers(ctx).generate(TUTORIAL_PROMPT, max_new_tokens=LONG, greedy=True)
        first = [await anext(outputs) for _ in range(4)]
        await outputs.aclose()
        return first

    first = asyncio.run(scenario())
    assert first[-1][0].startswith(TUTORIAL_PROMPT) and len(ctx.runs) == 0
    wait_until(lambda: requests_running(server) == 0, "the server to drop the request")
    assert tokens_generated(server) - before < LONG / 2 and remote.stats().running == 0


def test_when_the_server_dies_mid_stream_every_affected_student_is_told_and_nothing_hangs(remote, server):
    # Last in the module: the server is gone afterwards (the fixture's stop() finds it dead).
    tickets = [remote.submit(Request(SamplingSettings(seed=seed, max_new_tokens=300), TUTORIAL_PROMPT)) for seed in (1, 2)]
    for ticket in tickets:
        next(iter(ticket))  # both are streaming
    server.kill()
    for ticket in tickets:
        with pytest.raises(EngineUnavailable) as error:
            list(ticket)
        assert (error.value.code, error.value.facts["url"]) == ("gone", server.url)
    with pytest.raises(EngineUnavailable) as refused:
        list(remote.submit(Request(SamplingSettings(max_new_tokens=5), TUTORIAL_PROMPT)))
    assert refused.value.code == "engine_unreachable" and remote.stats().running == 0
