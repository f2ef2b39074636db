"""A submitted request's stream, the same for every engine: accepted, then items, then its end.

The engine's side calls accept(), deliver() and fail() from its own thread; the
caller awaits accepted(), take()s the items in batches (or iterates them, without
an event loop) and may cancel(). Items are Steps for generation requests and
CostPoints for the cost race.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable


def _wake(future: asyncio.Future) -> None:
    if not future.done():  # the waiter may have timed out or been cancelled meanwhile
        future.set_result(None)


@dataclass
class _Waiter:
    """A coroutine waiting on its event loop; `any_item` False means only the end (or an error) may wake it."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    any_item: bool


class Ticket:
    """One request's stream; see the module docstring."""

    def __init__(self, on_cancel: Callable[[Ticket], None] | None = None) -> None:
        self._on_cancel = on_cancel  # lets the engine drop a request still in line at once
        self._ready = threading.Condition()
        self._items: deque[Any] = deque()
        self._waiter: _Waiter | None = None
        self._finished = False  # the last item has been delivered
        self.error: Exception | None = None  # what ended the request, if not its last item
        self.accepted_info = None  # an interface.Accepted once the engine took the request
        self.cancelled = False
        self.ahead = 0  # requests waiting before this one; 0 once it runs
        self.admitted = False  # True once it has a row in the batch

    # ------------------------------------------------------------ the engine's side

    def accept(self, accepted) -> None:
        """The engine took the request: its seed, fitted prompt and place in line."""
        with self._ready:
            self.accepted_info, self.ahead = accepted, accepted.ahead
        self._notify(ends=True)

    def deliver(self, items: list, finished: bool = False) -> None:
        """Hand over items in order; `finished` when the last of them ends the stream."""
        with self._ready:
            self._items.extend(items)
            self._finished = self._finished or finished
        self._notify(ends=finished)

    def fail(self, error: Exception) -> None:
        """End the request with an error (refused, failed step, shutdown)."""
        with self._ready:
            if self._finished or self.error is not None:
                return
            self.error = error
        self._notify(ends=True)

    def set_ahead(self, ahead: int, admitted: bool = False) -> None:
        self.ahead, self.admitted = ahead, admitted or self.admitted

    def _notify(self, ends: bool) -> None:
        with self._ready:
            self._ready.notify_all()
            waiter = self._waiter
            if waiter is not None and (waiter.any_item or ends):
                self._waiter = None
            else:
                waiter = None  # a holding take(): these items wait for it, with no wake-up
        if waiter is not None:
            waiter.loop.call_soon_threadsafe(_wake, waiter.future)

    # ------------------------------------------------------------ the caller's side

    @property
    def done(self) -> bool:
        """Ended (last item delivered, or an error) and nothing left to take."""
        with self._ready:
            return (self._finished or self.error is not None) and not self._items

    @property
    def seed(self) -> int | None:
        return None if self.accepted_info is None else self.accepted_info.seed

    @property
    def prompt(self):
        """The fitted prompt (interface.PromptFit) once accepted, else None."""
        return None if self.accepted_info is None else self.accepted_info.prompt

    def cancel(self) -> None:
        """Stop before the next token (idempotent); a generation's stream then ends with a 'stopped' step."""
        if self.cancelled:
            return
        self.cancelled = True
        if self._on_cancel is not None:
            self._on_cancel(self)

    async def accepted(self, timeout: float | None = None):
        """Wait until the engine took the request; raises the error that refused it."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            with self._ready:
                if self.accepted_info is not None:
                    return self.accepted_info
                if self.error is not None:
                    raise self.error
                waiter = self._waiter = _Waiter(loop, loop.create_future(), any_item=False)
            await self._wait(waiter, None if deadline is None else deadline - loop.time())
            if deadline is not None and loop.time() >= deadline:
                with self._ready:
                    if self.accepted_info is None and self.error is None:
                        raise TimeoutError("the engine did not answer")

    def accepted_blocking(self, timeout: float | None = None):
        """The same without an event loop (the command line)."""
        with self._ready:
            self._ready.wait_for(lambda: self.accepted_info is not None or self.error is not None, timeout)
            if self.accepted_info is None:
                raise self.error or TimeoutError("the engine did not answer")
            return self.accepted_info

    async def take(self, timeout: float, hold: float = 0.0) -> list:
        """The items delivered since the last take, waiting up to `timeout` seconds for one ([] if none came).

        For the first `hold` seconds only the end (or an error) ends the wait: a page
        updated every 50 ms is then woken once per update, not once per token. Each
        wake-up also costs the engine (its call into this event loop). Raises the error
        that ended the request once its items are taken.
        """
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadline, hold_until = now + timeout, now + hold
        while True:
            holding = now < hold_until
            with self._ready:
                ended = self._finished or self.error is not None
                if self._items and (not holding or now >= deadline or ended):
                    items = list(self._items)
                    self._items.clear()
                    return items
                if self.error is not None:
                    raise self.error
                if ended or now >= deadline:
                    return []
                waiter = self._waiter = _Waiter(loop, loop.create_future(), any_item=not holding)
            await self._wait(waiter, (min(deadline, hold_until) if holding else deadline) - now)
            now = loop.time()

    async def _wait(self, waiter: _Waiter, seconds: float | None) -> None:
        try:
            await asyncio.wait({waiter.future}, timeout=seconds)
        finally:
            with self._ready:
                if self._waiter is waiter:
                    self._waiter = None

    def __iter__(self):
        """Every item in order, blocking (the command line); raises the error that ended the request."""
        while True:
            with self._ready:
                self._ready.wait_for(lambda: self._items or self._finished or self.error is not None)
                if not self._items:
                    if self.error is not None:
                        raise self.error
                    return
                item = self._items.popleft()
            yield item
