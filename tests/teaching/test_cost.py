"""The cost lesson: the tutorial's full re-run against the KV cache, through the engine, and its arithmetic."""

import torch

from gpt2demo.generation import generate_text
from gpt2demo.serving.interface import KV_CACHE, TUTORIAL, CostPoint
from gpt2demo.settings import SamplingSettings
from gpt2demo.teaching.cost import METHODS, same_text, tokens_per_second

from conftest import TUTORIAL_IDS, TUTORIAL_PROMPT


def test_the_race_alternates_and_both_methods_write_the_greedy_text(engine, tiny_model):
    points = list(engine.race(tuple(TUTORIAL_IDS), 20))
    assert [(p.method, p.position) for p in points] == [(method, position) for position in range(20) for method in METHODS]
    tutorial = [p.token_id for p in points if p.method == TUTORIAL]
    cached = [p.token_id for p in points if p.method == KV_CACHE]
    greedy = generate_text(tiny_model, TUTORIAL_PROMPT, SamplingSettings(greedy=True, max_new_tokens=20)).token_ids
    assert tutorial == cached == greedy
    assert same_text(points)
    assert all(p.seconds > 0 for p in points)


def test_both_methods_see_the_same_logits(tiny_model):
    decoder = tiny_model.decoder
    cache = decoder.new_cache()
    row = cache.add_row()
    ids = list(TUTORIAL_IDS)
    cached = decoder.extend(cache, [row], [ids])[0]  # the prompt read once into the cache
    for token_id in (11, 257, 582):
        assert torch.allclose(decoder.recompute(ids), cached, atol=1e-4)  # the tutorial: everything again
        ids.append(token_id)
        cached = decoder.decode(cache, torch.tensor([token_id]))[0]  # the cache: the newest token only
    assert torch.allclose(decoder.recompute(ids), cached, atol=1e-4)


def test_the_race_fits_the_window_and_stops_on_cancel(engine):
    assert len(list(engine.race((11,) * 1020, 25))) == 2 * 4  # the window leaves 4 tokens
    race = engine.race(tuple(TUTORIAL_IDS), 200)
    points = []
    for point in race:
        points.append(point)
        race.cancel()
    assert race.done and len(points) % 2 == 0 and 2 <= len(points) < 400  # whole pairs, and far fewer than asked


def test_tokens_per_second_over_the_first_tokens():
    points = [CostPoint(TUTORIAL, 0, 1, 0.5), CostPoint(KV_CACHE, 0, 1, 0.25), CostPoint(TUTORIAL, 1, 1, 1.5)]
    assert tokens_per_second(points, TUTORIAL) == 1.0
    assert tokens_per_second(points, TUTORIAL, upto=1) == 2.0
    assert tokens_per_second(points, TUTORIAL, upto=3) is None  # not that far yet
    assert tokens_per_second(points, KV_CACHE) == 4.0
    assert tokens_per_second([], KV_CACHE) is None


def test_same_text_compares_the_two_methods_tokens():
    same = [CostPoint(TUTORIAL, 0, 7, 0.1), CostPoint(KV_CACHE, 0, 7, 0.1)]
    assert same_text(same) and same_text([])
    assert not same_text(same + [CostPoint(TUTORIAL, 1, 8, 0.1), CostPoint(KV_CACHE, 1, 9, 0.1)])
    assert not same_text(same + [CostPoint(TUTORIAL, 1, 8, 0.1)])  # one method ahead: not the same text (yet)
