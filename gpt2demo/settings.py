"""Sampling settings, their defaults and bounds, and the one function that checks them.

The UI sliders, the API, the CLI and the engine all read their limits from here,
so a limit lives in exactly one place.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass, replace
from typing import Any

from gpt2demo.errors import BadRequest, excerpt

MAX_NUMBER_CHARS = 64  # a number typed or sent as text; longer is refused before parsing


@dataclass(frozen=True)
class Bounds:
    """Allowed ranges of every request parameter (inclusive)."""

    max_new_tokens: tuple[int, int] = (1, 1024)  # GPT-2 sees 1024 positions in all
    top_k: tuple[int, int] = (0, 50257)  # 0 = off; the upper end is GPT-2's vocabulary
    top_p: tuple[float, float] = (0.01, 1.0)  # 1.0 = off
    temperature: tuple[float, float] = (0.01, 5.0)  # > 0; 1.0 = the model's own distribution
    repetition_penalty: tuple[float, float] = (0.5, 5.0)  # 1.0 = off; < 1 encourages repeats
    seed: tuple[int, int] = (0, 2**32 - 1)  # what torch.Generator.manual_seed accepts portably
    prompt_chars: int = 20_000  # longer pastes are refused before tokenizing


BOUNDS = Bounds()


@dataclass(frozen=True)
class SamplingSettings:
    """One request's decoding settings; the defaults follow the tutorial."""

    max_new_tokens: int = 100  # the tutorial writes 100 tokens
    top_k: int = 10  # the tutorial picks among the 10 most likely
    top_p: float = 1.0  # nucleus sampling off
    temperature: float = 1.0  # the model's own distribution
    repetition_penalty: float = 1.0  # off
    greedy: bool = False  # always take the most likely token (ignores top-k/top-p/temperature)
    seed: int | None = None  # None = a fresh random seed, reported back so the run can be repeated


def _bad(kind: str, name: str, low: Any, high: Any, value: Any) -> BadRequest:
    return BadRequest(kind, parameter=name, low=low, high=high, got=excerpt(value))


def check_integer(name: str, value: Any, low: int, high: int) -> int:
    # Accept 10, 10.0 and "10" (the API and sliders send floats and strings); refuse 10.5, NaN, bools.
    if isinstance(value, bool):
        raise _bad("integer", name, low, high, value)
    try:
        if isinstance(value, str):
            if len(value) > MAX_NUMBER_CHARS:  # int("1" * 10**6) alone takes seconds
                raise ValueError
            value_number = float(value)
        else:
            value_number = value
        if isinstance(value_number, float):
            if not math.isfinite(value_number) or not value_number.is_integer():
                raise ValueError
        number = int(value_number)
    except (TypeError, ValueError, OverflowError):
        raise _bad("integer", name, low, high, value) from None
    if not low <= number <= high:
        raise _bad("integer", name, low, high, value)
    return number


def check_number(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or (isinstance(value, str) and len(value) > MAX_NUMBER_CHARS):
        raise _bad("number", name, low, high, value)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise _bad("number", name, low, high, value) from None
    if not math.isfinite(number) or not low <= number <= high:
        raise _bad("number", name, low, high, value)
    return number


def check_boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float, str)) and value in (0, 1, "0", "1", "true", "false", "True", "False"):
        return str(value).lower() in ("1", "true")
    raise BadRequest("boolean", parameter=name, got=excerpt(value))


def check_prompt(prompt: Any) -> str:
    """Return the prompt if it can be tokenized; raise BadRequest naming the problem.

    An empty or whitespace-only prompt is allowed: generation then starts from
    <|endoftext|>, like GPT-2's unconditional samples.
    """
    if prompt is None:
        prompt = ""
    if not isinstance(prompt, str):
        raise BadRequest("prompt_type", got=type(prompt).__name__)
    if len(prompt) > BOUNDS.prompt_chars:
        raise BadRequest("prompt_length", limit=BOUNDS.prompt_chars, got=len(prompt))
    for position, char in enumerate(prompt):
        category = unicodedata.category(char)
        # Lone surrogates cannot be encoded as UTF-8; control characters other than
        # newline and tab are invisible and almost always a paste accident.
        if category == "Cs" or (category == "Cc" and char not in "\n\t\r"):
            raise BadRequest("prompt_character", codepoint=f"U+{ord(char):04X}", position=position)
    return prompt


def check_settings(
    max_new_tokens: Any = SamplingSettings.max_new_tokens,
    top_k: Any = SamplingSettings.top_k,
    top_p: Any = SamplingSettings.top_p,
    temperature: Any = SamplingSettings.temperature,
    repetition_penalty: Any = SamplingSettings.repetition_penalty,
    greedy: Any = SamplingSettings.greedy,
    seed: Any = SamplingSettings.seed,
    vocab_size: int | None = None,
) -> SamplingSettings:
    """Turn raw values from any caller (page, API, CLI) into SamplingSettings: the one check.

    Callers check where a request enters; the engine trusts the SamplingSettings it
    receives and checks only what depends on the model (top_k against its vocabulary).

    Args:
        vocab_size: when known, top_k may not exceed the loaded model's vocabulary.
    Raises:
        BadRequest: naming the first bad parameter, its allowed range and an excerpt of the value.
    """
    top_k_high = BOUNDS.top_k[1] if vocab_size is None else vocab_size
    blank_seed = seed is None or (isinstance(seed, str) and not seed.strip())
    return SamplingSettings(
        max_new_tokens=check_integer("max_new_tokens", max_new_tokens, *BOUNDS.max_new_tokens),
        top_k=check_integer("top_k", top_k, BOUNDS.top_k[0], top_k_high),
        top_p=check_number("top_p", top_p, *BOUNDS.top_p),
        temperature=check_number("temperature", temperature, *BOUNDS.temperature),
        repetition_penalty=check_number("repetition_penalty", repetition_penalty, *BOUNDS.repetition_penalty),
        greedy=check_boolean("greedy", greedy),
        seed=None if blank_seed else check_integer("seed", seed, *BOUNDS.seed),
    )


def with_seed(settings: SamplingSettings, seed: int) -> SamplingSettings:
    """The same settings with the seed fixed, so the run can be repeated exactly."""
    return replace(settings, seed=seed)
