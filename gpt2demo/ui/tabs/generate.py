"""The Generate tab: a prompt, the sampling controls, the text growing as the tokens come, and its run as a file."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from gpt2demo.settings import SamplingSettings
from gpt2demo.ui.context import PageContext
from gpt2demo.ui.i18n import label
from gpt2demo.ui.views.generate import TAB, GenerateHandlers, reuse_seed
from gpt2demo.ui.widgets.controls import TUTORIAL_PROMPT, prompt_box, sampling_controls
from gpt2demo.ui.widgets.export import DownloadButtons, download_buttons, wire_downloads

EXAMPLES = [
    TUTORIAL_PROMPT,
    "Once upon a time, in a small village by the sea,",
    "The most important thing about learning to code is",
    "Here is my recipe for chocolate cake:",
    "今天天气很好，我们",  # GPT-2 saw little Chinese: its characters arrive in byte pieces
    "从前有座山，山里有座庙，",
]
CONTROLS = ("max_new_tokens", "top_k", "temperature", "top_p", "repetition_penalty", "seed", "greedy")


@dataclass
class GenerateTab:
    """The tab's components, for wiring and for tests."""

    prompt: gr.Textbox
    controls: dict
    generate_button: gr.Button
    stop_button: gr.Button
    text: gr.Textbox
    html: gr.HTML
    status: gr.Markdown
    seed_used: gr.Textbox
    reuse_button: gr.Button
    downloads: DownloadButtons


def build(ctx: PageContext, concurrency: int) -> GenerateTab:
    """Lay out the tab and wire its events; `concurrency` = generate handlers allowed at once."""
    handlers = GenerateHandlers(ctx)
    with gr.Tab(label("tab_generate"), id="generate", elem_id="tab-generate"):  # like every tab: tests find its button
        with gr.Row():
            with gr.Column(scale=3):
                prompt = prompt_box("")
                with gr.Row():
                    generate_button = gr.Button(label("generate"), variant="primary", elem_id="generate")
                    stop_button = gr.Button(label("stop"), variant="stop", elem_id="stop")
                html = gr.HTML(label=label("output"), show_label=True, container=True, padding=True, min_height=160,
                               autoscroll=True, elem_id="output")
                status = gr.Markdown(elem_id="status")
                with gr.Row():
                    downloads = download_buttons("generate")
                with gr.Accordion(label("plain_text"), open=False, elem_id="plain-text-panel"):
                    text = gr.Textbox(show_label=False, lines=4, interactive=False, buttons=["copy"], elem_id="plain-text")
                gr.Examples([[example] for example in EXAMPLES], inputs=[prompt], label=label("examples"))
            with gr.Column(scale=2):
                with gr.Accordion(label("settings"), open=True):
                    controls = sampling_controls("", SamplingSettings(), CONTROLS)
                with gr.Row():
                    seed_used = gr.Textbox("", interactive=False, label=label("seed_used"), max_lines=1, elem_id="seed-used")
                    reuse_button = gr.Button(label("reuse_seed"), size="sm")
    tab = GenerateTab(prompt, controls, generate_button, stop_button, text, html, status, seed_used, reuse_button,
                      downloads)
    # The order of inputs is the API's parameter order: prompt, max_new_tokens, top_k, ...
    gr.on(
        triggers=[generate_button.click, prompt.submit],
        fn=handlers.generate,
        inputs=[prompt, *controls.values()],
        outputs=[text, html, status, seed_used],  # the plain text first, for API clients
        api_name="generate",
        preprocess=False,  # raw values go to check_settings, the one validator, which names the parameter
        concurrency_limit=concurrency,
        concurrency_id="generate",
        show_progress_on=[html],
    )
    # Outside the queue: Stop must get through even when the queue is full.
    stop_button.click(ctx.runs.stop_button(TAB), queue=False, api_visibility="private", show_progress="hidden")
    prompt.change(handlers.limit_length, [prompt, controls["max_new_tokens"]], [controls["max_new_tokens"]],
                  api_visibility="private", show_progress="hidden", trigger_mode="always_last",
                  concurrency_limit=4, concurrency_id="limit-length")
    reuse_button.click(reuse_seed, [seed_used], [controls["seed"]], queue=False, api_visibility="private",
                       show_progress="hidden")
    wire_downloads(downloads, handlers.download_json, handlers.download_html)  # the last run, kept by handlers
    return tab
