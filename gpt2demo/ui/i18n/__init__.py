"""Every word of the page in English and Chinese: one mechanism, one table per area.

  page.py    the Generate tab, the model panel, the status and classroom lines
  views.py   the teaching tabs
  errors.py  one message per error code of gpt2demo/errors.py

Static text (labels, hints, buttons) goes through gr.I18n, so the browser picks the
language itself. Text the server writes while running (status lines, tables, the
model panel, errors) is formatted here in the language the browser asks for in its
Accept-Language header. Nothing outside gpt2demo/ui imports this package: the
engine raises errors as data, and the command line words them in English itself.
"""

from __future__ import annotations

import gradio as gr

from gpt2demo.errors import DemoError
from gpt2demo.ui.i18n import errors, page, views

LANGUAGES = ("en", "zh")
AREAS = (page, views, errors)


def _merge(kind: str) -> dict[str, dict[str, str]]:
    merged: dict[str, dict[str, str]] = {language: {} for language in LANGUAGES}
    for area in AREAS:
        for language in LANGUAGES:
            table = getattr(area, kind)[language]
            clash = merged[language].keys() & table.keys()
            if clash:
                raise KeyError(f"{area.__name__} repeats {sorted(clash)}")
            merged[language].update(table)
    return merged


LABELS = _merge("LABELS")
MESSAGES = _merge("MESSAGES")
I18N = gr.I18n(**LABELS)


def label(key: str) -> gr.i18n.I18nData:
    """A static text the browser translates; fails at page build time on an unknown key."""
    if key not in LABELS["en"]:
        raise KeyError(key)
    return I18N(key)


def message(language: str, key: str, **values) -> str:
    """A server-written text in one language, with its values filled in."""
    return MESSAGES[language if language in MESSAGES else "en"][key].format(**values)


def pick_language(accept_language: str | None) -> str:
    """'zh' when the browser's first choice is Chinese, else 'en' (the header's order, not its q-values)."""
    first = (accept_language or "").split(",")[0].strip().lower()
    return "zh" if first.startswith("zh") else "en"


def request_language(request: gr.Request | None) -> str:
    """The language of the browser (or client) that sent the request."""
    headers = getattr(request, "headers", None) or {}
    return pick_language(headers.get("accept-language"))


def _facts_in_words(facts: dict, language: str) -> dict:
    words = dict(facts)
    if "tried" in words:  # [(source, kind, detail), ...]: each kind is a code, worded like the offline banner's list
        words["tried"] = "; ".join(f"{source}: {tried_in_words(kind, language)}" for source, kind, _ in words["tried"])
    return words


def tried_in_words(kind: str, language: str) -> str:
    """How one model source failed (SourceAttempt.kind), in words; an unknown kind as it is."""
    key = f"tried_{kind}"
    return message(language, key) if key in MESSAGES["en"] else kind


def describe_error(error: Exception, language: str) -> str:
    """An error of the engine, the settings or the sources, in the reader's language."""
    if not isinstance(error, DemoError):
        return message(language, "error_step_failed", kind=type(error).__name__, detail=str(error)[:200])
    key = f"error_{error.code}"
    if key not in MESSAGES["en"]:
        return message(language, "error_unknown", code=error.code)
    try:
        return message(language, key, **_facts_in_words(error.facts, language))
    except (KeyError, IndexError, ValueError):  # facts that do not fit the words: say what we can
        return message(language, "error_unknown", code=error.code)


def user_error(error: Exception, language: str) -> gr.Error:
    """The gr.Error a handler raises: the message in the reader's language, no traceback in the log."""
    return gr.Error(describe_error(error, language), print_exception=False)
