"""The teaching views through the engine: step mode, lanes, token groups, the cost race, and their rendering."""

from __future__ import annotations

import re
import threading

import gradio as gr
import pytest
import torch

from gpt2demo.engine import NUM_CANDIDATES, Candidate, Step, generate_steps, generate_text
from gpt2demo.sampling import Pick
from gpt2demo.settings import SamplingSettings
from gpt2demo.teaching.cost import KV_CACHE, TUTORIAL, CostPoint, cached_logits, race, tokens_per_second, tutorial_logits
from gpt2demo.teaching.lanes import first_divergence, repeated_ngrams, run_lanes, strategy_lanes
from gpt2demo.teaching.pieces import TokenPiece, byte_of_symbol, group_by_characters, group_pieces, token_piece
from gpt2demo.teaching.stepmode import PICKED_BY_SAMPLER, PICKED_BY_YOU, StepSession
from gpt2demo.textstream import TextStream
from gpt2demo.ui.views.common import candidates_html, labeller, piece_label, stop_run, visible
from gpt2demo.ui.views.cost_lesson import cost_frame, cost_table
from gpt2demo.ui.views.labels import LABELS, MESSAGES, add_labels
from gpt2demo.ui.views.next_token_chart import chart_frame
from gpt2demo.ui.views.strategies import lanes_html
from gpt2demo.ui.views.token_view import TokenView
from gpt2demo.ui.views.tokenizer_view import tokenizer_html

from conftest import TUTORIAL_IDS, TUTORIAL_PROMPT

EOS = 50256


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


def test_every_streamed_step_shows_the_models_own_distribution(tiny_model):
    settings = SamplingSettings(temperature=0.7, top_k=5, seed=11, max_new_tokens=12)
    steps = list(generate_steps(tiny_model, TUTORIAL_PROMPT, settings))
    new_ids = [s.token_id for s in steps]
    logits = full_forward_logits(tiny_model, TUTORIAL_IDS + new_ids)
    for step in steps:
        assert_candidates_are_the_models(step, logits[len(TUTORIAL_IDS) + step.index - 1], 0.7)
        assert [c.kept for c in step.candidates] == [True] * 5 + [False] * (NUM_CANDIDATES - 5)  # top-k = 5 cuts after the 5th


def test_step_mode_candidates_are_the_models_own_distribution(tiny_model):
    session = StepSession(tiny_model, TUTORIAL_PROMPT, SamplingSettings(temperature=1.3, seed=2))
    for rank in (4, None, 9, 0, None, 2):
        session.choose(None if rank is None else session.candidates[rank].token_id)
    logits = full_forward_logits(tiny_model, session.all_ids)
    for step in session.steps:
        assert_candidates_are_the_models(step, logits[len(TUTORIAL_IDS) + step.index - 1], 1.3)
    pending = Step(6, session.candidates[0].token_id, "", "", session.candidates[0].probability, session.candidates)
    assert_candidates_are_the_models(pending, logits[-1], 1.3)


# ---------------------------------------------------------------- step mode


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


def test_step_mode_replays_exactly(tiny_model):
    settings = SamplingSettings(temperature=0.9, top_k=10, seed=5)
    first = StepSession(tiny_model, "今天天气", settings)
    for rank in (3, None, 0, 7, None, None, 1, 9, None, 5):
        first.choose(None if rank is None else first.candidates[rank].token_id)
    picks = first.new_token_ids
    assert first.picked_by == [PICKED_BY_YOU, PICKED_BY_SAMPLER, PICKED_BY_YOU, PICKED_BY_YOU, PICKED_BY_SAMPLER,
                               PICKED_BY_SAMPLER, PICKED_BY_YOU, PICKED_BY_YOU, PICKED_BY_SAMPLER, PICKED_BY_YOU]

    # The same picks, made by hand in a new session, give the same text and the same steps.
    again = StepSession(tiny_model, "今天天气", settings)
    for token_id in picks:
        again.choose(token_id)
    assert again.new_token_ids == picks
    assert again.text == first.text == tiny_model.tokenizer.decode(picks)
    assert [(s.token_id, s.text, s.candidates) for s in again.steps] == [(s.token_id, s.text, s.candidates) for s in first.steps]

    # ... and the same as a generation forced to those ids (one full forward, no cache).
    forced_text, forced_tops = forced_decoding(tiny_model, first.prompt.token_ids, picks, 0.9)
    assert forced_text == first.text
    for step, top in zip(first.steps, forced_tops):
        assert [c.token_id for c in step.candidates] == [token_id for token_id, _ in top]
        assert max(abs(c.probability - p) for c, (_, p) in zip(step.candidates, top)) < 1e-5


