"""You are the sampler: a stateless session over the engine, one request per click, checked against the model itself."""

import asyncio
from dataclasses import replace

import pytest
import torch

from gpt2demo.errors import BadRequest, EngineBusy
from gpt2demo.generation import NUM_CANDIDATES, generate_text
from gpt2demo.pieces import TokenPiece
from gpt2demo.serving.interface import Request, Step
from gpt2demo.settings import SamplingSettings
from gpt2demo.teaching.sampler import PICKED_BY_SAMPLER, PICKED_BY_YOU, start
from gpt2demo.textstream import TextStream

from conftest import TUTORIAL_IDS, TUTORIAL_PROMPT, local_engine

EOS = 50256
LONG_RUN = SamplingSettings(seed=1, max_new_tokens=1000)


# ---------------------------------------------------------------- the model's own numbers


def full_forward_logits(model, ids: list[int]) -> torch.Tensor:
    """The tutorial's forward: the whole sequence through transformers' GPT2LMHeadModel, (T, vocab)."""
    with torch.no_grad():
        return model.model(torch.tensor([ids]), use_cache=False).logits[0]


def assert_candidates_are_the_models(step: Step, logits: torch.Tensor, temperature: float) -> None:
    """A step's candidates are the top NUM_CANDIDATES of softmax(logits / T), and its token is among them."""
    probs = torch.softmax(logits / temperature, dim=-1)
    top = torch.topk(probs, NUM_CANDIDATES)
    assert [c.token_id for c in step.candidates] == top.indices.tolist()
    assert max(abs(c.probability - p) for c, p in zip(step.candidates, top.values.tolist())) < 1e-5
    assert step.token_id in [c.token_id for c in step.candidates]
    assert abs(step.probability - float(probs[step.token_id])) < 1e-5


def test_every_streamed_step_shows_the_models_own_distribution(engine, tiny_model):
    settings = SamplingSettings(temperature=0.7, top_k=5, seed=11, max_new_tokens=12)
    steps = list(engine.submit(Request(settings, TUTORIAL_PROMPT)))
    logits = full_forward_logits(tiny_model, TUTORIAL_IDS + [s.token_id for s in steps])
    assert len(steps) == 12
    for step in steps:
        assert_candidates_are_the_models(step, logits[len(TUTORIAL_IDS) + step.index - 1], 0.7)
        assert [c.kept for c in step.candidates] == [True] * 5 + [False] * (NUM_CANDIDATES - 5)  # top-k = 5 cuts after the 5th


def test_the_sessions_candidates_are_the_models_own_distribution(engine, tiny_model):
    async def scenario():
        session = await start(engine, TUTORIAL_PROMPT, SamplingSettings(temperature=1.3, seed=2))
        for rank in (4, None, 9, 0, None, 2):
            await session.choose(None if rank is None else session.candidates[rank].token_id)
        return session

    session = asyncio.run(scenario())
    logits = full_forward_logits(tiny_model, TUTORIAL_IDS + session.token_ids)
    for pick in session.picks:
        assert_candidates_are_the_models(pick.step, logits[len(TUTORIAL_IDS) + pick.step.index - 1], 1.3)
    assert session.offered.index == 6
    assert_candidates_are_the_models(session.offered, logits[-1], 1.3)  # the position on offer now


# ---------------------------------------------------------------- picks, replays, branches


def forced_decoding(model, prompt_ids: list[int], forced_ids: list[int], temperature: float):
    """Teacher forcing in one full forward: the text a generation forced to `forced_ids` writes,
    and each position's NUM_CANDIDATES most likely tokens with their probabilities after temperature."""
    logits = full_forward_logits(model, prompt_ids + forced_ids)
    stream = TextStream(model.tokenizer)
    text = "".join(stream.push(token_id) for token_id in forced_ids) + stream.flush()
    tops = []
    for index in range(len(forced_ids)):
        top = torch.topk(torch.softmax(logits[len(prompt_ids) + index - 1] / temperature, dim=-1), NUM_CANDIDATES)
        tops.append(list(zip(top.indices.tolist(), top.values.tolist())))
    return text, tops


