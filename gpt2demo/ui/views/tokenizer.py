"""The "Tokenizer" tab's logic: the text as GPT-2 reads it, token ids and all, grouped by characters.

Like the tutorial's `indexed_tokens = tokenizer.encode(text)`, then each token's
bytes: an orange frame holds a character spread over several tokens. At most
TOKENS_SHOWN tokens are drawn, so a long paste gives a page of bounded size.
"""

from __future__ import annotations

from html import escape

import gradio as gr

from gpt2demo.errors import DemoError
from gpt2demo.pieces import CharacterGroup, group_pieces
from gpt2demo.serving.interface import Tokens
from gpt2demo.ui.context import PageContext
from gpt2demo.ui.i18n import message, request_language, user_error
from gpt2demo.ui.views.generate import ready_state
from gpt2demo.ui.widgets.controls import TUTORIAL_PROMPT
from gpt2demo.ui.widgets.tokens import TokenBox, box_html, visible

TOKENS_SHOWN = 512  # the longest prompt GPT-2 reads in one window is 1024; half is plenty to look at
EXAMPLES = [
    TUTORIAL_PROMPT,  # the tutorial's prompt: one token per word
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


def tokenizer_html(text: str, tokens: Tokens, eos_token_id: int | None, language: str) -> str:
    """indexed_tokens, a one-line summary, then the groups (the first TOKENS_SHOWN tokens)."""
    ids, shown = list(tokens.token_ids), list(tokens.pieces[:TOKENS_SHOWN])
    groups = group_pieces(shown)
    split_characters = sum(len(group.text) for group in groups if group.split)
    summary = message(language, "group_summary", characters=len(text), tokens=len(ids), split=split_characters)
    if len(ids) > TOKENS_SHOWN:
        summary += " " + message(language, "group_first", shown=TOKENS_SHOWN)
    cards, index = [], 0
    for group in groups:
        cards.append(group_html(group, index, eos_token_id))
        index += len(group.tokens)
    listed = ", ".join(map(str, ids[:TOKENS_SHOWN])) + (", …" if len(ids) > TOKENS_SHOWN else "")
    return (f'<p class="tk-ids"><code>indexed_tokens = [{listed}]</code></p><p class="tv-note">{escape(summary)}</p>'
            f'<div class="tk-groups">{"".join(cards)}</div>')


class TokenizerHandlers:
    """The tab's events."""

    def __init__(self, ctx: PageContext) -> None:
        self.ctx = ctx

    async def tokenize(self, text: str, request: gr.Request = None) -> str:
        """The text's tokens, ids and bytes."""
        language = request_language(request)
        state = await ready_state(self.ctx, language, None, lambda: False)
        try:
            tokens = await self.ctx.engine.tokenize(text)
        except DemoError as error:  # too long, not text, or a character that cannot be encoded
            raise user_error(error, language) from None
        return tokenizer_html(text, tokens, state.facts.eos_token_id, language)
