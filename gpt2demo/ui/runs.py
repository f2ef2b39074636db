"""The one Stop mechanism of every tab: which runs belong to which browser tab and page.

A streaming handler opens a Run for its tab and attaches the tickets it submits;
the tab's Stop button stops the runs of that tab in that browser session, and a
closed page stops all of its runs. A run is stopped again (harmlessly) when its
handler ends, however it ends, so nothing keeps computing for a page that is gone.
"""

from __future__ import annotations

import threading

import gradio as gr

from gpt2demo.serving.tickets import Ticket


def session_of(request: gr.Request | None) -> str | None:
    return getattr(request, "session_hash", None)


class Run:
    """One handler's work: its tab, its tickets, and whether Stop was pressed."""

    def __init__(self, session: str | None, tab: str) -> None:
        self.session, self.tab = session, tab
        self.stop_requested = False  # Stop may come before any ticket exists (the model still loading)
        self.tickets: list[Ticket] = []

    def attach(self, ticket: Ticket) -> Ticket:
        self.tickets.append(ticket)
        if self.stop_requested:
            ticket.cancel()
        return ticket

    def stop(self) -> None:
        """End the run's requests before their next token (idempotent; finished ones are unaffected)."""
        self.stop_requested = True
        for ticket in list(self.tickets):
            ticket.cancel()


class Runs:
    """The runs in progress, by browser session and tab."""

    def __init__(self) -> None:
        self._runs: set[Run] = set()
        self._lock = threading.Lock()  # Stop and unload come from Gradio's worker threads

    def open(self, request: gr.Request | None, tab: str) -> Run:
        run = Run(session_of(request), tab)
        with self._lock:
            self._runs.add(run)
        return run

    def close(self, run: Run) -> None:
        """The run's handler ended, however it ended: make sure its requests stop too."""
        run.stop()
        with self._lock:
            self._runs.discard(run)

    def stop(self, session: str | None, tab: str | None = None) -> int:
        """Stop one tab's runs of a browser session (every tab's when tab is None); returns how many."""
        if session is None:
            return 0
        with self._lock:
            runs = [run for run in self._runs if run.session == session and tab in (None, run.tab)]
        for run in runs:
            run.stop()
        return len(runs)

    def stop_button(self, tab: str):
        """The handler of `tab`'s Stop button."""

        def stop(request: gr.Request) -> None:
            self.stop(session_of(request), tab)

        stop.__name__ = f"stop_{tab}"
        return stop

    def close_page(self, request: gr.Request) -> None:
        """A closed page: every run of its session stops at once."""
        self.stop(session_of(request))

    def __len__(self) -> int:
        with self._lock:
            return len(self._runs)
