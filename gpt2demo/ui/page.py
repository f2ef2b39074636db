"""The whole page: header with the model panel, one tab per view, the classroom line.

Only layout and wiring; what happens lives in handlers.py. A new view is a
module with a build_*_tab(handlers) function and one line in the Tabs below.
"""

from __future__ import annotations

import gradio as gr

from gpt2demo.ui.classroom import REFRESH_SECONDS
from gpt2demo.ui.generate_tab import GenerateTab, build_generate_tab
from gpt2demo.ui.handlers import Handlers
from gpt2demo.ui.i18n import label
from gpt2demo.ui.views import build_teaching_tabs

TITLE = "GPT-2 demo"


def build_page(handlers: Handlers, concurrency: int) -> tuple[gr.Blocks, GenerateTab]:
    """The gr.Blocks page and its Generate tab; `concurrency` = generate handlers allowed at once."""
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(label("title"))
        gr.Markdown(label("intro"))
        banners = gr.Markdown(visible=False, elem_id="banners")
        model_panel = gr.Markdown(elem_id="model-panel")
        with gr.Tabs():
            generate_tab = build_generate_tab(handlers, concurrency)
            build_teaching_tabs(handlers)
        classroom = gr.Markdown(elem_id="classroom")
        timer = gr.Timer(REFRESH_SECONDS)

        server_views = [model_panel, banners, classroom]
        # Outside the queue, so a full queue never freezes the counters that explain it.
        for trigger in (demo.load, timer.tick):
            trigger(handlers.show_server, None, server_views, queue=False, api_visibility="private", show_progress="hidden")
        demo.unload(handlers.stop)  # a closed tab stops its generation at once
    return demo, generate_tab
