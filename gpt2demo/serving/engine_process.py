"""The engine process: a LocalEngine serving one front end (serving/process.py) over a socket.

    python -m gpt2demo.serving.engine_process FD     (started by ProcessEngine, never by hand)

Two threads here talk to the front end: this module's host thread reads commands
and answers calls; the engine thread (the Scheduler) runs every forward pass and
sends the round's deliveries, one message per round, through the Outbox.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from multiprocessing.connection import Connection

from gpt2demo.errors import DemoError, GenerationFailed

STATE_SECONDS = 0.25  # how often loading progress goes to the front end
STATS_SECONDS = 0.1  # the front end's counters lag the engine by at most this (count changes go at once)


class Outbox:
    """Events for the front end, sent together: one message per scheduler round, not per token."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.engine = None  # set once the engine exists, for its stats
        self._events: list[tuple] = []
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._stats_lock = threading.Lock()  # the engine thread and the host thread both flush
        self._last_counts = None
        self._stats_at = 0.0
        self._late_stats: threading.Timer | None = None

    def add(self, rid: int, event: str, payload) -> None:
        with self._lock:
            self._events.append((rid, event, payload))

    def send(self, message: tuple) -> None:
        with self._send_lock:
            self.conn.send(message)

    def flush(self) -> None:
        # Taken and sent under one lock: the host thread (after a submit) and the engine thread
        # (after a round) both flush, and a batch taken first but sent second put a one-token
        # request's finished delivery before its acceptance; the front end, which forgets a
        # ticket once it is finished, then dropped the acceptance and the caller waited for good.
        with self._send_lock:
            with self._lock:
                events, self._events = self._events, []
            if events:
                self.conn.send(("events", events))
        self._send_stats()

    def _send_stats(self) -> None:
        if self.engine is None:
            return
        with self._stats_lock:
            stats = self.engine.stats()
            counts = (stats.running, stats.waiting, stats.jobs)
            wait = STATS_SECONDS - (time.monotonic() - self._stats_at)
            if counts != self._last_counts or wait <= 0:
                self._send_stats_now(stats)
            elif self._late_stats is None:
                # Held back to spare a message a round, but never for good: the engine may go idle
                # right after, and the front end's counters (forward passes, cache memory) would
                # then stay behind it until the next request.
                self._late_stats = threading.Timer(wait, self._send_late_stats)
                self._late_stats.name, self._late_stats.daemon = "gpt2demo-engine-stats", True
                self._late_stats.start()

    def _send_late_stats(self) -> None:
        with self._stats_lock:
            self._late_stats = None
            try:
                self._send_stats_now(self.engine.stats())
            except (EOFError, OSError):
                pass  # the front end went away: there is no one left to tell

    def _send_stats_now(self, stats) -> None:
        self._last_counts, self._stats_at = (stats.running, stats.waiting, stats.jobs), time.monotonic()
        self.send(("stats", stats))


class ForwardingSink:
    """The scheduler's view of a front-end Ticket: what it is told goes into the outbox."""

    def __init__(self, rid: int, outbox: Outbox, sinks: dict) -> None:
        self.rid, self.outbox, self.sinks = rid, outbox, sinks

    def accept(self, accepted) -> None:
        self.outbox.add(self.rid, "accept", accepted)

    def set_ahead(self, ahead: int, admitted: bool = False) -> None:
        self.outbox.add(self.rid, "ahead", (ahead, admitted))

    def deliver(self, items: list, finished: bool = False) -> None:
        self.outbox.add(self.rid, "deliver", (items, finished))
        if finished:
            self.sinks.pop(self.rid, None)

    def fail(self, error: Exception) -> None:
        if not isinstance(error, DemoError):  # only our errors are sure to unpickle on the other side
            error = GenerationFailed("step_failed", kind=type(error).__name__, detail=str(error)[:200])
        self.outbox.add(self.rid, "fail", error)
        self.sinks.pop(self.rid, None)


def report_state(engine, outbox: Outbox) -> None:
    """Loading progress while loading, then the final state once."""
    while not engine.loaded.wait(STATE_SECONDS):
        outbox.send(("state", engine.state))
    outbox.send(("state", engine.state))
    outbox.flush()


def serve(conn: Connection, engine, outbox: Outbox) -> None:
    """Answer the front end's commands until it closes or goes away."""
    sinks: dict[int, ForwardingSink] = {}
    calls = {"tokenize": engine.tokenize_now, "fit": engine.fit_now}
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        kind = message[0]
        if kind == "close":
            return
        if kind in ("submit", "race"):
            rid = message[1]
            sink = sinks[rid] = ForwardingSink(rid, outbox, sinks)
            if kind == "submit":
                engine.submit_to(message[2], sink)
            else:
                engine.race_to(message[2], message[3], sink)
        elif kind == "cancel":
            sink = sinks.get(message[1])
            if sink is not None:
                engine.cancel(sink)
        elif kind == "call":
            _, qid, name, args = message
            try:
                outbox.send(("reply", qid, True, calls[name](*args)))
            except DemoError as error:
                outbox.send(("reply", qid, False, error))
            except Exception as error:  # never leave the caller waiting
                outbox.send(("reply", qid, False, GenerationFailed("step_failed", kind=type(error).__name__,
                                                                   detail=str(error)[:200])))
        outbox.flush()


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the front end, which closes us
    conn = Connection(int(argv[0]))
    _, config = conn.recv()
    from gpt2demo.serving.local import LocalEngine
    from gpt2demo.threads import configure_threads

    configure_threads()
    outbox = Outbox(conn)
    engine = LocalEngine(config["spec"], config["device"], config["max_batch"], config["queue_size"],
                         config["precision"], flush=outbox.flush)
    outbox.engine = engine
    engine.start()
    threading.Thread(target=report_state, args=(engine, outbox), name="gpt2demo-engine-state", daemon=True).start()
    try:
        serve(conn, engine, outbox)
    finally:
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
