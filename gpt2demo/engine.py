"""The cached model wrapper and the step loop: prompt in, one Step per new token out.

Data flows one way: prompt -> settings -> Generation (one request's state) ->
DecodeBatch (one forward pass for all running requests) -> Steps for the views.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from typing import Iterator

import torch

from gpt2demo.decoder import GPT2Decoder, KVCache
from gpt2demo.sampling import pick_next_token
from gpt2demo.settings import SamplingSettings, bilingual, check_prompt, check_settings
from gpt2demo.sources import WEIGHT_FILES, ModelSourceError, ResolvedSource, resolve_source
from gpt2demo.textstream import TextStream

NUM_CANDIDATES = 15  # top candidates reported with every step: more than the default top-k, so the views show the cut
FINISH_REASONS = ("eos", "length", "context", "stopped")
PREFILL_TOKENS = 4096  # prompt tokens read in one pass when requests join together


# ---------------------------------------------------------------- the loaded model


def pick_device(requested: str | None = None) -> torch.device:
    """CUDA, then Apple MPS, then CPU, unless `requested` names one."""
    if requested and requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def configure_threads() -> int:
    """Give torch one math thread per core this process may use ($GPT2DEMO_THREADS overrides).

    All model math runs on one thread at a time (the scheduler's, or the CLI's), so
    its matmuls may use every core; Gradio's own threads mostly wait on the network.
    More threads than cores is worse than fewer: a matmul waits for its slowest
    worker, and a descheduled worker stalls it (small ops ran 50x slower here when
    two processes each used two threads on two cores).
    """
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else torch.get_num_threads()  # macOS: torch's default
    count = int(os.environ.get("GPT2DEMO_THREADS", 0)) or usable
    torch.set_num_threads(count)
    return count


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

    @property
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
    def token_texts(self) -> list[str]:
        """Every token decoded alone, built once so steps can name candidates for free."""
        return self.tokenizer.batch_decode([[i] for i in range(self.vocab_size)])

    def encode(self, text: str) -> list[int]:
        """Text to ids; special-token strings a user types (<|endoftext|>) stay plain text."""
        return self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]

    def describe(self) -> dict:
        """Facts for the model panel."""
        return {
            "name": self.source.name,
            "kind": self.source.kind,
            "path": str(self.source.path),
            "device": str(self.device),
            "dtype": str(self.decoder.lm_head_t.dtype).removeprefix("torch."),
            "parameters": self.n_params,
            "window": self.window,
            "vocab_size": self.vocab_size,
            "load_seconds": round(self.load_seconds, 2),
            "fallback_notice": self.source.fallback_notice,
        }


_loaded: dict[tuple[str, str], LoadedModel] = {}
_loading_locks: dict[tuple[str, str], threading.Lock] = {}
_registry_lock = threading.Lock()


def load_from_folder(source: ResolvedSource, device: torch.device) -> LoadedModel:
    """Load a checked checkpoint folder with AutoTokenizer/AutoModelForCausalLM, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    weights = next((name for name in WEIGHT_FILES if (source.path / name).is_file()), "the weights file")
    # Model and tokenizer apart, so the message can name the damaged file (a half-copied
    # model.safetensors otherwise reads only as "incomplete metadata").
    try:
        model = AutoModelForCausalLM.from_pretrained(source.path, dtype=pick_dtype(device))
    except Exception as error:
        raise ModelSourceError(
            f"model folder {source.path} could not be loaded: {weights} or config.json is damaged ({type(error).__name__}: {error})"
        ) from error
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.path)
    except Exception as error:
        raise ModelSourceError(
            f"model folder {source.path} could not be loaded: its tokenizer files are damaged ({type(error).__name__}: {error})"
        ) from error
    model.to(device).eval()
    decoder = GPT2Decoder(model)
    return LoadedModel(tokenizer, model, decoder, device, source, time.perf_counter() - started)


def load_model(spec: str = "gpt2", device: str | None = None) -> LoadedModel:
    """The process-wide model for (spec, device), loaded once even under concurrent first calls.

    Args:
        spec: a folder, "gpt2", "bundled", "modelscope:ID" or "hf:ID" (see sources.py).
        device: "cpu", "cuda", "mps" or None/"auto" to pick the best available.
    """
    key = (spec, str(pick_device(device)))
    with _registry_lock:
        if key in _loaded:
            return _loaded[key]
        lock = _loading_locks.setdefault(key, threading.Lock())
    with lock:  # later callers wait here for the first one's load instead of loading again
        if key not in _loaded:
            _loaded[key] = load_from_folder(resolve_source(spec), torch.device(key[1]))
        return _loaded[key]


# ---------------------------------------------------------------- one request


