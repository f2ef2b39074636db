"""Errors as data: a code and the facts a message needs, in no human language.

The settings checks, the model sources and the engines raise these. The page
(gpt2demo/ui/i18n) and the command line (gpt2demo/cli.py) turn them into words
for their own readers, so the engine never decides who is reading.

A bad value is carried only as a short excerpt: a 1 MB seed must not become a
1 MB message (and Python refuses to print integers of over 4,300 digits at all).
"""

from __future__ import annotations

import reprlib
from typing import Any

EXCERPT_CHARS = 40  # of a bad value, quoted in a message

_excerpts = reprlib.Repr()
_excerpts.maxstring = _excerpts.maxother = _excerpts.maxlong = EXCERPT_CHARS
_excerpts.maxlist = _excerpts.maxtuple = 4
_excerpts.maxdict = _excerpts.maxset = 3
_excerpts.maxlevel = 2


def excerpt(value: Any) -> str:
    """At most about EXCERPT_CHARS characters that show what a bad value looked like."""
    try:
        text = _excerpts.repr(value)
    except (ValueError, RecursionError):  # an integer too long to print, a hostile __repr__
        text = f"<{type(value).__name__}>"
    if len(text) > EXCERPT_CHARS + 5:
        text = text[: EXCERPT_CHARS // 2] + "..." + text[-EXCERPT_CHARS // 2 :]
    return text


class DemoError(Exception):
    """Something the user must be told: `code` names it, `facts` fill in its message."""

    def __init__(self, code: str, **facts: Any) -> None:
        super().__init__(code, facts)
        self.code = code
        self.facts = facts

    def __str__(self) -> str:  # for logs and tracebacks; readers get the UI's or the CLI's words
        details = ", ".join(f"{key}={value}" for key, value in self.facts.items())
        return f"{self.code} ({details})" if details else self.code

    def __reduce__(self):  # crosses the engine process's pipe intact
        return _rebuild, (type(self), self.code, self.facts)


def _rebuild(cls: type[DemoError], code: str, facts: dict) -> DemoError:
    return cls(code, **facts)


class BadRequest(DemoError):
    """A parameter or the prompt is not acceptable: names the parameter and its allowed range.

    Codes: integer, number, boolean (parameter, low, high, got); prompt_type (got);
    prompt_length (limit, got); prompt_character (codepoint, position); not_a_candidate
    (token_id); text_ended; inputs (event, expected, got); unknown_inputs (event, got,
    expected); event (event, problem). A run file loaded back (ui/views/export.py): run_json,
    run_size, run_format, run_version, and run_* codes naming a `field` by its path
    (run_missing, run_unknown, run_not_object/list/text/integer/boolean/hex/probability,
    run_too_long, run_too_many, run_index, run_finish, run_text_mismatch).
    """


class EngineBusy(DemoError):
    """The line for the model is full: code "busy" (ahead = requests before this one)."""


class EngineUnavailable(DemoError):
    """No model to run on: loading (spec), load_failed (reason), closed, unsupported (feature).

    A remote engine (serving/remote.py) adds: engine_unreachable (url, detail), engine_timeout
    (url, seconds), gone (url, detail: the server went away mid-stream), engine_protocol (detail: not
    an OpenAI-compatible vLLM), model_not_served (url, model, served), choose_model (url, served),
    tokenizer_mismatch (url, folder, served).
    """


class GenerationFailed(DemoError):
    """A step of the model failed: code "step_failed" (kind, detail); the next request works.

    From a remote server: engine_error (status, kind, detail: the server's own words), engine_protocol (detail).
    """


class ModelSourceError(DemoError):
    """A model could not be found, fetched or read.

    Codes: no_folder, no_config, no_weights, no_tokenizer (path, wanted); damaged (path,
    part, detail); offline (source); download (source, kind, detail); unknown_spec (spec);
    unavailable (tried: a list of (source, kind, detail)).
    """
