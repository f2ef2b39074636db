"""Keys and values of every layer for the rows of a batch, in memory that follows the live rows.

One block per kind, of which rows 0..rows-1 are live: a leaving row is replaced by
the last one, so a step never computes on empty rows. Its size follows what the
live rows need:

- rows grow only when a row joins and there is no free one, to the next multiple
  of ROW_STEP (at most ROW_STEP - 1 spare rows);
- positions grow only when the longest live row needs more, in steps of SEQ_CHUNK;
- when the batch empties the block is freed, and when it holds much more than
  the live rows need (SHRINK_SPARE_ROWS rows or SHRINK_SPARE_POSITIONS positions
  too many) it is copied into a block of the right size.

Positions come in pages of PAGE (16 positions of a head: 4 KB for GPT-2's 64 floats),
laid out one of two ways, chosen by the block's row count:

- a block of a few rows (fewer than PAGED_ROWS) keeps each row's head's positions
  together, (layers, rows, heads, positions, head_dim): a row alone attends with one
  product per layer over its (positions, head_dim) keys;
- a bigger block is page-major, (layers, pages, rows, heads, PAGE, head_dim): a batch's
  step reads each page of every live row and head as one unbroken run of memory. Kept
  row by row, a batch's keys are 384 runs (32 rows x 12 heads) separated by the spare
  positions each row's head has reserved; read right after the products have evicted
  them, the two attention products of a layer took 0.98 ms at 44 positions (32 rows,
  1 thread) and 0.64 ms page by page, because the prefetcher restarts at every run (the
  same runs without gaps: 0.57 ms; a gap of any size cost the whole difference).

GPT-2 small keeps 73.7 KB per row and position (12 layers x keys and values x 768
floats), so 32 rows x 1024 positions are 2.4 GB: a block that only ever grew would
keep one student's 1000-token request's memory for the life of the server.
"""

from __future__ import annotations

import math
import mmap

import torch

from gpt2demo.heap import return_freed_memory

ALIGNMENT = 64  # bytes a block starts aligned to, at least (a cache line, an AVX-512 vector): blocks are page-aligned mappings
SEQ_CHUNK = 128  # positions are reserved in steps of this many
ROW_STEP = 4  # rows are reserved in steps of this many
SHRINK_SPARE_ROWS = 8  # copy into a smaller block when this many rows are spare...
SHRINK_SPARE_POSITIONS = 2 * SEQ_CHUNK  # ...or this many positions beyond the longest row
PAGE = 16  # positions of a head stored together; SEQ_CHUNK is a multiple of it
PAGED_ROWS = 2 * ROW_STEP  # blocks of at least this many rows are page-major (see above)


