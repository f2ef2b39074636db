"""ProcessEngine: the LocalEngine in a process of its own, seen through the engine interface.

`python app.py` serves the page from this process and runs the model in a child
(gpt2demo/serving/engine_process.py), as vLLM splits its engine core from its
front end. Both are Python: in one process the web server's work (formatting and
sending updates, drawing the teaching views) and the model's Python between its
matrix products share one interpreter lock, and each waits for the other; measured
here, a busy Python thread beside the decoder made GPT-2-small steps 2.6x slower
with 1 row and 2.1x with 32, on 2 cores with 1 math thread.

The two talk over a socket pair with pickled tuples (multiprocessing's Connection):
front end -> engine: ("submit", rid, Request), ("race", rid, ids, count),
("cancel", rid), ("call", qid, name, args), ("close",);
engine -> front end: ("state", EngineState), ("stats", EngineStats),
("events", [(rid, kind, payload), ...]) with kind accept/deliver/fail/ahead, and
("reply", qid, ok, value). The child never writes to stdout.

This front end imports no torch: its memory is the web server's alone.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection

from gpt2demo.errors import EngineUnavailable
from gpt2demo.serving.interface import Engine, EngineState, EngineStats, PromptFit, Request, Tokens
from gpt2demo.serving.tickets import Ticket

CALL_SECONDS = 30.0  # an answer from the engine (tokenize, fit) must come within this
CLOSE_SECONDS = 10.0  # the engine process's time to end before it is killed

available = hasattr(os, "fork")  # a socket pair handed to a child needs POSIX (Linux, macOS)


class ProcessEngine(Engine):
    """Front end of an engine process; every method returns at once (calls wait on the engine's answer)."""

    def __init__(self, spec: str, device: str | None, max_batch: int, queue_size: int, precision: str = "float32",
                 env: dict | None = None) -> None:
        ours, theirs = socket.socketpair()
        config = dict(spec=spec, device=device, max_batch=max_batch, queue_size=queue_size, precision=precision)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "gpt2demo.serving.engine_process", str(theirs.fileno())],
            pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self._conn = Connection(ours.detach())
        self._send_lock = threading.Lock()
        self._send(("config", config))
        self._state = EngineState("loading", spec, device or "auto")
        self._stats = EngineStats()
        self._loaded = threading.Event()
        self._tickets: dict[int, Ticket] = {}
        self._calls: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future]] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._closing = False
        self._reader = threading.Thread(target=self._read, name="gpt2demo-engine-events", daemon=True)
        self._reader.start()

    # ------------------------------------------------------------ to the engine

    def _send(self, message: tuple) -> bool:
        try:
            with self._send_lock:
                self._conn.send(message)
            return True
        except (OSError, ValueError):  # the engine process is gone (its reader says so)
            return False

    @property
    def state(self) -> EngineState:
        return self._state

    @property
    def pid(self) -> int:
        """The engine process's id (for a look with top or py-spy)."""
        return self._process.pid

    @property
    def loaded(self) -> threading.Event:
        return self._loaded

    def _ticket(self) -> tuple[int, Ticket]:
        rid = next(self._ids)
        ticket = Ticket(on_cancel=lambda t: self._send(("cancel", rid)))
        with self._lock:
            self._tickets[rid] = ticket
        return rid, ticket

    def submit(self, request: Request) -> Ticket:
        rid, ticket = self._ticket()
        if not self._send(("submit", rid, request)):
            self._forget(rid).fail(EngineUnavailable("closed"))
        return ticket

    def race(self, token_ids: tuple[int, ...], count: int) -> Ticket:
        rid, ticket = self._ticket()
        if not self._send(("race", rid, tuple(token_ids), count)):
            self._forget(rid).fail(EngineUnavailable("closed"))
        return ticket

    async def _call(self, name: str, *args):
        loop = asyncio.get_running_loop()
        qid = next(self._ids)
        future = loop.create_future()
        with self._lock:
            self._calls[qid] = (loop, future)
        if not self._send(("call", qid, name, args)):
            raise EngineUnavailable("closed")
        try:
            return await asyncio.wait_for(future, CALL_SECONDS)
        finally:
            with self._lock:
                self._calls.pop(qid, None)

    async def tokenize(self, text: str) -> Tokens:
        return await self._call("tokenize", text)

    async def fit(self, prompt: str, max_new_tokens: int) -> PromptFit:
        return await self._call("fit", prompt, max_new_tokens)

    def stats(self) -> EngineStats:
        return self._stats  # pushed by the engine after every change: never a round trip

    def close(self) -> None:
        self._closing = True
        self._send(("close",))
        try:
            self._process.wait(CLOSE_SECONDS)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._reader.join(CLOSE_SECONDS)
        self._conn.close()

    # ------------------------------------------------------------ from the engine

    def _forget(self, rid: int) -> Ticket | None:
        with self._lock:
            return self._tickets.pop(rid, None)

    def _read(self) -> None:
        try:
            while True:
                self._handle(self._conn.recv())
        except (EOFError, OSError):
            pass
        self._engine_gone()

    def _handle(self, message: tuple) -> None:
        kind = message[0]
        if kind == "events":
            for rid, event, payload in message[1]:
                self._dispatch(rid, event, payload)
        elif kind == "stats":
            self._stats = message[1]
        elif kind == "state":
            self._state = message[1]
            if self._state.phase != "loading":
                self._loaded.set()
        elif kind == "reply":
            _, qid, ok, value = message
            with self._lock:
                loop, future = self._calls.pop(qid, (None, None))
            if future is not None:
                loop.call_soon_threadsafe(_settle, future, ok, value)

    def _dispatch(self, rid: int, event: str, payload) -> None:
        with self._lock:
            ticket = self._tickets.get(rid)
        if ticket is None:
            return
        if event == "accept":
            ticket.accept(payload)
        elif event == "ahead":
            ticket.set_ahead(*payload)
        elif event == "deliver":
            items, finished = payload
            ticket.deliver(items, finished)
            if finished:
                self._forget(rid)
        elif event == "fail":
            ticket.fail(payload)
            self._forget(rid)

    def _engine_gone(self) -> None:
        # Whoever was waiting hears it now; nothing hangs on a process that has ended.
        try:
            exit_code = self._process.wait(CLOSE_SECONDS)  # the socket closes a moment before the exit is known
        except subprocess.TimeoutExpired:
            exit_code = None
        error = EngineUnavailable("closed" if self._closing else "engine_ended", exit_code=exit_code)
        if self._state.phase != "failed":
            self._state = EngineState("failed", self._state.spec, self._state.device, self._state.facts, error)
        self._loaded.set()
        with self._lock:
            tickets, self._tickets = list(self._tickets.values()), {}
            calls, self._calls = list(self._calls.values()), {}
        for ticket in tickets:
            ticket.fail(error)
        for loop, future in calls:
            loop.call_soon_threadsafe(_settle, future, False, error)


def _settle(future: asyncio.Future, ok: bool, value) -> None:
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
