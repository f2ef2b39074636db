"""The remote engine's front end without a server: the same fitting and tokens as the local engine,
vLLM's wire format read right, and failures (nobody there, a silent server) ending as messages, not hangs.

The tests against a real vLLM server are in test_vllm_*.py (marked vllm).
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gpt2demo.cli import WORDS
from gpt2demo.errors import BadRequest, EngineUnavailable, GenerationFailed
from gpt2demo.generation import NUM_CANDIDATES, fit_prompt
from gpt2demo.model import load_model
from gpt2demo.serving.interface import Request, Step
from gpt2demo.serving.openai_wire import ServedChunk, ServedToken, completion_body, parse_event, sse_data
from gpt2demo.serving.remote import RemoteEngine, api_base, is_processed, served_entry, tokenizer_spec
from gpt2demo.serving import remote_generation
from gpt2demo.serving.remote_generation import RemoteGeneration
from gpt2demo.serving.served_model import ServedModel, find_tokenizer, gpt2_parameters, load_tokenizer
from gpt2demo.settings import SamplingSettings
from gpt2demo.sources import BUNDLED_DIR
from gpt2demo.ui.i18n import MESSAGES, describe_error
from gpt2demo.ui.views.inside import TokenView
from gpt2demo.ui.views.strategies import lane_html
from gpt2demo.teaching.lanes import Lane, LaneRun
from gpt2demo.serving.tickets import Ticket
from tools.ports import free_port

import app as app_py

from conftest import DEADLINE_SECONDS, TUTORIAL_PROMPT

# Verbatim from vLLM 0.32 (scratch/vllm/NOTES.md §3.1, out_p9.txt): three tokens in one chunk, the
# chosen one first in each top_logprobs and outside the 2 best there (so 3 entries).
MULTI_TOKEN_CHUNK = (
    '{"id":"cmpl-bc83009260ca6abb","object":"text_completion","created":1796157635,"model":"/work/main/gpt2demo/bundled",'
    '"choices":[{"index":0,"text":" qualifying her","logprobs":{"text_offset":[99,112,125],"token_logprobs":'
    '[-10.739402770996094,-3.034060478210449,-3.0797178745269775],"tokens":["token_id:4015","token_id:3087","token_id:299"],'
    '"top_logprobs":[{"token_id:4015":-10.739402770996094,"token_id:12":-2.3314437866210938,"token_id:273":-2.4971580505371094},'
    '{"token_id:3087":-3.034060478210449,"token_id:1867":-0.9113578200340271,"token_id:1912":-1.2381916046142578},'
    '{"token_id:299":-3.0797178745269775,"token_id:273":-1.2430570125579834,"token_id:12":-2.142629861831665}]},'
    '"finish_reason":null,"stop_reason":null,"prompt_token_ids":null,"token_ids":[4015,3087,299]}]}'
)
EOS_CHUNK = ('{"choices":[{"index":0,"text":"","logprobs":{"text_offset":[0],"token_logprobs":[0.0],"tokens":["token_id:0"],'
             '"top_logprobs":[{"token_id:0":0.0}]},"finish_reason":"stop","stop_reason":null,"token_ids":[0]}]}')
ERROR_EVENT = ('{"error": {"message": "Requested sample logprobs of 21, which is greater than max allowed: 20 '
               '(parameter=logprobs, value=21)", "type": "BadRequestError", "param": "logprobs", "code": 400}}')


@pytest.fixture(scope="module")
def bundled():
    return load_model("bundled", "cpu")


@pytest.fixture(scope="module")
def served(bundled):
    """The bundled model as a remote engine's front end knows it: tokenizer files only, the server's window."""
    folder = find_tokenizer(str(BUNDLED_DIR))
    return ServedModel(load_tokenizer(folder.path), folder, str(BUNDLED_DIR), bundled.window)


# ---------------------------------------------------------------- the same prompt, ids and text as the local engine


@pytest.mark.parametrize("length, max_new_tokens", [(0, 100), (5, 100), (19, 600), (400, 200), (511, 1), (512, 40),
                                                    (700, 100), (1500, 1024)])
def test_prompts_fit_exactly_as_the_local_engine_fits_them(bundled, served, length, max_new_tokens):
    ids = (bundled.encode(" one two three four") * 400)[:length]
    assert served.fit(ids, max_new_tokens) == fit_prompt(bundled, ids, max_new_tokens)


def test_text_becomes_the_same_ids_and_pieces_and_an_empty_prompt_the_same_start(bundled, served):
    text = "Yesterday, a man said <|endoftext|> 你好 🙂\n"
    assert served.encode(text) == bundled.encode(text)  # a typed <|endoftext|> stays plain text
    assert served.start_token_ids == bundled.start_token_ids == bundled.encode("\n\n")  # the folder's gpt2demo.json
    ids = bundled.encode(text)
    assert served.pieces.many(ids) == bundled.pieces.many(ids) and served.decode(ids) == bundled.decode(ids)
    assert (served.vocab_size, served.eos_token_id, served.window) == (4096, 0, 512)


def test_the_parameter_count_from_the_config_is_the_models_own(bundled, tiny_model):
    assert gpt2_parameters(json.loads((BUNDLED_DIR / "config.json").read_text())) == bundled.n_params
    assert gpt2_parameters(tiny_model.model.config.to_dict()) == tiny_model.n_params
    assert gpt2_parameters({"model_type": "llama"}) == 0


def test_the_engine_reports_as_many_candidates_as_the_local_one():
    assert remote_generation.NUM_CANDIDATES == NUM_CANDIDATES


def test_a_temperature_vllm_refuses_is_refused_here_with_the_range_it_allows(served):
    with pytest.raises(BadRequest) as error:
        served.check_settings(SamplingSettings(temperature=3.0))
    assert (error.value.code, error.value.facts) == ("number", {"parameter": "temperature", "low": 0.01, "high": 2.0,
                                                                 "got": "3.0"})
    assert describe_error(error.value, "en") == "temperature must be a number from 0.01 to 2.0 (got 3.0)"
    served.check_settings(SamplingSettings(temperature=3.0, greedy=True))  # greedy ignores the temperature


# ---------------------------------------------------------------- the wire


def test_a_chunk_of_several_tokens_gives_every_token_with_its_top_logprobs():
    chunk = parse_event(sse_data("data: " + MULTI_TOKEN_CHUNK))
    assert [t.token_id for t in chunk.tokens] == [4015, 3087, 299] and chunk.finish_reason is None
    assert chunk.tokens[1] == ServedToken(3087, -3.034060478210449,
                                          ((3087, -3.034060478210449), (1867, -0.9113578200340271), (1912, -1.2381916046142578)))
    assert parse_event(EOS_CHUNK) == ServedChunk((ServedToken(0, 0.0, ((0, 0.0),)),), "stop")
    assert parse_event("[DONE]") is None and sse_data("") is None and sse_data(": ping") is None


def test_an_error_inside_a_200_stream_is_an_error_with_the_servers_words():
    with pytest.raises(GenerationFailed) as error:
        parse_event(ERROR_EVENT)
    assert (error.value.code, error.value.facts["status"], error.value.facts["kind"]) == ("engine_error", 400, "BadRequestError")
    assert describe_error(error.value, "en") == (
        "The generation server refused the request (HTTP 400: Requested sample logprobs of 21, which is greater than "
        "max allowed: 20 (parameter=logprobs, value=21)).")


def test_the_request_sends_ids_every_sampling_value_and_greedy_as_temperature_zero():
    settings = SamplingSettings(top_k=10, top_p=0.9, temperature=0.7, repetition_penalty=1.1, seed=5)
    body = completion_body("gpt2", [1, 2], settings, 5, 7, 15)
    assert body == {"model": "gpt2", "prompt": [1, 2], "max_tokens": 7, "stream": True, "seed": 5, "temperature": 0.7,
                    "top_k": 10, "top_p": 0.9, "repetition_penalty": 1.1, "ignore_eos": False, "return_token_ids": True,
                    "return_tokens_as_token_ids": True, "logprobs": 15}
    greedy = completion_body("gpt2", [1], SamplingSettings(greedy=True, top_k=10), 0, 1, None)
    assert (greedy["temperature"], greedy["top_k"], greedy["top_p"], "logprobs" in greedy) == (0.0, 0, 1.0, False)


def test_only_processed_logprobs_show_the_probes_cut():
    assert is_processed(((283, 0.0), (8, -9999.0), (7, -9999.0)))
    assert not is_processed(((283, -1.2693), (409, -1.3709), (199, -3.2937)))  # raw: every token has its real value
    assert not is_processed(((267, 9.886), (8, -9999.0)))  # processed_logits: logits, not log probabilities
    assert not is_processed(((283, 0.0),))


def test_the_served_model_and_its_tokenizer_come_from_the_models_listing(tmp_path):
    listing = {"data": [{"id": "gpt2", "root": str(BUNDLED_DIR), "max_model_len": 512}]}
    assert served_entry(listing, None, "u")["id"] == "gpt2"
    assert served_entry(listing, str(BUNDLED_DIR), "u")["id"] == "gpt2"  # by its folder
    assert tokenizer_spec(listing["data"][0]) == str(BUNDLED_DIR)
    assert tokenizer_spec({"id": "openai-community/gpt2", "root": "openai-community/gpt2"}) == "hf:openai-community/gpt2"
    two = {"data": [{"id": "a"}, {"id": "b"}]}
    with pytest.raises(EngineUnavailable) as error:
        served_entry(two, None, "http://h/v1")
    assert (error.value.code, error.value.facts) == ("choose_model", {"url": "http://h/v1", "served": "a, b"})
    with pytest.raises(EngineUnavailable) as error:
        served_entry(two, "c", "http://h/v1")
    assert (error.value.code, error.value.facts["model"]) == ("model_not_served", "c")
    assert api_base("http://h:8000") == api_base("http://h:8000/v1/") == "http://h:8000/v1"


# ---------------------------------------------------------------- one request's steps


def steps_of(generation, *chunks) -> list[Step]:
    return list(generation.forced_steps) + [step for chunk in chunks for step in generation.take(chunk)]


def test_picks_come_first_as_forced_steps_and_go_to_the_server_as_prompt_ids(bundled, served):
    prompt = bundled.encode(TUTORIAL_PROMPT)
    picks = bundled.encode(" and the")
    settings = SamplingSettings(seed=9, max_new_tokens=1024, top_k=10)
    generation = RemoteGeneration(served, Request(settings, "", tuple(prompt), tuple(picks), max_steps=1), True)
    body = generation.body()
    assert body["prompt"] == prompt + picks and body["max_tokens"] == 1 and body["seed"] == 9
    sampled = ServedToken(267, -0.5, ((267, -0.5), (12, -1.2), (8, -9999.0)))
    steps = steps_of(generation, ServedChunk((sampled,), "length"))
    assert [(s.token_id, s.forced, s.probability, s.finish_reason) for s in steps] == [
        (picks[0], True, None, None), (picks[1], True, None, None), (267, False, pytest.approx(0.60653066), "paused")]
    assert [(c.token_id, c.kept) for c in steps[-1].candidates] == [(267, True), (12, True)]  # the cut filler is not shown
    assert "".join(s.text for s in steps) == bundled.decode(picks + [267])


def test_the_window_ends_the_text_with_context_and_eos_ends_it_unseen(bundled, served):
    settings = SamplingSettings(seed=1, max_new_tokens=100)
    long_prompt = tuple(bundled.encode(" word") * 500)  # 500 of the window's 512
    generation = RemoteGeneration(served, Request(settings, "", long_prompt), True)
    assert generation.body()["max_tokens"] == 12 and generation.prompt.lowered_from == 100
    tokens = tuple(ServedToken(283, -0.1, ((283, -0.1),)) for _ in range(12))
    steps = steps_of(generation, ServedChunk(tokens[:5], None), ServedChunk(tokens[5:], "length"))
    assert len(steps) == 12 and steps[-1].finish_reason == "context" and all(s.finish_reason is None for s in steps[:-1])
    ended = RemoteGeneration(served, Request(settings, "Hi"), True)
    steps = steps_of(ended, ServedChunk((ServedToken(283, -0.1, ()),), None), parse_event(EOS_CHUNK))
    assert [(s.token_id, s.text, s.finish_reason) for s in steps] == [(283, " and", None), (0, "", "eos")]


def test_greedy_candidates_keep_only_the_chosen_and_a_stop_flushes_a_half_character(bundled, served):
    greedy = RemoteGeneration(served, Request(SamplingSettings(greedy=True), "Hi"), True)
    (step,) = greedy.take(ServedChunk((ServedToken(283, -0.7, ((283, -0.7), (409, -0.8), (199, -3.5))),), None))
    assert [(c.token_id, c.kept) for c in step.candidates] == [(283, True), (409, False), (199, False)]
    half = bundled.encode("你")[:1]  # the first byte-token of a three-byte character
    cut = RemoteGeneration(served, Request(SamplingSettings(seed=2), "Hi"), True)
    (step,) = cut.take(ServedChunk((ServedToken(half[0], -0.1, ()),), None))
    assert step.text == "" and cut.stopped_step() == Step(1, None, bundled.decode(half), None, (), "stopped")


def test_without_processed_logprobs_steps_have_no_probability_and_no_candidates(served):
    generation = RemoteGeneration(served, Request(SamplingSettings(seed=2), "Hi"), False)
    assert "logprobs" not in generation.body()
    (step,) = generation.take(ServedChunk((ServedToken(283, None, ()),), None))
    assert (step.probability, step.candidates) == (None, ())


# ---------------------------------------------------------------- failures end as messages


def test_a_server_that_is_not_there_fails_the_start_with_its_url():
    url = f"http://127.0.0.1:{free_port()}/v1"
    engine = RemoteEngine(url).start()
    try:
        state = engine.wait_ready_blocking(DEADLINE_SECONDS)
        assert state.phase == "failed" and state.error.code == "engine_unreachable" and state.error.facts["url"] == url
        assert describe_error(state.error, "en").startswith(f"The generation server at {url} could not be reached (")
        with pytest.raises(EngineUnavailable) as refused:
            engine.submit(Request(SamplingSettings(), "x")).accepted_blocking(DEADLINE_SECONDS)
        assert refused.value.code == "engine_unreachable"
        with pytest.raises(EngineUnavailable) as race:
            engine.race((1, 2), 5).accepted_blocking(DEADLINE_SECONDS)
        assert (race.value.code, race.value.facts) == ("unsupported", {"feature": "race"})
    finally:
        engine.close()
    with pytest.raises(EngineUnavailable) as closed:
        engine.submit(Request(SamplingSettings(), "x")).accepted_blocking(DEADLINE_SECONDS)
    assert closed.value.code == "closed"


def test_a_server_that_accepts_but_never_answers_times_out():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        engine = RemoteEngine(url, read_seconds=0.5).start()
        try:
            state = engine.wait_ready_blocking(DEADLINE_SECONDS)
            assert state.phase == "failed"
            assert (state.error.code, state.error.facts) == ("engine_timeout", {"url": url, "seconds": 0.5})
            assert describe_error(state.error, "en") == (
                f"The generation server at {url} sent nothing for 0.5 s; it may be overloaded. Try again in a moment.")
        finally:
            engine.close()


def test_app_and_the_command_line_take_engine_urls():
    args = app_py.parse_args(["--engine", "http://gpu-1:8000/v1"])
    assert (args.engine, args.model) == ("http://gpu-1:8000/v1", os.environ.get("GPT2DEMO_MODEL"))
    assert app_py.parse_args([]).engine is None


def test_the_command_line_says_which_server_it_could_not_reach():
    url = f"http://127.0.0.1:{free_port()}/v1"
    result = subprocess.run([sys.executable, "-m", "gpt2demo", "Hi", "--engine", url], capture_output=True, text=True,
                            timeout=DEADLINE_SECONDS, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 1 and result.stdout == ""
    assert f"error: the generation server at {url} could not be reached (" in result.stderr


@pytest.mark.parametrize("code", ["engine_unreachable", "engine_timeout", "gone", "engine_protocol", "model_not_served",
                                  "choose_model", "tokenizer_mismatch", "engine_error"])
def test_every_remote_error_has_words_on_the_page_in_both_languages_and_on_the_command_line(code):
    assert f"error_{code}" in MESSAGES["en"] and f"error_{code}" in MESSAGES["zh"] and code in WORDS


# ---------------------------------------------------------------- the views without candidates


def test_without_candidates_the_inside_view_says_so_and_shows_no_probability(bundled):
    view = TokenView("Hi", SamplingSettings(), 0, seed=1, candidates=False)
    view.add(Step(0, bundled.pieces[283], " and", None, ()))
    html, chart, cutoff, detail, _ = view.outputs("en")
    missing = MESSAGES["en"]["missing_candidates"]
    assert 'title="#0 · id 283 · p = –"' in html and chart.empty and cutoff == missing
    assert detail == f'<h4>Step 0: chose  and with p = –</h4><p class="tv-note">{missing}</p>'


def test_a_lane_without_probabilities_still_draws(bundled):
    run = LaneRun(Lane("greedy", SamplingSettings(greedy=True)), Ticket(), [Step(0, bundled.pieces[283], " and", None, ())])
    assert 'title="#0 · p = –"' in lane_html(run, [283], 0, "en")
