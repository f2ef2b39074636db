import math

import pytest

from gpt2demo.errors import BadRequest
from gpt2demo.settings import BOUNDS, SamplingSettings, check_prompt, check_settings


def test_defaults_follow_the_tutorial():
    assert check_settings() == SamplingSettings(max_new_tokens=100, top_k=10, top_p=1.0, temperature=1.0, repetition_penalty=1.0, greedy=False, seed=None)


def test_strings_and_integral_floats_are_accepted():
    settings = check_settings(max_new_tokens="50", top_k=5.0, top_p="0.9", seed="42", greedy="true")
    assert (settings.max_new_tokens, settings.top_k, settings.top_p, settings.seed, settings.greedy) == (50, 5, 0.9, 42, True)


def test_blank_seed_means_random():
    assert check_settings(seed="  ").seed is None


@pytest.mark.parametrize(
    "name, value, code, low, high, got",
    [
        ("max_new_tokens", 0, "integer", 1, 1024, "0"),
        ("max_new_tokens", 5000, "integer", 1, 1024, "5000"),
        ("max_new_tokens", 10.5, "integer", 1, 1024, "10.5"),
        ("top_k", -1, "integer", 0, 50257, "-1"),
        ("top_k", True, "integer", 0, 50257, "True"),
        ("top_p", 0.0, "number", 0.01, 1.0, "0.0"),
        ("top_p", math.nan, "number", 0.01, 1.0, "nan"),
        ("temperature", math.inf, "number", 0.01, 5.0, "inf"),
        ("temperature", "hot", "number", 0.01, 5.0, "'hot'"),
        ("repetition_penalty", -1, "number", 0.5, 5.0, "-1"),
        ("seed", -3, "integer", 0, 2**32 - 1, "-3"),
        ("seed", "1.5", "integer", 0, 2**32 - 1, "'1.5'"),
        ("seed", 2**64, "integer", 0, 2**32 - 1, "18446744073709551616"),
    ],
)
def test_bad_values_name_the_parameter_and_range_as_data(name, value, code, low, high, got):
    with pytest.raises(BadRequest) as error:
        check_settings(**{name: value})
    assert (error.value.code, error.value.facts) == (code, {"parameter": name, "low": low, "high": high, "got": got})


def test_a_bad_boolean_and_huge_values_are_quoted_only_in_part():
    with pytest.raises(BadRequest) as error:
        check_settings(greedy="maybe")
    assert (error.value.code, error.value.facts) == ("boolean", {"parameter": "greedy", "got": "'maybe'"})
    for huge in ("1" * 1_000_000, list(range(100_000)), 10**5000):
        with pytest.raises(BadRequest) as error:
            check_settings(seed=huge)
        assert len(error.value.facts["got"]) <= 50


def test_top_k_is_checked_against_the_model_vocabulary():
    assert check_settings(top_k=4096, vocab_size=4096).top_k == 4096
    with pytest.raises(BadRequest) as error:
        check_settings(top_k=4097, vocab_size=4096)
    assert error.value.facts == {"parameter": "top_k", "low": 0, "high": 4096, "got": "4097"}


def test_prompt_checks():
    assert check_prompt("") == ""
    assert check_prompt(None) == ""
    assert check_prompt("line\nnext\ttab") == "line\nnext\ttab"
    cases = [("a" * (BOUNDS.prompt_chars + 1), "prompt_length", {"limit": BOUNDS.prompt_chars, "got": BOUNDS.prompt_chars + 1}),
             ("ab\ud800", "prompt_character", {"codepoint": "U+D800", "position": 2}),
             ("\x07bell", "prompt_character", {"codepoint": "U+0007", "position": 0}),
             (12, "prompt_type", {"got": "int"})]
    for prompt, code, facts in cases:
        with pytest.raises(BadRequest) as error:
            check_prompt(prompt)
        assert (error.value.code, error.value.facts) == (code, facts)
