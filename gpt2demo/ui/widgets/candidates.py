"""The candidate table of a step, and the words for the cut a sampling rule makes."""

from __future__ import annotations

from html import escape

from gpt2demo.serving.interface import Candidate
from gpt2demo.settings import SamplingSettings
from gpt2demo.ui.i18n import message
from gpt2demo.ui.widgets.tokens import percent, piece_label


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


def candidates_html(candidates: tuple[Candidate, ...], chosen, chosen_probability: float | None,
                    settings: SamplingSettings, eos_token_id: int | None, language: str) -> str:
    """The candidates as a table: probability bars, the chosen one (a TokenPiece or None) marked ★, a dashed line at the cut-off."""
    chosen_id = None if chosen is None else chosen.token_id
    head = (f"<tr><th>{message(language, 'rank')}</th><th>{message(language, 'token')}</th>"
            f"<th>{message(language, 'id')}</th><th>{message(language, 'probability')}</th><th></th></tr>")
    rows = []
    top = max((c.probability for c in candidates), default=1.0) or 1.0
    for rank, candidate in enumerate(candidates):
        if rank and candidates[rank - 1].kept and not candidate.kept:
            rule = describe_rule(settings, language)
            rows.append(f'<tr class="tv-cutoff"><td colspan="5">✂ {escape(message(language, "cutoff_line", rule=rule))}</td></tr>')
        is_chosen = candidate.token_id == chosen_id
        classes = ["tv-kept" if candidate.kept else "tv-cut"] + (["tv-chosen"] if is_chosen else [])
        state = message(language, "chosen") if is_chosen else message(language, "kept" if candidate.kept else "cut")
        width = 120 * candidate.probability / top  # the longest bar is 120 px
        rows.append(
            f'<tr class="{" ".join(classes)}" data-index="{rank}" data-value="{candidate.token_id}">'
            f"<td>{rank + 1}</td><td>{'★ ' if is_chosen else ''}<code>{escape(piece_label(candidate.piece, eos_token_id))}</code></td>"
            f"<td>{candidate.token_id}</td>"
            f'<td><span class="tv-bar" style="width: {width:.1f}px"></span> {percent(candidate.probability)}</td>'
            f"<td>{escape(state)}</td></tr>"
        )
    note = escape(cutoff_summary(candidates, settings, language))
    if chosen is not None and all(c.token_id != chosen_id for c in candidates):
        outside = message(language, "chosen_outside", token=piece_label(chosen, eos_token_id), shown=len(candidates),
                          probability=percent(chosen_probability or 0.0))
        note += f"<br>★ {escape(outside)}"
    return f'<table class="tv-candidates">{head}{"".join(rows)}</table><p class="tv-note">{note}</p>'
