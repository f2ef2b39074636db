import math

import pytest
import torch
from transformers import RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from gpt2demo.sampling import (SEARCH_IN_PYTHON_MAX, TOP_VALUES_BLOCK, TOP_VALUES_MIN_ROWS, apply_repetition_penalty, apply_temperature,
                               apply_top_k, apply_top_p, ascending_order, draw_indices, pick_next_token, pick_next_tokens,
                               top_values, warp_logits)
from gpt2demo.settings import SamplingSettings

NEG = float("-inf")


def test_top_k_keeps_exactly_the_k_largest_and_leaves_input_alone():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0]])
    before = logits.clone()
    assert apply_top_k(logits, 2).tolist() == [[NEG, 5.0, NEG, 4.0, NEG]]
    assert torch.equal(logits, before)


def test_top_k_keeps_ties_and_is_off_at_zero_and_at_vocab_size():
    logits = torch.tensor([[1.0, 3.0, 3.0, 2.0]])
    assert apply_top_k(logits, 1).tolist() == [[NEG, 3.0, 3.0, NEG]]
    assert apply_top_k(logits, 0) is logits
    assert apply_top_k(logits, 4) is logits


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([[0.3, 0.05, 0.5, 0.15]])
    logits = probs.log()
    kept = lambda p: torch.isfinite(apply_top_p(logits, p)).tolist()[0]
    assert kept(0.7) == [True, False, True, False]  # 0.5 + 0.3 = 0.8 >= 0.7
    assert kept(0.85) == [True, False, True, True]  # needs 0.15 too
    assert kept(0.4) == [False, False, True, False]  # the top token alone
    assert kept(1.0) == [True, True, True, True]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_top_p_over_gpt2s_whole_vocabulary_keeps_what_transformers_keeps(dtype):
    # The sort runs through numpy (ascending_order); bfloat16, which numpy lacks, is widened first.
    # bfloat16's 50257 logits hold many ties, whose order may differ from torch.sort's, so
    # there the kept values are compared (a cut between tied tokens keeps one of them either way).
    logits = (torch.randn(3, 50257, generator=torch.Generator().manual_seed(7)) * 3).to(dtype)
    for top_p in (0.5, 0.9, 0.99):
        ours, expected = apply_top_p(logits, top_p), TopPLogitsWarper(top_p)(None, logits)
        if dtype == torch.float32:
            assert torch.equal(torch.isfinite(ours), torch.isfinite(expected))
        for row in range(3):
            kept = [values[torch.isfinite(values)].float().sort().values for values in (ours[row], expected[row])]
            assert torch.equal(*kept)
    assert torch.equal(logits.gather(-1, ascending_order(logits)), torch.sort(logits, dim=-1).values)


def test_temperature_and_repetition_penalty_exact_values():
    logits = torch.tensor([[2.0, -2.0, 1.0]])
    assert apply_temperature(logits, 2.0).tolist() == [[1.0, -1.0, 0.5]]
    assert apply_repetition_penalty(logits, torch.tensor([[0, 1]]), 2.0).tolist() == [[1.0, -4.0, 1.0]]
    assert logits.tolist() == [[2.0, -2.0, 1.0]]


def test_same_results_as_transformers_processors():
    torch.manual_seed(0)
    logits = torch.randn(3, 1000)
    previous = torch.randint(0, 1000, (3, 7))
    ours = warp_logits(apply_repetition_penalty(logits, previous, 1.3), SamplingSettings(temperature=0.7, top_k=50, top_p=0.9))
    theirs = RepetitionPenaltyLogitsProcessor(1.3)(previous, logits.clone())
    for warper in (TemperatureLogitsWarper(0.7), TopKLogitsWarper(50), TopPLogitsWarper(0.9)):
        theirs = warper(previous, theirs)
    assert torch.equal(ours, theirs)


def test_top_k_sampling_never_leaves_the_k_most_likely():
    torch.manual_seed(1)
    logits = torch.randn(500)
    allowed = set(torch.topk(logits, 5).indices.tolist())
    generator = torch.Generator().manual_seed(0)
    settings = SamplingSettings(top_k=5)
    picks = {pick_next_token(logits, torch.empty(0, dtype=torch.long), settings, generator).token_id for _ in range(300)}
    assert picks <= allowed
    assert len(picks) == 5  # and it does use all five


def test_greedy_takes_the_argmax_and_reports_the_distribution():
    logits = torch.tensor([0.1, 2.0, -1.0, 1.5])
    pick = pick_next_token(logits, torch.empty(0, dtype=torch.long), SamplingSettings(greedy=True), None, num_candidates=3)
    expected = torch.softmax(logits, dim=-1)
    assert pick.token_id == 1
    assert pick.candidate_ids == [1, 3, 0]
    assert all(math.isclose(p, float(expected[i]), rel_tol=1e-6) for p, i in zip(pick.candidate_probabilities, pick.candidate_ids))
    assert pick.candidate_kept == [True, False, False]


def test_candidates_show_probabilities_after_temperature_and_the_cut():
    logits = torch.tensor([0.0, 3.0, 1.0, 2.0])
    settings = SamplingSettings(top_k=2, temperature=0.5)
    pick = pick_next_token(logits, torch.empty(0, dtype=torch.long), settings, torch.Generator().manual_seed(0), num_candidates=4)
    expected = torch.softmax(logits / 0.5, dim=-1)
    assert pick.candidate_ids == [1, 3, 2, 0]
    assert all(math.isclose(p, float(expected[i]), rel_tol=1e-6) for p, i in zip(pick.candidate_probabilities, pick.candidate_ids))
    assert pick.candidate_kept == [True, True, False, False]
    assert pick.token_id in (1, 3)