def test_step_mode_with_every_pick_left_to_the_sampler_is_generate_text(tiny_model):
    settings = SamplingSettings(temperature=0.8, top_k=20, top_p=0.95, seed=123, max_new_tokens=25)
    session = StepSession(tiny_model, TUTORIAL_PROMPT, settings)
    while not session.finish_reason:
        session.choose()
    expected = generate_text(tiny_model, TUTORIAL_PROMPT, settings)
    assert session.steps == expected.steps  # token, text delta, probability, candidates, finish_reason
    assert (session.text, session.finish_reason, session.candidates) == (expected.text, "length", ())
    with pytest.raises(ValueError, match="has ended"):
        session.choose()


def test_undo_goes_back_to_any_token_and_branches_from_there(tiny_model):
    session = StepSession(tiny_model, TUTORIAL_PROMPT, SamplingSettings(seed=9))
    for _ in range(6):
        session.choose()
    before = list(session.steps)

    session.undo(3)
    assert session.steps == before[:3] and session.text == "".join(s.text for s in before[:3])
    # The position is described as it was, and the sampler draws what it drew then (its stream was rewound).
    assert [c.token_id for c in session.candidates] == [c.token_id for c in before[3].candidates]
    assert max(abs(a.probability - b.probability) for a, b in zip(session.candidates, before[3].candidates)) < 1e-6
    assert session.choose().token_id == before[3].token_id

    session.undo(3)
    other = next(c.token_id for c in session.candidates if c.token_id != before[3].token_id)
    session.choose(other)  # a new branch
    assert session.new_token_ids == [s.token_id for s in before[:3]] + [other]
    assert session.picked_by[-1] == PICKED_BY_YOU

    session.undo(0)  # back to the prompt: its prefill again
    assert session.steps == [] and session.text == ""
    assert session.candidates == before[0].candidates
    assert session.choose() == before[0]


def test_step_mode_refuses_what_the_page_cannot_offer(tiny_model):
    session = StepSession(tiny_model, "Hi", SamplingSettings(seed=1, max_new_tokens=2))
    shown = {c.token_id for c in session.candidates}
    with pytest.raises(ValueError, match="not one of the shown candidates"):
        session.choose(next(i for i in range(100) if i not in shown))
    with pytest.raises(ValueError, match="keep must be from 0 to 0"):
        session.undo(1)
    session.choose()
    assert session.choose().finish_reason == "length" and session.candidates == ()
    with pytest.raises(ValueError, match="has ended"):
        session.choose()
    session.undo(1)  # an ended text can be reopened by going back
    assert session.finish_reason is None and len(session.candidates) == NUM_CANDIDATES


def test_step_mode_picking_endoftext_ends_the_text_unseen(tiny_model):
    session = StepSession(tiny_model, "Hi", SamplingSettings(seed=1))
    # A random-weight model almost never offers <|endoftext|>: put it among the candidates by hand.
    session._pending = Pick(token_id=EOS, probability=0.5, candidate_ids=[EOS], candidate_probabilities=[0.5],
                            candidate_kept=[True])
    assert session.candidates == (Candidate(EOS, "<|endoftext|>", 0.5, True),)
    step = session.choose(EOS)
    assert (step.token_id, step.text, step.finish_reason, session.text) == (EOS, "", "eos", "")


