"""One token as the class sees it, and a text drawn as token boxes.

Plain functions of TokenPieces (the engine's Steps carry them), so tests can
check every state exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from gpt2demo.pieces import TokenPiece, group_pieces


def visible(text: str) -> str:
    """Whitespace the class can see: line breaks and tabs as arrows, a token of spaces as ␣."""
    text = text.replace("\n", "↵").replace("\t", "⇥")
    return text.replace(" ", "␣") if text and not text.strip() else text


def piece_label(piece: TokenPiece, eos_token_id: int | None) -> str:
    """How a token is written on its box: its text, or its bytes when it is half a character."""
    if piece.token_id == eos_token_id:
        return piece.piece
    return visible(piece.data.decode("utf-8")) if piece.whole else f"‹{piece.hex}›"


def percent(probability: float) -> str:
    """0.4213 -> '42.13%'; tiny values keep two significant digits."""
    value = probability * 100
    return f"{value:.2f}%" if value >= 0.01 else f"{value:.2g}%"


@dataclass(frozen=True)
class TokenBox:
    """One token on the page and how it is marked."""

    piece: TokenPiece
    shade: float | None = None  # probability when chosen: the box's background strength
    classes: tuple[str, ...] = ()
    title: str = ""


def box_html(box: TokenBox, index: int, eos_token_id: int | None) -> str:
    label = piece_label(box.piece, eos_token_id)
    classes = ["tv-box", *box.classes]
    if not box.piece.whole:
        classes.append("tv-bytes")
    if box.piece.token_id == eos_token_id:
        classes.append("tv-eos")
    style = ""
    if box.shade is not None and "tv-repeat" not in box.classes:
        style = f' style="background: rgba(59, 130, 246, {0.08 + 0.77 * box.shade:.3f})"'
    title = escape(box.title or f"id {box.piece.token_id}", quote=True)
    return (f'<span class="{" ".join(classes)}" data-index="{index}" data-token-id="{box.piece.token_id}" '
            f'title="{title}"{style}>{escape(label)}</span>')


def render_boxes(boxes: list[TokenBox], eos_token_id: int | None) -> str:
    """Boxes in order; tokens that only together form a character sit in one frame with it: ‹e4 bb›‹8a›=今."""
    parts: list[str] = []
    start = 0
    for group in group_pieces([box.piece for box in boxes]):
        count = len(group.tokens)
        inner = "".join(box_html(boxes[i], i, eos_token_id) for i in range(start, start + count))
        if group.split:
            inner = f'<span class="tv-group">{inner}<span class="tv-formed">={escape(group.text)}</span></span>'
        parts.append(inner)
        if group.text.endswith("\n"):
            parts.append("<br>")
        start += count
    return "".join(parts)


def text_html(prompt: str, boxes: list[TokenBox], eos_token_id: int | None) -> str:
    """The prompt in grey, then the new tokens as boxes.

    The div is left open (the browser closes it): while a text grows, each update
    then starts with the one before, and Gradio sends only the new boxes.
    """
    return f'<div class="tv-text"><span class="tv-prompt">{escape(prompt)}</span>{render_boxes(boxes, eos_token_id)}'