def test_a_batch_of_picks_is_each_rows_own_pick_draw_for_draw():
    mixed = [SamplingSettings(top_k=10), SamplingSettings(top_k=0, top_p=0.9), SamplingSettings(top_k=50, top_p=0.8, temperature=0.7),
             SamplingSettings(greedy=True), SamplingSettings(top_k=10, temperature=1.5), SamplingSettings(top_k=5, repetition_penalty=1.3)]
    generator = torch.Generator().manual_seed(0)
    for trial in range(6):
        logits = torch.randn(12, 50257, generator=generator) * 3
        logits[0, :3] = logits[0, 3]  # a tie at the 10th value and beyond, in one row
        settings = [mixed[(trial + row) % len(mixed)] for row in range(12)]
        previous = [torch.tensor([1, 2, 3]) for _ in range(12)]
        one_by_one = [pick_next_token(logits[r], previous[r], settings[r], torch.Generator().manual_seed(trial * 100 + r), 15)
                      for r in range(12)]
        together = pick_next_tokens(logits, previous, settings, [torch.Generator().manual_seed(trial * 100 + r) for r in range(12)], 15)
        for alone, batched in zip(one_by_one, together):
            assert (batched.token_id, batched.candidate_ids, batched.candidate_kept) == (alone.token_id, alone.candidate_ids, alone.candidate_kept)
            assert math.isclose(batched.probability, alone.probability, rel_tol=1e-4, abs_tol=1e-9)  # one log-sum-exp, not a softmax per row
            assert all(math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-9)  # one log-sum-exp, not a softmax per row
                       for a, b in zip(batched.candidate_probabilities, alone.candidate_probabilities))


def test_a_class_with_the_same_settings_draws_together_what_each_row_draws_alone():
    # 32 rows of the tutorial's top-k 10: one group, one softmax and one search for all of them.
    generator = torch.Generator().manual_seed(1)
    for settings in (SamplingSettings(top_k=10), SamplingSettings(top_k=40, top_p=0.7, temperature=0.8)):
        logits = torch.randn(32, 50257, generator=generator) * 3
        previous = [torch.empty(0, dtype=torch.long)] * 32
        one_by_one = [pick_next_token(logits[r], previous[r], settings, torch.Generator().manual_seed(r), 15) for r in range(32)]
        together = pick_next_tokens(logits, previous, [settings] * 32, [torch.Generator().manual_seed(r) for r in range(32)], 15)
        assert [(p.token_id, p.candidate_ids, p.candidate_kept) for p in together] == \
            [(p.token_id, p.candidate_ids, p.candidate_kept) for p in one_by_one]


def test_rows_drawn_together_draw_what_each_draws_alone():
    generator = torch.Generator().manual_seed(2)
    pools = torch.randn(64, 10, generator=generator)
    pools[::3, 7:] = NEG  # cut rows: an entry with no probability is never drawn
    together = draw_indices(pools, [torch.Generator().manual_seed(r) for r in range(64)])
    alone = [draw_indices(pools[r : r + 1], [torch.Generator().manual_seed(r)])[0] for r in range(64)]
    assert together == alone
    assert all(choice < 7 for choice in together[::3])


@pytest.mark.parametrize("width", [10, SEARCH_IN_PYTHON_MAX, SEARCH_IN_PYTHON_MAX + 1, 50257])
def test_a_draw_is_the_first_cumulative_probability_above_its_uniform_at_every_width(width):
    # Narrow pools are searched on Python floats, wide ones with torch.searchsorted: both
    # must give what inverting the float64 cumulative sum gives, index for index.
    generator = torch.Generator().manual_seed(width)
    pools = torch.randn(16, width, generator=generator) * 3
    pools[::2, width // 2 :] = NEG
    drawn = draw_indices(pools, [torch.Generator().manual_seed(r) for r in range(16)])
    expected = []
    for r in range(16):
        cumulative = torch.cumsum(pools[r].softmax(dim=-1), dim=0, dtype=torch.float64)
        target = torch.rand((), generator=torch.Generator().manual_seed(r), dtype=torch.float64) * cumulative[-1]
        expected.append(int((cumulative <= target).sum()))
    assert drawn == expected
    assert all(choice < width // 2 for choice in drawn[::2])


@pytest.mark.parametrize("rows", [TOP_VALUES_MIN_ROWS, 5, 32])
def test_top_values_by_blocks_are_exactly_torch_topk(rows):
    generator = torch.Generator().manual_seed(rows)
    scores = torch.randn(rows, 50257, generator=generator) * 3
    scores[0, -5:] = 40.0 + torch.arange(5.0)  # the best in the last, partial block
    scores[-1, TOP_VALUES_BLOCK : 2 * TOP_VALUES_BLOCK] = 50.0 + torch.arange(float(TOP_VALUES_BLOCK))  # all in one block
    values, ids = top_values(scores, 16)
    expected = torch.topk(scores, 16, dim=-1)
    assert torch.equal(values, expected.values) and torch.equal(ids, expected.indices)
    assert ids[0, :5].tolist() == [50256, 50255, 50254, 50253, 50252]
    assert ids[-1].tolist() == list(range(2 * TOP_VALUES_BLOCK - 1, 2 * TOP_VALUES_BLOCK - 17, -1))
