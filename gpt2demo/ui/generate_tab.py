"""The Generate tab: a prompt, the sampling controls, and the text growing token by token."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from gpt2demo.settings import BOUNDS, SamplingSettings
from gpt2demo.ui.handlers import Handlers, reuse_seed
from gpt2demo.ui.i18n import label

EXAMPLES = [
    "Yesterday, a man named Jack said he saw an alien,",  # the tutorial's prompt
    "Once upon a time, in a small village by the sea,",
    "The most important thing about learning to code is",
    "Here is my recipe for chocolate cake:",
    "今天天气很好，我们",  # GPT-2 saw little Chinese: its characters arrive in byte pieces
    "从前有座山，山里有座庙，",
]
DEFAULTS = SamplingSettings()


@dataclass
class GenerateTab:
    """The tab's components, for wiring and for tests."""

    prompt: gr.Textbox
    max_new_tokens: gr.Slider
    top_k: gr.Number
    temperature: gr.Slider
    top_p: gr.Slider
    repetition_penalty: gr.Slider
    seed: gr.Textbox
    greedy: gr.Checkbox
    generate_button: gr.Button
    stop_button: gr.Button
    text: gr.Textbox
    html: gr.HTML
    status: gr.Markdown
    seed_used: gr.Textbox
    reuse_button: gr.Button
    generation: object = None  # the generate event, for others to chain on


def build_controls() -> dict:
    """The sampling controls, ranges from settings.BOUNDS and defaults from SamplingSettings."""
    with gr.Accordion(label("settings"), open=True):
        controls = dict(
            max_new_tokens=gr.Slider(*BOUNDS.max_new_tokens, value=DEFAULTS.max_new_tokens, step=1,
                                     label=label("max_new_tokens"), info=label("max_new_tokens_info"), elem_id="max-new-tokens"),
            # A number box, not a slider: k runs up to the vocabulary size, but the useful values are small.
            top_k=gr.Number(DEFAULTS.top_k, minimum=BOUNDS.top_k[0], maximum=BOUNDS.top_k[1], precision=0, step=1,
                            label=label("top_k"), info=label("top_k_info")),
            temperature=gr.Slider(*BOUNDS.temperature, value=DEFAULTS.temperature, step=0.01,
                                  label=label("temperature"), info=label("temperature_info")),
            top_p=gr.Slider(*BOUNDS.top_p, value=DEFAULTS.top_p, step=0.01, label=label("top_p"), info=label("top_p_info")),
            repetition_penalty=gr.Slider(*BOUNDS.repetition_penalty, value=DEFAULTS.repetition_penalty, step=0.01,
                                         label=label("repetition_penalty"), info=label("repetition_penalty_info")),
            # Text, not a number box: a number box cannot be blank, and blank means "random".
            seed=gr.Textbox("", label=label("seed"), info=label("seed_info"), max_lines=1, elem_id="seed"),
            greedy=gr.Checkbox(DEFAULTS.greedy, label=label("greedy"), info=label("greedy_info")),
        )
    return controls


def build_generate_tab(handlers: Handlers, concurrency: int) -> GenerateTab:
    """Lay out the tab and wire its events; `concurrency` = generate handlers allowed at once."""
    with gr.Tab(label("tab_generate"), id="generate"):
        with gr.Row():
            with gr.Column(scale=3):
                prompt = gr.Textbox(label=label("prompt"), info=label("prompt_info"), placeholder=label("prompt_placeholder"),
                                    lines=1, max_lines=8, elem_id="prompt")
                with gr.Row():
                    generate_button = gr.Button(label("generate"), variant="primary", elem_id="generate")
                    stop_button = gr.Button(label("stop"), variant="stop", elem_id="stop")
                html = gr.HTML(label=label("output"), show_label=True, container=True, padding=True, min_height=160,
                               autoscroll=True, elem_id="output")
                status = gr.Markdown(elem_id="status")
                with gr.Accordion(label("plain_text"), open=False, elem_id="plain-text-panel"):
                    text = gr.Textbox(show_label=False, lines=4, interactive=False, buttons=["copy"], elem_id="plain-text")
                gr.Examples([[example] for example in EXAMPLES], inputs=[prompt], label=label("examples"))
            with gr.Column(scale=2):
                controls = build_controls()
                with gr.Row():
                    seed_used = gr.Textbox("", interactive=False, label=label("seed_used"), max_lines=1, elem_id="seed-used")
                    reuse_button = gr.Button(label("reuse_seed"), size="sm")
    tab = GenerateTab(prompt=prompt, generate_button=generate_button, stop_button=stop_button, text=text, html=html,
                      status=status, seed_used=seed_used, reuse_button=reuse_button, **controls)
    wire_generate_tab(tab, handlers, concurrency)
    return tab


def wire_generate_tab(tab: GenerateTab, handlers: Handlers, concurrency: int) -> None:
    # The order of inputs is the API's parameter order: prompt, max_new_tokens, top_k, ...
    inputs = [tab.prompt, tab.max_new_tokens, tab.top_k, tab.temperature, tab.top_p, tab.repetition_penalty,
              tab.seed, tab.greedy]
    tab.generation = gr.on(
        triggers=[tab.generate_button.click, tab.prompt.submit],
        fn=handlers.generate,
        inputs=inputs,
        outputs=[tab.text, tab.html, tab.status, tab.seed_used],  # the plain text first, for API clients
        api_name="generate",
        preprocess=False,  # raw values go to check_settings, the one validator, which names the parameter
        concurrency_limit=concurrency,
        concurrency_id="generate",
        show_progress_on=[tab.html],
    )
    # Outside the queue: Stop must get through even when the queue is full.
    tab.stop_button.click(handlers.stop, queue=False, api_visibility="private", show_progress="hidden")
    tab.prompt.change(handlers.limit_length, [tab.prompt, tab.max_new_tokens], [tab.max_new_tokens], queue=False,
                      api_visibility="private", show_progress="hidden")
    tab.reuse_button.click(reuse_seed, [tab.seed_used], [tab.seed], queue=False, api_visibility="private",
                           show_progress="hidden")