def test_a_session_replays_exactly(engine, tiny_model):
    settings = SamplingSettings(temperature=0.9, top_k=10, seed=5)

    async def scenario():
        first = await start(engine, "今天天气", settings)
        for rank in (3, None, 0, 7, None, None, 1, 9, None, 5):
            await first.choose(None if rank is None else first.candidates[rank].token_id)
        # The same picks, made by hand in a new session.
        again = await start(engine, "今天天气", settings)
        for token_id in first.token_ids:
            await again.choose(token_id)
        return first, again

    first, again = asyncio.run(scenario())
    picks = first.token_ids
    assert [pick.picked_by for pick in first.picks] == [
        PICKED_BY_YOU, PICKED_BY_SAMPLER, PICKED_BY_YOU, PICKED_BY_YOU, PICKED_BY_SAMPLER,
        PICKED_BY_SAMPLER, PICKED_BY_YOU, PICKED_BY_YOU, PICKED_BY_SAMPLER, PICKED_BY_YOU]
    assert again.token_ids == picks
    assert again.text == first.text == tiny_model.tokenizer.decode(picks)
    assert "".join(pick.step.text for pick in first.picks) == first.text  # each pick carries its own token's text
    assert [(p.step.token_id, p.step.text, p.step.candidates) for p in again.picks] == [
        (p.step.token_id, p.step.text, p.step.candidates) for p in first.picks]

    # ... and the same as a generation forced to those ids (one full forward, no cache).
    forced_text, forced_tops = forced_decoding(tiny_model, list(first.prompt.token_ids), picks, 0.9)
    assert forced_text == first.text
    for pick, top in zip(first.picks, forced_tops):
        assert [c.token_id for c in pick.step.candidates] == [token_id for token_id, _ in top]
        assert max(abs(c.probability - p) for c, (_, p) in zip(pick.step.candidates, top)) < 1e-5


def test_a_session_where_the_sampler_makes_every_pick_writes_what_generate_text_writes(engine, tiny_model):
    settings = SamplingSettings(temperature=0.8, top_k=20, top_p=0.95, seed=123)

    async def scenario():
        session = await start(engine, TUTORIAL_PROMPT, settings)
        for _ in range(25):
            await session.choose(None)
        first_run = list(session.picks)
        await session.undo(10)
        for _ in range(15):
            await session.choose(None)  # the sampler draws again what it drew from position 10 on
        return session, first_run

    session, first_run = asyncio.run(scenario())
    expected = generate_text(tiny_model, TUTORIAL_PROMPT, replace(settings, max_new_tokens=25))
    assert [pick.step.token_id for pick in first_run] == expected.token_ids
    assert session.token_ids == expected.token_ids
    assert session.text == expected.text and session.seed == 123
    assert [pick.picked_by for pick in session.picks] == [PICKED_BY_SAMPLER] * 25
    shown = lambda step: (step.token_id, step.text, [(c.token_id, c.kept) for c in step.candidates])  # noqa: E731
    assert [shown(pick.step) for pick in session.picks] == [shown(step) for step in expected.steps]
    # Each position is read in one pass with the picks before it, not token by token: rounding only.
    for pick, step in zip(session.picks, expected.steps):
        assert abs(pick.step.probability - step.probability) < 1e-6
        assert max(abs(a.probability - b.probability) for a, b in zip(pick.step.candidates, step.candidates)) < 1e-6
    # The session runs to the window, not to max_new_tokens: the text goes on.
    assert session.finish_reason is None and len(session.candidates) == NUM_CANDIDATES


def test_a_blank_seed_is_drawn_once_and_reported(engine, tiny_model):
    async def scenario():
        session = await start(engine, TUTORIAL_PROMPT, SamplingSettings())
        for _ in range(5):
            await session.choose(None)
        return session

    session = asyncio.run(scenario())
    assert session.seed is not None
    again = generate_text(tiny_model, TUTORIAL_PROMPT, SamplingSettings(seed=session.seed, max_new_tokens=5))
    assert session.token_ids == again.token_ids


