"""What a teaching view shows when the engine in use lacks something it draws (ModelFacts.features).

A remote server (app.py --engine) never runs the cost race, which times this
machine's own KV cache, and sends candidates only when vLLM runs with
--logprobs-mode processed_logprobs; without them a step has no probability either.
The views then say so in words, instead of an empty chart or a failed request.
"""

from __future__ import annotations

from html import escape

from gpt2demo.serving.interface import EngineState
from gpt2demo.ui.i18n import message
from gpt2demo.ui.widgets.tokens import percent

CANDIDATES = "candidates"  # each step's most likely tokens and the chosen one's probability
RACE = "race"  # the cost race on this machine's model
NO_PROBABILITY = "–"  # a step whose probability the engine did not send


def offers(state: EngineState, feature: str) -> bool:
    """True when the loaded engine offers `feature` (a loading or failed one offers nothing yet)."""
    return state.facts is not None and feature in state.facts.features


def probability_text(probability: float | None) -> str:
    """percent(), or a dash when the engine sent no probability."""
    return NO_PROBABILITY if probability is None else percent(probability)


def missing_text(feature: str, language: str) -> str:
    """The sentence that says the feature is unavailable here, and why."""
    return message(language, f"missing_{feature}")


def missing_note(feature: str, language: str) -> str:
    """The same sentence as the views' HTML note."""
    return f'<p class="tv-note">{escape(missing_text(feature, language))}</p>'
