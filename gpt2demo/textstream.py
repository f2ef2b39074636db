"""Token ids to UTF-8-safe text deltas.

GPT-2's byte-level tokens can split one character (a Chinese character, an
emoji) over several tokens; decoding such a token alone gives U+FFFD. Like
transformers' TextStreamer, we decode all generated ids and emit only the new
suffix, holding text back while it ends in a half character, so the deltas
joined always equal the decode of all ids.
"""

from __future__ import annotations

REPLACEMENT_CHAR = "\ufffd"


class TextStream:
    """Accumulates generated ids and hands out the text that became final."""

    def __init__(self, tokenizer) -> None:
        self._tokenizer = tokenizer
        self.token_ids: list[int] = []
        self._emitted = 0  # characters of the decoded text already handed out

    def _decode(self) -> str:
        return self._tokenizer.decode(self.token_ids, skip_special_tokens=True)

    def push(self, token_id: int) -> str:
        """Add one token; return the text that is now complete (often '', while a character is split)."""
        self.token_ids.append(token_id)
        text = self._decode()
        if text.endswith(REPLACEMENT_CHAR):
            return ""
        delta = text[self._emitted :]
        self._emitted = len(text)
        return delta

    def flush(self) -> str:
        """At the end: whatever is left, half characters included, so nothing is lost."""
        text = self._decode()
        delta = text[self._emitted :]
        self._emitted = len(text)
        return delta
