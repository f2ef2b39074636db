"""The cost lesson's arithmetic: tokens/s of each method of the race, over its first tokens.

The race itself (the tutorial's full re-run against the KV cache, timed token by
token) runs on the engine's thread: Engine.race() streams its CostPoints.
"""

from __future__ import annotations

from gpt2demo.serving.interface import KV_CACHE, TUTORIAL, CostPoint

METHODS = (TUTORIAL, KV_CACHE)
MILESTONES = (25, 50, 100, 200)  # lengths at which the page reports tokens/s


def tokens_per_second(points: list[CostPoint], method: str, upto: int | None = None) -> float | None:
    """One method's speed over its first `upto` tokens (all so far when None); None before any token."""
    times = [p.seconds for p in points if p.method == method and (upto is None or p.position < upto)]
    if not times or (upto is not None and len(times) < upto):
        return None
    return len(times) / sum(times)


def same_text(points: list[CostPoint]) -> bool:
    """Whether both methods wrote the same tokens (greedy: they should, but for rounding near a tie)."""
    return [p.token_id for p in points if p.method == TUTORIAL] == [p.token_id for p in points if p.method == KV_CACHE]
