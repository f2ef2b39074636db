"""What every tab's handlers share: the engine, the runs (for Stop), and how the page is reachable."""

from __future__ import annotations

from dataclasses import dataclass, field

import gradio as gr

from gpt2demo.serving.interface import Engine
from gpt2demo.ui.runs import Runs, session_of
from gpt2demo.ui.sessions import RecentRuns, SessionStore


@dataclass
class Exposure:
    """How the server is reachable; filled in by the launcher, read by the page."""

    share_requested: bool = False
    has_auth: bool = False
    local_url: str = ""
    share_url: str | None = None  # None after launch when the tunnel could not be made

    @property
    def share_failed(self) -> bool:
        return self.share_requested and bool(self.local_url) and not self.share_url


@dataclass
class PageContext:
    """Handed to every tab when the page is built; tabs use nothing else of the server."""

    engine: Engine
    exposure: Exposure = field(default_factory=Exposure)
    runs: Runs = field(default_factory=Runs)
    sessions: SessionStore = field(default_factory=SessionStore)
    recent_runs: RecentRuns = field(default_factory=RecentRuns)  # each tab's last Generate run, for its downloads

    def close_page(self, request: gr.Request) -> None:
        """A closed tab: its runs stop and what it held goes, at once."""
        self.runs.close_page(request)
        self.sessions.drop(session_of(request))
        self.recent_runs.drop(session_of(request))
