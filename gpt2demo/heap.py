"""How this process's C heap (glibc's malloc) keeps freed memory for reuse and gives it back.

Every tensor on the CPU is malloc'd and freed again within a step; what glibc does
with the freed memory decides whether the next step writes into pages already in
place or has the OS fault in fresh zeroed ones (about 1 us a 4 KB page here).

glibc's default rule adapts: a block at least the "mmap threshold" (128 KB at start)
gets a mapping of its own, returned to the OS when freed; freeing one raises the
threshold to its size, up to 32 MB, and the "trim threshold" to twice that, beyond
which free memory at the top of the heap goes back to the OS. Where the threshold
settles depends on which blocks happened to be freed first. A 32-row int8 decode
step of GPT-2 small has three logits-sized (32 x 50257 floats, 6.4 MB) temporaries:
in a class's run the thresholds settled just above one of them, the three together
overflowed the trim threshold, and every step faulted their 4,700 pages in again
(10-16 ms of a 55-75 ms step here). Setting the thresholds where the adaptive rule
ends up anyway makes that the state from the start.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

# mallopt's parameter numbers (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc's ceiling for its adaptive mmap threshold (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit):
# blocks below it come from the heap and are reused; larger ones (a KV cache block is mapped
# by kvcache.py itself) still get mappings of their own.
REUSE_BELOW_BYTES = 32 * 2**20
# Twice that, as the adaptive rule sets it: free memory at the heap's top beyond this goes back.
TRIM_ABOVE_BYTES = 2 * REUSE_BELOW_BYTES


@functools.cache  # find_library runs `ldconfig -p`: once a process, not at every shrink of the cache
def _glibc():
    """glibc, or None where the C library is another (macOS, Windows, musl)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def reuse_freed_blocks() -> bool:
    """Fix glibc's thresholds where its adaptive rule ends up (see above); return whether they were set.

    Process-wide and idempotent: every model load calls it.
    """
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, REUSE_BELOW_BYTES)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_ABOVE_BYTES))


def return_freed_memory() -> None:
    """Ask glibc to hand all freed heap memory back to the OS (a no-op elsewhere).

    Blocks with mappings of their own go back by themselves; those below
    REUSE_BELOW_BYTES stay in the heap for the next step and would count as the
    server's memory after the batch has emptied.
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