@dataclass(frozen=True)
class Candidate:
    """One of the most likely next tokens at a step."""

    token_id: int
    text: str
    probability: float  # softmax after repetition penalty and temperature
    kept: bool  # still in the running after top-k/top-p (greedy: only the top one)


@dataclass(frozen=True)
class Step:
    """One new token, or the end of a generation.

    The last step of every generation has finish_reason set: "eos" (the model wrote
    <|endoftext|>, which is not shown), "length" (max_new_tokens reached), "context"
    (the model's window is full) or "stopped" (cancelled; this step has no token).
    """

    index: int  # 0 for the first new token
    token_id: int | None
    token_text: str  # this token decoded alone (may be a half character, shown as U+FFFD)
    text: str  # what to append to the visible text: never a half character
    probability: float
    candidates: tuple[Candidate, ...]
    finish_reason: str | None = None


@dataclass(frozen=True)
class PreparedPrompt:
    """The prompt as the model will see it, after fitting it into the window."""

    token_ids: list[int]
    max_new_tokens: int  # clamped to what the window leaves
    context_limited: bool  # True when the window, not the user, limits the length
    notice: str  # non-empty when the prompt was cut or the length clamped


def prepare_prompt(model: LoadedModel, prompt: str, settings: SamplingSettings) -> PreparedPrompt:
    """Tokenize and fit the prompt: left-truncate a too-long prompt, clamp max_new_tokens."""
    ids = model.encode(check_prompt(prompt)) or [model.start_token_id]
    window = model.window
    wanted = min(settings.max_new_tokens, window - 1)
    notices = []
    if len(ids) >= window:
        # Keep the newest text, leaving room for what was asked (at most half the window).
        # A prompt that fits is kept whole; then only max_new_tokens shrinks.
        keep = window - min(wanted, window // 2)
        notices.append(
            bilingual(
                f"The prompt had {len(ids)} tokens; only its last {keep} fit GPT-2's {window}-token window.",
                f"提示有 {len(ids)} 个 token，只有最后 {keep} 个能放进 GPT-2 的 {window} token 窗口。",
            )
        )
        ids = ids[-keep:]
    max_new_tokens = min(wanted, window - len(ids))
    if max_new_tokens < settings.max_new_tokens:
        notices.append(
            bilingual(
                f"max_new_tokens was lowered to {max_new_tokens}, what the window leaves.",
                f"max_new_tokens 已降为 {max_new_tokens}（窗口剩余的长度）。",
            )
        )
    return PreparedPrompt(ids, max_new_tokens, max_new_tokens < settings.max_new_tokens, " ".join(notices))


class Generation:
    """One request's running state: its settings, random stream, text and cancel signal."""

    def __init__(self, model: LoadedModel, prompt: str, settings: SamplingSettings, cancel: threading.Event | None = None):
        self.model = model
        # Checked again here, against this model's vocabulary, so no caller can skip the check.
        settings = check_settings(**asdict(settings), vocab_size=model.vocab_size)
        seed = settings.seed if settings.seed is not None else secrets.randbelow(2**32)
        self.settings = replace(settings, seed=seed)  # the seed actually used, so the run can be repeated
        self.prompt = prepare_prompt(model, prompt, settings)
        self.cancel = cancel or threading.Event()
        self.generator = torch.Generator().manual_seed(seed)  # this request's own stream
        self.stream = TextStream(model.tokenizer)
        self.all_ids = list(self.prompt.token_ids)  # prompt + new, for the repetition penalty
        self.finish_reason: str | None = None

    @property
    def seed(self) -> int:
        return self.settings.seed

    @property
    def new_token_ids(self) -> list[int]:
        return self.all_ids[len(self.prompt.token_ids) :]

    def stopped_step(self) -> Step:
        """The final step of a cancelled generation: no token, only the text still held back."""
        self.finish_reason = "stopped"
        return Step(len(self.new_token_ids), None, "", self.stream.flush(), 0.0, (), "stopped")

    def advance(self, logits: torch.Tensor) -> Step:
        """Pick the next token from this request's logits (vocab,) and decide whether it is done."""
        previous = torch.tensor(self.all_ids) if self.settings.repetition_penalty != 1.0 else torch.empty(0, dtype=torch.long)
        pick = pick_next_token(logits.float().cpu(), previous, self.settings, self.generator, NUM_CANDIDATES)
        index = len(self.new_token_ids)
        self.all_ids.append(pick.token_id)
        texts = self.model.token_texts
        candidates = tuple(
            Candidate(i, texts[i], p, kept)
            for i, p, kept in zip(pick.candidate_ids, pick.candidate_probabilities, pick.candidate_kept)
        )
        if pick.token_id == self.model.eos_token_id:
            self.finish_reason = "eos"
            return Step(index, pick.token_id, "", self.stream.flush(), pick.probability, candidates, "eos")
        text = self.stream.push(pick.token_id)
        if index + 1 >= self.prompt.max_new_tokens:
            self.finish_reason = "context" if self.prompt.context_limited else "length"
            text += self.stream.flush()
        return Step(index, pick.token_id, texts[pick.token_id], text, pick.probability, candidates, self.finish_reason)


# ---------------------------------------------------------------- many requests, one forward pass


class DecodeBatch:
    """Running generations that share one KV cache and one forward pass per step."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.cache: KVCache = model.decoder.new_cache()
        self.rows: list[Generation] = []  # rows[i] owns cache row i

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, generation: Generation) -> Step:
        """Prefill a new request's prompt and return its first step; it joins if not finished."""
        return self.add_many([generation])[0]

    def add_many(self, generations: list[Generation]) -> list[Step]:
        """Prefill several new requests together (one pass per PREFILL_TOKENS); return their first steps."""
        steps: dict[int, Step] = {id(g): g.stopped_step() for g in generations if g.cancel.is_set()}
        joining = [g for g in generations if id(g) not in steps]
        for chunk in _chunks_by_tokens(joining, PREFILL_TOKENS):
            rows = [self.cache.add_row() for _ in chunk]
            logits = self.model.decoder.prefill(self.cache, rows, [g.prompt.token_ids for g in chunk])
            self.rows.extend(chunk)
            for generation, row_logits in zip(chunk, logits):
                steps[id(generation)] = generation.advance(row_logits)
            for generation in chunk:
                if steps[id(generation)].finish_reason:
                    self._remove(self.rows.index(generation))
        return [steps[id(g)] for g in generations]

    def _remove(self, row: int) -> None:
        self.cache.remove_row(row)
        self.rows[row] = self.rows[-1]  # mirror the cache's move of the last row
        self.rows.pop()

    def step(self) -> list[tuple[Generation, Step]]:
        """One token for every running request; finished and cancelled ones leave the batch."""
        results = [(g, g.stopped_step()) for g in self.rows if g.cancel.is_set()]
        for generation, _ in results:
            self._remove(self.rows.index(generation))
        if not self.rows:
            return results
        last_tokens = torch.tensor([g.all_ids[-1] for g in self.rows], device=self.model.device)
        logits = self.model.decoder.decode(self.cache, last_tokens)  # (rows, vocab)
        stepped = [(g, g.advance(logits[row])) for row, g in enumerate(self.rows)]
        for generation, step in stepped:
            if step.finish_reason:
                self._remove(self.rows.index(generation))
        return results + stepped


def _chunks_by_tokens(generations: list[Generation], budget: int) -> list[list[Generation]]:
    # Bounds a prefill's activations: a class pasting long texts at once runs in several passes.
    chunks, current, used = [], [], 0
    for generation in generations:
        size = len(generation.prompt.token_ids)
        if current and used + size > budget:
            chunks.append(current)
            current, used = [], 0
        current.append(generation)
        used += size
    return chunks + [current] if current else chunks


def generate_steps(
    model: LoadedModel,
    prompt: str,
    settings: SamplingSettings = SamplingSettings(),
    cancel: threading.Event | None = None,
    generation: Generation | None = None,
) -> Iterator[Step]:
    """Generate alone, one Step per new token, reusing the KV cache; the last Step has finish_reason.

    Args:
        model: from load_model().
        prompt: text to continue; empty means "start from <|endoftext|>".
        settings: sampling settings (check_settings() builds them from raw input).
        cancel: set it from another thread to stop before the next token.
        generation: pass a Generation made beforehand to read its seed and notice while streaming.
    """
    generation = generation or Generation(model, prompt, settings, cancel)
    batch = DecodeBatch(model)
    step = batch.add(generation)
    yield step
    while batch:
        for _, step in batch.step():
            yield step


@dataclass
class GenerationResult:
    """A whole generation, for callers that do not stream."""

    text: str
    token_ids: list[int]
    finish_reason: str
    seed: int
    notice: str
    steps: list[Step] = field(repr=False, default_factory=list)


def generate_text(model: LoadedModel, prompt: str, settings: SamplingSettings = SamplingSettings()) -> GenerationResult:
    """Run a generation to the end and return its text (the continuation only)."""
    generation = Generation(model, prompt, settings)
    steps = list(generate_steps(model, prompt, settings, generation=generation))
    return GenerationResult(
        text="".join(s.text for s in steps),
        token_ids=generation.new_token_ids,
        finish_reason=steps[-1].finish_reason,
        seed=generation.seed,
        notice=generation.prompt.notice,
        steps=steps,
    )
