import math

import pytest

from gpt2demo.settings import BOUNDS, SamplingSettings, check_prompt, check_settings


def test_defaults_follow_the_tutorial():
    assert check_settings() == SamplingSettings(max_new_tokens=100, top_k=10, top_p=1.0, temperature=1.0, repetition_penalty=1.0, greedy=False, seed=None)


def test_strings_and_integral_floats_are_accepted():
    settings = check_settings(max_new_tokens="50", top_k=5.0, top_p="0.9", seed="42", greedy="true")
    assert (settings.max_new_tokens, settings.top_k, settings.top_p, settings.seed, settings.greedy) == (50, 5, 0.9, 42, True)


def test_blank_seed_means_random():
    assert check_settings(seed="  ").seed is None


@pytest.mark.parametrize(
    "name, value, fragment",
    [
        ("max_new_tokens", 0, "max_new_tokens must be an integer from 1 to 1024"),
        ("max_new_tokens", 5000, "max_new_tokens must be an integer from 1 to 1024"),
        ("max_new_tokens", 10.5, "max_new_tokens must be an integer"),
        ("top_k", -1, "top_k must be an integer from 0 to 50257"),
        ("top_k", True, "top_k must be an integer"),
        ("top_p", 0.0, "top_p must be a number from 0.01 to 1.0"),
        ("top_p", math.nan, "top_p must be a number from 0.01 to 1.0"),
        ("temperature", math.inf, "temperature must be a number from 0.01 to 5.0"),
        ("temperature", "hot", "temperature must be a number"),
        ("repetition_penalty", -1, "repetition_penalty must be a number from 0.5 to 5.0"),
        ("seed", -3, "seed must be an integer from 0 to 4294967295"),
        ("seed", "1.5", "seed must be an integer"),
        ("seed", 2**64, "seed must be an integer"),
        ("greedy", "maybe", "greedy must be true or false"),
    ],
)
def test_bad_values_name_the_parameter_and_range(name, value, fragment):
    with pytest.raises(ValueError) as error:
        check_settings(**{name: value})
    assert fragment in str(error.value)
    assert "/" in str(error.value)  # the Chinese half follows


def test_top_k_is_checked_against_the_model_vocabulary():
    assert check_settings(top_k=4096, vocab_size=4096).top_k == 4096
    with pytest.raises(ValueError, match="top_k must be an integer from 0 to 4096"):
        check_settings(top_k=4097, vocab_size=4096)


def test_prompt_checks():
    assert check_prompt("") == ""
    assert check_prompt(None) == ""
    assert check_prompt("line\nnext\ttab") == "line\nnext\ttab"
    with pytest.raises(ValueError, match=f"prompt must be at most {BOUNDS.prompt_chars} characters"):
        check_prompt("a" * (BOUNDS.prompt_chars + 1))
    with pytest.raises(ValueError, match="U\\+D800 at position 2"):
        check_prompt("ab\ud800")
    with pytest.raises(ValueError, match="U\\+0007 at position 0"):
        check_prompt("\x07bell")
    with pytest.raises(ValueError, match="prompt must be text"):
        check_prompt(12)
