import threading

import pytest
import torch

from gpt2demo import engine
from gpt2demo.engine import NUM_CANDIDATES, Generation, generate_steps, generate_text, load_model, prepare_prompt
from gpt2demo.settings import SamplingSettings

from conftest import TUTORIAL_IDS, TUTORIAL_PROMPT


def test_tutorial_prompt_ids_are_gpt2s(tiny_model):
    assert tiny_model.encode(TUTORIAL_PROMPT) == TUTORIAL_IDS


def test_typed_endoftext_is_plain_text_and_empty_prompt_starts_from_it(tiny_model):
    assert tiny_model.encode("<|endoftext|>") == [27, 91, 437, 1659, 5239, 91, 29]
    assert prepare_prompt(tiny_model, "", SamplingSettings()).token_ids == [50256]
    assert prepare_prompt(tiny_model, "   ", SamplingSettings()).token_ids == [220, 220, 220]


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
        theirs = model.model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=count, min_new_tokens=count, pad_token_id=50256)
    assert ours == theirs[0, len(TUTORIAL_IDS):].tolist()
    assert ours == no_cache_greedy(model, TUTORIAL_IDS, count)


def test_greedy_equals_generate_on_the_tiny_model_over_a_long_run(tiny_model):
    count = 120
    ours = generate_text(tiny_model, TUTORIAL_PROMPT, SamplingSettings(greedy=True, max_new_tokens=count)).token_ids
    assert ours == no_cache_greedy(tiny_model, TUTORIAL_IDS, count)


def test_same_seed_same_text_other_seed_other_text(tiny_model):
    run = lambda seed: generate_text(tiny_model, TUTORIAL_PROMPT, SamplingSettings(seed=seed, max_new_tokens=30))
    first, again, other = run(7), run(7), run(8)
    assert (first.text, first.token_ids) == (again.text, again.token_ids)
    assert first.token_ids != other.token_ids
    assert first.seed == 7


def test_random_seed_is_reported_and_repeats_the_run(tiny_model):
    first = generate_text(tiny_model, TUTORIAL_PROMPT, SamplingSettings(max_new_tokens=20))
    again = generate_text(tiny_model, TUTORIAL_PROMPT, SamplingSettings(max_new_tokens=20, seed=first.seed))
    assert again.token_ids == first.token_ids


def test_steps_carry_the_models_own_probabilities(tiny_model):
    settings = SamplingSettings(temperature=0.7, top_k=10, seed=3, max_new_tokens=1)
    step = next(generate_steps(tiny_model, TUTORIAL_PROMPT, settings))
    with torch.no_grad():
        logits = tiny_model.model(torch.tensor([TUTORIAL_IDS])).logits[0, -1]
    probs = torch.softmax(logits / 0.7, dim=-1)
    top = torch.topk(probs, NUM_CANDIDATES)
    assert [c.token_id for c in step.candidates] == top.indices.tolist()
    assert all(abs(c.probability - p) < 1e-5 for c, p in zip(step.candidates, top.values.tolist()))
    assert step.token_id in [c.token_id for c in step.candidates]  # top-k = 10: the pick is one of those shown
    assert [c.kept for c in step.candidates] == [True] * 10 + [False] * (NUM_CANDIDATES - 10)  # the cut is visible
    assert abs(step.probability - float(probs[step.token_id])) < 1e-5
    assert step.candidates[0].text == tiny_model.tokenizer.decode([step.candidates[0].token_id])


def test_joined_step_text_equals_the_decode_of_all_new_ids(tiny_model):
    for prompt in (TUTORIAL_PROMPT, "昨天，一个名叫杰克的人说", "👽"):
        result = generate_text(tiny_model, prompt, SamplingSettings(seed=0, max_new_tokens=60, top_k=0))
        assert result.text == tiny_model.tokenizer.decode(result.token_ids, skip_special_tokens=True)


def test_long_prompt_is_left_truncated_with_a_notice(tiny_model):
    prompt = " one" * 1100
    assert len(tiny_model.encode(prompt)) == 1100
    generation = Generation(tiny_model, prompt, SamplingSettings(greedy=True, max_new_tokens=100))
    assert len(generation.prompt.token_ids) == 924
    assert "only its last 924 fit" in generation.prompt.notice
    result = generate_text(tiny_model, prompt, SamplingSettings(greedy=True, max_new_tokens=100))
    assert (len(result.token_ids), result.finish_reason) == (100, "length")


def test_max_new_tokens_past_the_window_is_clamped(tiny_model):
    prompt = " one" * 1000
    settings = SamplingSettings(greedy=True, max_new_tokens=100)
    generation = Generation(tiny_model, prompt, settings)
    assert (len(generation.prompt.token_ids), generation.prompt.max_new_tokens) == (1000, 24)
    assert "max_new_tokens was lowered to 24" in generation.prompt.notice
    result = generate_text(tiny_model, prompt, settings)
    assert (len(result.token_ids), result.finish_reason) == (24, "context")


def test_endoftext_ends_the_generation_and_is_not_shown(tiny_model):
    generation = Generation(tiny_model, "Hi", SamplingSettings(greedy=True))
    logits = torch.zeros(tiny_model.vocab_size)
    logits[50256] = 10.0
    step = generation.advance(logits)
    assert (step.token_id, step.text, step.finish_reason) == (50256, "", "eos")


def test_cancel_stops_before_the_next_token(tiny_model):
    cancel = threading.Event()
    steps = []
    for step in generate_steps(tiny_model, TUTORIAL_PROMPT, SamplingSettings(seed=0, max_new_tokens=50), cancel):
        steps.append(step)
        if len(steps) == 3:
            cancel.set()
    assert [s.finish_reason for s in steps] == [None, None, None, "stopped"]
    assert steps[-1].token_id is None


def test_bad_settings_are_refused_before_any_work(tiny_model):
    with pytest.raises(ValueError, match="top_k must be an integer from 0 to 50257"):
        Generation(tiny_model, "x", SamplingSettings(top_k=60000))


def test_the_model_is_loaded_once_under_concurrent_first_calls(tiny_model_dir, monkeypatch):
    from transformers import AutoModelForCausalLM

    calls = []
    original = AutoModelForCausalLM.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        calls.append(args[0])
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(counting))
    spec = str(tiny_model_dir) + "/"  # a new cache key for the same folder
    results = []
    threads = [threading.Thread(target=lambda: results.append(load_model(spec, "cpu"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert all(r is results[0] for r in results)
    assert results[0].model.training is False
    engine._loaded.pop((spec, "cpu"))


def test_describe_names_source_device_and_size(tiny_model, tiny_model_dir):
    facts = tiny_model.describe()
    assert (facts["kind"], facts["device"], facts["dtype"], facts["window"]) == ("folder", "cpu", "float32", 1024)
    assert facts["parameters"] == 3_382_080
    assert facts["path"] == str(tiny_model_dir.resolve())
