"""How many math threads torch may use: chosen for a machine that is doing other things too.

Decoding multiplies a few rows by every weight matrix; torch splits each product
over its intra-op threads and waits at a barrier for the slowest. When any one of
them is descheduled (the web server answering, a browser drawing the page, another
program), every product waits for it. Measured on the 2-core build machine with
GPT-2 small shapes (bench/contention.py prints them; README, "Threads", has them).
"""

from __future__ import annotations

import os

ENV_OVERRIDE = "GPT2DEMO_THREADS"


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def choose_threads(cores: int) -> int:
    """Leave one core to everything else (the web server, the page, other programs) when there are several."""
    return max(1, cores - 1)


def configure_threads(cores: int | None = None) -> int:
    """Set torch's intra-op threads by choose_threads() ($GPT2DEMO_THREADS overrides); returns the count."""
    import torch

    override = os.environ.get(ENV_OVERRIDE, "").strip()
    count = int(override) if override.isdigit() and int(override) > 0 else choose_threads(cores or usable_cores())
    torch.set_num_threads(count)
    return count
