"""The "Cost of re-running" tab: the tutorial's loop against the KV cache, timed token by token.

teaching.cost runs both on the same prompt, one token each in turn; the chart
plots each token's time against its position (one line climbs, one stays flat)
and the table gives tokens/s over the first 25, 50, 100 and 200 tokens.
"""

from __future__ import annotations

import threading

import gradio as gr
import pandas as pd

from gpt2demo.engine import prepare_prompt
from gpt2demo.settings import SamplingSettings
from gpt2demo.teaching.cost import KV_CACHE, MILESTONES, TUTORIAL, CostPoint, race, tokens_per_second
from gpt2demo.ui.i18n import label as page_label
from gpt2demo.ui.i18n import message as page_message
from gpt2demo.ui.i18n import request_language
from gpt2demo.ui.views.labels import LANGUAGES, MESSAGES, label, message
from gpt2demo.ui.views.common import Throttle, ready_model, stop_run

METHODS = (TUTORIAL, KV_CACHE)
COLORS = {TUTORIAL: "#dc2626", KV_CACHE: "#16a34a"}
COLOR_MAP = {MESSAGES[language][f"cost_{method}"]: color for language in LANGUAGES for method, color in COLORS.items()}
PLOT_COLUMNS = ["position", "ms", "method"]
RACE_CONCURRENCY = 1  # one race at a time: two would slow each other and blur the lesson


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


def cost_status(points: list[CostPoint], language: str, finished: bool = False) -> str:
    """Live tokens/s of both methods; at the end, whether they wrote the same text."""
    parts = []
    for method in METHODS:
        rate = tokens_per_second(points, method)
        if rate is not None:
            parts.append(message(language, "cost_live", method=message(language, f"cost_{method}"), rate=rate))
    if finished:
        same = [p.token_id for p in points if p.method == TUTORIAL] == [p.token_id for p in points if p.method == KV_CACHE]
        parts.append(message(language, "cost_same_text" if same else "cost_different_text"))
    return " · ".join(parts)


class CostHandlers:
    def __init__(self, handlers) -> None:
        self.handlers = handlers

    def race(self, prompt: str, count, request: gr.Request = None):
        """Write `count` tokens both ways, updating the chart and table after every pair of tokens."""
        language = request_language(request)
        model = ready_model(self.handlers.service, language)
        try:
            prepared = prepare_prompt(model, prompt or "", SamplingSettings(max_new_tokens=int(count)))
        except ValueError as error:  # an unusable prompt
            raise gr.Error(str(error), print_exception=False) from None
        points: list[CostPoint] = []
        cancel = threading.Event()  # handed to the tab's state at the first update, for Stop
        count = prepared.max_new_tokens
        try:
            throttle = Throttle()
            for point in race(model, prepared.token_ids, count, cancel):
                points.append(point)
                if point.method == KV_CACHE and throttle.due():  # after a pair: both lines grew by one token
                    yield cost_frame(points, language), cost_table(points, count, language), cost_status(points, language), cancel
            status = cost_status(points, language, finished=True)
            if cancel.is_set():
                status += " · " + page_message(language, "finish_stopped")
            yield cost_frame(points, language), cost_table(points, count, language), status, cancel
        finally:
            cancel.set()  # a closed tab: nothing more to compute


def build_cost_tab(handlers) -> None:
    """Lay out the tab and wire its events."""
    events = CostHandlers(handlers)
    with gr.Tab(label("views_tab_cost"), id="cost", elem_id="tab-cost"):
        gr.Markdown(label("views_cost_intro"))
        with gr.Row():
            prompt = gr.Textbox(label=page_label("prompt"), placeholder=page_label("prompt_placeholder"), lines=1,
                                max_lines=6, scale=3, elem_id="cost-prompt")
            count = gr.Radio(list(MILESTONES), value=100, label=label("views_cost_length"), scale=2, elem_id="cost-count")
        with gr.Row():
            run_button = gr.Button(label("views_race"), variant="primary", elem_id="cost-run")
            stop = gr.Button(page_label("stop"), variant="stop", elem_id="cost-stop")
        status = gr.Markdown(elem_id="cost-status")
        plot = gr.LinePlot(cost_frame([], "en"), x="position", y="ms", color="method", color_map=COLOR_MAP,
                           x_title=message("en", "cost_position"), y_title="ms", color_title=" ",
                           label=label("views_cost_chart"), elem_id="cost-plot")
        table = gr.Markdown(elem_id="cost-table")
        cancel = gr.State(None)
    gr.on([run_button.click, prompt.submit], events.race, [prompt, count], [plot, table, status, cancel],
          api_visibility="private", concurrency_limit=RACE_CONCURRENCY, concurrency_id="views-cost", show_progress="hidden")
    stop.click(stop_run, [cancel], None, queue=False, api_visibility="private", show_progress="hidden")
