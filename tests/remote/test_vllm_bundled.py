"""The page's engine interface on a real vLLM server serving the bundled model (app.py --engine).

One server for the module (tools/vllm_server.py, --enforce-eager, processed logprobs).
Run alone: python -m pytest -m vllm tests/remote
"""

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gpt2demo.errors import BadRequest
from gpt2demo.generation import generate_text
from gpt2demo.model import load_model
from gpt2demo.serving.interface import Request
from gpt2demo.settings import SamplingSettings
from gpt2demo.sources import BUNDLED_DIR
from gpt2demo.teaching import sampler
from gpt2demo.teaching.lanes import run_lanes, strategy_lanes
from gpt2demo.ui.context import PageContext
from gpt2demo.ui.i18n import MESSAGES
from gpt2demo.ui.views.cost import CostHandlers
from gpt2demo.ui.views.generate import GenerateHandlers
from launching import DEADLINE_SECONDS, RawApi, request_data, wait_until
from vllm_fixtures import launched_remote, ready_remote, vllm_server

from conftest import TUTORIAL_PROMPT

pytestmark = pytest.mark.vllm

PROMPTS = [TUTORIAL_PROMPT, "", "It is a truth universally acknowledged, that", "昨天，一个名叫杰克的人说"]
STUDENTS = 16


@pytest.fixture(scope="module")
def server(request):
    with vllm_server(request, BUNDLED_DIR) as server:
        yield server


@pytest.fixture(scope="module")
def remote(server):
    engine = ready_remote(server.url)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def bundled():
    return load_model("bundled", "cpu")


def collect(ticket) -> list:
    return list(ticket)  # blocks until the stream's end, or raises the error that ended it


def text_of(steps) -> str:
    return "".join(step.text for step in steps)


def test_the_engine_offers_candidates_but_not_the_race_and_names_the_model(remote, bundled):
    facts = remote.state.facts
    assert facts.features == frozenset({"candidates"}) and (facts.name, facts.source) == ("bundled", "remote")
    assert (facts.window, facts.vocab_size, facts.eos_token_id, facts.parameters) == (512, 4096, 0, bundled.n_params)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_text_equals_the_local_engines(remote, bundled, prompt):
    settings = SamplingSettings(greedy=True, max_new_tokens=40)
    steps = collect(remote.submit(Request(settings, prompt)))
    local = generate_text(bundled, prompt, settings)
    assert [s.token_id for s in steps] == local.token_ids and text_of(steps) == local.text
    assert [s.finish_reason for s in steps] == [s.finish_reason for s in local.steps]


def test_a_seeded_request_repeats_exactly_alone_and_among_others(remote):
    settings = SamplingSettings(seed=1234, max_new_tokens=40, top_k=10)
    alone = collect(remote.submit(Request(settings, TUTORIAL_PROMPT)))
    together = [remote.submit(Request(SamplingSettings(seed=seed, max_new_tokens=40), TUTORIAL_PROMPT))
                for seed in (1234, 1, 2, 1234)]
    runs = [collect(ticket) for ticket in together]
    assert [s.token_id for s in runs[0]] == [s.token_id for s in runs[3]] == [s.token_id for s in alone]
    assert text_of(runs[0]) == text_of(alone) and [s.token_id for s in runs[1]] != [s.token_id for s in alone]
    assert together[0].seed == 1234


def test_candidates_arrive_for_every_step_and_describe_the_cut(remote):
    settings = SamplingSettings(seed=3, max_new_tokens=30, top_k=10, temperature=0.7)
    steps = collect(remote.submit(Request(settings, TUTORIAL_PROMPT)))
    assert len(steps) == 30 and steps[-1].finish_reason == "length"
    for step in steps:
        assert len(step.candidates) == 10 and all(c.kept for c in step.candidates)  # the 10 of top-k, renormalised
        assert sum(c.probability for c in step.candidates) == pytest.approx(1.0, abs=1e-4)
        chosen = next(c for c in step.candidates if c.token_id == step.token_id)
        assert step.probability == pytest.approx(chosen.probability)
    greedy = collect(remote.submit(Request(SamplingSettings(greedy=True, max_new_tokens=5), TUTORIAL_PROMPT)))
    for step in greedy:
        assert len(step.candidates) == 15 and step.candidates[0].token_id == step.token_id
        assert [c.kept for c in step.candidates] == [True] + [False] * 14


