"""Continuous batching: every running request advances in one shared forward pass.

Decoding one sequence is bound by reading the weights, so a step for 16 or 32
sequences costs little more than a step for one. One background thread owns the
DecodeBatch; requests join between steps (after their prompt is prefilled) and
leave as soon as they finish or are cancelled. Each request keeps its own
settings and random stream, so its text is the same as when run alone: tested
token for token. The one exception is rounding: a batched forward pass differs
from a lone one by ~1e-11 in probability, and a draw that lands that close to a
top-p cut can take the neighbouring token (the soak saw 2 in 541 seeded runs
before sampling moved to float64 sums).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass

from gpt2demo.engine import DecodeBatch, Generation, LoadedModel, Step
from gpt2demo.settings import SamplingSettings, bilingual

DEFAULT_MAX_BATCH = 32  # measured here: 32 rows decode ~7x the tokens/s of one row, each still > 3 tok/s
DEFAULT_QUEUE_SIZE = 64  # waiting requests beyond the batch before new ones are refused


class ServerBusy(RuntimeError):
    """The waiting queue is full; the message says how many are ahead."""

    def __init__(self, ahead: int) -> None:
        self.ahead = ahead
        super().__init__(
            bilingual(
                f"The server is busy; {ahead} requests are ahead of you. Please try again in a moment.",
                f"服务器繁忙，前面还有 {ahead} 个请求，请稍后再试。",
            )
        )


def _ends_stream(item: Step | BaseException) -> bool:
    return isinstance(item, BaseException) or item.finish_reason is not None


def _wake(future: asyncio.Future) -> None:
    if not future.done():  # the waiter may have timed out or been cancelled meanwhile
        future.set_result(None)


@dataclass
class _Waiter:
    """A take() waiting on an event loop; `any_step` False means only the end may wake it."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    any_step: bool


class Ticket:
    """A submitted request: iterate it (sync or async), or take() its Steps in batches; cancel() to leave."""

    def __init__(self, generation: Generation, on_cancel=None) -> None:
        self.generation = generation
        self._on_cancel = on_cancel  # lets the scheduler drop a cancelled request still in line at once
        self._items: deque[Step | BaseException] = deque()
        self._ready = threading.Condition()
        self._async_wakeups: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._waiter: _Waiter | None = None
        self.ahead = 0  # requests waiting before this one; 0 once it runs
        self.admitted = False  # True once it has a row in the batch

    def cancel(self) -> None:
        """Stop before the next token (idempotent); the stream then ends with a 'stopped' step."""
        self.generation.cancel.set()
        if self._on_cancel is not None:
            self._on_cancel(self)

    def deliver(self, item: Step | BaseException) -> None:
        """Called by the scheduler thread: hand over a step or the error that ended the request."""
        with self._ready:
            self._items.append(item)
            self._ready.notify_all()
            wakeups = list(self._async_wakeups)
            waiter = self._waiter
            if waiter is not None and (waiter.any_step or _ends_stream(item)):
                self._waiter = None
            else:
                waiter = None  # a holding take(): this step waits for it, with no wake-up
        for loop, event in wakeups:
            loop.call_soon_threadsafe(event.set)
        if waiter is not None:
            waiter.loop.call_soon_threadsafe(_wake, waiter.future)

    def _take(self) -> Step | BaseException | None:
        with self._ready:
            return self._items.popleft() if self._items else None

    async def take(self, timeout: float, hold: float = 0.0) -> list[Step]:
        """The steps delivered since the last take, waiting up to `timeout` seconds for one ([] if none came).

        For the first `hold` seconds only the last step (or an error) ends the wait: a page
        updated every 50 ms is then woken once per update, not once per token. Each wake-up
        also costs the decoding thread (in a profile of the app streaming every token, its
        calls into the event loop took 2% of its time, and the woken loop then holds the
        interpreter lock the next forward pass needs). Raises the error that ended the
        request, if any.
        """
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadline, hold_until = now + timeout, now + hold
        while True:
            holding = now < hold_until
            with self._ready:
                if self._items and (not holding or now >= deadline or any(map(_ends_stream, self._items))):
                    items = list(self._items)
                    self._items.clear()
                    return [self._unwrap(item) for item in items]
                if now >= deadline:
                    return []
                waiter = self._waiter = _Waiter(loop, loop.create_future(), any_step=not holding)
            try:
                await asyncio.wait({waiter.future}, timeout=(min(deadline, hold_until) if holding else deadline) - now)
            finally:
                with self._ready:
                    if self._waiter is waiter:
                        self._waiter = None
            now = loop.time()

    @staticmethod
    def _unwrap(item: Step | BaseException) -> Step:
        if isinstance(item, BaseException):
            raise item
        return item

    def __iter__(self):
        while True:
            with self._ready:
                self._ready.wait_for(lambda: self._items)
            step = self._unwrap(self._take())
            yield step
            if step.finish_reason:
                return

    async def __aiter__(self):
        event = asyncio.Event()
        waker = (asyncio.get_running_loop(), event)
        with self._ready:
            self._async_wakeups.append(waker)
        try:
            while True:
                item = self._take()
                if item is None:
                    event.clear()
                    item = self._take()  # a delivery may have raced the clear
                    if item is None:
                        await event.wait()
                        continue
                step = self._unwrap(item)
                yield step
                if step.finish_reason:
                    return
        finally:
            with self._ready:
                self._async_wakeups.remove(waker)


