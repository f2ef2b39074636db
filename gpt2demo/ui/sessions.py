"""What the teaching tabs keep for a browser tab between its clicks, bounded and given back.

The sampler's session and the Inside tab's token view live here, by browser session,
not in gr.State: Gradio keeps a closed tab's state for an hour, and any number of
tabs'. Here a tab's objects go when the tab closes (the page's unload event), after
IDLE_SECONDS without a click, or when the tab starts again; at most CAPACITY tabs are
held at once, and one more is told so in words (error "sessions") instead of
pushing out a class that is still working.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable

from gpt2demo.errors import EngineBusy

if TYPE_CHECKING:
    from gpt2demo.ui.views.export import Run

CAPACITY = 500  # browser tabs holding a sampler session or a token view at once
IDLE_SECONDS = 30 * 60  # a tab untouched this long is forgotten
RECENT_RUNS_TOKENS = 16_384  # tokens of the runs kept for downloads (~115 MB): ~160 runs of 100 tokens, 16 of 1024


class SessionStore:
    """Objects by (browser session, name), with the limits above."""

    def __init__(self, capacity: int = CAPACITY, idle_seconds: float = IDLE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity, self.idle_seconds, self.clock = capacity, idle_seconds, clock
        self._held: dict[str | None, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def put(self, session: str | None, name: str, value: Any) -> None:
        """Keep `value` for the tab; raises EngineBusy('sessions') when CAPACITY other tabs are busy."""
        with self._lock:
            now = self.clock()
            self._forget_idle(now)
            if session not in self._held and len(self._held) >= self.capacity:
                raise EngineBusy("sessions", limit=self.capacity)
            objects = self._held.get(session, (now, {}))[1]
            objects[name] = value
            self._held[session] = (now, objects)

    def get(self, session: str | None, name: str) -> Any:
        """The tab's object, or None (never made, closed, idle too long); a look counts as a click."""
        with self._lock:
            now = self.clock()
            self._forget_idle(now)
            held = self._held.get(session)
            if held is None:
                return None
            self._held[session] = (now, held[1])
            return held[1].get(name)

    def drop(self, session: str | None) -> None:
        """A closed tab: its objects go now."""
        with self._lock:
            self._held.pop(session, None)

    def _forget_idle(self, now: float) -> None:
        for session in [s for s, (last, _) in self._held.items() if now - last >= self.idle_seconds]:
            del self._held[session]

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)


class RecentRuns:
    """The last run of each browser session, for its Download buttons.

    Not in the session store: every /call/generate request has a session of its own, which
    would hold a place there for half an hour, until the teaching tabs refuse new pages.
    Here the oldest runs go instead, once all of them pass budget_tokens or one its
    idle_seconds: losing the download of a run long past is the smallest loss. Runs are
    kept as the engine's Steps (~1.5 KB a token with its 15 candidates, whose pieces are
    shared: pieces.shared_piece; 7.6 KB before) and written as a file
    only when one is asked for: writing every run as it ends would cost the event loop
    ~0.1 ms a token (100 ms for a 1024-token run), while other streams wait.
    """

    def __init__(self, budget_tokens: int = RECENT_RUNS_TOKENS, idle_seconds: float = IDLE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.budget_tokens, self.idle_seconds, self.clock = budget_tokens, idle_seconds, clock
        self._runs: OrderedDict[str, tuple[float, Run]] = OrderedDict()  # oldest first
        self._tokens = 0
        self._lock = threading.Lock()  # handlers run on Gradio's worker threads and its event loop

    def put(self, session: str | None, run: Run) -> None:
        """Keep the session's newest run (a session of None, no page's, is not kept)."""
        if session is None:
            return
        with self._lock:
            now = self.clock()
            self._forget(session)
            self._runs[session] = (now, run)
            self._tokens += len(run.steps)
            for oldest, (kept_at, _) in list(self._runs.items()):
                if self._tokens <= self.budget_tokens and now - kept_at < self.idle_seconds:
                    break
                self._forget(oldest)

    def get(self, session: str | None) -> Run | None:
        """The session's last run; None when there is none (any more)."""
        with self._lock:
            held = self._runs.get(session)
            if held is None or self.clock() - held[0] >= self.idle_seconds:
                return None
            return held[1]

    def drop(self, session: str | None) -> None:
        """A closed tab's run goes at once."""
        with self._lock:
            self._forget(session)

    def _forget(self, session: str | None) -> None:
        held = self._runs.pop(session, None)
        if held is not None:
            self._tokens -= len(held[1].steps)

    def __len__(self) -> int:
        with self._lock:
            return len(self._runs)
