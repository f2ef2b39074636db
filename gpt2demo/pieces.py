"""Byte-level tokens and the characters they form.

GPT-2's tokens are pieces of UTF-8 bytes, not characters: a Chinese character
(three bytes) often becomes two or three tokens, and one token can even hold the
end of one character and the start of the next. Grouping tokens by the complete
characters they form shows that split.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache


@lru_cache(maxsize=1)
def byte_of_symbol() -> dict[str, int]:
    """GPT-2's vocabulary spells each byte as one printable symbol ('Ġ' is a space); this undoes it."""
    # The table of GPT-2's encoder.py: printable Latin-1 bytes stand for themselves,
    # the other 68 bytes are moved to the symbols from U+0100 on.
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols = {byte: chr(byte) for byte in printable}
    moved = 0
    for byte in range(256):
        if byte not in symbols:
            symbols[byte] = chr(256 + moved)
            moved += 1
    return {symbol: byte for byte, symbol in symbols.items()}


@dataclass(frozen=True, slots=True)
class TokenPiece:
    """One token: its id, its spelling in the vocabulary file, and the bytes it stands for.

    Unpickled, it is the process's one shared instance for those values (shared_piece):
    steps come from the engine process with 16 pieces each (the token and its 15
    candidates), and a front end keeping recent runs for their downloads held a fresh
    copy of every one of them.
    """

    token_id: int
    piece: str  # as in vocab.json, e.g. "Ġman" (Ġ marks the leading space)
    data: bytes

    def __reduce__(self):
        return shared_piece, (self.token_id, self.piece, self.data)

    @property
    def hex(self) -> str:
        """The bytes as the class would write them: 'e4 bb'."""
        return self.data.hex(" ")

    @property
    def whole(self) -> bool:
        """True when the token's bytes are complete characters by themselves."""
        try:
            self.data.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True

    @property
    def text(self) -> str:
        """The token decoded alone: half a character shows as U+FFFD."""
        return self.data.decode("utf-8", errors="replace")


SHARED_PIECES_LIMIT = 1 << 17  # more than GPT-2's 50,257 tokens: a second vocabulary does not make it grow for ever
_shared_pieces: dict[tuple[int, str, bytes], TokenPiece] = {}


def shared_piece(token_id: int, piece: str, data: bytes) -> TokenPiece:
    """The one TokenPiece with these values in this process (what unpickling a TokenPiece returns)."""
    key = (token_id, piece, data)
    found = _shared_pieces.get(key)
    if found is None:
        if len(_shared_pieces) >= SHARED_PIECES_LIMIT:
            _shared_pieces.clear()
        found = _shared_pieces.setdefault(key, TokenPiece(token_id, piece, data))  # setdefault: one winner across threads
    return found


def token_piece(tokenizer, token_id: int) -> TokenPiece:
    """The bytes behind one token id (special tokens such as <|endoftext|> give their own spelling)."""
    piece = tokenizer.convert_ids_to_tokens(int(token_id))
    table = byte_of_symbol()
    if all(symbol in table for symbol in piece):
        data = bytes(table[symbol] for symbol in piece)
    else:  # not a byte-level spelling (an added token): its text is its bytes
        data = piece.encode("utf-8")
    return TokenPiece(int(token_id), piece, data)


@dataclass(frozen=True)
class CharacterGroup:
    """Consecutive tokens whose bytes together form whole characters, and those characters."""

    text: str
    tokens: tuple[TokenPiece, ...]

    @property
    def split(self) -> bool:
        """True when a character here is spread over several tokens."""
        return len(self.tokens) > 1


class PieceTable:
    """token id -> TokenPiece for one tokenizer, each looked up once and then kept.

    Every Step names its token and 15 candidates by their pieces; a vocabulary has
    at most ~50k of them, so the table stays small however long the server runs.
    """

    def __init__(self, tokenizer) -> None:
        self._tokenizer = tokenizer
        self._pieces: dict[int, TokenPiece] = {}
        self._lock = threading.Lock()  # the tokenizer is not shared across threads unguarded

    def __getitem__(self, token_id: int) -> TokenPiece:
        piece = self._pieces.get(token_id)
        if piece is None:
            with self._lock:
                piece = self._pieces[token_id] = token_piece(self._tokenizer, token_id)
        return piece

    def many(self, token_ids) -> list[TokenPiece]:
        return [self[int(token_id)] for token_id in token_ids]


def group_pieces(pieces: list[TokenPiece]) -> list[CharacterGroup]:
    """Cut the tokens into the shortest runs that decode to whole characters.

    A run closes as soon as its bytes are valid UTF-8. Bytes that can never become
    valid (not just unfinished) close the run too, shown as U+FFFD, so one bad byte
    does not swallow the rest of the text; so do bytes still unfinished at the end.
    """
    groups: list[CharacterGroup] = []
    run: list[TokenPiece] = []
    for piece in pieces:
        run.append(piece)
        data = b"".join(part.data for part in run)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            if error.reason == "unexpected end of data":
                continue  # a character is still unfinished: the next token completes it
            text = data.decode("utf-8", errors="replace")
        groups.append(CharacterGroup(text, tuple(run)))
        run = []
    if run:
        groups.append(CharacterGroup(b"".join(part.data for part in run).decode("utf-8", errors="replace"), tuple(run)))
    return groups
