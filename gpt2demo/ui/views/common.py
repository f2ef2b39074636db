"""What the teaching tabs share: token boxes, the candidate table, the settings rule, model access.

Plain functions from engine facts (Steps, Candidates, TokenPieces) to HTML, so
tests can check every state exactly; the tabs only wire them to components.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from html import escape
from typing import Callable

import gradio as gr

from gpt2demo.engine import Candidate, LoadedModel
from gpt2demo.settings import BOUNDS, SamplingSettings
from gpt2demo.teaching.pieces import TokenPiece, group_pieces, token_piece
from gpt2demo.ui.i18n import label as page_label
from gpt2demo.ui.live_output import UPDATE_SECONDS
from gpt2demo.ui.views.labels import message


# Clicking a box or a candidate row sends its data-index to the component's .select event.
CLICK_JS = """
element.addEventListener('click', (event) => {
  const item = event.target.closest('[data-index]');
  if (item) trigger('select', {index: Number(item.dataset.index), value: item.dataset.value || ''});
});
"""

CSS = """
.tv-text { line-height: 2.1; font-size: 1.05em; }
.tv-prompt { color: var(--body-text-color-subdued, #888); white-space: pre-wrap; }
.tv-box { display: inline-block; white-space: pre; border: 1px solid var(--border-color-primary, #ccc);
  border-radius: 4px; padding: 0 3px; margin: 1px 1px; line-height: 1.5; }
.tv-clickable .tv-box, .tv-clickable tr[data-index] { cursor: pointer; }
.tv-box.tv-bytes { font-family: var(--font-mono, monospace); font-size: 0.8em; }
.tv-box.tv-selected { outline: 2px solid #f97316; outline-offset: 1px; }
.tv-box.tv-you { border: 2px dashed #7c3aed; }
.tv-box.tv-repeat { background: rgba(250, 204, 21, 0.55); }
.tv-box.tv-diverge { border-left: 4px solid #dc2626; }
.tv-box.tv-eos { font-style: italic; }
.tv-group { display: inline-block; border: 1px dotted #888; border-radius: 6px; padding: 0 2px; margin: 0 2px; }
.tv-formed { font-weight: bold; margin: 0 3px; }
.tv-candidates { border-collapse: collapse; width: 100%; }
.tv-candidates td, .tv-candidates th { padding: 2px 6px; text-align: left; }
.tv-candidates tr.tv-cut td { color: var(--body-text-color-subdued, #999); }
.tv-candidates tr.tv-chosen td { font-weight: bold; }
.tv-candidates tr.tv-cutoff td { border-top: 2px dashed #dc2626; color: #dc2626; font-size: 0.85em; }
.tv-bar { display: inline-block; height: 0.8em; background: #3b82f6; vertical-align: middle; }
.tv-cut .tv-bar { background: #9ca3af; }
.tv-note { color: var(--body-text-color-subdued, #666); font-size: 0.9em; }
.tv-lane { margin-bottom: 0.8em; }
.tv-lane h4 { margin: 0.2em 0; }
.tk-groups { display: flex; flex-wrap: wrap; gap: 6px; align-items: flex-start; }
.tk-group { border: 1px solid var(--border-color-primary, #ccc); border-radius: 6px; padding: 2px 4px; text-align: center; }
.tk-group.tk-split { border: 2px solid #f97316; }
.tk-chars { font-size: 1.4em; white-space: pre; }
.tk-tokens { display: flex; gap: 3px; justify-content: center; }
.tk-token { display: flex; flex-direction: column; align-items: center; font-size: 0.8em; }
.tk-token small { font-family: var(--font-mono, monospace); color: var(--body-text-color-subdued, #666); }
.tk-ids { font-family: var(--font-mono, monospace); white-space: pre-wrap; word-break: break-all; }
"""


def teaching_html(elem_id: str, clickable: bool = False, **kwargs) -> gr.HTML:
    """An HTML output with the views' styles; clickable ones report their boxes' data-index to .select."""
    return gr.HTML(elem_id=elem_id, css_template=CSS, js_on_load=CLICK_JS if clickable else None,
                   elem_classes=["tv-clickable"] if clickable else None, **kwargs)


class Throttle:
    """Says when a stream should update the page: the first and last time, and then at most every UPDATE_SECONDS."""

    def __init__(self, seconds: float = UPDATE_SECONDS) -> None:
        self.seconds = seconds
        self.last: float | None = None

    def due(self, final: bool = False) -> bool:
        now = time.monotonic()
        if final or self.last is None or now - self.last >= self.seconds:
            self.last = now
            return True
        return False


def stop_run(cancel) -> None:
    """Stop button of a tab that runs in its own handler: set the run's cancel event, if any."""
    if cancel is not None:
        cancel.set()


def ready_model(service, language: str) -> LoadedModel:
    """The shared model, or a gr.Error saying why there is none yet."""
    if service.model is None:
        reason = service.error or message(language, "model_not_ready")
        raise gr.Error(reason, print_exception=False)
    return service.model


# ---------------------------------------------------------------- one token as text


def visible(text: str) -> str:
    """Whitespace the class can see: line breaks and tabs as arrows, a token of spaces as ␣."""
    text = text.replace("\n", "↵").replace("\t", "⇥")
    return text.replace(" ", "␣") if text and not text.strip() else text


def piece_label(piece: TokenPiece, eos_token_id: int | None) -> str:
    """How a token is written on its box: its text, or its bytes when it is half a character."""
    if piece.token_id == eos_token_id:
        return piece.piece
    return visible(piece.data.decode("utf-8")) if piece.whole else f"‹{piece.hex}›"


def labeller(model: LoadedModel) -> Callable[[int], str]:
    """token id -> its box label, for tables and chart axes."""
    return lambda token_id: piece_label(token_piece(model.tokenizer, token_id), model.eos_token_id)


def percent(probability: float) -> str:
    """0.4213 -> '42.13%'; tiny values keep two significant digits."""
    value = probability * 100
    return f"{value:.2f}%" if value >= 0.01 else f"{value:.2g}%"


# ---------------------------------------------------------------- boxes


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
    then starts with the one before, and Gradio streams only the new boxes.
    """
    return f'<div class="tv-text"><span class="tv-prompt">{escape(prompt)}</span>{render_boxes(boxes, eos_token_id)}'


# ---------------------------------------------------------------- candidates


def describe_rule(settings: SamplingSettings, language: str) -> str:
    """Which cut the settings make: 'top-k = 10 · top-p = 0.9 · temperature 0.7'."""
    if settings.greedy:
        return message(language, "rule_greedy")
    parts = []
    if 0 < settings.top_k:
        parts.append(f"top-k = {settings.top_k}")
    if settings.top_p < 1.0:
        parts.append(f"top-p = {settings.top_p:g}")
    rule = " · ".join(parts) or message(language, "rule_none")
    return rule + (f" · T = {settings.temperature:g}" if settings.temperature != 1.0 else "")


def cutoff_summary(candidates: tuple[Candidate, ...], settings: SamplingSettings, language: str) -> str:
    """One sentence: how many of the shown candidates survive the cut."""
    kept = sum(c.kept for c in candidates)
    rule = describe_rule(settings, language)
    if kept == len(candidates):
        return message(language, "cutoff_all", shown=len(candidates), rule=rule)
    return message(language, "cutoff_summary", kept=kept, shown=len(candidates), rule=rule)


def candidates_html(candidates: tuple[Candidate, ...], chosen_id: int | None, chosen_probability: float | None,
                    settings: SamplingSettings, label_of: Callable[[int], str], language: str) -> str:
    """The candidates as a table: probability bars, the chosen one marked ★, a dashed line at the cut-off."""
    head = (f"<tr><th>{message(language, 'rank')}</th><th>{message(language, 'token')}</th>"
            f"<th>{message(language, 'id')}</th><th>{message(language, 'probability')}</th><th></th></tr>")
    rows = []
    top = max((c.probability for c in candidates), default=1.0) or 1.0
    for rank, candidate in enumerate(candidates):
        if rank and candidates[rank - 1].kept and not candidate.kept:
            rule = describe_rule(settings, language)
            rows.append(f'<tr class="tv-cutoff"><td colspan="5">✂ {escape(message(language, "cutoff_line", rule=rule))}</td></tr>')
        classes = ["tv-kept" if candidate.kept else "tv-cut"] + (["tv-chosen"] if candidate.token_id == chosen_id else [])
        state = message(language, "chosen") if candidate.token_id == chosen_id else message(language, "kept" if candidate.kept else "cut")
        mark = "★ " if candidate.token_id == chosen_id else ""
        width = 120 * candidate.probability / top  # the longest bar is 120 px
        rows.append(
            f'<tr class="{" ".join(classes)}" data-index="{rank}" data-value="{candidate.token_id}">'
            f"<td>{rank + 1}</td><td>{mark}<code>{escape(label_of(candidate.token_id))}</code></td>"
            f"<td>{candidate.token_id}</td>"
            f'<td><span class="tv-bar" style="width: {width:.1f}px"></span> {percent(candidate.probability)}</td>'
            f"<td>{escape(state)}</td></tr>"
        )
    note = escape(cutoff_summary(candidates, settings, language))
    if chosen_id is not None and all(c.token_id != chosen_id for c in candidates):
        outside = message(language, "chosen_outside", token=label_of(chosen_id), shown=len(candidates),
                          probability=percent(chosen_probability or 0.0))
        note += f"<br>★ {escape(outside)}"
    return f'<table class="tv-candidates">{head}{"".join(rows)}</table><p class="tv-note">{note}</p>'


# ---------------------------------------------------------------- controls


def sampling_controls(prefix: str, defaults: SamplingSettings, names: tuple[str, ...]) -> dict[str, gr.components.Component]:
    """The chosen sampling controls, ranges from settings.BOUNDS, labels shared with the Generate tab.

    Element ids are '<prefix>-<name>', so two tabs never share one.
    """

    def slider(name: str, step: float) -> gr.Slider:
        return gr.Slider(*getattr(BOUNDS, name), value=getattr(defaults, name), step=step, label=page_label(name),
                         info=page_label(f"{name}_info"), elem_id=f"{prefix}-{name.replace('_', '-')}")

    makers = {
        "max_new_tokens": lambda: slider("max_new_tokens", 1),
        "top_k": lambda: gr.Number(defaults.top_k, minimum=BOUNDS.top_k[0], maximum=BOUNDS.top_k[1], precision=0, step=1,
                                   label=page_label("top_k"), info=page_label("top_k_info"), elem_id=f"{prefix}-top-k"),
        "temperature": lambda: slider("temperature", 0.01),
        "top_p": lambda: slider("top_p", 0.01),
        "repetition_penalty": lambda: slider("repetition_penalty", 0.01),
        # Text, not a number box: blank means "random", and the seed used is reported back.
        "seed": lambda: gr.Textbox("" if defaults.seed is None else str(defaults.seed), label=page_label("seed"),
                                   info=page_label("seed_info"), max_lines=1, elem_id=f"{prefix}-seed"),
    }
    return {name: makers[name]() for name in names}
