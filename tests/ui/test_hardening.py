"""Bad input, overload and faults, sent to the launched app through every door.

Every refusal must be the message of settings.check_settings / check_prompt (the one validator),
naming the parameter, in the caller's language, whether it comes through gradio_client (an
AppError), the /call and /call/v2 doors or the browser's /queue/join door (see launching.RawApi);
and the next request must work. Slider bounds are no defence: these requests never see a slider.
"""

from __future__ import annotations

import math
import shutil
import threading

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from hypothesis import HealthCheck, given, settings, strategies as st

from gpt2demo.errors import DemoError
from gpt2demo.generation import fit_prompt, generate_text
from gpt2demo.settings import BOUNDS, check_prompt, check_settings
from gpt2demo.ui.i18n import MESSAGES, describe_error
from gpt2demo.ui.panel import show_server
from gpt2demo.ui.views.generate import describe_fit

from conftest import TUTORIAL_PROMPT
from launching import API_ORDER, app, check_still_serving, connect, launched, QUICK, raw, RawApi, request_data, wait_until  # app, raw: module fixtures

SETTING_NAMES = API_ORDER[1:]
NAN, INF = math.nan, math.inf


@pytest.fixture(scope="module")
def client(app):
    return connect(app.url)


def expected_refusal(values: dict, vocab_size: int, language: str = "en") -> str | None:
    """What the one validator says about these raw values, in the order the handler checks them."""
    try:
        check_settings(**{name: values[name] for name in SETTING_NAMES}, vocab_size=vocab_size)
        check_prompt(values["prompt"])
    except DemoError as error:
        return describe_error(error, language)
    return None


def client_outcome(client: Client, values: dict) -> tuple[list | None, str | None]:
    """(final outputs, None) or (None, the AppError's message), through gradio_client."""
    try:
        return list(client.predict(*[values[name] for name in API_ORDER], api_name="/generate")), None
    except AppError as error:
        return None, str(error)


# ---------------------------------------------------------------- refusals, through every door

# (id, raw values, what gradio_client sends instead or None when it cannot send it, the parameter named)
REFUSALS = [
    ("nan", dict(temperature=NAN), dict(temperature="nan"), "temperature"),
    ("infinity", dict(top_p=INF), dict(top_p="inf"), "top_p"),
    ("minus-infinity", dict(temperature=-INF), dict(temperature="-Infinity"), "temperature"),
    ("infinite-length", dict(max_new_tokens=INF), dict(max_new_tokens="1e999"), "max_new_tokens"),
    ("negative-length", dict(max_new_tokens=-3), dict(max_new_tokens=-3), "max_new_tokens"),
    ("negative-top-p", dict(top_p=-0.5), dict(top_p=-0.5), "top_p"),
    ("negative-penalty", dict(repetition_penalty=-1.0), dict(repetition_penalty=-1.0), "repetition_penalty"),
    ("negative-seed", dict(seed=-1), dict(seed="-1"), "seed"),
    ("huge-top-k", dict(top_k=10**30), dict(top_k=10**30), "top_k"),
    ("huge-length", dict(max_new_tokens=1e308), dict(max_new_tokens=1e308), "max_new_tokens"),
    ("huge-temperature", dict(temperature=1e300), dict(temperature=1e300), "temperature"),
    ("int-too-big-for-float", dict(repetition_penalty=10**400), dict(repetition_penalty=10**400), "repetition_penalty"),
    ("huge-seed", dict(seed=2**64), dict(seed=str(2**64)), "seed"),
    ("top-k-over-vocabulary", dict(top_k=BOUNDS.top_k[1] + 1), dict(top_k=BOUNDS.top_k[1] + 1), "top_k"),
    ("word-seed", dict(seed="abc"), dict(seed="abc"), "seed"),
    ("fraction-seed", dict(seed=1.5), dict(seed=1.5), "seed"),
    ("fraction-seed-text", dict(seed="1.5"), dict(seed="1.5"), "seed"),
    ("bool-seed", dict(seed=True), dict(seed=True), "seed"),
    ("list-seed", dict(seed=[7]), dict(seed=[7]), "seed"),
    ("dict-seed", dict(seed={"seed": 7}), dict(seed={"seed": 7}), "seed"),
    ("word-length", dict(max_new_tokens="ten"), dict(max_new_tokens="ten"), "max_new_tokens"),
    ("blank-top-k", dict(top_k=""), dict(top_k=""), "top_k"),
    ("no-temperature", dict(temperature=None), dict(temperature=None), "temperature"),
    ("no-greedy", dict(greedy=None), dict(greedy=None), "greedy"),
    ("prompt-too-long", dict(prompt="x" * (BOUNDS.prompt_chars + 1)), dict(prompt="x" * (BOUNDS.prompt_chars + 1)), "prompt"),
    ("lone-surrogate", dict(prompt="a\ud800b"), None, "prompt"),  # gradio_client cannot encode it
    ("nul", dict(prompt="a\x00b"), dict(prompt="a\x00b"), "prompt"),
    ("escape-sequence", dict(prompt="ls \x1b[31mred"), dict(prompt="ls \x1b[31mred"), "prompt"),
    ("delete", dict(prompt="\x7f"), dict(prompt="\x7f"), "prompt"),
    ("number-prompt", dict(prompt=123), dict(prompt=123), "prompt"),
    ("list-prompt", dict(prompt=["Hello"]), dict(prompt=["Hello"]), "prompt"),
    ("dict-prompt", dict(prompt={"text": "Hello"}), dict(prompt={"text": "Hello"}), "prompt"),
]