# ---------------------------------------------------------------- strategies side by side


def test_the_four_lanes_share_one_seed_and_length():
    lanes = strategy_lanes(SamplingSettings(max_new_tokens=30, temperature=0.7, top_k=40, repetition_penalty=1.3))
    assert [lane.key for lane in lanes] == ["greedy", "top_k", "top_p", "custom"]
    seed = lanes[0].settings.seed
    assert seed is not None and all(lane.settings.seed == seed and lane.settings.max_new_tokens == 30 for lane in lanes)
    greedy, top_k, top_p, custom = (lane.settings for lane in lanes)
    assert greedy.greedy and (top_k.top_k, top_k.top_p, top_k.temperature) == (10, 1.0, 1.0)
    assert (top_p.top_k, top_p.top_p, top_p.temperature) == (0, 0.9, 1.0)
    assert (custom.temperature, custom.top_k, custom.repetition_penalty, custom.greedy) == (0.7, 40, 1.3, False)


def test_lanes_run_as_one_batch_and_each_equals_its_run_alone(tiny_model, monkeypatch):
    decoder = tiny_model.decoder
    rows_per_pass = []
    original = decoder.decode

    def counting_decode(cache, token_ids):
        rows_per_pass.append(len(token_ids))
        return original(cache, token_ids)

    monkeypatch.setattr(decoder, "decode", counting_decode)
    lanes = strategy_lanes(SamplingSettings(max_new_tokens=15, temperature=0.7, top_k=40, seed=4))
    updates = list(run_lanes(tiny_model, TUTORIAL_PROMPT, lanes))
    runs = updates[-1]
    assert rows_per_pass == [4] * 14  # one forward pass per step for all four lanes; the first token came from the prefills
    assert len(updates) == 15
    monkeypatch.undo()
    for run in runs:
        alone = generate_text(tiny_model, TUTORIAL_PROMPT, run.lane.settings)
        assert run.token_ids == alone.token_ids and run.finished


def test_a_cancelled_comparison_stops_every_lane(tiny_model):
    cancel = threading.Event()
    lanes = strategy_lanes(SamplingSettings(max_new_tokens=50, seed=4))
    for count, runs in enumerate(run_lanes(tiny_model, TUTORIAL_PROMPT, lanes, cancel), start=1):
        if count == 3:
            cancel.set()
    assert [run.steps[-1].finish_reason for run in runs] == ["stopped"] * 4
    assert [len(run.token_ids) for run in runs] == [3] * 4


@pytest.mark.parametrize("reference, other, expected", [
    ([1, 2, 3], [1, 2, 3], None),
    ([1, 2, 3], [1, 9, 3], 1),
    ([1, 2, 3], [7, 2, 3], 0),
    ([1, 2, 3], [1, 2], 2),
    ([1, 2], [1, 2, 3], 2),
    ([], [], None),
])
def test_first_divergence(reference, other, expected):
    assert first_divergence(reference, other) == expected


@pytest.mark.parametrize("ids, n, expected", [
    ([1, 2, 3, 4], 3, [False] * 4),
    ([1, 2, 3, 1, 2, 3], 3, [True] * 6),
    ([1, 2, 3, 9, 1, 2, 3], 3, [True, True, True, False, True, True, True]),
    ([5, 5, 5, 5], 3, [True] * 4),  # overlapping occurrences count
    ([5, 5, 5], 3, [False] * 3),
    ([1, 2, 7, 1, 2], 2, [True, True, False, True, True]),
    ([1, 2], 3, [False, False]),
])
def test_repeated_ngrams(ids, n, expected):
    assert repeated_ngrams(ids, n) == expected


# ---------------------------------------------------------------- tokens and characters


def test_the_byte_table_is_gpt2s():
    table = byte_of_symbol()
    assert len(table) == 256 and sorted(table.values()) == list(range(256))
    assert (table["Ġ"], table["Ċ"], table["A"], table["ä"]) == (0x20, 0x0A, 0x41, 0xE4)