@dataclass(frozen=True)
class SchedulerStats:
    running: int  # requests admitted and not finished
    waiting: int  # requests in line for a row
    rows: int = 0  # rows in the decode batch (= running, but for the moment of a prefill)


class Scheduler:
    """Runs submitted requests in one continuous batch on a background thread."""

    def __init__(self, model: LoadedModel, max_batch: int = DEFAULT_MAX_BATCH, queue_size: int = DEFAULT_QUEUE_SIZE):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1 (got {max_batch})")
        if queue_size < 0:
            raise ValueError(f"queue_size must be 0 or more (got {queue_size})")
        self.model = model
        self.max_batch = max_batch
        self.queue_size = queue_size
        self._waiting: deque[Ticket] = deque()
        self._running: dict[int, Ticket] = {}  # id(generation) -> ticket
        self._batch = DecodeBatch(model)
        self._wakeup = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="gpt2demo-scheduler", daemon=True)
        self._thread.start()

    def submit(self, prompt: str, settings: SamplingSettings) -> Ticket:
        """Queue a request; raises ValueError for a bad prompt and ServerBusy when the queue is full."""
        generation = Generation(self.model, prompt, settings)  # tokenizes and checks the prompt here, in the caller
        ticket = Ticket(generation, self._drop_if_waiting)
        with self._wakeup:
            if self._closed:
                raise RuntimeError("the scheduler is closed")
            free_rows = self.max_batch - len(self._running)
            if len(self._waiting) >= self.queue_size + max(free_rows, 0):
                raise ServerBusy(len(self._waiting) + len(self._running))
            ticket.ahead = len(self._waiting)
            self._waiting.append(ticket)
            self._wakeup.notify()
        return ticket

    def stats(self) -> SchedulerStats:
        with self._wakeup:
            return SchedulerStats(running=len(self._running), waiting=len(self._waiting), rows=len(self._batch))

    def _drop_if_waiting(self, ticket: Ticket) -> None:
        # A request cancelled while in line leaves the line now, not when its turn comes.
        with self._wakeup:
            if ticket not in self._waiting:
                return  # running: the batch drops it before its next token
            self._waiting.remove(ticket)
            for place, other in enumerate(self._waiting):
                other.ahead = place
        ticket.deliver(ticket.generation.stopped_step())

    def close(self) -> None:
        """Stop the thread; requests still queued or running end with an error."""
        with self._wakeup:
            self._closed = True
            self._wakeup.notify()
        self._thread.join(timeout=10)

    def _admit(self) -> list[Ticket]:
        # Move waiting requests into free batch rows; the rest learn their new place in line.
        with self._wakeup:
            self._wakeup.wait_for(lambda: self._closed or self._waiting or self._running)
            admitted = []
            while self._waiting and len(self._running) + len(admitted) < self.max_batch:
                admitted.append(self._waiting.popleft())
            for place, ticket in enumerate(self._waiting):
                ticket.ahead = place
            for ticket in admitted:
                ticket.ahead, ticket.admitted = 0, True
                self._running[id(ticket.generation)] = ticket
            return admitted

    def _finish(self, ticket: Ticket, step: Step) -> None:
        ticket.deliver(step)
        if step.finish_reason:
            with self._wakeup:
                self._running.pop(id(ticket.generation), None)

    def _loop(self) -> None:
        while True:
            admitted = self._admit()
            if self._closed:
                self._fail_all(RuntimeError("the server is shutting down"))
                return
            try:
                # Joining requests share one prefill pass: a class pressing Generate together
                # costs about one read of the weights, not one per student.
                for ticket, step in zip(admitted, self._batch.add_many([t.generation for t in admitted])):
                    self._finish(ticket, step)
                if self._batch:
                    for generation, step in self._batch.step():
                        self._finish(self._running[id(generation)], step)
            except Exception as error:  # a failed step must end its streams, never leave them hanging
                self._fail_running(error)

    def _fail_running(self, error: Exception) -> None:
        message = RuntimeError(bilingual(f"Generation failed: {type(error).__name__}: {error}", f"生成失败：{type(error).__name__}: {error}"))
        with self._wakeup:
            failed, self._running = list(self._running.values()), {}
        self._batch = DecodeBatch(self.model)  # start clean so the next request works
        for ticket in failed:
            ticket.deliver(message)

    def _fail_all(self, error: Exception) -> None:
        with self._wakeup:
            tickets = list(self._running.values()) + list(self._waiting)
            self._running, self._waiting = {}, deque()
        for ticket in tickets:
            ticket.deliver(error)
