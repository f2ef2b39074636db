"""The "Tokenizer" tab: a text box, examples, and its tokens grouped by the characters they form."""

from __future__ import annotations

import gradio as gr

from gpt2demo.ui.context import PageContext
from gpt2demo.ui.i18n import label
from gpt2demo.ui.views.tokenizer import EXAMPLES, TokenizerHandlers
from gpt2demo.ui.widgets.styles import teaching_html

TOKENIZE_CONCURRENCY = 4  # tokenizations at once (each is a call to the engine, on every edit)


def build(ctx: PageContext) -> gr.Textbox:
    """Lay out the tab and wire its events; returns its text box (it shares the prompt too)."""
    handlers = TokenizerHandlers(ctx)
    with gr.Tab(label("views_tab_tokenizer"), id="tokenizer", elem_id="tab-tokenizer") as tab:
        gr.Markdown(label("views_tokenizer_intro"))
        text = gr.Textbox(EXAMPLES[0], label=label("views_text"), lines=2, max_lines=8, elem_id="tokenizer-text")
        tokenize = gr.Button(label("views_tokenize"), variant="primary", elem_id="tokenizer-run")
        gr.Examples([[example] for example in EXAMPLES], inputs=[text])
        table = teaching_html("tokenizer-table", label=label("views_token_table"), show_label=True, container=True,
                              padding=True)
    # When the tab opens and again on every edit: queued, the newest edit only.
    gr.on([tab.select, tokenize.click, text.change], handlers.tokenize, [text], [table], api_visibility="private",
          show_progress="hidden", trigger_mode="always_last", concurrency_limit=TOKENIZE_CONCURRENCY,
          concurrency_id="views-tokenizer")
    return text
