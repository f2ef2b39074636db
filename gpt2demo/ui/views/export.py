"""A run as a file: the JSON a teacher downloads and loads back, and an HTML page of its token view.

The JSON holds everything the Inside tab draws of a run, so a loaded file replays
there without the model (a lesson prepared at home, shown in class):

  {"format": "gpt2demo-run", "version": 1,
   "model": {"name": "modelscope:AI-ModelScope/gpt2", "eos_token_id": 50256, "candidates": true},
   "settings": {"max_new_tokens": 40, "top_k": 10, "top_p": 1.0, "temperature": 1.0,
                "repetition_penalty": 1.0, "greedy": false, "seed": null},
   "seed": 1234, "prompt": "Yesterday, a man named Jack said he saw an alien,",
   "tokens": [
     {"index": 0, "id": 262, "piece": "Ġthe", "bytes": "20746865", "text": " the", "probability": 0.21,
      "candidates": [{"id": 262, "piece": "Ġthe", "bytes": "20746865", "text": " the", "probability": 0.21,
                      "kept": true}, ...]},
     ...],
   "finish_reason": "length"}

"settings" are the ones asked for (seed null = random), "seed" the one used. A
token's "piece" is its spelling in vocab.json and "bytes" (hex) what it stands for;
its "text" is what it added to the visible text ("" while a character is still
unfinished), a candidate's "text" its own bytes decoded. "probability" is null
when the engine sent none (model.candidates false).

A file is read strictly: any field missing, of the wrong type or out of range is
refused with an error naming it by its path (tokens[3].candidates[0].kept), as data
(BadRequest codes run_*); the page words it in the reader's language.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, fields
from html import escape

from gpt2demo.errors import BadRequest, DemoError, excerpt
from gpt2demo.pieces import TokenPiece
from gpt2demo.serving.interface import Candidate, Step
from gpt2demo.settings import BOUNDS, SamplingSettings, check_prompt, check_settings
from gpt2demo.ui.guards import MAX_BODY_BYTES
from gpt2demo.ui.i18n import message
from gpt2demo.ui.views.features import probability_text
from gpt2demo.ui.widgets.candidates import describe_rule
from gpt2demo.ui.widgets.styles import CSS
from gpt2demo.ui.widgets.tokens import TokenBox, text_html

FORMAT = "gpt2demo-run"
VERSION = 1
# A loaded file as sent (a JSON string, ~2.2 KB a token: runs of ~200 tokens); the event's other fields fit in the rest.
MAX_RUN_BYTES = MAX_BODY_BYTES - 64 * 1024
MAX_CANDIDATES = 15  # what the engines send (generation.NUM_CANDIDATES); more is not a file of ours
MAX_TOKEN_BYTES = 256  # GPT-2's longest token is 128 bytes
MAX_NAME_CHARS = 200  # a model's name
MAX_TOKEN_ID = 2**31 - 1
SHOWN_FINISH_REASONS = ("eos", "length", "context", "stopped")  # the ones the token view words ('paused' is the sampler's)
COMPACT = dict(ensure_ascii=False, separators=(",", ":"))  # small, so a longer run still fits MAX_RUN_BYTES
HEX = re.compile(r"(?:[0-9a-f]{2})*")
SURROGATE = re.compile("[\ud800-\udfff]")

# Slides: larger text on a plain page. The views' own CSS is nested under .gpt2demo-run
# (it styles a component's root with bare declarations, which a page keeps only inside a rule).
PAGE_CSS = """
body { margin: 0; font-family: system-ui, -apple-system, "Segoe UI", "Noto Sans", "PingFang SC", sans-serif;
  color: #111; background: #fff; }
.gpt2demo-run { max-width: 60em; margin: 2em auto; padding: 0 1.5em; font-size: 1.5em; }
.gpt2demo-run h1 { font-size: 1.2em; margin: 0 0 0.3em; }
.gpt2demo-run .tv-text { margin: 1em 0; }
"""


@dataclass(frozen=True)
class Run:
    """One generation as the views drew it: where it came from, how it was asked for, each token."""

    model: str  # ModelFacts.name
    eos_token_id: int | None
    candidates: bool  # the engine sent candidates and probabilities
    prompt: str
    settings: SamplingSettings  # as asked for (seed None = random)
    seed: int | None  # the seed used
    steps: tuple[Step, ...]  # the steps that wrote a token, in order
    finish_reason: str | None  # None: the run had not ended

    @classmethod
    def of(cls, model: str, eos_token_id: int | None, candidates: bool, prompt: str, settings: SamplingSettings,
           seed: int | None, steps) -> Run:
        """A run from the engine's steps as they came: the last one's finish reason, the steps with a token."""
        steps = tuple(steps)
        finish_reason = steps[-1].finish_reason if steps else None
        return cls(model, eos_token_id, candidates, prompt, settings, seed,
                   tuple(step for step in steps if step.token_id is not None), finish_reason)

    def file_name(self, extension: str) -> str:
        return f"gpt2demo-run-{self.seed}.{extension}" if self.seed is not None else f"gpt2demo-run.{extension}"


def step_box(step: Step) -> TokenBox:
    """A step's token as the token view draws it: shaded by the probability it was chosen with."""
    return TokenBox(step.piece, shade=step.probability,
                    title=f"#{step.index} · id {step.token_id} · p = {probability_text(step.probability)}")


# ---------------------------------------------------------------- run -> file


def piece_json(piece: TokenPiece) -> dict:
    return {"id": piece.token_id, "piece": piece.piece, "bytes": piece.data.hex(), "text": piece.text}


def step_json(step: Step) -> dict:
    token = {"index": step.index, **piece_json(step.piece), "text": step.text, "probability": step.probability}
    token["candidates"] = [{**piece_json(c.piece), "probability": c.probability, "kept": c.kept} for c in step.candidates]
    return token


def run_json(run: Run) -> dict:
    """The file's content as a dict (see the module docstring)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": {"name": run.model, "eos_token_id": run.eos_token_id, "candidates": run.candidates},
        "settings": {field.name: getattr(run.settings, field.name) for field in fields(SamplingSettings)},
        "seed": run.seed,
        "prompt": run.prompt,
        "tokens": [step_json(step) for step in run.steps],
        "finish_reason": run.finish_reason,
    }


def run_text(run: Run) -> str:
    """The file's text: compact JSON, one token a line, so it reads in an editor and a long run still loads back."""
    parts = []
    for key, value in run_json(run).items():
        if key == "tokens":
            lines = ",\n".join(json.dumps(token, **COMPACT) for token in value)
            parts.append(f'"tokens":[\n{lines}\n]')
        else:
            parts.append(f"{json.dumps(key)}:{json.dumps(value, **COMPACT)}")
    return "{" + ",".join(parts) + "}\n"


# ---------------------------------------------------------------- file -> run


def at(path: str, key: str | int) -> str:
    """A field's path as messages name it: tokens[3].candidates[0].kept."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def object_at(value, path: str, keys: tuple[str, ...]) -> dict:
    """A JSON object with exactly these keys."""
    if not isinstance(value, dict):
        raise BadRequest("run_not_object", field=path or "run", got=excerpt(value))
    for key in keys:
        if key not in value:
            raise BadRequest("run_missing", field=at(path, key))
    unknown = sorted(set(value) - set(keys))
    if unknown:
        raise BadRequest("run_unknown", field=at(path, unknown[0][:40]))
    return value


def text_at(value, path: str, limit: int) -> str:
    # A lone surrogate (JSON's "\ud800") is no text: it cannot even be written back as UTF-8.
    if not isinstance(value, str) or SURROGATE.search(value):
        raise BadRequest("run_not_text", field=path, got=excerpt(value))
    if len(value) > limit:
        raise BadRequest("run_too_long", field=path, limit=limit, got=len(value))
    return value


def integer_at(value, path: str, low: int, high: int, nullable: bool = False) -> int | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest("run_not_integer", field=path, low=low, high=high, got=excerpt(value))
    return value


def probability_at(value, path: str, nullable: bool = False) -> float | None:
    if value is None and nullable:
        return None
    # JSON's 1 reads as an int; NaN and Infinity (which Python's json accepts) are no probability.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 <= value <= 1:
        raise BadRequest("run_not_probability", field=path, got=excerpt(value))
    return float(value)


def boolean_at(value, path: str) -> bool:
    if not isinstance(value, bool):
        raise BadRequest("run_not_boolean", field=path, got=excerpt(value))
    return value


def list_at(value, path: str, limit: int) -> list:
    if not isinstance(value, list):
        raise BadRequest("run_not_list", field=path, got=excerpt(value))
    if len(value) > limit:
        raise BadRequest("run_too_many", field=path, limit=limit, got=len(value))
    return value


def piece_at(value: dict, path: str) -> TokenPiece:
    """id, piece, bytes: the TokenPiece; a candidate's text must be its bytes decoded."""
    token_id = integer_at(value["id"], at(path, "id"), 0, MAX_TOKEN_ID)
    spelling = text_at(value["piece"], at(path, "piece"), MAX_TOKEN_BYTES)
    hex_bytes = text_at(value["bytes"], at(path, "bytes"), 2 * MAX_TOKEN_BYTES)
    if not HEX.fullmatch(hex_bytes):
        raise BadRequest("run_not_hex", field=at(path, "bytes"), got=excerpt(hex_bytes))
    return TokenPiece(token_id, spelling, bytes.fromhex(hex_bytes))


CANDIDATE_KEYS = ("id", "piece", "bytes", "text", "probability", "kept")
TOKEN_KEYS = ("index", "id", "piece", "bytes", "text", "probability", "candidates")
RUN_KEYS = ("format", "version", "model", "settings", "seed", "prompt", "tokens", "finish_reason")
SETTINGS_KEYS = tuple(field.name for field in fields(SamplingSettings))


def candidate_at(value, path: str) -> Candidate:
    value = object_at(value, path, CANDIDATE_KEYS)
    piece = piece_at(value, path)
    if text_at(value["text"], at(path, "text"), 4 * MAX_TOKEN_BYTES) != piece.text:
        raise BadRequest("run_text_mismatch", field=at(path, "text"))
    return Candidate(piece, probability_at(value["probability"], at(path, "probability")),
                     boolean_at(value["kept"], at(path, "kept")))


def step_at(value, position: int, last: bool, finish_reason: str | None) -> Step:
    path = at("tokens", position)
    value = object_at(value, path, TOKEN_KEYS)
    if integer_at(value["index"], at(path, "index"), 0, MAX_TOKEN_ID) != position:
        raise BadRequest("run_index", field=at(path, "index"), expected=position, got=value["index"])
    piece = piece_at(value, path)
    candidates = list_at(value["candidates"], at(path, "candidates"), MAX_CANDIDATES)
    # The engine puts the finish reason on the last step that wrote a token; a 'stopped' step has no token.
    reason = finish_reason if last and finish_reason != "stopped" else None
    return Step(position, piece, text_at(value["text"], at(path, "text"), 4 * MAX_TOKEN_BYTES),
                probability_at(value["probability"], at(path, "probability"), nullable=True),
                tuple(candidate_at(c, at(at(path, "candidates"), i)) for i, c in enumerate(candidates)), reason)


def settings_at(value) -> SamplingSettings:
    """check_settings, the one check of settings, its error naming the file's field."""
    value = object_at(value, "settings", SETTINGS_KEYS)
    try:
        return check_settings(**value)
    except DemoError as error:
        facts = dict(error.facts)
        if "parameter" in facts:
            facts["parameter"] = at("settings", facts["parameter"])
        raise BadRequest(error.code, **facts) from None


def parse_run(text: str) -> Run:
    """A file's text as a Run; BadRequest (run_*, or a settings code) naming the first problem."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise BadRequest("run_json", line=error.lineno, column=error.colno) from None
    except (ValueError, RecursionError):  # an integer of over 4,300 digits; lists nested thousands deep
        raise BadRequest("run_json", line=1, column=1) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BadRequest("run_format", expected=FORMAT)
    version = data.get("version")
    if isinstance(version, bool) or version != VERSION:
        raise BadRequest("run_version", got=excerpt(version), expected=VERSION)
    data = object_at(data, "", RUN_KEYS)
    model = object_at(data["model"], "model", ("name", "eos_token_id", "candidates"))
    name = text_at(model["name"], "model.name", MAX_NAME_CHARS)
    eos_token_id = integer_at(model["eos_token_id"], "model.eos_token_id", 0, MAX_TOKEN_ID, nullable=True)
    candidates = boolean_at(model["candidates"], "model.candidates")
    settings = settings_at(data["settings"])
    seed = integer_at(data["seed"], "seed", *BOUNDS.seed, nullable=True)
    prompt = check_prompt(text_at(data["prompt"], "prompt", BOUNDS.prompt_chars))
    finish_reason = data["finish_reason"]
    if finish_reason is not None and finish_reason not in SHOWN_FINISH_REASONS:
        raise BadRequest("run_finish", field="finish_reason", got=excerpt(finish_reason),
                         expected=", ".join(SHOWN_FINISH_REASONS))
    tokens = list_at(data["tokens"], "tokens", settings.max_new_tokens)  # a run writes at most max_new_tokens
    steps = tuple(step_at(token, position, position == len(tokens) - 1, finish_reason)
                  for position, token in enumerate(tokens))
    return Run(name, eos_token_id, candidates, prompt, settings, seed, steps, finish_reason)


def sent_size(text: str) -> int:
    """Bytes a text takes in an event's JSON body, as the page measures it (JSON.stringify, UTF-8)."""
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8", errors="surrogatepass"))


def load_run(text, size) -> Run | None:
    """What the Load button sent: (the file's text, its size as sent), ("", size) for a file too large
    to send, ("", 0) when no file was chosen (None here). BadRequest names what is wrong."""
    measured = not isinstance(size, bool) and isinstance(size, (int, float)) and math.isfinite(size)
    if not isinstance(text, str) or not measured:
        raise BadRequest("event", event="load", problem="expects the file's text and its size")
    if text == "" and size == 0:
        return None
    sent = max(int(size), sent_size(text))
    if sent > MAX_RUN_BYTES:
        raise BadRequest("run_size", size=math.ceil(sent / 1024), limit=MAX_RUN_BYTES // 1024)
    return parse_run(text)


# ---------------------------------------------------------------- run -> page


def run_facts(run: Run, language: str) -> str:
    """One line under the page's title: model, sampling rule, seed, tokens, how it ended."""
    parts = [message(language, "export_model", model=run.model), describe_rule(run.settings, language)]
    if run.seed is not None:
        parts.append(message(language, "seed", seed=run.seed))
    parts.append(message(language, "tokens", count=len(run.steps)))
    if run.finish_reason is not None:
        parts.append(message(language, f"finish_{run.finish_reason}"))
    return " · ".join(parts)


def run_html(run: Run, language: str) -> str:
    """A page for slides: the run's shaded token view, its styles inline; no script, no link, nothing to fetch."""
    tokens = text_html(run.prompt, [step_box(step) for step in run.steps], run.eos_token_id) + "</div>"
    title = escape(message(language, "export_title"))
    return (
        f'<!DOCTYPE html>\n<html lang="{"zh" if language == "zh" else "en"}">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{title}</title>\n'
        f"<style>{PAGE_CSS}.gpt2demo-run {{\n{CSS}\n}}</style>\n</head>\n<body>\n"
        f'<main class="gpt2demo-run">\n<h1>{title}</h1>\n<p class="tv-note">{escape(run_facts(run, language))}</p>\n'
        f'{tokens}\n<p class="tv-note">{escape(message(language, "export_legend"))}</p>\n</main>\n</body>\n</html>\n'
    )


def download(run: Run, kind: str, language: str) -> str:
    """What the page's download script takes: {"name", "type", "text"} as JSON."""
    if kind == "json":
        file = {"name": run.file_name("json"), "type": "application/json", "text": run_text(run)}
    else:
        file = {"name": run.file_name("html"), "type": "text/html", "text": run_html(run, language)}
    return json.dumps(file, ensure_ascii=False)
