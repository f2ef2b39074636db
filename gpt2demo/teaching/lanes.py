"""Strategies side by side: one prompt and seed decoded four ways, as four requests in the shared batch.

Four rows of one batch share every forward pass, so the four lanes cost about
one. Marking where a lane first leaves the greedy path, and which of its tokens
sit in a repeated 3-gram, shows the class why greedy decoding loops.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import AsyncIterator, Callable

from gpt2demo.serving.interface import Engine, Request, Step
from gpt2demo.serving.tickets import Ticket
from gpt2demo.settings import SamplingSettings

REPEAT_N = 3  # a 3-gram of tokens seen twice counts as a repeat
TUTORIAL_TOP_K = 10  # the tutorial's select_top_k picks among the 10 most likely
NUCLEUS_TOP_P = 0.9
TICK_SECONDS = 0.5  # with no step coming, the lanes are yielded anyway (Gradio notices a closed tab at a yield)


@dataclass(frozen=True)
class Lane:
    """One strategy: a name for the page and the settings it decodes with."""

    key: str  # "greedy", "top_k", "top_p" or "custom"
    settings: SamplingSettings


def strategy_lanes(custom: SamplingSettings) -> list[Lane]:
    """Greedy, the tutorial's top-k = 10, top-p = 0.9 and the user's own; same seed and length for all."""
    seed = custom.seed if custom.seed is not None else secrets.randbelow(2**32)  # one draw, shared
    same = dict(max_new_tokens=custom.max_new_tokens, seed=seed)
    return [
        Lane("greedy", SamplingSettings(greedy=True, **same)),
        Lane("top_k", SamplingSettings(top_k=TUTORIAL_TOP_K, **same)),
        Lane("top_p", SamplingSettings(top_k=0, top_p=NUCLEUS_TOP_P, **same)),
        Lane("custom", replace(custom, greedy=False, seed=seed)),
    ]


@dataclass
class LaneRun:
    """One lane's request and its steps so far."""

    lane: Lane
    ticket: Ticket
    steps: list[Step] = field(default_factory=list)

    @property
    def token_ids(self) -> list[int]:
        """New tokens written (the final <|endoftext|> included, as a pick the lane made)."""
        return [step.token_id for step in self.steps if step.token_id is not None]

    @property
    def finished(self) -> bool:
        return bool(self.steps) and self.steps[-1].finish_reason is not None

    @property
    def stopped(self) -> bool:
        """Cancelled (a Stop, or another lane's cancel) before its end."""
        return bool(self.steps) and self.steps[-1].finish_reason == "stopped"


async def run_lanes(engine: Engine, prompt: str, lanes: list[Lane], attach: Callable[[Ticket], Ticket] = lambda t: t,
                    spacing: float = 0.0) -> AsyncIterator[list[LaneRun]]:
    """Submit every lane at once and yield all lanes whenever steps came, at most every `spacing` seconds.

    Args:
        engine: the one door to the model; the four requests share its batch.
        prompt: the text all lanes continue.
        lanes: from strategy_lanes(), which gives every lane the same seed.
        attach: given each ticket as it is submitted (the page's Stop holds them); cancelling
            any one of them stops every lane.
    Raises:
        DemoError: a lane was refused (bad prompt, busy) or failed.
    """
    runs = [LaneRun(lane, attach(engine.submit(Request(lane.settings, prompt)))) for lane in lanes]
    try:
        for run in runs:
            await run.ticket.accepted()
        yield runs
        while not all(run.finished for run in runs):
            active = [run for run in runs if not run.finished]
            batches = await asyncio.gather(*(run.ticket.take(TICK_SECONDS, hold=spacing) for run in active))
            for run, steps in zip(active, batches):
                run.steps.extend(steps)
            if any(run.stopped for run in runs):  # a comparison with a lane missing compares nothing
                for run in runs:
                    run.ticket.cancel()
            yield runs
    finally:
        for run in runs:
            run.ticket.cancel()  # a closed tab or a refused lane: nothing more is computed for the others


def first_divergence(reference: list[int], other: list[int]) -> int | None:
    """The first position where two token lists differ (a shorter list differs where it ends); None if equal."""
    for position, (a, b) in enumerate(zip(reference, other)):
        if a != b:
            return position
    return None if len(reference) == len(other) else min(len(reference), len(other))


def repeated_ngrams(token_ids: list[int], n: int = REPEAT_N) -> list[bool]:
    """For each token: does it belong to an n-gram of tokens that occurs at least twice?"""
    grams = [tuple(token_ids[i : i + n]) for i in range(len(token_ids) - n + 1)]
    counts = Counter(grams)
    marked = [False] * len(token_ids)
    for start, gram in enumerate(grams):
        if counts[gram] > 1:
            marked[start : start + n] = [True] * n
    return marked
