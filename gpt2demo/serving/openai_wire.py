"""The OpenAI-compatible completions API as vLLM speaks it: request bodies and streamed chunks, no I/O.

What the server sends (vLLM 0.32, scratch/vllm/NOTES.md §3): a 200 response of
`data: {json}` events and a final `data: [DONE]`. One chunk may carry several
tokens (under load), so every list in it is read whole. With return_token_ids
each choice lists its new token ids; with logprobs and return_tokens_as_token_ids
each token's top_logprobs maps "token_id:N" to a log probability, the chosen token
first, then the N best (N + 1 entries when the chosen one is not among them). In
--logprobs-mode processed_logprobs those are the distribution the server sampled
from (penalty, temperature, top-k/top-p, renormalised), with tokens the cut removed
written as -9999.0. Some errors come only after the 200: as a `data: {"error": ...}`
event inside the stream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from gpt2demo.errors import GenerationFailed
from gpt2demo.settings import SamplingSettings

DONE = "[DONE]"
CUT_LOGPROB = -9999.0  # vLLM's value for a token the top-k/top-p cut removed
CUT_BELOW = CUT_LOGPROB + 1.0  # at or below this a log probability means "cut", not "unlikely"
DETAIL_CHARS = 200  # of a server's error message, kept for the page


@dataclass(frozen=True)
class ServedToken:
    """One new token of a streamed completion."""

    token_id: int
    logprob: float | None  # of the chosen token; None when no logprobs were asked for
    top: tuple[tuple[int, float], ...] = ()  # (token id, log probability), as the server listed them


@dataclass(frozen=True)
class ServedChunk:
    """One streamed event's new tokens and, on the last one, why the server stopped."""

    tokens: tuple[ServedToken, ...]
    finish_reason: str | None  # "length", "stop" (an end-of-text token), "abort", or None while running


def completion_body(model: str, prompt_ids: list[int], settings: SamplingSettings, seed: int, max_tokens: int,
                    logprobs: int | None, stream: bool = True) -> dict:
    """A /v1/completions request: token ids in, token ids (and logprobs) out, every sampling value explicit.

    Every value is sent, so the server's own defaults (its model's generation_config.json)
    never take part. Greedy is temperature 0, which vLLM treats as argmax.
    """
    body = {
        "model": model,
        "prompt": list(prompt_ids),
        "max_tokens": max_tokens,
        "stream": stream,
        "seed": seed,
        "temperature": 0.0 if settings.greedy else settings.temperature,
        "top_k": 0 if settings.greedy else settings.top_k,  # 0 = off, as in gpt2demo
        "top_p": 1.0 if settings.greedy else settings.top_p,
        "repetition_penalty": settings.repetition_penalty,
        "ignore_eos": False,  # <|endoftext|> ends the text, as it does locally
        "return_token_ids": True,
        "return_tokens_as_token_ids": True,
    }
    if logprobs is not None:
        body["logprobs"] = logprobs
    return body


def token_id_of(key: str) -> int:
    """'token_id:283' -> 283 (return_tokens_as_token_ids spells every token so)."""
    prefix, _, number = key.partition(":")
    if prefix != "token_id" or not number.lstrip("-").isdigit():
        raise GenerationFailed("engine_protocol", detail=f"token {key[:40]!r} is not 'token_id:N'")
    return int(number)


def server_error(payload, status: int | None = None) -> GenerationFailed:
    """An error the server sent (as an HTTP error's body, or inside the stream), as data."""
    error = payload.get("error", payload) if isinstance(payload, dict) else {"message": payload}
    if not isinstance(error, dict):
        error = {"message": error}
    message = error.get("message") or error.get("detail") or error
    return GenerationFailed("engine_error", status=error.get("code") or status, kind=str(error.get("type") or ""),
                            detail=str(message)[:DETAIL_CHARS])


def parse_event(data: str) -> ServedChunk | None:
    """One `data:` payload: its tokens, or None for [DONE]; raises the error an error event carries."""
    if data.strip() == DONE:
        return None
    try:
        event = json.loads(data)
    except ValueError:
        raise GenerationFailed("engine_protocol", detail=f"not JSON: {data[:40]!r}") from None
    if "error" in event:
        raise server_error(event)
    choices = event.get("choices") or []  # the usage event has none
    tokens: list[ServedToken] = []
    finish_reason = None
    for choice in choices:
        tokens += choice_tokens(choice)
        finish_reason = choice.get("finish_reason") or finish_reason
    return ServedChunk(tuple(tokens), finish_reason)


def choice_tokens(choice: dict) -> list[ServedToken]:
    """The new tokens of one choice: ids from token_ids (or the logprobs' "token_id:N"), logprobs when sent."""
    logprobs = choice.get("logprobs") or {}
    ids = choice.get("token_ids")
    if ids is None and logprobs.get("tokens"):
        ids = [token_id_of(key) for key in logprobs["tokens"]]
    if ids is None:
        if choice.get("text"):  # text but no ids: not vLLM, or one without return_token_ids
            raise GenerationFailed("engine_protocol", detail="no token ids (gpt2demo needs vLLM's return_token_ids)")
        ids = []
    chosen = logprobs.get("token_logprobs") or [None] * len(ids)
    tops = logprobs.get("top_logprobs") or [None] * len(ids)
    return [ServedToken(int(token_id), None if logprob is None else float(logprob),
                        tuple((token_id_of(key), float(value)) for key, value in (top or {}).items()))
            for token_id, logprob, top in zip(ids, chosen, tops)]


def sse_data(line: str) -> str | None:
    """The payload of an event-stream line, or None for blank lines, comments and other fields."""
    return line[len("data:"):].lstrip(" ") if line.startswith("data:") else None
