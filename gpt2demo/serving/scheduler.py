"""Continuous batching on the engine's one thread: every forward pass of the model runs here.

Decoding one sequence is bound by reading the weights, so a step for 16 or 32
sequences costs little more than a step for one. The engine thread owns the
DecodeBatch: requests join between steps (their prompts read a chunk per step)
and leave as soon as they finish or are cancelled. Each keeps its own settings
and random stream, so its text is the same as when run alone: tested token for
token. The one exception is rounding: a batched forward pass differs from a lone
one by ~1e-11 in probability, and a draw that lands that close to a top-p cut
can take the neighbouring token (the soak saw 2 in 541 seeded runs before
sampling moved to float64 sums).

Cost races run on the same thread, one pair of tokens between batch steps and at
most JOB_SHARE of the batch's time while a class is decoding, so a running class
keeps decoding while someone watches the tutorial's method crawl.

Callers hand in a sink for each request (a Ticket in this process; the engine
process forwards to the front end's Ticket): accept(), deliver(), fail(), set_ahead().
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

from gpt2demo.errors import DemoError, EngineBusy, EngineUnavailable, GenerationFailed
from gpt2demo.generation import DecodeBatch, Generation
from gpt2demo.model import LoadedModel
from gpt2demo.serving.cost_race import CostRace
from gpt2demo.serving.interface import DEFAULT_MAX_BATCH, DEFAULT_QUEUE_SIZE, Accepted, EngineStats, Request

ENGINE_THREAD = "gpt2demo-engine"
JOB_SHARE = 0.1  # of the batch's time a cost race may take while others decode (it gets 1/11 of the engine)
# The most race time the batch's steps bank ahead, and only while a race waits. When time
# was banked with no race running (up to 1 s), a race started as a class of 8 pressed
# Generate spent that second in the class's first 3, and the 8 wrote at 0.56-0.68 of a
# plain class's pace; banked this way, 0.75-0.79 (the engine alone, bench/classroom.py's
# mixed class).
RACE_CREDIT_SECONDS = 0.05


_SET = threading.Event()
_SET.set()  # a failed race's cancel signal: it ends at once


@dataclass
class _Entry:
    """A request in the engine: its generation and where its steps go."""

    generation: Generation
    sink: object  # a Ticket, or the engine process's forwarding sink


class Scheduler:
    """Runs submitted requests in one continuous batch, and cost races between its steps, on one thread."""

    def __init__(self, model: LoadedModel, max_batch: int = DEFAULT_MAX_BATCH, queue_size: int = DEFAULT_QUEUE_SIZE,
                 flush: Callable[[], None] = lambda: None) -> None:
        """
        Args:
            max_batch: requests decoded together; queue_size: how many more may wait.
            flush: called after each round of deliveries (the engine process sends them then).
        """
        if max_batch < 1 or queue_size < 0:
            raise ValueError(f"max_batch must be at least 1 and queue_size at least 0 (got {max_batch}, {queue_size})")
        self.model = model
        self.max_batch = max_batch
        self.queue_size = queue_size
        self._flush = flush
        self._waiting: deque[_Entry] = deque()
        self._running: dict[int, _Entry] = {}  # id(generation) -> entry
        self._races: list[tuple[CostRace, object]] = []
        self._race_allowance = 0.0  # seconds a race may still take before the batch runs again
        self._batch = DecodeBatch(model)
        self._wakeup = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=ENGINE_THREAD, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ callers' threads

    def submit(self, request: Request, sink) -> None:
        """Queue a request: the sink is accepted (seed, fitted prompt, place in line) or failed (bad prompt, busy)."""
        try:
            generation = Generation(self.model, request)  # tokenizes and fits here, in the caller's thread
        except DemoError as error:
            sink.fail(error)
            return
        entry = _Entry(generation, sink)
        with self._wakeup:
            if self._closed:
                sink.fail(EngineUnavailable("closed"))
                return
            held = len(self._waiting) + len(self._running)
            if held >= self.max_batch + self.queue_size:
                sink.fail(EngineBusy("busy", ahead=held))
                return
            sink.accept(Accepted(generation.seed, generation.prompt, ahead=len(self._waiting)))
            self._waiting.append(entry)
            self._wakeup.notify()

    def cancel(self, sink) -> None:
        """Stop a request before its next token; one still in line leaves it now, with a 'stopped' step."""
        with self._wakeup:
            waiting = next((e for e in self._waiting if e.sink is sink), None)
            if waiting is not None:
                self._waiting.remove(waiting)
                self._tell_places()
            running = next((e for e in self._running.values() if e.sink is sink), None)
            if running is not None:
                running.generation.cancel.set()  # the batch drops it before its next token
            for race, race_sink in self._races:
                if race_sink is sink:
                    race.cancel.set()
            self._wakeup.notify()
        if waiting is not None:
            sink.deliver([waiting.generation.stopped_step()], finished=True)
            self._flush()

    def race(self, token_ids: tuple[int, ...], count: int, sink) -> None:
        """Start a cost race of `count` tokens from `token_ids`; its CostPoints go to the sink."""
        race = CostRace(self.model, list(token_ids), count)
        with self._wakeup:
            if self._closed:
                sink.fail(EngineUnavailable("closed"))
                return
            self._races.append((race, sink))
            self._wakeup.notify()

    def stats(self) -> EngineStats:
        with self._wakeup:
            return EngineStats(running=len(self._running), waiting=len(self._waiting), jobs=len(self._races),
                               max_batch=self.max_batch,
                               cache_bytes=self._batch.cache.nbytes + self._batch.staging.nbytes,
                               forward_threads=dict(self.model.decoder.forward_threads))

    def close(self) -> None:
        """Stop the thread; requests still queued or running end with EngineUnavailable('closed')."""
        with self._wakeup:
            self._closed = True
            self._wakeup.notify()
        self._thread.join(timeout=10)

    # ------------------------------------------------------------ the engine thread

    def _tell_places(self) -> None:
        for place, entry in enumerate(self._waiting):
            entry.sink.set_ahead(place)

    def _admit(self) -> list[_Entry]:
        # Move waiting requests into free batch rows; the rest learn their new place in line.
        with self._wakeup:
            self._wakeup.wait_for(lambda: self._closed or self._waiting or self._running or self._races)
            admitted = []
            while self._waiting and len(self._running) < self.max_batch:
                entry = self._waiting.popleft()
                self._running[id(entry.generation)] = entry
                admitted.append(entry)
            if admitted:
                self._tell_places()
            for entry in admitted:
                entry.sink.set_ahead(0, admitted=True)
            return admitted

    def _deliver(self, entry: _Entry, steps: list) -> None:
        finished = bool(steps) and steps[-1].finish_reason is not None
        if finished:  # first, so that whoever reads the last step finds the counters already updated
            with self._wakeup:
                self._running.pop(id(entry.generation), None)
        if steps:
            entry.sink.deliver(steps, finished)

    def _loop(self) -> None:
        while True:
            admitted = self._admit()
            if self._closed:
                self._fail_all(EngineUnavailable("closed"))
                return
            try:
                for entry in admitted:
                    self._deliver(entry, self._batch.join(entry.generation))
                if self._batch:
                    started = time.perf_counter()
                    by_generation: dict[int, list] = {}
                    for generation, step in self._batch.step():
                        by_generation.setdefault(id(generation), []).append(step)
                    entries = {id(entry.generation): entry for entry in self._running.values()}
                    for key, steps in by_generation.items():
                        self._deliver(entries[key], steps)
                    self._bank_race_time(time.perf_counter() - started)
            except Exception as error:  # a failed step must end its streams, never leave them hanging
                self._fail_running(error)
            self._run_race()
            self._flush()

    def _bank_race_time(self, batch_seconds: float) -> None:
        # A race's debt (one of its steps can take many batch steps' share) is paid back from
        # this; with no race waiting, nothing is banked and any debt is dropped.
        with self._wakeup:
            racing = bool(self._races)
        banked = self._race_allowance + JOB_SHARE * batch_seconds
        self._race_allowance = min(banked, RACE_CREDIT_SECONDS) if racing else 0.0

    def _run_race(self) -> None:
        # One pair of tokens of the oldest race: at once when the batch is idle, else when the
        # batch's steps have earned it the time (JOB_SHARE).
        with self._wakeup:
            if not self._races or (self._running and self._race_allowance <= 0):
                return
            race, sink = self._races[0]
        started = time.perf_counter()
        try:
            points = [] if race.cancel.is_set() or race.finished else race.step()
        except Exception as error:
            sink.fail(GenerationFailed("step_failed", kind=type(error).__name__, detail=str(error)[:200]))
            points, race.cancel = [], _SET
        done = race.finished or race.cancel.is_set()
        if points or done:
            sink.deliver(points, finished=done)
        if self._running:
            self._race_allowance -= time.perf_counter() - started
        if done:
            with self._wakeup:
                self._races.remove((race, sink))

    def _fail_running(self, error: Exception) -> None:
        failure = GenerationFailed("step_failed", kind=type(error).__name__, detail=str(error)[:200])
        with self._wakeup:
            failed, self._running = list(self._running.values()), {}
        self._batch = DecodeBatch(self.model)  # start clean so the next request works
        for entry in failed:
            entry.sink.fail(failure)

    def _fail_all(self, error: Exception) -> None:
        with self._wakeup:
            entries = list(self._running.values()) + list(self._waiting)
            races = list(self._races)
            self._running, self._waiting, self._races = {}, deque(), []
        for entry in entries:
            entry.sink.fail(error)
        for _, sink in races:
            sink.fail(error)
        self._flush()
