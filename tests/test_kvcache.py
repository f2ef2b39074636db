"""The KV cache's memory follows the live rows: grows only as needed, shrinks when rows leave; big blocks are page-major."""

import os

import pytest
import torch

from gpt2demo.kvcache import ALIGNMENT, PAGE, PAGED_ROWS, ROW_STEP, SEQ_CHUNK, KVCache, untouched_zeros


def new_cache() -> KVCache:
    return KVCache(n_layer=2, n_head=2, head_dim=4, dtype=torch.float32, device=torch.device("cpu"))


def test_rows_grow_by_a_small_step_and_positions_by_chunks_never_both_at_once():
    cache = new_cache()
    cache.add_row()
    assert cache.capacity == (ROW_STEP, SEQ_CHUNK)
    cache.reserve(1, 1000)  # one long row: positions grow, rows do not
    assert cache.capacity == (ROW_STEP, 1024)
    for _ in range(ROW_STEP):
        cache.add_row()
    assert cache.capacity == (2 * ROW_STEP, 1024)


def test_a_row_moved_into_a_hole_keeps_its_keys_and_an_adopted_row_is_copied_whole():
    cache = new_cache()
    for row in range(3):
        cache.add_row()
        cache.reserve(3, 5)
        cache.keys(0)[row, :, :5] = row + 1
        cache.lengths[row] = 5
    cache.remove_row(0)  # the last row moves into row 0
    assert cache.rows == 2 and torch.all(cache.keys(0)[0, :, :5] == 3) and torch.all(cache.keys(0)[1, :, :5] == 2)
    other = new_cache()
    other.add_row()
    other.reserve(1, 7)
    other.values(1)[0, :, :7] = 9
    other.lengths[0] = 7
    assert cache.adopt_rows(other, [0]) == [2]
    assert int(cache.lengths[2]) == 7 and torch.all(cache.values(1)[2, :, :7] == 9)


def test_position_slots_name_each_rows_head_at_its_position_in_the_flat_layer():
    cache = new_cache()
    cache.add_rows(3)
    rows, positions = cache.capacity
    slots = cache.position_slots(torch.tensor([0, 5, 9]))
    # Row r, head h, position p sits at (r * heads + h) * positions + p.
    assert slots.tolist() == [0, positions, 2 * positions + 5, 3 * positions + 5, 4 * positions + 9, 5 * positions + 9]
    flat = cache.keys(1).view(-1, 4)
    flat.index_copy_(0, slots, torch.arange(1.0, 25.0).view(6, 4))  # no zero: every write shows
    assert cache.keys(1)[2, 1, 9].tolist() == [21.0, 22.0, 23.0, 24.0]
    assert cache.keys(1)[1, 0, 5].tolist() == [9.0, 10.0, 11.0, 12.0]
    assert int((cache.keys(1) != 0).sum()) == 24 and rows == ROW_STEP