def test_chinese_characters_become_several_byte_tokens(tiny_model):
    ids = tiny_model.encode("今天 Hello")
    assert ids == [20015, 232, 25465, 18435]
    groups = group_by_characters(tiny_model.tokenizer, ids)
    assert [(g.text, [p.token_id for p in g.tokens], [p.hex for p in g.tokens]) for g in groups] == [
        ("今", [20015, 232], ["e4 bb", "8a"]),
        ("天", [25465], ["e5 a4 a9"]),
        (" Hello", [18435], ["20 48 65 6c 6c 6f"]),
    ]
    assert [g.split for g in groups] == [True, False, False]
    assert token_piece(tiny_model.tokenizer, 18435).piece == "ĠHello"
    assert token_piece(tiny_model.tokenizer, EOS).data == b"<|endoftext|>"


def test_grouping_handles_tokens_across_characters_and_bad_bytes():
    piece = lambda token_id, data: TokenPiece(token_id, "", data)
    across = group_pieces([piece(1, b"\xe4\xbb"), piece(2, b"\x8a\xe5"), piece(3, b"\xa4\xa9"), piece(4, b"!")])
    assert [(g.text, [p.token_id for p in g.tokens]) for g in across] == [("今天", [1, 2, 3]), ("!", [4])]
    bad = group_pieces([piece(1, b"\x8a"), piece(2, b"a"), piece(3, b"\xe4")])
    assert [(g.text, [p.token_id for p in g.tokens]) for g in bad] == [("\ufffd", [1]), ("a", [2]), ("\ufffd", [3])]


def test_an_emoji_is_four_bytes_in_two_tokens(tiny_model):
    groups = group_by_characters(tiny_model.tokenizer, tiny_model.encode("🙂"))
    assert len(groups) == 1 and groups[0].text == "🙂"
    assert b"".join(p.data for p in groups[0].tokens) == "🙂".encode() and len(groups[0].tokens) == 2


# ---------------------------------------------------------------- the cost race


def test_the_race_alternates_and_both_methods_write_the_greedy_text(tiny_model):
    points = list(race(tiny_model, TUTORIAL_IDS, 20))
    assert [(p.method, p.position) for p in points[:4]] == [(TUTORIAL, 0), (KV_CACHE, 0), (TUTORIAL, 1), (KV_CACHE, 1)]
    tutorial = [p.token_id for p in points if p.method == TUTORIAL]
    cached = [p.token_id for p in points if p.method == KV_CACHE]
    greedy = generate_text(tiny_model, TUTORIAL_PROMPT, SamplingSettings(greedy=True, max_new_tokens=20)).token_ids
    assert tutorial == cached == greedy
    assert all(p.seconds > 0 for p in points)


def test_both_steps_see_the_same_logits(tiny_model):
    full, cached = tutorial_logits(tiny_model), cached_logits(tiny_model)
    ids = list(TUTORIAL_IDS)
    for token_id in (11, 257, 582):
        assert torch.allclose(full(ids), cached(ids), atol=1e-4)
        ids.append(token_id)


def test_the_race_fits_the_window_and_stops_on_cancel(tiny_model):
    assert len(list(race(tiny_model, [11] * 1020, 25))) == 2 * 4  # the window leaves 4 tokens
    cancel = threading.Event()
    points = []
    for point in race(tiny_model, TUTORIAL_IDS, 50, cancel):
        points.append(point)
        cancel.set()
    assert len(points) == 2


def test_tokens_per_second_over_the_first_tokens():
    points = [CostPoint(TUTORIAL, 0, 1, 0.5), CostPoint(KV_CACHE, 0, 1, 0.25), CostPoint(TUTORIAL, 1, 1, 1.5)]
    assert tokens_per_second(points, TUTORIAL) == 1.0
    assert tokens_per_second(points, TUTORIAL, upto=1) == 2.0
    assert tokens_per_second(points, TUTORIAL, upto=3) is None  # not that far yet
    assert tokens_per_second(points, KV_CACHE) == 4.0
    assert tokens_per_second([], KV_CACHE) is None