@pytest.mark.parametrize("raw_values, client_values, parameter", [case[1:] for case in REFUSALS], ids=[case[0] for case in REFUSALS])
def test_a_bad_value_is_refused_naming_its_parameter_on_every_door(app, raw, client, raw_values, client_values, parameter):
    vocab_size = app.engine.state.facts.vocab_size
    values = {"prompt": "Hello", **QUICK, **raw_values}
    message = expected_refusal(values, vocab_size)
    assert message and message.startswith(parameter + " "), message
    assert len(message) < 200  # a huge bad value is quoted only as a short excerpt
    data = [values[name] for name in API_ORDER]
    for door, outcome in (("call", raw.call(data)), ("join", raw.join(data)), ("call/v2", raw.call_v2(values))):
        assert (outcome.final, outcome.error) == (None, message), door
    if client_values is not None:
        values = {"prompt": "Hello", **QUICK, **client_values}
        assert client_outcome(client, values) == (None, expected_refusal(values, vocab_size))
    check_still_serving(raw, app)


@pytest.mark.parametrize(
    "case, chinese",
    [
        ("nan", "temperature 必须是 0.01 到 5.0 之间的数（收到 nan）"),
        ("huge-seed", "seed 必须是 0 到 4294967295 之间的整数（收到 18446744073709551616）"),
        ("nul", "prompt 在第 1 个位置含有不支持的字符 U+0000"),
        ("list-prompt", "prompt 必须是文本（收到 list）"),
    ],
)
def test_a_chinese_browser_hears_the_refusal_in_chinese(app, case, chinese):
    (raw_values,) = [values for name, values, *_ in REFUSALS if name == case]
    values = {"prompt": "Hello", **QUICK, **raw_values}
    assert expected_refusal(values, app.engine.state.facts.vocab_size, "zh") == chinese
    with RawApi(app.url, language="zh-CN,zh;q=0.9") as raw_chinese:
        outcome = raw_chinese.join([values[name] for name in API_ORDER])
    assert (outcome.final, outcome.error) == (None, chinese)


def test_gradio_client_cannot_even_send_nan_infinity_or_a_lone_surrogate(client):
    # So these reach the server only through raw HTTP, which the test above covers.
    for bad in (dict(temperature=NAN), dict(top_p=INF)):
        with pytest.raises(ValueError, match="JSON compliant"):
            client.predict(**{"prompt": "Hello", **QUICK, **bad}, api_name="/generate")
    with pytest.raises(UnicodeEncodeError):
        client.predict(**{**QUICK, "prompt": "a\ud800b"}, api_name="/generate")


# ---------------------------------------------------------------- odd prompts that must work

LONG_PROMPT = ("The cat sat on the mat. " * 900)[: BOUNDS.prompt_chars]  # exactly the limit, ~5,400 tokens


@pytest.mark.parametrize(
    "prompt",
    ["", "   ", "\n\t \r\n", "<|endoftext|>", "<|endoftext|>Hello<|endoftext|>", "今天天气很好，我们", "Smile 🙂 please", LONG_PROMPT],
    ids=["empty", "spaces", "whitespace", "endoftext", "endoftext-around", "chinese", "emoji", "over-the-window"],
)
def test_an_odd_prompt_gives_the_engines_text_on_every_door(raw, client, tiny_model, prompt):
    values = {**QUICK, "prompt": prompt, "max_new_tokens": 5, "seed": "11"}
    sampling = check_settings(**{name: values[name] for name in SETTING_NAMES})
    expected_text = prompt + generate_text(tiny_model, prompt, sampling).text
    notice = describe_fit(fit_prompt(tiny_model, tiny_model.encode(prompt), 5), "en")
    data = [values[name] for name in API_ORDER]
    for outputs in (raw.call(data).final, raw.join(data).final, raw.call_v2(values).final, client_outcome(client, values)[0]):
        text, _html, status, seed_used = outputs
        assert (text, seed_used) == (expected_text, "11")
        assert (notice in status) if notice else ("window" not in status)
    if prompt is LONG_PROMPT:
        assert notice == f"The prompt had {len(tiny_model.encode(prompt))} tokens; only its last 1019 fit the model's 1024-token window."


