"""The loaded model: device, precision, threads, and the one copy each process keeps.

Loading goes through transformers' own AutoTokenizer / AutoModelForCausalLM, exactly
as the tutorial's GPT2Tokenizer / GPT2LMHeadModel do, so any GPT-2-architecture
checkpoint folder works; sources.py turns a spec into that folder first.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from functools import cached_property

import torch

from gpt2demo.decoder import GPT2Decoder
from gpt2demo.errors import ModelSourceError
from gpt2demo.heap import reuse_freed_blocks
from gpt2demo.int8 import check_int8
from gpt2demo.pieces import PieceTable
from gpt2demo.serving.interface import ModelFacts
from gpt2demo.sources import WEIGHT_FILES, ResolvedSource, resolve_source, shorten
from gpt2demo.textstream import decodes_piecewise


MODEL_SETTINGS_FILE = "gpt2demo.json"  # optional, in a checkpoint folder: {"empty_prompt": text}


def pick_device(requested: str | None = None) -> torch.device:
    """CUDA, then Apple MPS, then CPU, unless `requested` names one."""
    if requested and requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device) -> torch.dtype:
    # fp32 on CPU: without AVX-512-BF16, bf16 ran ~5x slower here. bf16 on CUDA halves the
    # weight reads that bound decoding, with fp32's range (fp16 can overflow in GPT-2).
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


@dataclass
class LoadedModel:
    """One tokenizer + model pair, shared by every request of the process."""

    tokenizer: object
    model: torch.nn.Module
    decoder: GPT2Decoder
    device: torch.device
    source: ResolvedSource
    load_seconds: float

    @property
    def window(self) -> int:
        """How many positions the model can see (1024 for GPT-2)."""
        return int(self.model.config.n_positions)

    @property
    def vocab_size(self) -> int:
        return int(self.model.config.vocab_size)

    @cached_property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def eos_token_id(self) -> int | None:
        return self.tokenizer.eos_token_id

    @property
    def start_token_id(self) -> int:
        """What an empty prompt starts from: <|endoftext|>, as GPT-2's unconditional samples do."""
        for token_id in (self.tokenizer.bos_token_id, self.tokenizer.eos_token_id, self.tokenizer.cls_token_id):
            if token_id is not None:
                return int(token_id)
        return 0

    @cached_property
    def start_token_ids(self) -> list[int]:
        """What an empty prompt starts from: the folder's own choice (gpt2demo.json), else start_token_id.

        GPT-2 saw <|endoftext|> between documents, so its unconditional samples start there.
        A checkpoint trained otherwise (the bundled model) names a text that starts prose for it.
        """
        settings = self.source.path / MODEL_SETTINGS_FILE
        if settings.is_file():
            empty_prompt = json.loads(settings.read_text()).get("empty_prompt")
            if isinstance(empty_prompt, str) and self.encode(empty_prompt):
                return self.encode(empty_prompt)
        return [self.start_token_id]

    @cached_property
    def decodes_piecewise(self) -> bool:
        """Whether a TextStream of this tokenizer may decode only the ids since the last whole character."""
        return decodes_piecewise(self.tokenizer)

    @cached_property
    def pieces(self) -> PieceTable:
        """token id -> its spelling and bytes, for every Step and candidate."""
        return PieceTable(self.tokenizer)

    def encode(self, text: str) -> list[int]:
        """Text to ids; special-token strings a user types (<|endoftext|>) stay plain text."""
        return self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]

    def decode(self, token_ids) -> str:
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)

    def facts(self) -> ModelFacts:
        """What the model panel shows: name, source, device, size; never a path."""
        return ModelFacts(
            name=self.source.name,
            source=self.source.kind,
            device=str(self.device),
            precision=self.decoder.precision,
            parameters=self.n_params,
            window=self.window,
            vocab_size=self.vocab_size,
            eos_token_id=self.eos_token_id,
            load_seconds=round(self.load_seconds, 2),
            fallback=tuple(self.source.fallback),
        )


def load_from_folder(source: ResolvedSource, device: torch.device, precision: str = "float32") -> LoadedModel:
    """Load a checked checkpoint folder with AutoTokenizer/AutoModelForCausalLM, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    weights = next((name for name in WEIGHT_FILES if (source.path / name).is_file()), "the weights file")
    # Model and tokenizer apart, so the message can name the damaged file (a half-copied
    # model.safetensors otherwise reads only as "incomplete metadata").
    try:
        model = AutoModelForCausalLM.from_pretrained(source.path, dtype=pick_dtype(device))
    except Exception as error:
        raise ModelSourceError("damaged", folder=source.name, part=f"{weights} or config.json",
                               detail=shorten(f"{type(error).__name__}: {error}", folder=source.path, name=source.name)) from error
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.path)
    except Exception as error:
        raise ModelSourceError("damaged", folder=source.name, part="tokenizer files",
                               detail=shorten(f"{type(error).__name__}: {error}", folder=source.path, name=source.name)) from error
    model.to(device).eval()
    reuse_freed_blocks()  # each step's temporaries land in pages already in place (heap.py)
    decoder = GPT2Decoder(model, precision)
    return LoadedModel(tokenizer, model, decoder, device, source, time.perf_counter() - started)


_loaded: dict[tuple[str, str, str], LoadedModel] = {}
_loading_locks: dict[tuple[str, str, str], threading.Lock] = {}
_registry_lock = threading.Lock()


def load_model(spec: str = "gpt2", device: str | None = None, precision: str = "float32") -> LoadedModel:
    """The process-wide model for (spec, device, precision), loaded once even under concurrent first calls.

    Args:
        spec: a folder, "gpt2", "bundled", "modelscope:ID" or "hf:ID" (see sources.py).
        device: "cpu", "cuda", "mps" or None/"auto" to pick the best available.
        precision: "float32" (bfloat16 on CUDA), or "int8" (CPU only: the products' weights in int8, see int8.py).
    """
    key = (spec, str(pick_device(device)), precision)
    if precision == "int8":  # refused before any download: BadRequest naming the flag and what runs here
        check_int8(torch.device(key[1]).type)
    with _registry_lock:
        if key in _loaded:
            return _loaded[key]
        lock = _loading_locks.setdefault(key, threading.Lock())
    with lock:  # later callers wait here for the first one's load instead of loading again
        if key not in _loaded:
            _loaded[key] = load_from_folder(resolve_source(spec), torch.device(key[1]), precision)
        return _loaded[key]
