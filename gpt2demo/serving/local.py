"""LocalEngine: the model and its scheduler in this process, loaded in the background.

Loading starts when the engine starts, not at the first request, so the model is
usually ready before anyone asks; a request that comes earlier is refused with
EngineUnavailable("loading"), and a page waits for the state to turn "ready"
while mirroring the loader's progress. The loader's tqdm bars (download,
weights) print on the console as usual; state.progress reports the newest one.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Callable

from gpt2demo.errors import DemoError, EngineUnavailable
from gpt2demo.generation import check_token_ids, fit_prompt
from gpt2demo.model import LoadedModel, load_model, pick_device
from gpt2demo.serving.interface import Engine, EngineState, EngineStats, Loading, PromptFit, Request, Tokens
from gpt2demo.serving.interface import DEFAULT_MAX_BATCH, DEFAULT_QUEUE_SIZE
from gpt2demo.serving.scheduler import Scheduler
from gpt2demo.serving.tickets import Ticket
from gpt2demo.settings import BOUNDS, check_integer, check_prompt
from gpt2demo.sources import log


def loading_progress() -> Loading | None:
    """The most recently started tqdm bar of this process that is still open, or None."""
    from tqdm import tqdm

    with tqdm.get_lock():  # the loader thread adds and removes bars while we look
        bars = [bar for bar in list(getattr(tqdm, "_instances", ())) if not getattr(bar, "disable", False)]
    if not bars:
        return None
    bar = max(bars, key=lambda b: getattr(b, "start_t", 0.0))
    return Loading(desc=str(bar.desc or "").rstrip(": "), done=float(bar.n), total=bar.total)


def describe_failure(error: Exception) -> DemoError:
    """A load failure as data the page can word: the source's own error, or its kind and a short detail."""
    if isinstance(error, DemoError):
        return error
    return EngineUnavailable("load_failed", kind=type(error).__name__, detail=str(error)[:200])


class LocalEngine(Engine):
    """The one model of this process and the Scheduler that runs every request on it."""

    def __init__(self, spec: str = "gpt2", device: str | None = None, max_batch: int = DEFAULT_MAX_BATCH,
                 queue_size: int = DEFAULT_QUEUE_SIZE, precision: str = "float32",
                 loader: Callable[..., LoadedModel] = load_model, flush: Callable[[], None] = lambda: None) -> None:
        """
        Args:
            loader: (spec, device, precision) -> LoadedModel; tests pass a slow or failing one.
            flush: called after each round of deliveries (see Scheduler).
        """
        self.spec, self.device, self.precision = spec, str(pick_device(device)), precision
        self.max_batch, self.queue_size = max_batch, queue_size
        self.model: LoadedModel | None = None
        self.scheduler: Scheduler | None = None
        self._loader, self._flush = loader, flush
        self._state = EngineState("loading", spec, self.device)
        self._loaded = threading.Event()
        self._closed = False
        self._lock = threading.Lock()  # close() during loading must not race the scheduler's start
        self._thread = threading.Thread(target=self._load, name="gpt2demo-model-loader", daemon=True)

    def start(self) -> LocalEngine:
        """Begin loading in the background; returns at once."""
        self._thread.start()
        return self

    def _load(self) -> None:
        log(f"loading model {self.spec!r} on {self.device} ...")
        try:
            model = self._loader(self.spec, self.device, self.precision)
            with self._lock:
                if self._closed:  # closed while loading: no engine thread for a server that is gone
                    self._state = EngineState("failed", self.spec, self.device, error=EngineUnavailable("closed"))
                    return
                self.scheduler = Scheduler(model, self.max_batch, self.queue_size, self._flush)
            self.model = model
            facts = model.facts()
            self._state = EngineState("ready", self.spec, self.device, facts=facts)
            log(f"model ready: {facts.name} ({facts.source}), {facts.parameters:,} parameters, "
                f"{facts.device} {facts.precision}, loaded in {facts.load_seconds} s")
        except Exception as error:  # the page must say why, never leave requests waiting forever
            failure = describe_failure(error)
            self._state = EngineState("failed", self.spec, self.device, error=failure)
            log(f"the model could not be loaded: {failure}")
        finally:
            self._loaded.set()

    @property
    def loaded(self) -> threading.Event:
        return self._loaded

    @property
    def state(self) -> EngineState:
        state = self._state
        if state.phase == "loading":
            return EngineState("loading", state.spec, state.device, progress=loading_progress())
        return state

    def _unavailable(self) -> EngineUnavailable | None:
        state = self._state
        if state.phase == "loading":
            return EngineUnavailable("loading", spec=self.spec)
        if state.phase == "failed":
            return state.error
        return None

    def submit(self, request: Request) -> Ticket:
        ticket = Ticket(on_cancel=self.cancel)
        self.submit_to(request, ticket)
        return ticket

    def race(self, token_ids: tuple[int, ...], count: int) -> Ticket:
        ticket = Ticket(on_cancel=self.cancel)
        self.race_to(token_ids, count, ticket)
        return ticket

    def submit_to(self, request: Request, sink) -> None:
        """submit() with the caller's own sink (the engine process forwards to its front end's Ticket)."""
        refusal = self._unavailable()
        if refusal is not None:
            sink.fail(refusal)
        else:
            self.scheduler.submit(request, sink)

    def race_to(self, token_ids: tuple[int, ...], count: int, sink) -> None:
        try:
            model = self._ready_model()
            ids = check_token_ids(model, "token_ids", token_ids)
            count = check_integer("count", count, 1, BOUNDS.max_new_tokens[1])
        except DemoError as error:
            sink.fail(error)
            return
        self.scheduler.race(tuple(ids), count, sink)

    def cancel(self, sink) -> None:
        if self.scheduler is not None:
            self.scheduler.cancel(sink)

    def _ready_model(self) -> LoadedModel:
        refusal = self._unavailable()
        if refusal is not None:
            raise refusal
        return self.model

    def tokenize_now(self, text: str) -> Tokens:
        model = self._ready_model()
        ids = model.encode(check_prompt(text))
        return Tokens(tuple(ids), tuple(model.pieces.many(ids)))

    def fit_now(self, prompt: str, max_new_tokens: int) -> PromptFit:
        model = self._ready_model()
        max_new_tokens = check_integer("max_new_tokens", max_new_tokens, *BOUNDS.max_new_tokens)
        return fit_prompt(model, model.encode(check_prompt(prompt)), max_new_tokens)

    async def tokenize(self, text: str) -> Tokens:
        return await asyncio.to_thread(self.tokenize_now, text)  # a long paste takes ~10 ms: off the event loop

    async def fit(self, prompt: str, max_new_tokens: int) -> PromptFit:
        return await asyncio.to_thread(self.fit_now, prompt, max_new_tokens)

    def stats(self) -> EngineStats:
        return self.scheduler.stats() if self.scheduler else EngineStats()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            scheduler = self.scheduler
        if scheduler:
            scheduler.close()