# ---------------------------------------------------------------- anything at all (hypothesis)

GARBAGE = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12), st.sampled_from(["nan", "inf", "-inf", "1e999", "", " ", "0x10", "1_000"]),
    st.lists(st.integers(0, 9), max_size=2),
)
VALID_ENOUGH = {  # mostly valid, in the forms the API and sliders send (floats for integers, text)
    "max_new_tokens": st.one_of(st.integers(1, 6), st.sampled_from([2.0, "3"])),
    "top_k": st.one_of(st.integers(0, 60), st.just(BOUNDS.top_k[1])),
    "temperature": st.floats(0.01, 5.0),
    "top_p": st.floats(0.01, 1.0),
    "repetition_penalty": st.floats(0.5, 5.0),
    "seed": st.one_of(st.just(""), st.integers(0, 2**32 - 1), st.integers(0, 99).map(str)),
    "greedy": st.one_of(st.booleans(), st.sampled_from(["true", "0"])),
}
PROMPTS = st.one_of(
    st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=60),
    st.text(max_size=30),  # control characters too; gradio_client cannot send lone surrogates
    st.sampled_from(["", "  ", "<|endoftext|>", TUTORIAL_PROMPT, "今天", "x" * (BOUNDS.prompt_chars + 1)]),
    st.integers(), st.none(),
)


@st.composite
def any_request(draw) -> dict:
    """A prompt and settings of which a few (often none) are spoiled with anything JSON can carry."""
    spoiled = draw(st.sets(st.sampled_from(SETTING_NAMES), max_size=3))
    values = {"prompt": draw(PROMPTS)}
    for name in SETTING_NAMES:
        values[name] = draw(GARBAGE if name in spoiled else VALID_ENOUGH[name])
    return values


def test_any_request_either_continues_its_prompt_or_names_a_parameter(app, raw, client):
    vocab_size, outcomes = app.engine.state.facts.vocab_size, []

    # derandomize: the same 40 requests every run, so "both branches were exercised" cannot
    # fail by the luck of one run's draw (it did: 4 valid requests of 40).
    @settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(values=any_request())
    def check(values):
        final, error = client_outcome(client, values)
        expected = expected_refusal(values, vocab_size)
        if expected is None:
            assert error is None and final[0].startswith(values["prompt"] or ""), (error, final)
        else:
            assert final is None and error == expected
            assert error.split(" ", 1)[0] in API_ORDER
        outcomes.append(expected is None)

    check()
    assert outcomes.count(True) >= 5 and outcomes.count(False) >= 5, outcomes  # both branches were exercised
    check_still_serving(raw, app)
    assert app.engine.state.phase == "ready" and app.engine.stats().cache_bytes == 0  # the batch emptied


# ---------------------------------------------------------------- faults inside generation


@pytest.fixture(scope="module")
def local_app(tiny_model_dir):
    """The app on an engine in this process, whose model a test can make fail."""
    with launched(tiny_model_dir, in_process=True) as running:
        yield running


def fail_once(monkeypatch, owner, name: str, error: Exception) -> list:
    """Make owner.name raise `error` on its next call only; returns the list of calls that failed."""
    original = getattr(owner, name)
    failed = []

    def fail_then_work(*args, **kwargs):
        if not failed:
            failed.append(args)
            raise error
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, fail_then_work)
    return failed


FAULT_DOORS = [("client", "en"), ("call", "en"), ("join", "en"), ("join", "zh")]


