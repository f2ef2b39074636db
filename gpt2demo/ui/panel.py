"""The top of the page: which model runs where, the banners a visitor must see, the classroom line.

Banners: the offline bundled model is in use (its text is much weaker), the page
is public through a share link without a password, or the share link could not be
made and the demo is local only.
"""

from __future__ import annotations

from html import escape
from pathlib import PurePath

import gradio as gr

from gpt2demo.errors import DemoError
from gpt2demo.serving.interface import EngineState, EngineStats, SourceAttempt
from gpt2demo.sources import MANUAL_FETCH_COMMAND
from gpt2demo.ui.context import Exposure, PageContext
from gpt2demo.ui.i18n import describe_error, message, request_language, tried_in_words

REFRESH_SECONDS = 2.0  # how often every open page asks; cheap (counters the engine pushed)


def shown_spec(spec: str) -> str:
    """A spec as visitors may see it: a folder by its own name, never its path on the server."""
    if spec.startswith(("modelscope:", "hf:")) or spec in ("gpt2", "bundled"):
        return spec
    return PurePath(spec).name or spec


def shown_error(state: EngineState) -> Exception | None:
    """The load failure as visitors may read it: a folder spec by its own name (the sources keep
    paths out of every other fact)."""
    error = state.error
    if isinstance(error, DemoError) and "spec" in error.facts:
        return type(error)(error.code, **{**error.facts, "spec": shown_spec(state.spec)})
    return error


def describe_model(state: EngineState, language: str) -> str:
    """One Markdown line: loading, failed, or the loaded model's facts."""
    if state.phase == "loading":
        return message(language, "model_loading", spec=shown_spec(state.spec), device=state.device)
    if state.phase == "failed":
        return message(language, "model_failed", error=describe_error(shown_error(state), language))
    facts = state.facts
    return message(language, "model_ready", name=facts.name, kind=message(language, f"kind_{facts.source}"),
                   device=facts.device, dtype=facts.precision, parameters=f"{facts.parameters:,}",
                   window=facts.window, load_seconds=facts.load_seconds)


def attempt_line(attempt: SourceAttempt, language: str) -> str:
    detail = f" ({attempt.detail})" if attempt.detail else ""
    return f"<li><code>{escape(attempt.source)}</code>: {escape(tried_in_words(attempt.kind, language))}{escape(detail)}</li>"


def fallback_banner(tried: tuple[SourceAttempt, ...], language: str) -> str:
    """Why the offline model writes, how to get GPT-2, and each source tried behind a collapsed 'details'."""
    details = "".join(attempt_line(attempt, language) for attempt in tried)
    return (message(language, "fallback_banner") + "\n\n" + message(language, "fallback_fix", command=MANUAL_FETCH_COMMAND)
            + f'\n\n<details><summary>{escape(message(language, "fallback_details"))}</summary><ul>{details}</ul></details>')


def describe_banners(state: EngineState, exposure: Exposure, language: str) -> str:
    """Markdown warnings for the top of the page; empty when there is nothing to warn about."""
    lines = []
    if state.facts is not None and state.facts.fell_back:
        lines.append(fallback_banner(state.facts.fallback, language))
    if exposure.share_requested and not exposure.has_auth:
        lines.append(message(language, "public_no_auth"))
    if exposure.share_failed:
        lines.append(message(language, "share_failed", url=exposure.local_url))
    elif exposure.share_url:
        lines.append(message(language, "share_url", url=exposure.share_url))
    return "\n\n".join(lines)


def describe_queue(stats: EngineStats, language: str) -> str:
    """'Requests running: 3 · waiting: 1' in the page's language."""
    return message(language, "classroom", running=stats.running, waiting=stats.waiting)


def show_server(ctx: PageContext):
    """The handler behind the top of the page: model panel, banners and classroom line, in the visitor's language."""

    def show(request: gr.Request = None):
        language = request_language(request)
        state = ctx.engine.state
        banners = describe_banners(state, ctx.exposure, language)
        return (describe_model(state, language), gr.update(value=banners, visible=bool(banners)),
                describe_queue(ctx.engine.stats(), language))

    return show
