"""The engine interface: what every caller sends to the model and what comes back.

One door to the model. The page, the API, the command line and the teaching tabs
submit a Request and read Steps from its Ticket; nothing above this interface
touches tensors, the tokenizer or the KV cache. Its implementations:

- LocalEngine (serving/local.py): the continuous-batching scheduler, one thread
  owning the model's math, in this process (the command line, tests);
- ProcessEngine (serving/process.py): the same LocalEngine in a process of its own,
  which `python app.py` uses, so the web server's work never waits on the model's
  interpreter lock (vLLM splits its engine core from its front end the same way).

Everything here is plain data (no torch), so it crosses a process boundary as is.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable

from gpt2demo.pieces import TokenPiece
from gpt2demo.serving.tickets import Ticket
from gpt2demo.settings import SamplingSettings

FINISH_REASONS = ("eos", "length", "context", "stopped", "paused")
DEFAULT_MAX_BATCH = 32  # requests decoded together (measured here: 32 rows decode ~7x the tokens/s of one)
DEFAULT_QUEUE_SIZE = 64  # requests that may wait beyond the batch before new ones are refused
PRECISIONS = ("float32", "int8")  # --precision: float32 (bfloat16 on CUDA), or int8 products on the CPU (int8.py)


@dataclass(frozen=True)
class Request:
    """One request to the engine.

    The prompt is text, or token ids already fitted by an earlier request (its
    Ticket.prompt.token_ids). forced_token_ids are new tokens a person chose: the
    engine reads them as the text's first new tokens, reports each as a Step without
    candidates, and draws its random stream once for each (as if it had picked them),
    so that what it samples next is what a generation that made those picks would
    sample. max_steps ends the stream after that many sampled tokens with finish
    reason "paused" (the sampler's one-token jobs); None runs to the end.
    """

    settings: SamplingSettings  # checked by settings.check_settings where the request entered
    prompt: str = ""
    token_ids: tuple[int, ...] | None = None
    forced_token_ids: tuple[int, ...] = ()
    max_steps: int | None = None


@dataclass(frozen=True, slots=True)  # slots: a front end keeps many (recent runs, 15 a token)
class Candidate:
    """One of the most likely next tokens at a step."""

    piece: TokenPiece
    probability: float  # softmax after repetition penalty and temperature
    kept: bool  # still in the running after top-k/top-p (greedy: only the top one)

    @property
    def token_id(self) -> int:
        return self.piece.token_id


@dataclass(frozen=True, slots=True)
class Step:
    """One new token, or the end of a generation: everything a view draws of it.

    The last step of every stream has finish_reason set: "eos" (the model wrote
    <|endoftext|>, which is not shown), "length" (max_new_tokens reached), "context"
    (the model's window is full), "stopped" (cancelled; this step has no token) or
    "paused" (the request's max_steps were taken; the text could go on).
    """

    index: int  # 0 for the first new token
    piece: TokenPiece | None  # the token, its vocabulary spelling and bytes; None for a 'stopped' step
    text: str  # what to append to the visible text: never a half character
    probability: float | None  # when chosen; None for a forced token (a person chose it)
    candidates: tuple[Candidate, ...]  # most likely first; () for a forced token
    finish_reason: str | None = None
    forced: bool = False  # chosen by a person (Request.forced_token_ids), not sampled

    @property
    def token_id(self) -> int | None:
        return None if self.piece is None else self.piece.token_id


@dataclass(frozen=True)
class PromptFit:
    """The prompt as the model will read it, after fitting it into the window."""

    token_ids: tuple[int, ...]
    text: str  # those tokens decoded: what the model actually continues
    max_new_tokens: int  # lowered to what the window leaves
    window: int
    cut_from: int | None = None  # the prompt's token count when only its last tokens fit
    lowered_from: int | None = None  # the max_new_tokens asked for, when the window lowered it

    @property
    def context_limited(self) -> bool:
        """True when the window, not the user, ends the text (finish reason 'context')."""
        return self.lowered_from is not None


@dataclass(frozen=True)
class Accepted:
    """What a request learns once the engine took it: its seed and its fitted prompt."""

    seed: int
    prompt: PromptFit
    ahead: int  # requests waiting before it


TUTORIAL = "tutorial"  # the cost race's first method: the whole text through the model at every step
KV_CACHE = "kv_cache"  # its second: the prompt read once, then only the newest token


@dataclass(frozen=True)
class CostPoint:
    """How long one method of the cost race took to write one token."""

    method: str  # TUTORIAL or KV_CACHE
    position: int  # 0 for the first new token
    token_id: int
    seconds: float


@dataclass(frozen=True)
class SourceAttempt:
    """One place the default model spec tried, and why it failed."""

    source: str  # e.g. "modelscope:AI-ModelScope/gpt2"
    kind: str  # offline, remembered, unreachable, download (sources.download's error codes)
    detail: str = ""  # the library's own words, shortened


@dataclass(frozen=True)
class ModelFacts:
    """What the page shows of the model: never a path on the server."""

    name: str  # "modelscope:AI-ModelScope/gpt2", "bundled", a folder's own name
    source: str  # folder, modelscope, huggingface, bundled, remote
    device: str
    precision: str  # float32, bfloat16, int8, ...
    parameters: int
    window: int
    vocab_size: int
    eos_token_id: int | None
    load_seconds: float
    fallback: tuple[SourceAttempt, ...] = ()  # set when the default spec fell back to the bundled model
    features: frozenset[str] = frozenset({"candidates", "race"})  # what the views may ask for

    @property
    def fell_back(self) -> bool:
        return bool(self.fallback)


@dataclass(frozen=True)
class Loading:
    """The newest live progress bar of a model being loaded (download, weights)."""

    desc: str
    done: float
    total: float | None  # None when the total is not known


@dataclass(frozen=True)
class EngineState:
    """Loading, ready (with the model's facts) or failed (with the error)."""

    phase: str  # "loading", "ready", "failed"
    spec: str
    device: str
    facts: ModelFacts | None = None
    error: Exception | None = None
    progress: Loading | None = None


@dataclass(frozen=True)
class EngineStats:
    """The classroom line, and what the engine's thread has done."""

    running: int = 0  # requests with a row in the batch
    waiting: int = 0  # requests in line for a row
    jobs: int = 0  # cost races in progress
    max_batch: int | None = None  # rows the batch holds (None: the engine does not say)
    cache_bytes: int = 0  # the KV cache's memory now
    forward_threads: dict[str, int] = field(default_factory=dict)  # thread name -> forward passes run on it


@dataclass(frozen=True)
class Tokens:
    """A text as the model's tokenizer reads it."""

    token_ids: tuple[int, ...]
    pieces: tuple[TokenPiece, ...]


class Engine(ABC):
    """The one door to the model; see the module docstring."""

    @property
    @abstractmethod
    def state(self) -> EngineState:
        """Loading, ready or failed; never blocks."""

    @abstractmethod
    def submit(self, request: Request) -> Ticket:
        """Queue a request; its Ticket is accepted (seed, fitted prompt) or fails with a DemoError."""

    @abstractmethod
    def race(self, token_ids: tuple[int, ...], count: int) -> Ticket:
        """The cost race: CostPoints for both methods, one token each in turn (EngineUnavailable where unsupported)."""

    @abstractmethod
    async def tokenize(self, text: str) -> Tokens:
        """The text's token ids and pieces (the tokenizer view)."""

    @abstractmethod
    async def fit(self, prompt: str, max_new_tokens: int) -> PromptFit:
        """How a prompt would be fitted into the window (the length slider's maximum)."""

    @abstractmethod
    def stats(self) -> EngineStats:
        """Requests running and waiting, never blocking for long."""

    @property
    @abstractmethod
    def loaded(self) -> threading.Event:
        """Set once loading ended, with a model or an error."""

    @abstractmethod
    def close(self) -> None:
        """Stop; requests still queued or running end with EngineUnavailable('closed')."""

    async def wait_ready(self, report: Callable[[EngineState], None], should_stop: Callable[[], bool],
                         tick_seconds: float = 0.25) -> EngineState:
        """Wait until loading ended (ready or failed), reporting progress; returns early if should_stop()."""
        while (state := self.state).phase == "loading" and not should_stop():
            report(state)
            await asyncio.sleep(tick_seconds)
        return state

    def wait_ready_blocking(self, timeout: float | None = None) -> EngineState:
        """The same for a caller without an event loop (the command line, tests)."""
        self.loaded.wait(timeout)
        return self.state