@pytest.mark.parametrize("where", ["decode-step", "prefill"])
def test_an_exception_in_generation_reaches_the_user_as_a_message_never_a_hung_stream(local_app, monkeypatch, where):
    decoder = local_app.engine.model.decoder
    for door, language in FAULT_DOORS:
        wait_until(local_app.idle, "an idle engine")
        fault = f"injected fault ({door}, {language})"
        # decode: one step of the whole batch; extend: the model's forward pass over a prompt
        failed = fail_once(monkeypatch, decoder, "decode" if where == "decode-step" else "extend", RuntimeError(fault))
        data = request_data("Hello", max_new_tokens=50)
        if door == "client":
            job = connect(local_app.url).submit(*data, api_name="/generate")
            with pytest.raises(AppError) as caught:
                job.result(timeout=60)  # a hung stream fails here
            error = str(caught.value)
        else:
            with RawApi(local_app.url, language=language) as raw:
                outcome = raw.call(data) if door == "call" else raw.join(data)  # RawApi fails a stream that hangs
            assert outcome.final is None
            error = outcome.error
        words = {"en": "Generation failed: RuntimeError: ", "zh": "生成失败：RuntimeError: "}[language]
        assert failed and error == words + fault
        monkeypatch.undo()
        with RawApi(local_app.url) as raw:
            check_still_serving(raw, local_app)


@pytest.mark.parametrize(
    "damage, named",
    [
        ("delete model.safetensors", "has no weights file (model.safetensors or pytorch_model.bin)"),
        ("delete merges.txt", "has no tokenizer files"),
        ("truncate model.safetensors", "model.safetensors"),  # a half-copied file must be named too
        ("corrupt config.json", "config.json"),
    ],
)
def test_a_corrupt_model_folder_is_named_in_the_page_and_the_api(tiny_model_dir, tmp_path, damage, named):
    folder = shutil.copytree(tiny_model_dir, tmp_path / "broken-model")
    action, file_name = damage.split(" ")
    target = folder / file_name
    if action == "delete":
        target.unlink()
    elif action == "truncate":
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    else:
        target.write_text("{not json")
    with launched(folder, require_model=False) as running:
        model_panel, *_ = show_server(running.ctx)(None)  # what the page's load event shows
        final, error = client_outcome(connect(running.url), {"prompt": "Hello", **QUICK})
        with RawApi(running.url) as raw:
            outcome = raw.call(request_data())
        state = running.engine.state
    assert state.phase == "failed" and state.error.facts["folder"] == "broken-model"
    panel_prefix = MESSAGES["en"]["model_failed"].format(error="")
    reason = model_panel.removeprefix(panel_prefix)
    assert model_panel.startswith(panel_prefix) and reason.startswith("model folder broken-model ") and named in reason
    assert final is None and error == outcome.error == reason  # what the page says, the API says
    # The folder by its name, never where it is on the server, even where the loader's own words quote it.
    assert str(tmp_path) not in model_panel


# ---------------------------------------------------------------- overload


def long_job(url: str, max_new_tokens: int = 1000):
    return connect(url).submit(prompt=TUTORIAL_PROMPT, max_new_tokens=max_new_tokens, api_name="/generate")


def test_a_full_scheduler_line_says_how_many_are_ahead(tiny_model_dir):
    # The gradio_client hears the same refusal: the scheduler's own, with the number ahead.
    with launched(tiny_model_dir, max_batch=1, queue_size=1, concurrency=4) as running:
        engine = running.engine
        jobs = [long_job(running.url)]
        wait_until(lambda: engine.stats().running == 1, "the first request to run")
        jobs.append(long_job(running.url))
        wait_until(lambda: engine.stats().waiting == 1, "the second to wait")
        final, error = client_outcome(connect(running.url), {"prompt": "Hello", **QUICK})
        assert final is None and error == "The server is busy; 2 requests are ahead of you. Please try again in a moment."
        for job in jobs:
            job.cancel()
        with RawApi(running.url) as raw:
            check_still_serving(raw, running)


def test_concurrent_cancels_leave_no_generation_behind(app, raw):
    # Ten streams, every other one cancelled after its first tokens; the rest finish.
    jobs = [long_job(app.url, max_new_tokens=150) for _ in range(10)]
    wait_until(lambda: all(len(job.outputs()) >= 2 for job in jobs), "every stream to start")
    for job in jobs[::2]:
        job.cancel()
    finished = [job.result(timeout=120) for job in jobs[1::2]]
    assert all(text.startswith(TUTORIAL_PROMPT) and "finished: length reached" in status for text, _html, status, _seed in finished)
    wait_until(app.idle, "every generation to end")
    assert app.engine.stats().cache_bytes == 0
    # No thread was left behind for a request: only the engines' own (this module's two apps).
    long_lived = {"gpt2demo-engine-events", "gpt2demo-engine", "gpt2demo-model-loader"}
    assert [t.name for t in threading.enumerate() if t.name.startswith("gpt2demo-") and t.name not in long_lived] == []
