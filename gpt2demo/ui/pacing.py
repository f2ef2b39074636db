"""How often a streaming page is updated, and the loop that takes a ticket's items at that pace.

Every update costs the server (diff, send) and the browser (draw) on the cores
that also decode; a person cannot read tokens faster than about 20 a second, and a
chart or a long row of token boxes takes the browser far longer to draw than a
line of text.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Callable

from gpt2demo.serving.interface import EngineStats
from gpt2demo.serving.tickets import Ticket

# The Generate tab: at most 20 updates a second. A model slower than that still shows every
# token. (An A/B run of bench/streaming.py: 0.88 of raw speed when every token was sent, 0.95
# at this rate.)
UPDATE_SECONDS = 0.05
# The teaching views redraw a chart and every token box: 4 a second keeps Stop clickable in a
# browser on a busy machine (at 20 a second the chart's redraws held the page's main thread).
VIEW_UPDATE_SECONDS = 0.25
UPDATE_SECONDS_PER_RUNNING = 0.01  # per other running request: 32 running, 0.31 s apart
TICK_SECONDS = 0.5  # with no item coming: refresh "waiting: N ahead", and let Gradio notice a closed tab


def update_spacing(stats: EngineStats, base: float = UPDATE_SECONDS) -> float:
    """Seconds between two updates of one page (the first item and the last always go at once).

    With many requests running, each stream's updates are spaced by UPDATE_SECONDS_PER_RUNNING
    per other running request, which keeps the batch fed (at 32 streams: 161 instead of 138
    tokens/s in bench/classroom.py, when that was measured).
    """
    return max(base, UPDATE_SECONDS_PER_RUNNING * (stats.running - 1))


async def paced(ticket: Ticket, spacing: Callable[[], float]) -> AsyncIterator[list]:
    """The ticket's items in batches, at most one batch per spacing() seconds; [] on a quiet tick.

    A quiet tick still yields: Gradio notices a closed tab only at a yield. Ends after
    the batch with the last item; raises the error that ended the request.
    """
    loop = asyncio.get_running_loop()
    last = -float("inf")  # the first item goes out at once
    while True:
        hold = last + spacing() - loop.time()
        items = await ticket.take(TICK_SECONDS, hold=max(hold, 0.0))  # raises the error, once nothing is left
        if items:  # a quiet tick sent no token: the next one (a first token after a wait) goes at once
            last = loop.time()
        yield items
        if ticket.done:
            break
    if ticket.error is not None:
        raise ticket.error
