"""Strategies side by side: four lanes of one prompt and seed, four requests in the engine's shared batch."""

import asyncio
import threading

import pytest

from gpt2demo.generation import generate_text
from gpt2demo.serving.interface import Request
from gpt2demo.settings import SamplingSettings
from gpt2demo.teaching.lanes import first_divergence, repeated_ngrams, run_lanes, strategy_lanes

from conftest import DEADLINE_SECONDS, TUTORIAL_IDS, TUTORIAL_PROMPT, local_engine


async def last(updates):
    """Drive run_lanes to its end; the lanes as they finished."""
    runs = None
    async for runs in updates:
        pass
    return runs


class Passes:
    """Records every forward pass of the model, and holds the engine thread in its first decode until released."""

    def __init__(self, model, monkeypatch) -> None:
        self.read: list[list[int]] = []  # tokens per row of each prompt-reading pass (decoder.extend)
        self.decoded: list[int] = []  # rows of each decode pass
        self.entered, self.released = threading.Event(), threading.Event()
        decode, extend = model.decoder.decode, model.decoder.extend

        def held_decode(cache, token_ids, exact_top=None):
            self.decoded.append(len(token_ids))
            self.entered.set()
            assert self.released.wait(DEADLINE_SECONDS), "the test never released the engine"
            return decode(cache, token_ids, exact_top)

        def counted_extend(cache, rows, chunks):
            self.read.append([len(chunk) for chunk in chunks])
            return extend(cache, rows, chunks)

        monkeypatch.setattr(model.decoder, "decode", held_decode)
        monkeypatch.setattr(model.decoder, "extend", counted_extend)

    def release(self) -> None:
        self.released.set()


def test_the_four_lanes_share_one_seed_and_length():
    lanes = strategy_lanes(SamplingSettings(max_new_tokens=30, temperature=0.7, top_k=40, repetition_penalty=1.3))
    assert [lane.key for lane in lanes] == ["greedy", "top_k", "top_p", "custom"]
    seed = lanes[0].settings.seed
    assert seed is not None and all(lane.settings.seed == seed and lane.settings.max_new_tokens == 30 for lane in lanes)
    greedy, top_k, top_p, custom = (lane.settings for lane in lanes)
    assert greedy.greedy and (top_k.top_k, top_k.top_p, top_k.temperature) == (10, 1.0, 1.0)
    assert (top_p.top_k, top_p.top_p, top_p.temperature) == (0, 0.9, 1.0)
    assert (custom.temperature, custom.top_k, custom.repetition_penalty, custom.greedy) == (0.7, 40, 1.3, False)


def test_the_lanes_are_four_requests_of_one_batch_and_each_equals_its_run_alone(tiny_model_dir, tiny_model, monkeypatch):
    lanes = strategy_lanes(SamplingSettings(max_new_tokens=15, temperature=0.7, top_k=40, seed=4))
    alone = [generate_text(tiny_model, TUTORIAL_PROMPT, lane.settings).token_ids for lane in lanes]
    engine = local_engine(tiny_model_dir, max_batch=5)  # the four lanes and the request that holds the engine
    passes = Passes(tiny_model, monkeypatch)
    attached = []

    def attach(ticket):
        attached.append(ticket)
        if len(attached) == len(lanes):  # all four are in line: let the engine go on
            blocker.cancel()
            passes.release()
        return ticket

    try:
        blocker = engine.submit(Request(SamplingSettings(seed=0, max_new_tokens=500), "Hello"))
        assert passes.entered.wait(DEADLINE_SECONDS)  # the engine thread is inside the blocker's first decode
        runs = asyncio.run(last(run_lanes(engine, TUTORIAL_PROMPT, lanes, attach)))
    finally:
        passes.release()
        engine.close()
    assert [run.ticket for run in runs] == attached
    # One pass read the four prompts together (after the blocker's own); then one pass per token for all four.
    assert passes.read == [[len(tiny_model.encode("Hello"))], [len(TUTORIAL_IDS)] * 4]
    assert passes.decoded == [1] + [4] * 14  # the blocker's held step, then 14 steps of four rows
    assert [run.token_ids for run in runs] == alone
    assert [run.steps[-1].finish_reason for run in runs] == ["length"] * 4


def test_cancelling_one_lane_stops_every_lane(engine):
    lanes = strategy_lanes(SamplingSettings(max_new_tokens=1000, seed=4))

    async def scenario():
        updates = run_lanes(engine, TUTORIAL_PROMPT, lanes)
        runs = await anext(updates)  # all four accepted
        runs[2].ticket.cancel()
        return await last(updates)

    runs = asyncio.run(scenario())
    assert [run.steps[-1].finish_reason for run in runs] == ["stopped"] * 4
    assert all(len(run.token_ids) < 1000 for run in runs)
    assert (engine.stats().running, engine.stats().waiting) == (0, 0)


def test_closing_the_comparison_stops_every_lane(engine):
    """What Gradio does on a closed tab: it closes the handler, and so the lanes' generator."""
    lanes = strategy_lanes(SamplingSettings(max_new_tokens=1000, seed=4))

    async def scenario():
        updates = run_lanes(engine, TUTORIAL_PROMPT, lanes)
        runs = await anext(updates)
        await updates.aclose()
        return runs

    runs = asyncio.run(scenario())
    assert all(run.ticket.cancelled for run in runs)
    rest = [list(run.ticket) for run in runs]  # what the engine still delivered, up to each lane's end
    assert [steps[-1].finish_reason for steps in rest] == ["stopped"] * 4
    assert all(len(run.steps) + len(steps) < 1000 for run, steps in zip(runs, rest))


@pytest.mark.parametrize("reference, other, expected", [
    ([1, 2, 3], [1, 2, 3], None),
    ([1, 2, 3], [1, 9, 3], 1),
    ([1, 2, 3], [7, 2, 3], 0),
    ([1, 2, 3], [1, 2], 2),
    ([1, 2], [1, 2, 3], 2),
    ([], [], None),
])
def test_first_divergence(reference, other, expected):
    assert first_divergence(reference, other) == expected


@pytest.mark.parametrize("ids, n, expected", [
    ([1, 2, 3, 4], 3, [False] * 4),
    ([1, 2, 3, 1, 2, 3], 3, [True] * 6),
    ([1, 2, 3, 9, 1, 2, 3], 3, [True, True, True, False, True, True, True]),
    ([5, 5, 5, 5], 3, [True] * 4),  # overlapping occurrences count
    ([5, 5, 5], 3, [False] * 3),
    ([1, 2, 7, 1, 2], 2, [True, True, False, True, True]),
    ([1, 2], 3, [False, False]),
])
def test_repeated_ngrams(ids, n, expected):
    assert repeated_ngrams(ids, n) == expected