# ---------------------------------------------------------------- what the views draw


def test_views_labels_exist_in_both_languages_and_join_the_pages_i18n():
    assert LABELS["en"].keys() == LABELS["zh"].keys() and MESSAGES["en"].keys() == MESSAGES["zh"].keys()
    page_en = {"title": "T"}
    i18n = gr.I18n(en=page_en, zh={"title": "标题"})
    add_labels(i18n)
    assert i18n.translations["zh"]["title"] == "标题" and i18n.translations["zh"]["views_tab_tokenizer"] == "分词器"
    assert page_en == {"title": "T"}  # the page's own table is not changed


def test_token_boxes_show_whitespace_and_half_characters():
    assert (visible("\n"), visible("  "), visible(" man")) == ("↵", "␣␣", " man")
    assert piece_label(TokenPiece(20015, "ä»", b"\xe4\xbb"), EOS) == "‹e4 bb›"
    assert piece_label(TokenPiece(EOS, "<|endoftext|>", b"<|endoftext|>"), EOS) == "<|endoftext|>"


def test_the_token_view_draws_one_shaded_box_per_step_and_the_selected_steps_candidates(tiny_model):
    settings = SamplingSettings(top_k=4, seed=3, max_new_tokens=6)
    steps = list(generate_steps(tiny_model, "今天", settings))
    view = TokenView(tiny_model, "今天", settings, seed=3)
    for step in steps:
        view.add(step)
    html, chart, cutoff, detail, status, state = view.outputs("en", selected=2)
    assert state is view and html.count('class="tv-box') == 6 and html.count("tv-selected") == 1
    assert [int(i) for i in re.findall(r'data-token-id="(\d+)"', html)] == [s.token_id for s in steps]
    assert "Step 2: chose" in detail and detail.count("★") == 1 and detail.count("tv-cutoff") == 1
    assert status == "6 tokens · finished: length reached · seed 3"
    assert cutoff == f"4 of the {NUM_CANDIDATES} most likely stay in the running (top-k = 4); the rest can never be drawn."
    chosen = steps[2]
    assert chart["percent"].tolist() == [100 * c.probability for c in chosen.candidates]
    assert chart["status"].tolist() == [
        "chosen" if c.token_id == chosen.token_id else "in the running" if c.kept else "cut off" for c in chosen.candidates]
    assert chart["token"].tolist()[0].startswith("1. ")
    _, chinese_chart, _, chinese_detail, _, _ = view.outputs("zh")  # the newest step, in Chinese
    assert "选中" in chinese_chart["status"].tolist() and "第 5 步" in chinese_detail


def test_a_growing_token_view_only_appends_so_streaming_sends_only_new_boxes(tiny_model):
    settings = SamplingSettings(seed=3, max_new_tokens=30)
    view = TokenView(tiny_model, TUTORIAL_PROMPT, settings)
    before = view.html()
    for step in generate_steps(tiny_model, TUTORIAL_PROMPT, settings):
        view.add(step)
        after = view.html()
        if all(box.piece.whole for box in view.boxes[-2:]):  # a completed half character reframes its group
            assert after.startswith(before)
        before = after


def test_the_candidate_table_draws_the_cut_and_a_pick_outside_the_top_ten(tiny_model):
    candidates = (Candidate(1, "a", 0.5, True), Candidate(2, "b", 0.3, True), Candidate(3, "c", 0.1, False))
    html = candidates_html(candidates, 99, 0.01, SamplingSettings(top_k=2), labeller(tiny_model), "en")
    assert html.index("tv-cutoff") > html.index('data-index="1"') and html.index("tv-cutoff") < html.index('data-index="2"')
    assert "2 of the 3 most likely stay in the running (top-k = 2)" in html
    assert "chosen: " in html and "outside the 3 shown" in html
    all_kept = candidates_html(candidates[:2], 1, 0.5, SamplingSettings(top_k=2), labeller(tiny_model), "zh")
    assert "tv-cutoff" not in all_kept and "显示的 2 个都留在候选中（top-k = 2）" in all_kept


