"""Property-based tests: any input either works or is refused with a BadRequest naming the parameter."""

import math

from hypothesis import HealthCheck, given, settings, strategies as st

from gpt2demo.errors import BadRequest
from gpt2demo.generation import generate_text
from gpt2demo.serving.interface import FINISH_REASONS
from gpt2demo.settings import BOUNDS, SamplingSettings, check_prompt, check_settings

PARAMETERS = ["max_new_tokens", "top_k", "top_p", "temperature", "repetition_penalty", "seed", "greedy"]

anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["10", "0.5", "1e3", "nan", "-inf", " ", "1_000", "0x10"]),
)


@settings(max_examples=400, deadline=None)
@given(st.fixed_dictionaries({}, optional={name: anything for name in PARAMETERS}))
def test_check_settings_returns_in_bounds_settings_or_names_the_bad_parameter(raw):
    try:
        result = check_settings(**raw)
    except BadRequest as error:
        assert error.code in ("integer", "number", "boolean") and error.facts["parameter"] in raw, error
        assert len(error.facts["got"]) <= 50
        return
    assert BOUNDS.max_new_tokens[0] <= result.max_new_tokens <= BOUNDS.max_new_tokens[1]
    assert BOUNDS.top_k[0] <= result.top_k <= BOUNDS.top_k[1]
    for name in ("top_p", "temperature", "repetition_penalty"):
        low, high = getattr(BOUNDS, name)
        assert math.isfinite(getattr(result, name)) and low <= getattr(result, name) <= high
    assert result.seed is None or BOUNDS.seed[0] <= result.seed <= BOUNDS.seed[1]
    assert isinstance(result.greedy, bool)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_check_prompt_accepts_or_explains(prompt):
    try:
        assert check_prompt(prompt) == prompt
    except BadRequest as error:
        assert error.code == "prompt_character" and 0 <= error.facts["position"] < len(prompt)


valid_settings = st.builds(
    SamplingSettings,
    max_new_tokens=st.integers(1, 12),
    top_k=st.integers(0, 60000).map(lambda k: min(k, 50257)),
    top_p=st.floats(0.01, 1.0),
    temperature=st.floats(0.01, 5.0),
    repetition_penalty=st.floats(0.5, 5.0),
    greedy=st.booleans(),
    seed=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
)
printable_prompts = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=80)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prompt=printable_prompts, sampling=valid_settings)
def test_any_valid_request_finishes_and_its_text_is_the_decode_of_its_ids(tiny_model, prompt, sampling):
    result = generate_text(tiny_model, prompt, sampling)
    assert result.finish_reason in FINISH_REASONS
    assert 1 <= len(result.token_ids) <= sampling.max_new_tokens
    assert result.text == tiny_model.tokenizer.decode(result.token_ids, skip_special_tokens=True)
    again = generate_text(tiny_model, prompt, SamplingSettings(**{**sampling.__dict__, "seed": result.seed}))
    assert again.token_ids == result.token_ids
