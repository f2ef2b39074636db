"""The "Inside each step" tab: the token view, the live next-token chart and the clicked step; its run as a file."""

from __future__ import annotations

import gradio as gr

from gpt2demo.ui.context import PageContext
from gpt2demo.ui.i18n import label
from gpt2demo.ui.views.export import MAX_RUN_BYTES
from gpt2demo.ui.views.inside import CONTROLS, DEFAULTS, TAB, InsideHandlers
from gpt2demo.ui.widgets.chart import build_chart
from gpt2demo.ui.widgets.controls import prompt_box, sampling_controls
from gpt2demo.ui.widgets.export import download_buttons, load_button, wire_downloads, wire_load
from gpt2demo.ui.widgets.styles import teaching_html

STREAM_CONCURRENCY = 16  # tabs streaming at once; their requests share the engine's batch


def build(ctx: PageContext) -> gr.Textbox:
    """Lay out the tab and wire its events; returns its prompt box."""
    handlers = InsideHandlers(ctx)
    with gr.Tab(label("views_tab_inside"), id="inside", elem_id="tab-inside"):
        gr.Markdown(label("views_inside_intro"))
        with gr.Row():
            with gr.Column(scale=3):
                prompt = prompt_box("inside", max_lines=6)
                with gr.Row():
                    generate = gr.Button(label("generate"), variant="primary", elem_id="inside-generate")
                    stop = gr.Button(label("stop"), variant="stop", elem_id="inside-stop")
                tokens = teaching_html("inside-tokens", clickable=True, label=label("views_tokens"), show_label=True,
                                       container=True, padding=True, min_height=120, max_height=400, autoscroll=True)
                status = gr.Markdown(elem_id="inside-status")
                with gr.Row():
                    downloads = download_buttons("inside")
                    load = load_button("inside")
            with gr.Column(scale=2):
                with gr.Accordion(label("settings"), open=False):
                    controls = sampling_controls("inside", DEFAULTS, CONTROLS)
        with gr.Row():
            with gr.Column():
                chart = build_chart("inside-chart")
                cutoff = gr.Markdown(elem_id="inside-cutoff")
            with gr.Column():
                detail = teaching_html("inside-detail", label=label("views_step_detail"), show_label=True, container=True,
                                       padding=True)
    gr.on([generate.click, prompt.submit], handlers.generate, [prompt, *controls.values()],
          [tokens, chart, cutoff, detail, status], api_visibility="private",
          concurrency_limit=STREAM_CONCURRENCY, concurrency_id="views-inside", show_progress="hidden")
    stop.click(ctx.runs.stop_button(TAB), queue=False, api_visibility="private", show_progress="hidden")
    tokens.select(handlers.select, None, [tokens, chart, cutoff, detail], api_visibility="private",
                  queue=False, show_progress="hidden")
    wire_downloads(downloads, handlers.download_json, handlers.download_html)
    wire_load(load, handlers.load, [tokens, chart, cutoff, detail, status], MAX_RUN_BYTES)
    return prompt
