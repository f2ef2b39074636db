"""The whole page: header with the model panel, one tab per view, the classroom line.

Only layout and wiring. A new tab is a module in tabs/ and one line below.
"""

from __future__ import annotations

import gradio as gr

from gpt2demo.ui.context import PageContext
from gpt2demo.ui.i18n import label
from gpt2demo.ui.panel import REFRESH_SECONDS, show_server
from gpt2demo.ui.tabs import cost, generate, inside, sampler, strategies, tokenizer
from gpt2demo.ui.widgets.controls import share_prompts
from gpt2demo.ui.widgets.display import build_switches

TITLE = "GPT-2 demo"


def build_page(ctx: PageContext, concurrency: int) -> tuple[gr.Blocks, generate.GenerateTab]:
    """The gr.Blocks page and its Generate tab; `concurrency` = generate handlers allowed at once."""
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(label("title"))
        build_switches(demo)  # projector and dark mode, bookmarkable: ?projector=1, ?__theme=dark
        gr.Markdown(label("intro"))
        banners = gr.Markdown(visible=False, elem_id="banners")
        model_panel = gr.Markdown(elem_id="model-panel")
        with gr.Tabs():
            generate_tab = generate.build(ctx, concurrency)
            prompts = [generate_tab.prompt, inside.build(ctx), sampler.build(ctx), strategies.build(ctx),
                       tokenizer.build(ctx), cost.build(ctx)]
        share_prompts(prompts)
        classroom = gr.Markdown(elem_id="classroom")
        timer = gr.Timer(REFRESH_SECONDS)
        # Outside the queue, so a full queue never freezes the counters that explain it.
        for trigger in (demo.load, timer.tick):
            trigger(show_server(ctx), None, [model_panel, banners, classroom], queue=False, api_visibility="private",
                    show_progress="hidden")
        demo.unload(ctx.close_page)  # a closed tab stops its generations and gives back what it held
    return demo, generate_tab
