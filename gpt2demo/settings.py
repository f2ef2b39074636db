"""Sampling settings, their defaults and bounds, and the one function that checks them.

The UI sliders, the API, the CLI and the engine all read their limits from here,
so a limit lives in exactly one place.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass, replace
from typing import Any


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


def bilingual(english: str, chinese: str) -> str:
    """One message for both audiences of the page: English first, then Chinese."""
    return f"{english} / {chinese}"


def _range_error(name: str, low: Any, high: Any, value: Any, kind: str) -> ValueError:
    kind_zh = "整数" if kind == "integer" else "数"
    return ValueError(
        bilingual(
            f"{name} must be {'an' if kind == 'integer' else 'a'} {kind} from {low} to {high} (got {value!r})",
            f"{name} 必须是 {low} 到 {high} 之间的{kind_zh}（收到 {value!r}）",
        )
    )


def _as_integer(name: str, value: Any, low: int, high: int) -> int:
    # Accept 10, 10.0 and "10" (the API and sliders send floats and strings); refuse 10.5, NaN, bools.
    if isinstance(value, bool):
        raise _range_error(name, low, high, value, "integer")
    try:
        number = float(value) if isinstance(value, str) else value
        if isinstance(number, float):
            if not math.isfinite(number) or not number.is_integer():
                raise ValueError
            number = int(number)
        number = int(number)
    except (TypeError, ValueError, OverflowError):
        raise _range_error(name, low, high, value, "integer") from None
    if not low <= number <= high:
        raise _range_error(name, low, high, value, "integer")
    return number


def _as_float(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool):
        raise _range_error(name, low, high, value, "number")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise _range_error(name, low, high, value, "number") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise _range_error(name, low, high, value, "number")
    return number


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1, "0", "1", "true", "false", "True", "False"):
        return str(value).lower() in ("1", "true")
    raise ValueError(bilingual(f"{name} must be true or false (got {value!r})", f"{name} 必须是 true 或 false（收到 {value!r}）"))


def check_prompt(prompt: Any) -> str:
    """Return the prompt if it can be tokenized; raise ValueError naming the problem.

    An empty or whitespace-only prompt is allowed: generation then starts from
    <|endoftext|>, like GPT-2's unconditional samples.
    """
    if prompt is None:
        prompt = ""
    if not isinstance(prompt, str):
        raise ValueError(bilingual(f"prompt must be text (got {type(prompt).__name__})", f"prompt 必须是文本（收到 {type(prompt).__name__}）"))
    if len(prompt) > BOUNDS.prompt_chars:
        raise ValueError(
            bilingual(
                f"prompt must be at most {BOUNDS.prompt_chars} characters (got {len(prompt)})",
                f"prompt 最多 {BOUNDS.prompt_chars} 个字符（收到 {len(prompt)}）",
            )
        )
    for position, char in enumerate(prompt):
        category = unicodedata.category(char)
        # Lone surrogates cannot be encoded as UTF-8; control characters other than
        # newline and tab are invisible and almost always a paste accident.
        if category == "Cs" or (category == "Cc" and char not in "\n\t\r"):
            raise ValueError(
                bilingual(
                    f"prompt contains an unsupported character U+{ord(char):04X} at position {position}",
                    f"prompt 在第 {position} 个位置含有不支持的字符 U+{ord(char):04X}",
                )
            )
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
    """Turn raw values from any caller (page, API, CLI) into SamplingSettings.

    Args:
        vocab_size: when known, top_k may not exceed the loaded model's vocabulary.
    Raises:
        ValueError: naming the first bad parameter and its allowed range.
    """
    top_k_high = BOUNDS.top_k[1] if vocab_size is None else vocab_size
    blank_seed = seed is None or (isinstance(seed, str) and not seed.strip())
    return SamplingSettings(
        max_new_tokens=_as_integer("max_new_tokens", max_new_tokens, *BOUNDS.max_new_tokens),
        top_k=_as_integer("top_k", top_k, BOUNDS.top_k[0], top_k_high),
        top_p=_as_float("top_p", top_p, *BOUNDS.top_p),
        temperature=_as_float("temperature", temperature, *BOUNDS.temperature),
        repetition_penalty=_as_float("repetition_penalty", repetition_penalty, *BOUNDS.repetition_penalty),
        greedy=_as_bool("greedy", greedy),
        seed=None if blank_seed else _as_integer("seed", seed, *BOUNDS.seed),
    )


def with_seed(settings: SamplingSettings, seed: int) -> SamplingSettings:
    """The same settings with the seed fixed, so the run can be repeated exactly."""
    return replace(settings, seed=seed)
