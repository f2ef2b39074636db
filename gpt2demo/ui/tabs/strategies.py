"""The "Strategies side by side" tab: four lanes of one prompt and seed, your own lane's settings."""

from __future__ import annotations

import gradio as gr

from gpt2demo.ui.context import PageContext
from gpt2demo.ui.i18n import label
from gpt2demo.ui.views.strategies import DEFAULTS, LANE_CONTROLS, SHARED_CONTROLS, TAB, StrategyHandlers
from gpt2demo.ui.widgets.controls import prompt_box, sampling_controls
from gpt2demo.ui.widgets.styles import teaching_html

COMPARE_CONCURRENCY = 4  # comparisons at once; each is four rows of the engine's batch


def build(ctx: PageContext) -> gr.Textbox:
    """Lay out the tab and wire its events; returns its prompt box."""
    handlers = StrategyHandlers(ctx)
    with gr.Tab(label("views_tab_strategies"), id="strategies", elem_id="tab-strategies"):
        gr.Markdown(label("views_strategies_intro"))
        with gr.Row():
            with gr.Column(scale=3):
                prompt = prompt_box("strategies", max_lines=6)
                with gr.Row():
                    compare = gr.Button(label("views_compare"), variant="primary", elem_id="strategies-compare")
                    stop = gr.Button(label("stop"), variant="stop", elem_id="strategies-stop")
                lanes = teaching_html("strategies-lanes", label=label("views_lanes"), show_label=True, container=True,
                                      padding=True, min_height=200)
                status = gr.Markdown(elem_id="strategies-status")
            with gr.Column(scale=2):
                shared = sampling_controls("strategies", DEFAULTS, SHARED_CONTROLS)
                with gr.Accordion(label("views_your_lane"), open=True):
                    own = sampling_controls("strategies", DEFAULTS, LANE_CONTROLS)
    inputs = [prompt, *shared.values(), *own.values()]  # the order of compare()'s parameters
    gr.on([compare.click, prompt.submit], handlers.compare, inputs, [lanes, status], api_visibility="private",
          concurrency_limit=COMPARE_CONCURRENCY, concurrency_id="views-strategies", show_progress="hidden")
    stop.click(ctx.runs.stop_button(TAB), queue=False, api_visibility="private", show_progress="hidden")
    return prompt