def test_paged_slots_name_each_rows_head_at_its_page_and_place_in_it():
    cache = new_cache()
    cache.add_rows(PAGED_ROWS + 1)  # 9 rows: a block of 12, page-major
    rows, positions = cache.capacity
    assert cache.paged and rows == 12 and cache.keys(1).shape == (positions // PAGE, rows, 2, PAGE, 4)
    slots = cache.slots(torch.tensor([0, 7]), torch.tensor([[3, 17], [16, 40]]))  # (n, T, heads)
    # Row r, head h, position p sits at ((p // PAGE * rows + r) * heads + h) * PAGE + p % PAGE.
    assert slots.tolist() == [[[3, 19], [(1 * 12 * 2) * 16 + 1, (1 * 12 * 2 + 1) * 16 + 1]],
                              [[(12 * 2 + 14) * 16, (12 * 2 + 15) * 16], [(2 * 24 + 14) * 16 + 8, (2 * 24 + 15) * 16 + 8]]]
    flat = cache.keys(1).view(-1, 4)
    flat.index_copy_(0, slots.reshape(-1), torch.arange(1.0, 33.0).view(8, 4))
    assert cache.key_pages(1)[7, 1, 2, 8].tolist() == [29.0, 30.0, 31.0, 32.0]  # row 7, head 1, position 40
    assert cache.key_pages(1)[0, 0, 1, 1].tolist() == [9.0, 10.0, 11.0, 12.0]  # row 0, head 0, position 17
    assert int((cache.keys(1) != 0).sum()) == 32
    assert cache.position_slots(torch.arange(9)).tolist() == cache.slots(torch.arange(9), torch.arange(9)[:, None]).reshape(-1).tolist()


def marked_rows(cache: KVCache, rows: int, length: int) -> None:
    """Give rows 0..rows-1 `length` positions whose every key and value names its row, head and position."""
    cache.reserve(rows, length)
    heads, positions = torch.arange(2), torch.arange(length)
    for row in range(rows):
        mark = row * 1000 + heads[:, None] * 100 + positions  # (heads, positions)
        for layer in range(2):
            for pages in (cache.key_pages(layer), cache.value_pages(layer)):
                pages[row].flatten(1, 2)[:, :length] = mark[:, :, None].float() + layer * 0.5
        cache.lengths[row] = length


def assert_marked(cache: KVCache, rows: list[int], length: int) -> None:
    heads, positions = torch.arange(2), torch.arange(length)
    for here, row in enumerate(rows):
        mark = row * 1000 + heads[:, None] * 100 + positions
        for layer in range(2):
            keys, values = cache.gather(layer, torch.tensor([here]), length)  # (1, heads, length, head_dim)
            expected = (mark[:, :, None].float() + layer * 0.5).expand(2, length, 4)
            assert torch.equal(keys[0], expected) and torch.equal(values[0], expected)


def test_rows_keep_their_keys_when_the_block_becomes_page_major_and_back():
    cache = new_cache()
    cache.add_rows(4)
    assert not cache.paged and cache.capacity == (4, SEQ_CHUNK)
    marked_rows(cache, 4, 37)
    cache.add_rows(5)  # 9 rows: copied into a page-major block of 12
    assert cache.paged and cache.capacity == (12, SEQ_CHUNK)
    assert_marked(cache, [0, 1, 2, 3], 37)
    for _ in range(6):
        cache.remove_row(0)  # the last row moves into row 0 each time: 8, 7, 6, 5, 4 (all empty), then 3
    assert not cache.paged and cache.capacity == (4, SEQ_CHUNK)  # row by row again, for a row alone's one product
    assert cache.lengths.tolist() == [37, 37, 37]
    assert_marked(cache, [3, 1, 2], 37)


def test_memory_goes_back_when_the_batch_empties_or_holds_much_more_than_its_rows_need():
    cache = new_cache()
    for _ in range(16):
        cache.add_row()
    cache.reserve(16, 900)
    cache.lengths[:] = 10
    cache.lengths[0] = 900
    assert cache.capacity == (16, 1024)
    cache.remove_row(0)  # the long row leaves: positions shrink to what the others need
    assert cache.capacity == (16, SEQ_CHUNK)
    for _ in range(10):
        cache.remove_row(0)
    assert cache.capacity == (8, SEQ_CHUNK)  # 5 rows left: 8 = 5 rounded up to the row step
    while cache.rows:
        cache.remove_row(0)
    assert cache.capacity == (0, 0) and cache.nbytes == 0


def test_rows_added_or_adopted_together_come_in_order_with_their_keys():
    cache = new_cache()
    assert cache.add_rows(0) == [] and cache.capacity == (0, 0)
    assert cache.add_rows(9) == list(range(9))
    assert cache.rows == 9 and cache.capacity == (12, SEQ_CHUNK)  # 9 rounded up to the row step, at once
    assert torch.equal(cache.lengths, torch.zeros(9, dtype=torch.long))
    staging = new_cache()
    staging.add_rows(3)
    staging.reserve(3, 6)
    for row in range(3):
        staging.keys(1)[row, :, : row + 2] = 10 + row
        staging.lengths[row] = row + 2
    assert cache.adopt_rows(staging, [2, 0]) == [9, 10]
    assert cache.lengths.tolist() == [0] * 9 + [4, 2]
    assert cache.paged  # 11 rows, copied in from a staging block kept row by row
    adopted = cache.key_pages(1)[9:11].flatten(2, 3)  # (2, heads, positions, head_dim)
    assert torch.all(adopted[0, :, :4] == 12) and torch.all(adopted[1, :, :2] == 10)
    assert cache.adopt_rows(staging, []) == [] and cache.rows == 11


def test_removing_rows_without_shrinking_keeps_the_block_until_shrink_is_asked():
    cache = new_cache()
    cache.add_rows(16)
    for _ in range(12):
        cache.remove_row(0, shrink=False)
    assert cache.rows == 4 and cache.capacity == (16, SEQ_CHUNK)
    cache.shrink()
    assert cache.capacity == (ROW_STEP, SEQ_CHUNK)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_a_block_is_zeros_of_its_shape_and_type_aligned_and_writable(dtype):
    block = untouched_zeros((2, 3, 5, 7), dtype)
    assert block.shape == (2, 3, 5, 7) and block.dtype == dtype and block.is_contiguous()
    assert block.data_ptr() % ALIGNMENT == 0
    assert torch.equal(block, torch.zeros(2, 3, 5, 7, dtype=dtype))
    block[1, 2, 4, 6] = 3
    assert float(block.sum()) == 3.0 and float(block[1, 2, 4, 6]) == 3.0


def test_a_new_cache_row_reads_zeros_beyond_what_was_written():
    cache = new_cache()
    cache.add_row()
    cache.reserve(1, 3)
    cache.keys(1)[0, :, :3] = 1.0
    assert torch.equal(cache.keys(1)[0, :, 3:], torch.zeros(2, SEQ_CHUNK - 3, 4))
    assert torch.equal(cache.values(1), torch.zeros_like(cache.values(1)))


def resident_bytes() -> int:
    """This process's resident memory, from /proc (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads /proc")
def test_a_reserved_block_costs_memory_only_where_rows_are_written():
    # GPT-2 small's shapes: 32 rows of 128 positions reserve 2 x 75.5 MB, but a class's
    # prompts fill a few positions of each; a block written whole at reservation (torch.zeros)
    # made the server's RSS and first step pay for all of it.
    cache = KVCache(n_layer=12, n_head=12, head_dim=64, dtype=torch.float32, device=torch.device("cpu"))
    before = resident_bytes()
    cache.add_rows(32)
    assert cache.nbytes == 2 * 12 * 32 * 12 * SEQ_CHUNK * 64 * 4
    assert cache.paged
    cache.key_pages(0)[:, :, 0, 0] = 1.0  # one position of every row's head in one layer: 32 x 12 pages of 4 KB
    grown = resident_bytes() - before
    assert grown < cache.nbytes // 20, f"{grown} bytes resident of a {cache.nbytes}-byte block"


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads /proc")
def test_a_block_is_untouched_again_after_the_last_one_was_freed():
    # 4 rows of GPT-2 small: 2 x 18.9 MB. glibc maps an allocation that size on its own, but
    # once such a mapping is freed it serves the next one of that size from its heap, and
    # calloc then writes zeros over every byte: every later class's first step paid for them.
    cache = KVCache(n_layer=12, n_head=12, head_dim=64, dtype=torch.float32, device=torch.device("cpu"))
    for _ in range(3):
        before = resident_bytes()
        cache.add_rows(ROW_STEP)
        cache.keys(0)[:, :, 0] = 1.0  # one position of every row in one layer: 4 x 12 pages of 4 KB
        grown = resident_bytes() - before
        assert grown < cache.nbytes // 20, f"{grown} bytes resident of a {cache.nbytes}-byte block"
        for row in reversed(range(ROW_STEP)):
            cache.remove_row(row)
        assert cache.capacity == (0, 0)
