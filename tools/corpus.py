"""The training corpus for the bundled model: Jane Austen's six novels.

Source: Debian package ``r-cran-janeaustenr`` (install with
``apt-get install --no-install-recommends r-cran-janeaustenr``). The novels are
public domain (Project Gutenberg texts); the package that collects them is MIT
licensed (Julia Silge). The package stores them as R lazy-load data, so this
module carries a tiny reader for R's serialisation format: only the handful of
types those files use, so that neither R nor an extra Python package is needed.

The train / held-out split is a pure function of the text, so every run (and
the test's word list) sees the same held-out paragraphs.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

JANEAUSTENR_DATA = Path("/usr/lib/R/site-library/janeaustenr/data")
NOVELS = ("sensesensibility", "prideprejudice", "mansfieldpark",
          "emma", "northangerabbey", "persuasion")
EOS = "<|endoftext|>"
HELDOUT_FRACTION = 0.05  # last 5% of each novel, never trained on
WORD_RE = re.compile(r"[a-z]+")  # a "word" for the word-list test

# R serialisation type codes (src/main/serialize.c); only these are read.
_SYMSXP, _LISTSXP, _CHARSXP, _LGLSXP, _INTSXP, _REALSXP = 1, 2, 9, 10, 13, 14
_STRSXP, _VECSXP, _REFSXP, _NILVALUE = 16, 19, 255, 254
_NO_PAYLOAD = {242, 241, 253, 252, 251, 247, _NILVALUE}  # envs, NULL, markers


class _RReader:
    """Reads one R object in XDR ("X\\n") serialisation: enough for lazy-load data."""

    def __init__(self, data: bytes):
        if data[:2] != b"X\n":
            raise ValueError(f"not an XDR R serialisation: {data[:2]!r}")
        self.data, self.pos, self.refs = data, 2, []
        version = self._int()
        self._int(), self._int()  # writer's and minimum R versions
        if version == 3:  # version 3 adds the native encoding name
            name_length = self._int()
            self.pos += name_length

    def _int(self) -> int:
        (value,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return value

    def _length(self) -> int:
        n = self._int()
        if n == -1:  # long vector: two 32-bit halves
            n = (self._int() << 32) + self._int()
        return n

    def read(self):
        flags = self._int()
        sxp, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
        if sxp in _NO_PAYLOAD:
            return None
        if sxp == _REFSXP:
            index = flags >> 8 or self._int()
            return self.refs[index - 1]
        if sxp == _SYMSXP:
            name = self.read()
            self.refs.append(name)
            return name
        if sxp == _LISTSXP:  # pairlist: attributes and tag come before the value
            attrs = self.read() if has_attr else None
            tag = self.read() if has_tag else None
            items = [(tag, self.read())]
            rest = self.read()
            return items + (rest or [])
        if sxp == _CHARSXP:
            n = self._int()
            if n == -1:
                return None  # NA_character_
            text = self.data[self.pos:self.pos + n].decode("utf-8")
            self.pos += n
            return text
        value = self._vector(sxp)
        attrs = dict(self.read()) if has_attr else {}
        names = attrs.get("names")
        return dict(zip(names, value)) if names and sxp == _VECSXP else value

    def _vector(self, sxp: int) -> list:
        n = self._length()
        if sxp in (_LGLSXP, _INTSXP):
            values = list(struct.unpack_from(f">{n}i", self.data, self.pos))
            self.pos += 4 * n
            return values
        if sxp == _REALSXP:
            values = list(struct.unpack_from(f">{n}d", self.data, self.pos))
            self.pos += 8 * n
            return values
        if sxp in (_STRSXP, _VECSXP):
            return [self.read() for _ in range(n)]
        raise ValueError(f"R type {sxp} is not supported by this reader")


def _unpack_chunk(chunk: bytes) -> bytes:
    """A lazy-load chunk: 4-byte big-endian length, then zlib (or typed) data."""
    raw = chunk[4:]
    if raw[:1] in (b"Z", b"2", b"X", b"0"):  # R's typed compression header
        kind, raw = raw[:1], raw[1:]
        if kind != b"Z":
            return {b"2": bz2.decompress, b"X": lzma.decompress,
                    b"0": bytes}[kind](raw)
    return zlib.decompress(raw)


def read_novels(data_dir: Path = JANEAUSTENR_DATA) -> dict[str, list[str]]:
    """Return {novel name: list of text lines} read from the Debian package."""
    if not (data_dir / "Rdata.rdx").exists():
        raise FileNotFoundError(
            f"{data_dir}/Rdata.rdx not found: install the corpus with "
            "'apt-get install --no-install-recommends r-cran-janeaustenr'")
    # the index is a gzipped .rds file; the values are lazy-load chunks
    index = _RReader(gzip.decompress((data_dir / "Rdata.rdx").read_bytes())).read()
    blob = (data_dir / "Rdata.rdb").read_bytes()
    novels = {}
    for name in NOVELS:
        offset, length = index["variables"][name]
        novels[name] = _RReader(_unpack_chunk(blob[offset:offset + length])).read()
    return novels


def paragraphs(lines: list[str]) -> list[str]:
    """Join hard-wrapped lines into paragraphs; drop _italics_ marks and double spaces."""
    out, current = [], []
    for line in lines + [""]:
        if line.strip():
            current.append(line.strip())
        elif current:
            # Gutenberg's two spaces after a full stop would teach odd spacing
            out.append(re.sub(" {2,}", " ", " ".join(current).replace("_", "")))
            current = []
    return out


@dataclass(frozen=True)
class Split:
    train: str  # novels joined by EOS, as the model is trained on them
    heldout: str  # the last HELDOUT_FRACTION of each novel, same layout


def split_corpus(novels: dict[str, list[str]]) -> Split:
    """Hold out the last 5% (by characters, whole paragraphs) of every novel."""
    train_docs, heldout_docs = [], []
    for name in NOVELS:
        paras = paragraphs(novels[name])
        total, seen, cut = sum(map(len, paras)), 0, len(paras)
        for i, para in enumerate(paras):
            if seen >= total * (1 - HELDOUT_FRACTION):
                cut = i
                break
            seen += len(para)
        train_docs.append("\n\n".join(paras[:cut]))
        heldout_docs.append("\n\n".join(paras[cut:]))
    return Split(train=EOS.join(train_docs), heldout=EOS.join(heldout_docs))


def words(text: str) -> set[str]:
    """Lowercased alphabetic runs: the unit of the 'mostly real words' test."""
    return set(WORD_RE.findall(text.replace(EOS, " ").lower()))


def load_split(data_dir: Path = JANEAUSTENR_DATA) -> Split:
    return split_corpus(read_novels(data_dir))
