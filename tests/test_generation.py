"""One request's generation, alone (a batch of one in the test's thread): the engine's semantics."""

import copy
import dataclasses
import threading

import pytest
import torch

from gpt2demo.decoder import GPT2Decoder
from gpt2demo.errors import BadRequest
from gpt2demo.generation import (NUM_CANDIDATES, DecodeBatch, Generation, fit_prompt, generate_steps, generate_text,
                                 prefill_budget)
from gpt2demo.model import load_model
from gpt2demo.serving.interface import Request
from gpt2demo.settings import SamplingSettings

from conftest import TUTORIAL_IDS, TUTORIAL_PROMPT


def test_tutorial_prompt_ids_are_gpt2s(tiny_model):
    assert tiny_model.encode(TUTORIAL_PROMPT) == TUTORIAL_IDS


def test_typed_endoftext_is_plain_text_and_empty_prompt_starts_from_it(tiny_model):
    assert tiny_model.encode("<|endoftext|>") == [27, 91, 437, 1659, 5239, 91, 29]
    assert fit_prompt(tiny_model, [], 100).token_ids == (50256,)
    assert fit_prompt(tiny_model, tiny_model.encode("   "), 100).token_ids == (220, 220, 220)


def no_cache_greedy(model, ids, count):
    """The tutorial's way: re-run the whole sequence at every step."""
    ids = list(ids)
    with torch.no_grad():
        for _ in range(count):
            logits = model.model(torch.tensor([ids])).logits[0, -1]
            ids.append(int(logits.argmax()))
    return ids[-count:]


@pytest.mark.slow
def test_greedy_equals_generate_and_the_no_cache_recompute_on_gpt2_small_shapes(small_model_dir):
    model = load_model(str(small_model_dir), "cpu")
    count = 24
    ours = generate_text(model, TUTORIAL_PROMPT, SamplingSettings(greedy=True, max_new_tokens=count)).token_ids
    prompt = torch.tensor([TUTORIAL_IDS])
    with torch.no_grad():
        theirs = model.model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=count,
                                      min_new_tokens=count, pad_token_id=50256)
    assert ours == theirs[0, len(TUTORIAL_IDS):].tolist()
    assert ours == no_cache_greedy(model, TUTORIAL_IDS, count)


def test_greedy_equals_generate_on_the_tiny_model_over_a_long_run(tiny_model):
    count = 120
    ours = generate_text(tiny_model, TUTORIAL_PROMPT, SamplingSettings(greedy=True, max_new_tokens=count)).token_ids
    assert ours == no_cache_greedy(tiny_model, TUTORIAL_IDS, count)


def test_same_seed_same_text_other_seed_other_text(tiny_model):
    run = lambda seed: generate_text(tiny_model, TUTORIAL_PROMPT, SamplingSettings(seed=seed, max_new_tokens=30))  # noqa: E731
    first, again, other = run(7), run(7), run(8)
    assert (first.text, first.token_ids) == (again.text, again.token_ids)
    assert first.token_ids != other.token_ids
    assert first.seed == 7


def test_random_seed_is_reported_and_repeats_the_run(tiny_model):
    first = generate_text(tiny_model, TUTORIAL_PROMPT, SamplingSettings(max_new_tokens=20))
    again = generate_text(tiny_model, TUTORIAL_PROMPT, SamplingSettings(max_new_tokens=20, seed=first.seed))
    assert again.token_ids == first.token_ids