def test_chart_frame_of_no_step_is_empty():
    assert chart_frame(None, str, "en").empty


def test_lanes_html_marks_repeats_and_the_first_token_off_the_greedy_path(tiny_model):
    lanes = strategy_lanes(SamplingSettings(max_new_tokens=12, seed=4))
    *_, runs = run_lanes(tiny_model, TUTORIAL_PROMPT, lanes)
    html = lanes_html(TUTORIAL_PROMPT, runs, tiny_model.tokenizer, EOS, "en")
    greedy = runs[0].token_ids
    assert html.count('class="tv-lane"') == 4
    assert html.count("tv-repeat") == sum(sum(repeated_ngrams(run.token_ids)) for run in runs)
    assert html.count("tv-diverge") == sum(first_divergence(greedy, run.token_ids) is not None for run in runs[1:])
    assert "Top-k = 10 (the tutorial)" in html and "Yours: top-k = 10" in html


def test_the_tokenizer_view_lists_indexed_tokens_and_groups(tiny_model):
    html = tokenizer_html(tiny_model, "今天 Hello", "en")
    assert "indexed_tokens = [20015, 232, 25465, 18435]" in html
    assert "8 characters → 4 tokens; 1 characters split over several tokens" in html
    assert html.count('class="tk-group tk-split"') == 1 and html.count('class="tk-group"') == 2
    assert "4 个 token" in tokenizer_html(tiny_model, "今天 Hello", "zh")


def test_the_cost_table_reports_tokens_per_second_at_each_milestone():
    points = [CostPoint(method, position, 1, seconds) for position in range(50)
              for method, seconds in ((TUTORIAL, 0.1), (KV_CACHE, 0.02))]
    table = cost_table(points, 50, "en")
    assert table.splitlines() == [
        "| method | first 25 tokens | first 50 tokens |",
        "|---|---|---|",
        "| tutorial: whole text every step | 10.0 | 10.0 |",
        "| KV cache: newest token only | 50.0 | 50.0 |",
        "| | KV cache is 5.0× faster | KV cache is 5.0× faster |",
    ]
    frame = cost_frame(points[:2], "en")
    assert frame.values.tolist() == [[0, 100.0, "tutorial: whole text every step"], [0, 20.0, "KV cache: newest token only"]]


# ---------------------------------------------------------------- the tabs' handlers, without a browser


def request(language: str = "en-US,en;q=0.9", session: str = "tab-1") -> gr.Request:
    """What Gradio passes a handler for one browser tab."""
    return gr.Request(headers={"accept-language": language}, session_hash=session)


def selected(index: int) -> gr.SelectData:
    return gr.SelectData(None, {"index": index, "value": ""})


@pytest.fixture(scope="module")
def page_handlers(tiny_model_dir):
    from gpt2demo.ui.handlers import Handlers
    from gpt2demo.ui.service import ModelService

    service = ModelService(str(tiny_model_dir), "cpu", max_batch=4, queue_size=8).start()
    assert service.ready.wait(60) and service.model is not None, service.error
    try:
        yield Handlers(service)
    finally:
        service.close()


async def collect(outputs) -> list[tuple]:
    return [item async for item in outputs]


