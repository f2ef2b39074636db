"""The classroom line: how many requests the shared model is running and how many wait."""

from __future__ import annotations

from gpt2demo.scheduler import SchedulerStats
from gpt2demo.ui.i18n import message

REFRESH_SECONDS = 2.0  # how often every open page asks; cheap (two counters under a lock)


def describe_queue(stats: SchedulerStats, language: str) -> str:
    """'Requests running: 3 · waiting: 1' in the page's language."""
    return message(language, "classroom", running=stats.running, waiting=stats.waiting)