def test_steps_carry_the_models_own_probabilities_and_every_pieces_bytes(tiny_model):
    settings = SamplingSettings(temperature=0.7, top_k=10, seed=3, max_new_tokens=1)
    step = next(generate_steps(tiny_model, Request(settings, TUTORIAL_PROMPT)))
    with torch.no_grad():
        logits = tiny_model.model(torch.tensor([TUTORIAL_IDS])).logits[0, -1]
    probs = torch.softmax(logits / 0.7, dim=-1)
    top = torch.topk(probs, NUM_CANDIDATES)
    assert [c.token_id for c in step.candidates] == top.indices.tolist()
    assert all(abs(c.probability - p) < 1e-5 for c, p in zip(step.candidates, top.values.tolist()))
    assert step.token_id in [c.token_id for c in step.candidates]  # top-k = 10: the pick is one of those shown
    assert [c.kept for c in step.candidates] == [True] * 10 + [False] * (NUM_CANDIDATES - 10)  # the cut is visible
    assert abs(step.probability - float(probs[step.token_id])) < 1e-5
    for piece in [step.piece] + [c.piece for c in step.candidates]:  # what the views draw, without the tokenizer
        assert piece.data.decode("utf-8", errors="replace") == tiny_model.tokenizer.decode([piece.token_id])
        assert piece.piece == tiny_model.tokenizer.convert_ids_to_tokens(piece.token_id)


def test_joined_step_text_equals_the_decode_of_all_new_ids(tiny_model):
    for prompt in (TUTORIAL_PROMPT, "昨天，一个名叫杰克的人说", "👽"):
        result = generate_text(tiny_model, prompt, SamplingSettings(seed=0, max_new_tokens=60, top_k=0))
        assert result.text == tiny_model.tokenizer.decode(result.token_ids, skip_special_tokens=True)


def test_long_prompt_is_left_truncated_and_says_so_as_data(tiny_model):
    prompt = " one" * 1100
    assert len(tiny_model.encode(prompt)) == 1100
    generation = Generation(tiny_model, Request(SamplingSettings(greedy=True, max_new_tokens=100), prompt))
    fit = generation.prompt
    assert (len(fit.token_ids), fit.cut_from, fit.lowered_from, fit.window) == (924, 1100, None, 1024)
    assert fit.text == " one" * 924
    result = generate_text(tiny_model, prompt, SamplingSettings(greedy=True, max_new_tokens=100))
    assert (len(result.token_ids), result.finish_reason) == (100, "length")


def test_max_new_tokens_past_the_window_is_lowered(tiny_model):
    prompt = " one" * 1000
    settings = SamplingSettings(greedy=True, max_new_tokens=100)
    fit = Generation(tiny_model, Request(settings, prompt)).prompt
    assert (len(fit.token_ids), fit.max_new_tokens, fit.lowered_from, fit.cut_from) == (1000, 24, 100, None)
    result = generate_text(tiny_model, prompt, settings)
    assert (len(result.token_ids), result.finish_reason) == (24, "context")


def test_endoftext_ends_the_generation_and_is_not_shown(tiny_model):
    generation = Generation(tiny_model, Request(SamplingSettings(greedy=True), "Hi"))
    logits = torch.zeros(tiny_model.vocab_size)
    logits[50256] = 10.0
    step = generation.advance(logits)
    assert (step.token_id, step.text, step.finish_reason) == (50256, "", "eos")


def test_cancel_stops_before_the_next_token(tiny_model):
    generation = Generation(tiny_model, Request(SamplingSettings(seed=0, max_new_tokens=50), TUTORIAL_PROMPT))
    steps = []
    for step in generate_steps(tiny_model, None, generation):
        steps.append(step)
        if len(steps) == 3:
            generation.cancel.set()
    assert [s.finish_reason for s in steps] == [None, None, None, "stopped"]
    assert steps[-1].token_id is None


def test_the_models_own_rule_is_checked_and_bad_token_ids_are_named(tiny_model):
    with pytest.raises(BadRequest) as error:
        Generation(tiny_model, Request(SamplingSettings(top_k=60000), "x"))
    assert (error.value.code, error.value.facts) == ("integer", {"parameter": "top_k", "low": 0, "high": 50257, "got": "60000"})
    with pytest.raises(BadRequest) as error:
        Generation(tiny_model, Request(SamplingSettings(), token_ids=(1, 50257)))
    assert (error.value.code, error.value.facts["parameter"], error.value.facts["high"]) == ("integer", "token_ids", 50256)
    with pytest.raises(BadRequest) as error:
        Generation(tiny_model, Request(SamplingSettings(), "x", forced_token_ids=(True,)))
    assert error.value.facts["parameter"] == "forced_token_ids"