def test_the_inside_tab_streams_the_engines_steps_and_stop_ends_it(page_handlers):
    import asyncio

    from gpt2demo.ui.views.token_view import InsideHandlers

    events = InsideHandlers(page_handlers)
    outputs = asyncio.run(collect(events.generate(TUTORIAL_PROMPT, 12, 10, 1.0, 1.0, "21", request())))
    view = outputs[-1][-1]
    expected = generate_text(page_handlers.service.model, TUTORIAL_PROMPT, SamplingSettings(max_new_tokens=12, seed=21))
    assert [s.token_id for s in view.steps] == expected.token_ids
    assert outputs[0][4] == "starting… · seed 21" and outputs[-1][4] == "12 tokens · finished: length reached · seed 21"
    html, chart, cutoff, detail = events.select(view, selected(3), request("zh-CN"))
    assert "tv-selected" in html and "第 3 步" in detail and len(chart) == NUM_CANDIDATES
    assert events.select(view, selected(12), request()) == (gr.skip(),) * 4

    async def stop_after_first_token():
        stream = events.generate(TUTORIAL_PROMPT, 1000, 10, 1.0, 1.0, "21", request())
        first = await anext(stream)
        events.stop(first[-1])
        return [first] + [item async for item in stream]

    stopped = asyncio.run(stop_after_first_token())
    assert "stopped" in stopped[-1][4] and len(stopped[-1][-1].steps) < 1000


def test_the_sampler_tab_picks_goes_back_and_undoes(page_handlers):
    from gpt2demo.ui.views.step_mode import SamplerHandlers

    events = SamplerHandlers(page_handlers)
    text, candidates, status, session = events.start(TUTORIAL_PROMPT, 10, 1.0, 1.0, "8", request())
    assert status == "0 tokens · 0 picked by you, 0 by the sampler · seed 8" and candidates.count("data-index=") == NUM_CANDIDATES
    third = session.candidates[2].token_id
    events.choose(session, selected(2), request())
    events.sample(session, request())
    _, _, status, _ = events.sample(session, request())
    assert session.new_token_ids[0] == third and status == "3 tokens · 1 picked by you, 2 by the sampler · seed 8"
    text, _, status, _ = events.go_back(session, selected(1), request("zh-CN"))
    assert session.new_token_ids == [third] and status.startswith("1 个 token") and text.count("tv-you") == 1
    events.undo(session, request())
    assert session.steps == []
    assert events.choose(session, selected(NUM_CANDIDATES), request()) == (gr.skip(),) * 4  # a row that is not there
    with pytest.raises(gr.Error, match="top_k must be"):
        events.start(TUTORIAL_PROMPT, -1, 1.0, 1.0, "8", request())


def test_the_strategies_and_cost_tabs_run_to_the_end_or_stop(page_handlers):
    from gpt2demo.ui.views.cost_lesson import CostHandlers
    from gpt2demo.ui.views.strategies import StrategyHandlers

    lanes = list(StrategyHandlers(page_handlers).compare(TUTORIAL_PROMPT, 10, "3", 0.8, 40, 1.0, 1.0, request()))
    html, status, cancel = lanes[-1]
    assert status == "9 batch steps for 4 lanes · seed 3" and html.count('class="tv-lane"') == 4
    stream = StrategyHandlers(page_handlers).compare(TUTORIAL_PROMPT, 500, "3", 0.8, 40, 1.0, 1.0, request())
    stop_run(next(stream)[2])
    assert list(stream)[-1][1].endswith("· stopped")

    frame, table, status, _ = list(CostHandlers(page_handlers).race(TUTORIAL_PROMPT, 25, request()))[-1]
    assert len(frame) == 50 and "first 25 tokens" in table and status.endswith("Both wrote the same text.")
    stream = CostHandlers(page_handlers).race(TUTORIAL_PROMPT, 200, request())
    stop_run(next(stream)[3])
    *_, (frame, _, status, _) = stream
    assert len(frame) < 400 and status.endswith("· stopped")


def test_a_tab_used_before_the_model_is_ready_says_so():
    from types import SimpleNamespace

    from gpt2demo.ui.views.tokenizer_view import TokenizerHandlers

    loading = SimpleNamespace(service=SimpleNamespace(model=None, error=""))
    with pytest.raises(gr.Error, match="still loading"):
        TokenizerHandlers(loading).tokenize("Hi", request())
    failed = SimpleNamespace(service=SimpleNamespace(model=None, error="no such folder"))
    with pytest.raises(gr.Error, match="no such folder"):
        TokenizerHandlers(failed).tokenize("Hi", request())
