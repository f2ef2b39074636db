"""Strategies side by side: one prompt and seed decoded four ways in one DecodeBatch.

Four rows of one batch share every forward pass, so the four lanes cost about
one. Marking where a lane first leaves the greedy path, and which of its tokens
sit in a repeated 3-gram, shows the class why greedy decoding loops.
"""

from __future__ import annotations

import secrets
import threading
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Iterator

from gpt2demo.engine import DecodeBatch, Generation, LoadedModel, Step
from gpt2demo.settings import SamplingSettings

REPEAT_N = 3  # a 3-gram of tokens seen twice counts as a repeat
TUTORIAL_TOP_K = 10  # the tutorial's select_top_k picks among the 10 most likely
NUCLEUS_TOP_P = 0.9


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
    """One lane's generation so far."""

    lane: Lane
    generation: Generation
    steps: list[Step] = field(default_factory=list)

    @property
    def token_ids(self) -> list[int]:
        """New tokens written (the final <|endoftext|> included, as a pick the lane made)."""
        return [step.token_id for step in self.steps if step.token_id is not None]

    @property
    def finished(self) -> bool:
        return bool(self.steps) and self.steps[-1].finish_reason is not None


def run_lanes(model: LoadedModel, prompt: str, lanes: list[Lane], cancel: threading.Event | None = None) -> Iterator[list[LaneRun]]:
    """Decode every lane together, one batch step at a time; yields all lanes after each step.

    Args:
        model: from load_model().
        prompt: the text all lanes continue.
        lanes: from strategy_lanes(), which gives every lane the same seed.
        cancel: set it to stop every lane before its next token.
    """
    cancel = cancel or threading.Event()
    runs = [LaneRun(lane, Generation(model, prompt, lane.settings, cancel)) for lane in lanes]
    by_generation = {id(run.generation): run for run in runs}
    batch = DecodeBatch(model)
    for run in runs:  # each prompt is read alone, then every lane joins the shared forward pass
        run.steps.append(batch.add(run.generation))
    yield runs
    while batch:
        for generation, step in batch.step():
            by_generation[id(generation)].steps.append(step)
        yield runs


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