def test_forced_tokens_are_read_as_the_first_new_ones_and_the_rest_is_what_a_run_with_them_samples(tiny_model):
    settings = SamplingSettings(seed=11, max_new_tokens=30, top_k=20)
    alone = generate_text(tiny_model, TUTORIAL_PROMPT, settings)
    for picks in (3, 10):
        steps = list(generate_steps(tiny_model, Request(settings, TUTORIAL_PROMPT, forced_token_ids=tuple(alone.token_ids[:picks]))))
        assert [s.forced for s in steps] == [True] * picks + [False] * (30 - picks)
        assert [s.token_id for s in steps] == alone.token_ids
        assert [s.candidates for s in steps[:picks]] == [()] * picks and all(s.probability is None for s in steps[:picks])
        assert "".join(s.text for s in steps) == alone.text


def test_max_steps_pauses_the_stream_and_zero_steps_only_reads_the_picks(tiny_model):
    settings = SamplingSettings(seed=2, max_new_tokens=30)
    alone = generate_text(tiny_model, TUTORIAL_PROMPT, settings)
    steps = list(generate_steps(tiny_model, Request(settings, TUTORIAL_PROMPT, forced_token_ids=tuple(alone.token_ids[:4]),
                                                     max_steps=1)))
    assert [(s.token_id, s.forced, s.finish_reason) for s in steps[3:]] == [
        (alone.token_ids[3], True, None), (alone.token_ids[4], False, "paused")]
    offered, before = steps[-1].candidates, alone.steps[4].candidates  # read in one pass, not token by token: rounding
    assert [(c.token_id, c.kept) for c in offered] == [(c.token_id, c.kept) for c in before]
    assert all(abs(a.probability - b.probability) < 1e-6 for a, b in zip(offered, before))
    steps = list(generate_steps(tiny_model, Request(settings, TUTORIAL_PROMPT, forced_token_ids=tuple(alone.token_ids[:4]),
                                                     max_steps=0)))
    assert [(s.forced, s.finish_reason) for s in steps] == [(True, None)] * 3 + [(True, "paused")]
    steps = list(generate_steps(tiny_model, Request(settings, TUTORIAL_PROMPT, forced_token_ids=(50256,), max_steps=1)))
    assert [(s.token_id, s.finish_reason) for s in steps] == [(50256, "eos")]  # a picked <|endoftext|> ends the text


def test_a_long_prompt_is_read_in_chunks_and_gives_what_one_pass_gives(tiny_model, monkeypatch):
    from gpt2demo import generation

    prompt = " one two" * 300  # 600 tokens
    settings = SamplingSettings(seed=5, max_new_tokens=12)
    whole = generate_text(tiny_model, prompt, settings)
    monkeypatch.setattr(generation, "PREFILL_TOKENS_ALONE", 64)  # ten passes of 64 tokens
    chunked = generate_text(tiny_model, prompt, settings)
    assert chunked.token_ids == whole.token_ids
    assert all(abs(a.probability - b.probability) < 1e-5 for a, b in zip(chunked.steps, whole.steps))


def test_joining_requests_are_read_together_and_each_equals_its_run_alone(tiny_model):
    prompts = [TUTORIAL_PROMPT, "你好，世界", "a b c d e f g h i j k l m n o p q r s t" * 5, ""]
    settings = [SamplingSettings(seed=i, max_new_tokens=15 + i) for i in range(len(prompts))]
    alone = [generate_text(tiny_model, p, s).token_ids for p, s in zip(prompts, settings)]
    calls = []
    original = tiny_model.decoder.extend

    def counting(cache, rows, chunks):
        calls.append([len(c) for c in chunks])
        return original(cache, rows, chunks)

    tiny_model.decoder.extend = counting
    try:
        batch = DecodeBatch(tiny_model)
        generations = [Generation(tiny_model, Request(s, p)) for p, s in zip(prompts, settings)]
        for generation in generations:
            batch.join(generation)
        while batch:
            batch.step()
    finally:
        del tiny_model.decoder.extend
    assert calls == [[12, 11, 96, 1]]  # one pass read all four prompts (under PREFILL_TOKENS_ALONE); then only decoding
    assert [g.new_token_ids for g in generations] == alone
    assert batch.cache.rows == batch.staging.rows == 0


