"""The one model and Scheduler that every visitor shares, loaded in the background at launch.

Loading starts when the app starts, not at the first click, so the model is
usually ready before anyone asks. A request that comes earlier waits for the
same load, and sees its progress: the loader's tqdm bars (download, weights)
print on the console as usual, and the waiting request mirrors the newest one
into the page. gr.Progress(track_tqdm=True) cannot do this, because it only
tracks bars created inside the handler's own call.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Callable

from gpt2demo.engine import LoadedModel, load_model, pick_device
from gpt2demo.scheduler import DEFAULT_MAX_BATCH, DEFAULT_QUEUE_SIZE, Scheduler, SchedulerStats
from gpt2demo.sources import ModelSourceError

WAIT_TICK_SECONDS = 0.25  # how often a waiting request refreshes the loading progress


@dataclass(frozen=True)
class LoadingProgress:
    """The newest live progress bar of the process, as tqdm shows it on the console."""

    desc: str
    done: float
    total: float | None  # None when tqdm does not know the total


def loading_progress() -> LoadingProgress | None:
    """The most recently started tqdm bar that is still open, or None."""
    from tqdm import tqdm

    with tqdm.get_lock():  # the loader thread adds and removes bars while we look
        bars = [bar for bar in list(getattr(tqdm, "_instances", ())) if not getattr(bar, "disable", False)]
    if not bars:
        return None
    bar = max(bars, key=lambda b: getattr(b, "start_t", 0.0))
    return LoadingProgress(desc=str(bar.desc or "").rstrip(": "), done=float(bar.n), total=bar.total)


class ModelService:
    """Loads the model once, in a background thread, and owns the Scheduler every request uses."""

    def __init__(
        self,
        spec: str = "gpt2",
        device: str | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        loader: Callable[[str, str], LoadedModel] = load_model,
    ) -> None:
        self.spec = spec
        self.device = str(pick_device(device))
        self.max_batch = max_batch
        self.queue_size = queue_size
        self.ready = threading.Event()  # set when loading ended, with a model or an error
        self.model: LoadedModel | None = None
        self.scheduler: Scheduler | None = None
        self.error = ""  # why loading failed, for the page and for every request
        self._loader = loader  # tests pass a slow or failing one
        self._thread = threading.Thread(target=self._load, name="gpt2demo-model-loader", daemon=True)

    def start(self) -> ModelService:
        """Begin loading in the background; returns at once."""
        self._thread.start()
        return self

    def _load(self) -> None:
        print(f"[gpt2demo] loading model {self.spec!r} on {self.device} ...", flush=True)
        try:
            model = self._loader(self.spec, self.device)
            model.token_texts  # built once (~1 s for GPT-2's vocabulary): not on the first visitor's clock
            self.scheduler = Scheduler(model, self.max_batch, self.queue_size)
            self.model = model
            facts = model.describe()
            print(f"[gpt2demo] model ready: {facts['name']} ({facts['kind']}), {facts['parameters']:,} parameters, "
                  f"{facts['device']}, loaded in {facts['load_seconds']} s", flush=True)
        except Exception as error:  # the page must say why, never leave requests waiting forever
            self.error = str(error) if isinstance(error, ModelSourceError) else f"{type(error).__name__}: {error}"
            print(f"[gpt2demo] the model could not be loaded: {self.error}", flush=True)
        finally:
            self.ready.set()

    async def wait(self, report: Callable[[LoadingProgress | None], None], should_stop: Callable[[], bool]) -> bool:
        """Wait for loading to end, reporting progress; False if should_stop() turned true first."""
        while not self.ready.is_set():
            if should_stop():
                return False
            report(loading_progress())
            await asyncio.sleep(WAIT_TICK_SECONDS)
        return True

    def stats(self) -> SchedulerStats:
        """Requests running and waiting; zero while the model loads."""
        return self.scheduler.stats() if self.scheduler else SchedulerStats(running=0, waiting=0)

    def close(self) -> None:
        """Stop the scheduler thread (requests still running end with an error)."""
        if self.scheduler:
            self.scheduler.close()
