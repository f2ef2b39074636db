"""The "Tokenizer" tab: the text as GPT-2 reads it, token ids and all, grouped by characters.

Like the tutorial's `indexed_tokens = tokenizer.encode(text)`, then each token's
bytes: an orange frame holds a character spread over several tokens.
"""

from __future__ import annotations

from html import escape

import gradio as gr

from gpt2demo.engine import LoadedModel
from gpt2demo.settings import check_prompt
from gpt2demo.teaching.pieces import CharacterGroup, group_by_characters
from gpt2demo.ui.i18n import request_language
from gpt2demo.ui.views.common import TokenBox, box_html, ready_model, teaching_html, visible
from gpt2demo.ui.views.labels import label, message

EXAMPLES = [
    "Yesterday, a man named Jack said he saw an alien,",  # the tutorial's prompt: one token per word
    "今天天气很好，我们去公园。",  # most Chinese characters take two or three tokens
    "GPT-2 学中文 🙂",  # mixed: words, characters, an emoji of four bytes
]


def group_html(group: CharacterGroup, first_index: int, eos_token_id: int | None) -> str:
    """One group: its characters above, each token's box, id and bytes below."""
    tokens = "".join(
        f'<div class="tk-token">{box_html(TokenBox(piece), first_index + offset, eos_token_id)}'
        f"<small>{piece.token_id}</small><small>{piece.hex}</small></div>"
        for offset, piece in enumerate(group.tokens)
    )
    classes = "tk-group tk-split" if group.split else "tk-group"
    return f'<div class="{classes}"><div class="tk-chars">{escape(visible(group.text))}</div><div class="tk-tokens">{tokens}</div></div>'


def tokenizer_html(model: LoadedModel, text: str, language: str) -> str:
    """indexed_tokens, a one-line summary, then the groups."""
    ids = model.encode(text)
    groups = group_by_characters(model.tokenizer, ids)
    split_characters = sum(len(group.text) for group in groups if group.split)
    summary = message(language, "group_summary", characters=len(text), tokens=len(ids), split=split_characters)
    cards, index = [], 0
    for group in groups:
        cards.append(group_html(group, index, model.eos_token_id))
        index += len(group.tokens)
    return (f'<p class="tk-ids"><code>indexed_tokens = {ids}</code></p><p class="tv-note">{escape(summary)}</p>'
            f'<div class="tk-groups">{"".join(cards)}</div>')


class TokenizerHandlers:
    def __init__(self, handlers) -> None:
        self.handlers = handlers

    def tokenize(self, text: str, request: gr.Request = None) -> str:
        """The text's tokens, ids and bytes."""
        language = request_language(request)
        try:
            text = check_prompt(text)
        except ValueError as error:  # too long, or a character that cannot be encoded
            raise gr.Error(str(error), print_exception=False) from None
        return tokenizer_html(ready_model(self.handlers.service, language), text, language)


def build_tokenizer_tab(handlers) -> None:
    """Lay out the tab and wire its events."""
    events = TokenizerHandlers(handlers)
    with gr.Tab(label("views_tab_tokenizer"), id="tokenizer", elem_id="tab-tokenizer") as tab:
        gr.Markdown(label("views_tokenizer_intro"))
        text = gr.Textbox(EXAMPLES[1], label=label("views_text"), lines=2, max_lines=8, elem_id="tokenizer-text")
        tokenize = gr.Button(label("views_tokenize"), variant="primary", elem_id="tokenizer-run")
        gr.Examples([[example] for example in EXAMPLES], inputs=[text])
        table = teaching_html("tokenizer-table", label=label("views_token_table"), show_label=True, container=True,
                              padding=True)
    # Tokenizing is quick: outside the queue, when the tab opens and again on every edit.
    gr.on([tab.select, tokenize.click, text.change], events.tokenize, [text], [table], queue=False, api_visibility="private",
          show_progress="hidden", trigger_mode="always_last")
