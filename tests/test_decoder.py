"""The decoder's forward passes over either cache layout give each row what it gets alone."""

from __future__ import annotations

import copy

import torch

from gpt2demo.decoder import GPT2Decoder
from gpt2demo.kvcache import PAGE, PAGED_ROWS

from conftest import TUTORIAL_IDS

# Nine prompts of 1 to 41 tokens: rows ending inside the first page, on a page's edge and beyond.
PROMPTS = [TUTORIAL_IDS[:1], TUTORIAL_IDS, TUTORIAL_IDS + TUTORIAL_IDS[:4], (TUTORIAL_IDS * 4)[:PAGE - 1],
           (TUTORIAL_IDS * 4)[:PAGE], (TUTORIAL_IDS * 4)[:PAGE + 1], (TUTORIAL_IDS * 4)[:2 * PAGE],
           (TUTORIAL_IDS * 4)[:33], (TUTORIAL_IDS * 4)[:41]]
NEXT = [464, 11, 257, 13, 198, 290, 318, 262, 373]  # each row's next token


def alone(decoder, prompt: list[int], steps: list[int]) -> list[torch.Tensor]:
    """Logits of a row alone: its prompt, then `steps` fed one at a time."""
    cache = decoder.new_cache()
    cache.add_row()
    logits = [decoder.prefill(cache, [0], [prompt])[0]]
    for token in steps:
        assert not cache.paged
        logits.append(decoder.decode(cache, torch.tensor([token]))[0])
    return logits


def test_a_page_major_batch_gives_every_row_its_logits_alone(tiny_model):
    decoder = tiny_model.decoder
    cache = decoder.new_cache()
    rows = cache.add_rows(len(PROMPTS))
    assert cache.paged and len(PROMPTS) >= PAGED_ROWS
    # Prompts read in two chunks: the second pass attends over keys the first left in the cache.
    first = decoder.extend(cache, rows, [prompt[: len(prompt) // 2 + 1] for prompt in PROMPTS])
    assert first.shape == (len(PROMPTS), tiny_model.vocab_size)
    rest = [(row, prompt[len(prompt) // 2 + 1 :]) for row, prompt in zip(rows, PROMPTS) if len(prompt) > 1]
    read = decoder.extend(cache, [row for row, _ in rest], [chunk for _, chunk in rest])
    batch = [first[0]] + list(read)
    assert cache.lengths.tolist() == [len(prompt) for prompt in PROMPTS]
    steps = [decoder.decode(cache, torch.tensor(NEXT)), decoder.decode(cache, torch.tensor(NEXT[::-1]))]
    for row, prompt in enumerate(PROMPTS):
        expected = alone(decoder, prompt, [NEXT[row], NEXT[::-1][row]])
        got = [batch[row], steps[0][row], steps[1][row]]
        for mine, theirs in zip(got, expected):
            assert torch.allclose(mine, theirs, atol=1e-6, rtol=0), (row, float((mine - theirs).abs().max()))


def test_a_batch_below_the_paged_size_and_a_row_left_alone_in_a_page_major_block_agree_too(tiny_model):
    decoder = tiny_model.decoder
    cache = decoder.new_cache()
    rows = cache.add_rows(PAGED_ROWS)
    assert cache.paged
    decoder.extend(cache, rows, [PROMPTS[index] for index in range(PAGED_ROWS)])
    for _ in range(PAGED_ROWS - 1):
        cache.remove_row(0, shrink=False)  # the block stays page-major: a row alone in it
    assert cache.paged and cache.rows == 1
    kept = PROMPTS[1]  # row 0 took the last row's place each time (7, 6, ..., 2), then row 1 was left
    got = decoder.decode(cache, torch.tensor([NEXT[0]]))[0]
    assert torch.allclose(got, alone(decoder, kept, [NEXT[0]])[1], atol=1e-6, rtol=0)
    cache.shrink()
    assert not cache.paged and cache.lengths.tolist() == [len(kept) + 1]


def test_in_bfloat16_as_on_cuda_a_row_alone_and_a_batch_give_transformers_own_logits(tiny_model):
    # The CUDA path (bfloat16, addmm) run on the CPU: every product, cache write and attention
    # in bfloat16, a row alone and a page-major batch, against transformers' own forward.
    model = copy.deepcopy(tiny_model.model).to(torch.bfloat16)
    decoder = GPT2Decoder(model)
    assert decoder.precision == "bfloat16" and decoder.new_cache().dtype == torch.bfloat16
    with torch.no_grad():
        expected = [model(torch.tensor([prompt + [token]])).logits[0, -1].float() for prompt, token in zip(PROMPTS, NEXT)]
    for row, prompt in enumerate(PROMPTS):
        got = alone(decoder, prompt, [NEXT[row]])[1].float()
        assert got.dtype == torch.float32 and torch.allclose(got, expected[row], atol=0.1, rtol=0.02), row
    cache = decoder.new_cache()
    rows = cache.add_rows(len(PROMPTS))
    assert cache.paged
    decoder.extend(cache, rows, PROMPTS)
    batch = decoder.decode(cache, torch.tensor(NEXT)).float()
    for row in rows:
        assert torch.allclose(batch[row], expected[row], atol=0.1, rtol=0.02), row
