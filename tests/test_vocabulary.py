"""A row alone's screened vocabulary product: the largest logits are float32's, the rest stay below them."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from gpt2demo.decoder import GPT2Decoder
from gpt2demo.generation import NUM_CANDIDATES, generate_text
from gpt2demo.sampling import exact_top
from gpt2demo.settings import SamplingSettings
from gpt2demo.vocabulary import MAX_EXACT, NEAR_ROWS, ScreenedVocabulary, kernel_agrees, screen_for

from conftest import TUTORIAL_PROMPT

VOCAB = 50257  # GPT-2's
WIDTH = 96


def random_matrix(seed: int, scale: float = 0.3) -> torch.Tensor:
    return torch.randn(VOCAB, WIDTH, generator=torch.Generator().manual_seed(seed)) * scale


def random_row(seed: int, scale: float = 3.0) -> torch.Tensor:
    return torch.randn(1, WIDTH, generator=torch.Generator().manual_seed(seed)) * scale


def assert_exact_top(got: torch.Tensor, exact: torch.Tensor, count: int) -> None:
    """got's `count` largest are exact's, same ids in the same order, float32 values; every other logit below them."""
    got_top, exact_top_ = torch.topk(got[0], count), torch.topk(exact[0], count)
    assert got_top.indices.tolist() == exact_top_.indices.tolist()
    assert torch.allclose(got_top.values, exact_top_.values, rtol=1e-6, atol=1e-6)
    others = torch.ones(VOCAB, dtype=torch.bool)
    others[exact_top_.indices] = False
    assert float(got[0][others].max()) < float(exact_top_.values[-1])


def gpt2_like(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows sharing a common part that puts every logit near -100, as GPT-2's sit far below zero."""
    weight, hidden = random_matrix(seed, scale=0.1), random_row(100 + seed)
    weight += hidden[0] / hidden[0].norm() ** 2 * -100.0
    return weight, hidden


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("count", [11, NUM_CANDIDATES + 1, 41])
@pytest.mark.parametrize("make", [lambda seed: (random_matrix(seed), random_row(100 + seed)), gpt2_like],
                         ids=["centred", "offset"])
def test_the_largest_logits_are_float32s_and_the_others_stay_below_them(seed, count, make):
    weight, hidden = make(seed)
    screen = ScreenedVocabulary(weight)
    exact = hidden @ weight.t()
    for step in range(2):  # the second step's product is offset by the first's K-th largest logit
        got = screen.logits(hidden, count)
        assert got.shape == (1, VOCAB) and got.dtype == torch.float32
        assert_exact_top(got, exact, count)
        # The other logits come from float16: the probabilities shown move by far less than their last digit.
        shown = torch.topk(exact[0], count).indices
        moved = (got.softmax(-1)[0, shown] / exact.softmax(-1)[0, shown] - 1).abs().max()
        assert float(moved) < 1e-3, step
    # Tight enough to pay: a few hundred rows at most are read in float32.
    assert dict(screen.outcomes) == {"screened": 2} and count <= min(screen.recomputed) <= max(screen.recomputed) <= NEAR_ROWS


def test_near_ties_at_the_cut_are_all_read_in_float32():
    # 1500 rows that give nearly the same logit, within float16's rounding of each other, at the top.
    weight, hidden = random_matrix(7), random_row(8)
    generator = torch.Generator().manual_seed(9)
    direction = hidden[0] / hidden[0].norm() * 2.0
    weight[:1500] = direction + torch.randn(1500, WIDTH, generator=generator) * 1e-5
    screen = ScreenedVocabulary(weight)
    got = screen.logits(hidden, NUM_CANDIDATES + 1)
    assert_exact_top(got, hidden @ weight.t(), NUM_CANDIDATES + 1)
    assert max(screen.recomputed) >= 1500


