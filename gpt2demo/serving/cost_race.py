"""The cost race, on the engine's thread: the tutorial re-runs the whole text at every step; the KV cache does not.

The tutorial's loop calls the full model on all ids for each new token, so step t
costs about as much as a prompt of t tokens and the total grows with the square
of the length. The engine's decoder keeps every earlier token's keys and values
and feeds only the newest token. Both pick greedily here, so they write the same
text and only their speed differs. The race keeps one cache row of its own for
the prompt plus at most `count` tokens, freed when the race ends.
"""

from __future__ import annotations

import threading
import time

import torch

from gpt2demo.model import LoadedModel
from gpt2demo.serving.interface import KV_CACHE, TUTORIAL, CostPoint


class CostRace:
    """Both methods on one prompt, a token each in turn; step() is called on the engine thread only."""

    def __init__(self, model: LoadedModel, prompt_ids: list[int], count: int) -> None:
        self.model = model
        self.count = max(0, min(count, model.window - len(prompt_ids)))
        self.tutorial_ids = list(prompt_ids)
        self.cached_ids = list(prompt_ids)
        self.cache = model.decoder.new_cache()
        self.row = self.cache.add_row()
        self.position = 0
        self.cancel = threading.Event()

    @property
    def finished(self) -> bool:
        return self.position >= self.count

    def step(self) -> list[CostPoint]:
        """The next token by each method, each timed; the cache is freed after the last one."""
        decoder = self.model.decoder
        points = [self._timed(TUTORIAL, self.tutorial_ids, lambda: decoder.recompute(self.tutorial_ids))]
        if self.position == 0:
            cached = lambda: decoder.extend(self.cache, [self.row], [self.cached_ids])[0]  # noqa: E731
        else:
            last = torch.tensor([self.cached_ids[-1]], device=self.model.device)
            cached = lambda: decoder.decode(self.cache, last)[0]  # noqa: E731
        points.append(self._timed(KV_CACHE, self.cached_ids, cached))
        self.position += 1
        if self.finished:
            self.cache = None  # the race's own cache row goes back now, not when the page is closed
        return points

    def _timed(self, method: str, ids: list[int], next_logits) -> CostPoint:
        started = time.perf_counter()
        token_id = int(next_logits().argmax())  # greedy: both methods write the same text
        seconds = time.perf_counter() - started
        ids.append(token_id)
        return CostPoint(method, self.position, token_id, seconds)
