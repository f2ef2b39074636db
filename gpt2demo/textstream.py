"""Token ids to UTF-8-safe text deltas.

GPT-2's byte-level tokens can split one character (a Chinese character, an
emoji) over several tokens; decoding such a token alone gives U+FFFD. Like
transformers' TextStreamer, we decode the generated ids and emit only the new
suffix, holding text back while it ends in a half character, so the deltas
joined always equal the decode of all ids.

Decoding all ids at every token costs more the longer the text (transformers'
decode of GPT-2's tokenizer: 18 us at 100 tokens, 184 us at 1,000, for each
row of a batch at each step). Where decoding is piecewise (decodes_piecewise),
the text up to a whole character is final, so a push decodes only the ids
since then: the same deltas, push for push.
"""

from __future__ import annotations

REPLACEMENT_CHAR = "\ufffd"


def decodes_piecewise(tokenizer) -> bool:
    """Whether decode(a + b) == decode(a) + decode(b) for this transformers tokenizer whenever decode(a) ends
    on a whole character.

    True for byte-level BPE (GPT-2's): its decode joins the tokens' bytes, special
    tokens skipped, and reads them as UTF-8, which starts afresh after a whole
    character. Not for WordPiece (the BERT-style tokenizers of some Chinese GPT-2
    models), whose decode puts spaces between tokens and joins "##" pieces, nor
    where a clean-up of spaces or a non-special added token may act across tokens.
    """
    from tokenizers import decoders  # transformers' own dependency: no torch

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if not isinstance(getattr(backend, "decoder", None), decoders.ByteLevel):
        return False
    if getattr(tokenizer, "clean_up_tokenization_spaces", True):
        return False
    return all(token.special for token in getattr(tokenizer, "added_tokens_decoder", {}).values())


class TextStream:
    """Accumulates generated ids and hands out the text that became final."""

    def __init__(self, tokenizer, piecewise: bool = False) -> None:
        """tokenizer: anything with decode(ids, skip_special_tokens=True); piecewise: decodes_piecewise() of it."""
        self._tokenizer = tokenizer
        self._piecewise = piecewise
        self.token_ids: list[int] = []
        self._start = 0  # piecewise: the ids before this are handed out in full, ending on a whole character
        self._emitted = 0  # characters of the decoded text (from _start) already handed out

    def _decode(self) -> str:
        return self._tokenizer.decode(self.token_ids[self._start :], skip_special_tokens=True)

    def push(self, token_id: int) -> str:
        """Add one token; return the text that is now complete (often '', while a character is split)."""
        self.token_ids.append(token_id)
        text = self._decode()
        if text.endswith(REPLACEMENT_CHAR):
            return ""
        delta = text[self._emitted :]
        if self._piecewise:
            self._start, self._emitted = len(self.token_ids), 0
        else:
            self._emitted = len(text)
        return delta

    def flush(self) -> str:
        """At the end: whatever is left, half characters included, so nothing is lost."""
        text = self._decode()
        delta = text[self._emitted :]
        self._emitted = len(text)
        return delta
