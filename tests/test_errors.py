"""Errors as data: a code and facts, a short excerpt of a bad value, intact across a process boundary."""

import pickle

from gpt2demo.errors import BadRequest, EngineBusy, excerpt


def test_an_excerpt_is_short_whatever_the_value():
    assert excerpt("abc") == "'abc'" and excerpt(12) == "12"
    for value in ("x" * 1_000_000, list(range(1_000_000)), 10**10_000, {"a": ["b" * 10_000]}):
        assert len(excerpt(value)) <= 50


def test_errors_pickle_with_their_code_and_facts():
    for error in (BadRequest("integer", parameter="top_k", low=0, high=5, got="9"), EngineBusy("busy", ahead=3)):
        again = pickle.loads(pickle.dumps(error))
        assert (type(again), again.code, again.facts) == (type(error), error.code, error.facts)
