"""The "Cost of re-running" tab's logic: the tutorial's loop against the KV cache, timed token by token.

The engine runs both on the same prompt, one token each in turn, between its batch
steps; the chart plots each token's time against its position (one line climbs,
one stays flat) and the table gives tokens/s over the first 25, 50, 100 and 200 tokens.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from gpt2demo.errors import DemoError
from gpt2demo.serving.interface import KV_CACHE, TUTORIAL, CostPoint
from gpt2demo.settings import check_integer
from gpt2demo.teaching.cost import METHODS, MILESTONES, same_text, tokens_per_second
from gpt2demo.ui.context import PageContext
from gpt2demo.ui.i18n import LANGUAGES, MESSAGES, message, request_language, user_error
from gpt2demo.ui.pacing import VIEW_UPDATE_SECONDS, paced
from gpt2demo.ui.views.features import RACE, missing_text, offers
from gpt2demo.ui.views.generate import ready_state

TAB = "cost"
COLORS = {TUTORIAL: "#dc2626", KV_CACHE: "#16a34a"}
COLOR_MAP = {MESSAGES[language][f"cost_{method}"]: color for language in LANGUAGES for method, color in COLORS.items()}
PLOT_COLUMNS = ["position", "ms", "method"]


def cost_frame(points: list[CostPoint], language: str) -> pd.DataFrame:
    """One row per token and method: its position and milliseconds."""
    rows = [(p.position, p.seconds * 1000, message(language, f"cost_{p.method}")) for p in points]
    return pd.DataFrame(rows, columns=PLOT_COLUMNS)


def cost_table(points: list[CostPoint], count: int, language: str) -> str:
    """Markdown: tokens/s of each method over the first 25/50/100/200 tokens (those asked for)."""
    marks = [m for m in MILESTONES if m <= count] or [count]
    header = f"| {message(language, 'cost_method')} | " + " | ".join(message(language, "cost_at", count=m) for m in marks) + " |"
    lines = [header, "|---" * (len(marks) + 1) + "|"]
    for method in METHODS:
        rates = [tokens_per_second(points, method, m) for m in marks]
        cells = ["" if rate is None else f"{rate:.1f}" for rate in rates]
        lines.append(f"| {message(language, f'cost_{method}')} | " + " | ".join(cells) + " |")
    ratios = []
    for m in marks:
        slow, fast = tokens_per_second(points, TUTORIAL, m), tokens_per_second(points, KV_CACHE, m)
        ratios.append("" if slow is None or fast is None else message(language, "cost_ratio", ratio=fast / slow))
    lines.append("| | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


def cost_status(points: list[CostPoint], language: str, finished: bool = False, stopped: bool = False) -> str:
    """Live tokens/s of both methods; at the end, whether they wrote the same text."""
    parts = []
    for method in METHODS:
        rate = tokens_per_second(points, method)
        if rate is not None:
            parts.append(message(language, "cost_live", method=message(language, f"cost_{method}"), rate=rate))
    if finished:
        parts.append(message(language, "cost_same_text" if same_text(points) else "cost_different_text"))
    if stopped:
        parts.append(message(language, "finish_stopped"))
    return " · ".join(parts)


class CostHandlers:
    """The tab's events."""

    def __init__(self, ctx: PageContext) -> None:
        self.ctx = ctx

    async def race(self, prompt: str, count, request: gr.Request = None):
        """Write `count` tokens both ways, updating the chart and table as the pairs come."""
        language = request_language(request)
        try:
            count = check_integer("count", count, min(MILESTONES), max(MILESTONES))
        except DemoError as error:
            raise user_error(error, language) from None
        run = self.ctx.runs.open(request, TAB)
        try:
            state = await ready_state(self.ctx, language, None, lambda: run.stop_requested)
            if not offers(state, RACE):  # a remote engine: no model of this machine's to time
                yield cost_frame([], language), "", missing_text(RACE, language)
                return
            fit = await self.ctx.engine.fit("" if prompt is None else prompt, count)
            ticket = run.attach(self.ctx.engine.race(fit.token_ids, fit.max_new_tokens))
            points: list[CostPoint] = []
            async for new_points in paced(ticket, lambda: VIEW_UPDATE_SECONDS):
                points += new_points
                if not ticket.done:
                    yield cost_frame(points, language), cost_table(points, fit.max_new_tokens, language), cost_status(points, language)
            finished = len(points) >= 2 * fit.max_new_tokens
            yield (cost_frame(points, language), cost_table(points, fit.max_new_tokens, language),
                   cost_status(points, language, finished=finished, stopped=not finished))
        except DemoError as error:  # an unusable prompt, a remote engine (no race there)
            raise user_error(error, language) from None
        finally:
            self.ctx.runs.close(run)
