"""What every tab's handlers share: the engine, the runs (for Stop), and how the page is reachable."""

from __future__ import annotations

from dataclasses import dataclass, field

from gpt2demo.serving.interface import Engine
from gpt2demo.ui.runs import Runs


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