def test_the_samplers_picks_go_as_token_ids_and_an_undo_repeats_the_samplers_pick(remote, bundled):
    async def scenario():
        session = await sampler.start(remote, TUTORIAL_PROMPT, SamplingSettings(seed=5, top_k=10))
        offered = [c.token_id for c in session.candidates]
        await session.choose(offered[3])  # a person's pick: sent to the server as a prompt token
        first = await session.choose(None)  # the sampler's pick after it
        await session.undo(1)
        again = await session.choose(None)
        return session, offered, first, again

    session, offered, first, again = asyncio.run(scenario())
    assert len(offered) == 10 and session.token_ids == [offered[3], first.token_id] and again.token_id == first.token_id
    assert session.text == bundled.decode(session.token_ids) and session.candidates  # the next position is offered


def test_the_strategies_lanes_run_as_concurrent_requests(remote, bundled):
    lanes = strategy_lanes(SamplingSettings(max_new_tokens=30, seed=11, temperature=0.8, top_k=40))

    async def scenario():
        last = None
        async for runs in run_lanes(remote, TUTORIAL_PROMPT, lanes):
            last = runs
        return last

    runs = asyncio.run(scenario())
    greedy = generate_text(bundled, TUTORIAL_PROMPT, lanes[0].settings)
    assert [run.token_ids for run in runs][0] == greedy.token_ids
    assert all(run.steps[-1].finish_reason == "length" and len(run.token_ids) == 30 for run in runs)


def test_the_cost_tab_says_plainly_that_it_is_unavailable(remote):
    async def scenario():
        return [item async for item in CostHandlers(PageContext(remote)).race(TUTORIAL_PROMPT, 100)]

    ((frame, table, status),) = asyncio.run(scenario())
    assert frame.empty and table == "" and status == MESSAGES["en"]["missing_race"]


def test_a_temperature_vllm_refuses_is_refused_before_it_is_sent(remote):
    with pytest.raises(BadRequest) as error:
        remote.submit(Request(SamplingSettings(temperature=3.0), "x")).accepted_blocking(DEADLINE_SECONDS)
    assert (error.value.facts["parameter"], error.value.facts["high"]) == ("temperature", 2.0)


def test_sixteen_students_through_the_page_all_finish_with_their_seeded_text(server, remote):
    expected = [TUTORIAL_PROMPT + text_of(collect(remote.submit(Request(SamplingSettings(seed=seed, max_new_tokens=30),
                                                                        TUTORIAL_PROMPT))))
                for seed in range(STUDENTS)]
    with launched_remote(server.url) as app, RawApi(app.url) as raw:
        outcomes = [None] * STUDENTS

        def student(index: int) -> None:
            outcomes[index] = raw.call(request_data(TUTORIAL_PROMPT, max_new_tokens=30, seed=str(index)))

        threads = [threading.Thread(target=student, args=(i,)) for i in range(STUDENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DEADLINE_SECONDS * 2)
        assert [o.error for o in outcomes] == [None] * STUDENTS
        assert [o.final[0] for o in outcomes] == expected
        assert all(o.final[2].startswith("30 tokens") for o in outcomes)
        wait_until(app.idle, "the page and the engine to be idle")
        greedy = raw.call(request_data(TUTORIAL_PROMPT, max_new_tokens=40, greedy=True))  # the page's own door
        assert greedy.final[0] == TUTORIAL_PROMPT + generate_text(
            load_model("bundled", "cpu"), TUTORIAL_PROMPT, SamplingSettings(greedy=True, max_new_tokens=40)).text


def test_the_command_line_streams_the_same_greedy_text_from_the_server(server, bundled):
    result = subprocess.run([sys.executable, "-m", "gpt2demo", TUTORIAL_PROMPT, "--engine", server.url, "--greedy",
                             "--max-new-tokens", "30"], capture_output=True, text=True, timeout=DEADLINE_SECONDS * 2,
                            cwd=Path(__file__).resolve().parents[2])
    local = generate_text(bundled, TUTORIAL_PROMPT, SamplingSettings(greedy=True, max_new_tokens=30))
    assert result.returncode == 0, result.stderr
    assert result.stdout == TUTORIAL_PROMPT + local.text + "\n" and "finished: length" in result.stderr