@pytest.mark.parametrize(("decoding", "joining", "budget"), [
    (0, 1, 512), (0, 32, 512),  # nobody decoding: as much as one pass takes
    (1, 1, 64), (31, 4, 64),  # a few joining a class: a small slice per step, the class keeps its pace
    (2, 8, 128), (1, 32, 512), (40, 100, 512),  # many joining together: 16 each, up to the pass's maximum
])
def test_a_step_reads_more_prompt_tokens_the_more_requests_wait_for_their_first_token(decoding, joining, budget):
    assert prefill_budget(decoding, joining) == budget


def test_a_class_joining_together_has_each_short_prompt_read_in_one_step(tiny_model):
    # One student decoding; eight press Generate with the tutorial's prompt (12 tokens).
    calls = []
    original = tiny_model.decoder.extend

    def counting(cache, rows, chunks):
        calls.append([len(c) for c in chunks])
        return original(cache, rows, chunks)

    settings = [SamplingSettings(seed=i, max_new_tokens=6) for i in range(9)]
    alone = [generate_text(tiny_model, TUTORIAL_PROMPT, s).token_ids for s in settings]
    tiny_model.decoder.extend = counting
    try:
        batch = DecodeBatch(tiny_model)
        generations = [Generation(tiny_model, Request(s, TUTORIAL_PROMPT)) for s in settings]
        batch.join(generations[0])
        batch.step()  # its prompt, alone
        for generation in generations[1:]:
            batch.join(generation)
        while batch:
            batch.step()
    finally:
        del tiny_model.decoder.extend
    assert calls == [[12], [12] * 8]  # the eight in one pass of 8 x 12 tokens, not 8 x 8 and then 8 x 4
    assert [g.new_token_ids for g in generations] == alone


def test_a_batch_that_empties_gives_its_cache_back(small_model_dir):
    model = load_model(str(small_model_dir), "cpu")
    batch = DecodeBatch(model)
    batch.join(Generation(model, Request(SamplingSettings(seed=0, max_new_tokens=300), "Hello")))
    peak = 0
    while batch:
        batch.step()
        peak = max(peak, batch.cache.nbytes)
    per_position = 2 * 12 * 768 * 4  # keys and values of 12 layers of 768 floats
    assert peak == 4 * 384 * per_position  # 4 rows (the row step) x 301 positions rounded up to 384
    assert batch.cache.nbytes == batch.staging.nbytes == 0


def test_a_generation_in_bfloat16_as_on_cuda_runs_to_its_length_and_repeats_with_its_seed(tiny_model):
    # CUDA runs bfloat16; here the same dtype on the CPU, the whole path from prompt to text.
    model = copy.deepcopy(tiny_model.model).to(torch.bfloat16)
    bf16 = dataclasses.replace(tiny_model, model=model, decoder=GPT2Decoder(model))
    settings = SamplingSettings(top_k=10, max_new_tokens=24, seed=7)
    first, again = generate_text(bf16, TUTORIAL_PROMPT, settings), generate_text(bf16, TUTORIAL_PROMPT, settings)
    assert first.token_ids == again.token_ids and first.text == again.text
    assert first.text == bf16.decode([t for t in first.token_ids if t != bf16.eos_token_id])
    assert len(first.token_ids) == 24 or first.finish_reason == "eos"
    assert all(0.0 <= step.probability <= 1.0 for step in first.steps if step.probability is not None)
