"""The "You are the sampler" tab: the text so far, the next position's candidates, pick / undo."""

from __future__ import annotations

import gradio as gr

from gpt2demo.ui.context import PageContext
from gpt2demo.ui.i18n import label
from gpt2demo.ui.views.sampler import CONTROLS, DEFAULTS, SamplerHandlers
from gpt2demo.ui.widgets.controls import prompt_box, sampling_controls
from gpt2demo.ui.widgets.styles import teaching_html

CLICK_CONCURRENCY = 8  # clicks computed at once, over all tabs (each is one short request)


def build(ctx: PageContext) -> gr.Textbox:
    """Lay out the tab and wire its events; returns its prompt box."""
    handlers = SamplerHandlers(ctx)
    with gr.Tab(label("views_tab_sampler"), id="sampler", elem_id="tab-sampler"):
        gr.Markdown(label("views_sampler_intro"))
        with gr.Row():
            with gr.Column(scale=3):
                prompt = prompt_box("sampler", max_lines=6)
                start = gr.Button(label("views_start"), variant="primary", elem_id="sampler-start")
                text = teaching_html("sampler-text", clickable=True, label=label("views_sampler_text"), show_label=True,
                                     container=True, padding=True, min_height=100)
                with gr.Row():
                    sample = gr.Button(label("views_sampler_pick"), elem_id="sampler-sample")
                    undo = gr.Button(label("views_undo"), elem_id="sampler-undo")
                status = gr.Markdown(elem_id="sampler-status")
            with gr.Column(scale=2):
                candidates = teaching_html("sampler-candidates", clickable=True, label=label("views_sampler_candidates"),
                                           show_label=True, container=True, padding=True)
                with gr.Accordion(label("settings"), open=False):
                    controls = sampling_controls("sampler", DEFAULTS, CONTROLS)
    outputs = [text, candidates, status]
    common = dict(api_visibility="private", concurrency_limit=CLICK_CONCURRENCY, concurrency_id="views-sampler",
                  show_progress="hidden")
    gr.on([start.click, prompt.submit], handlers.start, [prompt, *controls.values()], outputs, **common)
    candidates.select(handlers.choose, None, outputs, **common)
    sample.click(handlers.sample, None, outputs, **common)
    text.select(handlers.go_back, None, outputs, **common)
    undo.click(handlers.undo, None, outputs, **common)
    return prompt
