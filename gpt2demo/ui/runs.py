"""Which generation belongs to which browser tab, so Stop and a closed tab can end it.

The Stop button runs in its own event, so it cannot reach the generate call's
ticket directly; it finds it here by the tab's session. Cancelling the ticket
(rather than killing the task) lets the stream end with its 'stopped' step, so
the page can say why it stopped.
"""

from __future__ import annotations

import threading

from gpt2demo.scheduler import Ticket


class Run:
    """One generate call: its browser session and, once submitted, its ticket."""

    def __init__(self, session: str | None) -> None:
        self.session = session
        self.stop_requested = False  # Stop may come before the ticket exists (model still loading)
        self.ticket: Ticket | None = None

    def attach(self, ticket: Ticket) -> None:
        self.ticket = ticket
        if self.stop_requested:
            ticket.cancel()

    def stop(self) -> None:
        """End the run before its next token (idempotent; a finished run is unaffected)."""
        self.stop_requested = True
        if self.ticket is not None:
            self.ticket.cancel()


class Runs:
    """The runs in progress, by browser session."""

    def __init__(self) -> None:
        self._runs: set[Run] = set()
        self._lock = threading.Lock()  # Stop and unload may come from Gradio's worker threads

    def open(self, session: str | None) -> Run:
        run = Run(session)
        with self._lock:
            self._runs.add(run)
        return run

    def close(self, run: Run) -> None:
        """The run's handler ended, however it ended: make sure its generation stops too."""
        run.stop()
        with self._lock:
            self._runs.discard(run)

    def stop_session(self, session: str | None) -> int:
        """Stop every run of one browser tab; returns how many. Runs without a session are left alone."""
        if session is None:
            return 0
        with self._lock:
            runs = [run for run in self._runs if run.session == session]
        for run in runs:
            run.stop()
        return len(runs)

    def snapshot(self) -> list[Run]:
        """The runs in progress now."""
        with self._lock:
            return list(self._runs)

    def __len__(self) -> int:
        with self._lock:
            return len(self._runs)