def test_too_many_near_ties_or_an_overflow_leave_the_row_to_the_full_product():
    weight, hidden = random_matrix(7), random_row(8)
    weight[: MAX_EXACT + 1] = hidden[0] / hidden[0].norm() * 2.0  # MAX_EXACT + 1 equal top logits
    screen = ScreenedVocabulary(weight)
    assert screen.logits(hidden, 16) is None
    assert screen.logits(random_row(8, scale=1e5), 16) is None  # float16 cannot hold it
    assert screen.logits(torch.full((1, WIDTH), float("nan")), 16) is None
    assert screen.logits(hidden, 0) is None and screen.logits(hidden, VOCAB) is None
    assert dict(screen.outcomes) == {"many": 1, "overflow": 2, "top": 2}


def test_this_pytorch_adds_float16_products_in_float32_and_small_or_other_matrices_get_no_screen():
    assert kernel_agrees()
    full = lambda hidden: hidden @ weight.t()  # noqa: E731
    weight = torch.randn(4096, 256)  # 4 MB: the caches hold it
    assert screen_for(weight, full) is None
    weight = random_matrix(0).bfloat16()
    assert screen_for(weight, full) is None


@pytest.mark.parametrize("settings, expected", [
    ([SamplingSettings(top_k=10)], NUM_CANDIDATES + 1),
    ([SamplingSettings(top_k=10), SamplingSettings(top_k=40, greedy=True), SamplingSettings(top_k=3)], 41),
    ([SamplingSettings(top_k=0, greedy=True)], NUM_CANDIDATES + 1),
    ([SamplingSettings(top_k=10), SamplingSettings(top_k=0, top_p=0.9)], None),  # top-p alone weighs every token
    ([SamplingSettings(top_k=VOCAB)], None),  # no cut either
    ([SamplingSettings(top_k=10, repetition_penalty=1.2)], None),
    ([], None),
])
def test_exact_top_counts_what_the_picks_read_one_by_one(settings, expected):
    assert exact_top(settings, NUM_CANDIDATES, VOCAB) == expected


@pytest.fixture(scope="module")
def screened_model(tiny_model):
    """The tiny model with a screen its 13 MB matrix would not get by itself: a row alone's logits screened."""
    decoder = GPT2Decoder(tiny_model.model)
    decoder.vocabulary_screen = ScreenedVocabulary(tiny_model.model.lm_head.weight)
    return dataclasses.replace(tiny_model, decoder=decoder)


@pytest.mark.parametrize("settings", [SamplingSettings(top_k=10, max_new_tokens=40, seed=5),
                                      SamplingSettings(top_k=3, temperature=0.7, top_p=0.8, max_new_tokens=40, seed=6),
                                      SamplingSettings(greedy=True, max_new_tokens=40)])
def test_a_screened_generation_writes_the_same_tokens_and_shows_the_same_candidates(tiny_model, screened_model, settings):
    screen = screened_model.decoder.vocabulary_screen
    before = screen.outcomes["screened"]
    got = generate_text(screened_model, TUTORIAL_PROMPT, settings)
    expected = generate_text(tiny_model, TUTORIAL_PROMPT, settings)
    assert got.token_ids == expected.token_ids and got.text == expected.text
    assert screen.outcomes["screened"] - before == len(got.token_ids) - 1  # every decode step; the first token is the prompt's
    for mine, theirs in zip(got.steps, expected.steps):
        assert [c.piece for c in mine.candidates] == [c.piece for c in theirs.candidates]
        assert [c.kept for c in mine.candidates] == [c.kept for c in theirs.candidates]
        for a, b in zip([mine.probability] + [c.probability for c in mine.candidates],
                        [theirs.probability] + [c.probability for c in theirs.candidates]):
            assert abs(a / b - 1) < 1e-3


def test_a_penalty_or_no_top_k_cut_reads_every_logit_in_float32(screened_model):
    screen = screened_model.decoder.vocabulary_screen
    before = dict(screen.outcomes)
    for settings in (SamplingSettings(top_k=10, repetition_penalty=1.3, max_new_tokens=8, seed=1),
                     SamplingSettings(top_k=0, top_p=0.9, max_new_tokens=8, seed=1)):
        generate_text(screened_model, TUTORIAL_PROMPT, settings)
    assert dict(screen.outcomes) == before