def test_undo_goes_back_to_any_token_and_branches_from_there(engine):
    async def scenario():
        session = await start(engine, TUTORIAL_PROMPT, SamplingSettings(seed=9))
        for _ in range(6):
            await session.choose(None)
        before = list(session.picks)

        await session.undo(3)
        assert session.picks == before[:3] and session.text == "".join(p.step.text for p in before[:3])
        # The position is described as it was, and the sampler draws what it drew then.
        assert [c.token_id for c in session.candidates] == [c.token_id for c in before[3].step.candidates]
        assert max(abs(a.probability - b.probability) for a, b in zip(session.candidates, before[3].step.candidates)) < 1e-6
        assert (await session.choose(None)).token_id == before[3].step.token_id

        await session.undo(3)
        other = next(c.token_id for c in session.candidates if c.token_id != before[3].step.token_id)
        await session.choose(other)  # a new branch
        assert session.token_ids == [p.step.token_id for p in before[:3]] + [other]
        assert session.picks[-1].picked_by == PICKED_BY_YOU

        await session.undo(0)  # back to the prompt alone
        assert session.picks == [] and session.text == ""
        assert session.candidates == before[0].step.candidates
        assert await session.choose(None) == before[0].step

    asyncio.run(scenario())


def test_the_session_refuses_what_the_page_cannot_offer(engine):
    async def scenario():
        session = await start(engine, "Hi", SamplingSettings(seed=1))
        shown = {c.token_id for c in session.candidates}
        unshown = next(i for i in range(100) if i not in shown)
        with pytest.raises(BadRequest) as error:
            await session.choose(unshown)
        assert (error.value.code, error.value.facts) == ("not_a_candidate", {"token_id": str(unshown)})
        with pytest.raises(BadRequest) as error:
            await session.undo(1)
        assert (error.value.code, error.value.facts) == ("integer", {"parameter": "keep", "low": 0, "high": 0, "got": "1"})

        # A prompt that leaves the window room for two tokens: the second ends the text.
        full = await start(engine, " one" * 1022, SamplingSettings(seed=1))
        assert (await full.choose(None)).finish_reason is None
        assert (await full.choose(None)).finish_reason == "context" and full.candidates == ()
        with pytest.raises(BadRequest) as error:
            await full.choose(None)
        assert error.value.code == "text_ended"
        await full.undo(1)  # an ended text can be reopened by going back
        assert full.finish_reason is None and len(full.candidates) == NUM_CANDIDATES

    asyncio.run(scenario())


def test_picking_endoftext_ends_the_text_unseen(engine, tiny_model, monkeypatch):
    # A random-weight model almost never offers <|endoftext|>: make it the most likely token
    # of every pass that reads a position (the sampler's requests read the picks in one pass).
    extend = tiny_model.decoder.extend

    def favouring_endoftext(cache, rows, chunks):
        logits = extend(cache, rows, chunks).clone()
        logits[:, EOS] = logits.max() + 10.0
        return logits

    monkeypatch.setattr(tiny_model.decoder, "extend", favouring_endoftext)

    async def scenario():
        session = await start(engine, "Hi", SamplingSettings(seed=1))
        assert session.candidates[0].piece == TokenPiece(EOS, "<|endoftext|>", b"<|endoftext|>")
        step = await session.choose(EOS)
        return session, step

    session, step = asyncio.run(scenario())
    assert (step.token_id, step.text, step.finish_reason, session.text) == (EOS, "", "eos", "")
    assert (session.finish_reason, session.candidates, session.picks[-1].picked_by) == ("eos", (), PICKED_BY_YOU)


def test_a_click_the_engine_refuses_leaves_the_session_as_it_was(tiny_model_dir):
    engine = local_engine(tiny_model_dir, max_batch=1, queue_size=0)  # one request at a time, none in line

    async def scenario():
        session = await start(engine, TUTORIAL_PROMPT, SamplingSettings(seed=3))
        await session.choose(None)
        picks, offered = list(session.picks), session.candidates
        blocker = engine.submit(Request(LONG_RUN, TUTORIAL_PROMPT))
        next(iter(blocker))  # it runs: the one row is taken
        with pytest.raises(EngineBusy):
            await session.choose(offered[1].token_id)
        with pytest.raises(EngineBusy):
            await session.undo(0)
        assert (session.picks, session.candidates) == (picks, offered)
        blocker.cancel()
        assert list(blocker)[-1].finish_reason == "stopped"
        await session.choose(offered[1].token_id)  # the same click, now served
        assert session.token_ids == [picks[0].step.token_id, offered[1].token_id]

    try:
        asyncio.run(scenario())
    finally:
        engine.close()
