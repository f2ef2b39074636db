"""The "Cost of re-running" tab: both methods on the same prompt, their time per token and speeds."""

from __future__ import annotations

import gradio as gr

from gpt2demo.teaching.cost import MILESTONES
from gpt2demo.ui.context import PageContext
from gpt2demo.ui.i18n import label, message
from gpt2demo.ui.views.cost import COLOR_MAP, TAB, CostHandlers, cost_frame
from gpt2demo.ui.widgets.controls import prompt_box

RACE_CONCURRENCY = 1  # one race at a time: two would slow each other and blur the lesson


def build(ctx: PageContext) -> gr.Textbox:
    """Lay out the tab and wire its events; returns its prompt box."""
    handlers = CostHandlers(ctx)
    with gr.Tab(label("views_tab_cost"), id="cost", elem_id="tab-cost"):
        gr.Markdown(label("views_cost_intro"))
        with gr.Row():
            prompt = prompt_box("cost", max_lines=6, scale=3)
            count = gr.Radio(list(MILESTONES), value=100, label=label("views_cost_length"), scale=2, elem_id="cost-count")
        with gr.Row():
            run_button = gr.Button(label("views_race"), variant="primary", elem_id="cost-run")
            stop = gr.Button(label("stop"), variant="stop", elem_id="cost-stop")
        status = gr.Markdown(elem_id="cost-status")
        plot = gr.LinePlot(cost_frame([], "en"), x="position", y="ms", color="method", color_map=COLOR_MAP,
                           x_title=message("en", "cost_position"), y_title="ms", color_title=" ",
                           label=label("views_cost_chart"), elem_id="cost-plot")
        table = gr.Markdown(elem_id="cost-table")
    gr.on([run_button.click, prompt.submit], handlers.race, [prompt, count], [plot, table, status],
          api_visibility="private", concurrency_limit=RACE_CONCURRENCY, concurrency_id="views-cost", show_progress="hidden")
    stop.click(ctx.runs.stop_button(TAB), queue=False, api_visibility="private", show_progress="hidden")
    return prompt
