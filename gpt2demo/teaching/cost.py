"""The cost lesson: the tutorial re-runs the whole text at every step; the KV cache does not.

The tutorial's loop calls the full model on all ids for each new token, so step
t costs about as much as a prompt of t tokens and the total grows with the
square of the length. The engine's decoder keeps every earlier token's keys and
values and feeds only the newest token. Both pick greedily here, so they write
the same text and only their speed differs.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from gpt2demo.engine import LoadedModel

TUTORIAL = "tutorial"  # full forward of the model over all ids at every step
KV_CACHE = "kv_cache"  # the engine's decoder: prefill once, then one token per step
MILESTONES = (25, 50, 100, 200)  # lengths at which the page reports tokens/s


@dataclass(frozen=True)
class CostPoint:
    """How long one method took to write one token."""

    method: str  # TUTORIAL or KV_CACHE
    position: int  # 0 for the first new token
    token_id: int
    seconds: float


def tutorial_logits(model: LoadedModel) -> Callable[[list[int]], torch.Tensor]:
    """The tutorial's step: the whole sequence through the full model, every time."""

    @torch.no_grad()
    def step(ids: list[int]) -> torch.Tensor:
        tokens = torch.tensor([ids], device=model.device)
        return model.model(tokens, use_cache=False).logits[0, -1]  # (vocab,) of the last position

    return step


def cached_logits(model: LoadedModel) -> Callable[[list[int]], torch.Tensor]:
    """The engine's step: read the prompt once, then only the newest token."""
    decoder = model.decoder
    cache = decoder.new_cache()
    row = cache.add_row()

    def step(ids: list[int]) -> torch.Tensor:
        if int(cache.lengths[row]) == 0:
            return decoder.prefill(cache, [row], [ids])[0]
        return decoder.decode(cache, torch.tensor([ids[-1]], device=model.device))[0]

    return step


def timed_tokens(method: str, next_logits: Callable[[list[int]], torch.Tensor], prompt_ids: list[int],
                 count: int) -> Iterator[CostPoint]:
    """Write `count` tokens greedily (never stopping early, so both methods do equal work), timing each."""
    ids = list(prompt_ids)
    for position in range(count):
        started = time.perf_counter()
        token_id = int(next_logits(ids).argmax())  # greedy: both methods write the same text
        ids.append(token_id)
        yield CostPoint(method, position, token_id, time.perf_counter() - started)


def race(model: LoadedModel, prompt_ids: list[int], count: int, cancel: threading.Event | None = None) -> Iterator[CostPoint]:
    """Both methods side by side, one token each in turn, so the page can plot them as they go.

    Args:
        model: from load_model().
        prompt_ids: the prompt's token ids (prepare_prompt() fits them in the window).
        count: new tokens to write; at most what the window leaves after the prompt.
        cancel: set it to stop before the next token.
    """
    count = min(count, model.window - len(prompt_ids))
    tutorial = timed_tokens(TUTORIAL, tutorial_logits(model), prompt_ids, count)
    cached = timed_tokens(KV_CACHE, cached_logits(model), prompt_ids, count)
    for pair in zip(tutorial, cached):
        if cancel is not None and cancel.is_set():
            return
        yield from pair


def tokens_per_second(points: list[CostPoint], method: str, upto: int | None = None) -> float | None:
    """One method's speed over its first `upto` tokens (all so far when None); None before any token."""
    times = [p.seconds for p in points if p.method == method and (upto is None or p.position < upto)]
    if not times or (upto is not None and len(times) < upto):
        return None
    return len(times) / sum(times)