def round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def untouched_zeros(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A zero tensor whose memory the OS fills only where it is first written (CPU).

    torch.zeros writes every byte at once, so a block's whole size is faulted in before
    the step that asked for it: 0.15 GB of keys and values for 32 rows of 128 positions of
    GPT-2 small (twice that with the staging cache), 0.1-0.5 s a block on a build machine
    whose page faults are slow, though a class's prompts fill only 12-25 of a row's 128
    positions. A fresh anonymous mapping is the OS's own zero pages, so only the positions
    the rows write are ever touched and count as the server's memory, and it goes back to
    the OS the moment the block is dropped. calloc (numpy.zeros) did that only the first
    time: once glibc has freed a mapped block, it serves the next one of that size (up to
    32 MB: 4 to 6 rows of GPT-2 small) from its heap, where calloc writes every byte. In
    the engine alone, 32 requests joining took 1.4-1.5 s to their first tokens with calloc'd
    blocks and 0.7-0.8 s with these. Small pages, asked for explicitly: a row's head writes
    one 4 KB page per 16 positions, while a 2 MB huge page would make 64 heads' worth
    resident at the first write. Page-aligned, so aligned for vector loads.
    """
    nbytes = dtype.itemsize * math.prod(shape)
    if nbytes == 0:
        return torch.zeros(shape, dtype=dtype)
    private = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
    memory = mmap.mmap(-1, nbytes, flags=private) if private else mmap.mmap(-1, nbytes)  # Windows: anonymous as is
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        memory.madvise(mmap.MADV_NOHUGEPAGE)
    return torch.frombuffer(memory, dtype=dtype).view(shape)  # keeps the mapping alive while the tensor lives


def pages_for(positions: int) -> int:
    return -(-positions // PAGE)


class KVCache:
    """Keys and values of every layer for `rows` sequences, each of its own length."""

    def __init__(self, n_layer: int, n_head: int, head_dim: int, dtype: torch.dtype, device: torch.device):
        self.n_layer, self.n_head, self.head_dim = n_layer, n_head, head_dim
        self.dtype, self.device = dtype, device
        self._keys = self._values = self._block(0, 0)
        self.lengths = torch.zeros(0, dtype=torch.long, device=device)  # (rows,) tokens cached per row

    def _block(self, rows: int, positions: int) -> torch.Tensor:
        # Zeros, not empty(): masked-out positions still enter the attention products, and
        # uninitialised memory can hold NaN, which a mask does not cancel (NaN * 0 = NaN).
        if rows >= PAGED_ROWS:
            shape = (self.n_layer, positions // PAGE, rows, self.n_head, PAGE, self.head_dim)
        else:
            shape = (self.n_layer, rows, self.n_head, positions, self.head_dim)
        if self.device.type == "cpu":
            return untouched_zeros(shape, self.dtype)
        return torch.zeros(shape, dtype=self.dtype, device=self.device)

    @staticmethod
    def _pages_view(block: torch.Tensor) -> torch.Tensor:
        """Either layout seen as (layers, rows, heads, pages, PAGE, head_dim), a view."""
        if block.dim() == 6:
            return block.permute(0, 2, 3, 1, 4, 5)
        layers, rows, heads, positions, head_dim = block.shape
        return block.view(layers, rows, heads, positions // PAGE, PAGE, head_dim)

    @property
    def paged(self) -> bool:
        """Whether the block is page-major: (pages, rows, heads, PAGE, head_dim) a layer."""
        return self._keys.dim() == 6

    @property
    def rows(self) -> int:
        return self.lengths.shape[0]

    @property
    def capacity(self) -> tuple[int, int]:
        """(rows, positions) the block holds now."""
        if self.paged:
            return self._keys.shape[2], self._keys.shape[1] * PAGE
        return self._keys.shape[1], self._keys.shape[3]

    @property
    def nbytes(self) -> int:
        return 2 * self._keys.numel() * self._keys.element_size()

    def keys(self, layer: int) -> torch.Tensor:
        """A layer's keys as stored: (capacity rows, heads, capacity positions, head_dim), or paged:
        (capacity pages, capacity rows, heads, PAGE, head_dim). Contiguous."""
        return self._keys[layer]

    def values(self, layer: int) -> torch.Tensor:
        return self._values[layer]

    def key_pages(self, layer: int) -> torch.Tensor:
        """A layer's keys as (capacity rows, heads, capacity pages, PAGE, head_dim) in either layout: a view."""
        return self._pages_view(self._keys)[layer]

    def value_pages(self, layer: int) -> torch.Tensor:
        return self._pages_view(self._values)[layer]

    def slots(self, rows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Where row rows[i]'s heads keep positions[i, t], as (n, T, heads) row indices of a layer's
        keys or values viewed as (-1, head_dim). Valid until the block is next resized."""
        heads = torch.arange(self.n_head, device=positions.device)
        capacity_rows, capacity_positions = self.capacity
        if self.paged:
            page, offset = positions // PAGE, positions % PAGE
            head_rows = (page * capacity_rows + rows[:, None]) * self.n_head  # (n, T)
            return (head_rows[:, :, None] + heads) * PAGE + offset[:, :, None]
        return (rows[:, None, None] * self.n_head + heads) * capacity_positions + positions[:, :, None]

    def position_slots(self, positions: torch.Tensor) -> torch.Tensor:
        """For positions (rows,), one per live row: slots() of every live row's head at it, (rows x heads,)."""
        rows = torch.arange(self.rows, device=positions.device)
        return self.slots(rows, positions[:, None]).reshape(-1)

    def gather(self, layer: int, rows: torch.Tensor, span: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Copies of rows' keys and values at positions 0..span-1: (n, heads, span, head_dim) each."""
        pages = pages_for(span)
        gathered = []
        for block in (self.key_pages(layer), self.value_pages(layer)):
            picked = block[:, :, :pages][rows]  # (n, heads, pages, PAGE, head_dim)
            gathered.append(picked.flatten(2, 3)[:, :, :span])
        return gathered[0], gathered[1]

    def longest(self) -> int:
        return int(self.lengths.max()) if self.rows else 0

    def reserve(self, rows: int, positions: int) -> None:
        """Make room for `rows` rows of `positions` tokens, keeping what is cached."""
        have_rows, have_positions = self.capacity
        if rows <= have_rows and positions <= have_positions:
            return
        self._resize(max(have_rows, round_up(rows, ROW_STEP)), max(have_positions, round_up(positions, SEQ_CHUNK)))

    def _resize(self, rows: int, positions: int) -> None:
        # Only the pages that hold a live row's tokens are copied: a copy of an untouched page
        # would make the new block's copy of it resident.
        keep_rows = min(self.rows, rows)
        keep_pages = min(pages_for(self.longest()), positions // PAGE)
        keys, values = self._block(rows, positions), self._block(rows, positions)
        for new, old in ((keys, self._keys), (values, self._values)):
            self._pages_view(new)[:, :keep_rows, :, :keep_pages] = self._pages_view(old)[:, :keep_rows, :, :keep_pages]
        self._keys, self._values = keys, values

    def _copy_row(self, row: int, source: KVCache, source_row: int, length: int) -> None:
        pages = pages_for(length)
        for mine, theirs in ((self._keys, source._keys), (self._values, source._values)):
            self._pages_view(mine)[:, row, :, :pages] = self._pages_view(theirs)[:, source_row, :, :pages]

    def add_row(self) -> int:
        """Append an empty row; return its index."""
        return self.add_rows(1)[0]

    def add_rows(self, count: int) -> list[int]:
        """Append `count` empty rows with one reservation; return their indices.

        One, not one per row: every reservation that grows the block copies it into new
        memory, and a class pressing Generate together joins 32 rows in one step (a new
        block every ROW_STEP rows took 0.1 s each at 32 rows on GPT-2 small).
        """
        first = self.rows
        if count:
            self.reserve(first + count, max(self.longest(), 1))
            self.lengths = torch.cat([self.lengths, self.lengths.new_zeros(count)])
        return list(range(first, first + count))

    def adopt_rows(self, other: KVCache, rows: list[int]) -> list[int]:
        """Append copies of `other`'s rows (prompts read in the staging cache), in order, with one reservation;
        return their indices here."""
        first = self.rows
        if not rows:
            return []
        used = [int(other.lengths[row]) for row in rows]
        self.reserve(first + len(rows), max(self.longest(), *used, 1))
        for new, (row, length) in enumerate(zip(rows, used), start=first):
            self._copy_row(new, other, row, length)
        self.lengths = torch.cat([self.lengths, other.lengths[rows]])
        return list(range(first, first + len(rows)))

    def remove_row(self, row: int, shrink: bool = True) -> None:
        """Drop a row by moving the last row into its place (the caller mirrors this move).

        shrink=False leaves the memory as it is, for a caller removing several rows
        that shrinks once after the last.
        """
        last = self.rows - 1
        if row != last:
            self._copy_row(row, self, last, int(self.lengths[last]))
            self.lengths[row] = self.lengths[last]
        self.lengths = self.lengths[:last].clone()
        if shrink:
            self.shrink()

    def shrink(self) -> None:
        """Give memory back: all of it when no row is left, else down to what the live rows need.

        A page-major block whose rows fit a small one is copied back too, so that a row left
        alone attends with its one product per layer again.
        """
        have_rows, have_positions = self.capacity
        if self.rows == 0:
            if have_rows or have_positions:
                self._keys = self._values = self._block(0, 0)
                return_freed_memory()
            return
        rows, positions = round_up(self.rows, ROW_STEP), round_up(self.longest() + 1, SEQ_CHUNK)
        relayout = self.paged and rows < PAGED_ROWS
        if relayout or have_rows - rows >= SHRINK_SPARE_ROWS or have_positions - positions >= SHRINK_SPARE_POSITIONS:
            self._resize(rows, positions)
            return_freed_memory()
