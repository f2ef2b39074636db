"""What the page shows of one generation: the text so far, the prompt in grey, a status line.

Plain functions of the steps received, so tests can check every state exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from gpt2demo.engine import Step
from gpt2demo.ui.i18n import message

SEPARATOR = " · "
# At most 20 page updates a second, for the output box and the teaching views alike. A
# human cannot follow tokens faster than that, and every update costs CPU in the server
# and the client on the cores that also decode (an A/B run of bench/streaming.py's setting:
# 0.88 of raw speed when every token was sent, 0.95 at this rate). Slower models still
# show every token.
UPDATE_SECONDS = 0.05


def render_html(prompt: str, continuation: str) -> str:
    """The prompt in grey and the continuation in the normal colour, escaped, line breaks kept."""
    return (
        '<div class="gpt2demo-output" style="white-space: pre-wrap; font-size: 1.1em; line-height: 1.6">'
        f'<span class="gpt2demo-prompt" style="color: var(--body-text-color-subdued, #888)">{escape(prompt)}</span>'
        f'<span class="gpt2demo-continuation">{escape(continuation)}</span>'
        "</div>"
    )


@dataclass
class GenerationView:
    """One generation as seen by the page, updated step by step."""

    prompt: str
    seed: int | None = None
    notice: str = ""  # the engine's truncation notice (already bilingual)
    continuation: str = ""
    tokens: int = 0  # tokens written into the text (the final <|endoftext|> is not)
    first_token_at: float | None = None
    last_token_at: float | None = None
    waiting: bool = False  # still in the scheduler's line
    ahead: int = 0  # requests waiting before this one in that line
    finish_reason: str | None = None

    @property
    def text(self) -> str:
        """Prompt + continuation as plain text: the API's first output."""
        return self.prompt + self.continuation

    def add(self, step: Step, now: float) -> None:
        """Take in one step received at time `now` (seconds, any monotonic clock)."""
        self.continuation += step.text
        self.waiting, self.ahead = False, 0
        if step.token_id is not None and step.finish_reason != "eos":
            self.tokens += 1
            self.first_token_at = now if self.first_token_at is None else self.first_token_at
            self.last_token_at = now
        self.finish_reason = step.finish_reason

    def tokens_per_second(self) -> float | None:
        # Counted from the first token: the time before it is queueing and reading the prompt.
        if self.tokens < 2 or self.last_token_at == self.first_token_at:
            return None
        return (self.tokens - 1) / (self.last_token_at - self.first_token_at)

    def status(self, language: str) -> str:
        """Tokens so far, speed, seed and why it stopped (or where it waits), in one line."""
        if self.finish_reason is None and self.waiting:
            parts = [message(language, "waiting", ahead=self.ahead)]
        elif self.finish_reason is None and self.tokens == 0:
            parts = [message(language, "starting")]
        else:
            parts = [message(language, "tokens", count=self.tokens)]
            rate = self.tokens_per_second()
            if rate is not None:
                parts.append(message(language, "speed", rate=rate))
            state = f"finish_{self.finish_reason}" if self.finish_reason else "generating"
            parts.append(message(language, state))
        if self.seed is not None:
            parts.append(message(language, "seed", seed=self.seed))
        if self.notice:
            parts.append(self.notice)
        return SEPARATOR.join(parts)

    def outputs(self, language: str) -> tuple[str, str, str, str]:
        """Values for the page's outputs: plain text, HTML, status line, seed used ('' before it is known)."""
        seed = "" if self.seed is None else str(self.seed)
        return self.text, render_html(self.prompt, self.continuation), self.status(language), seed
