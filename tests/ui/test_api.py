"""The launched app driven through gradio_client, as an API user or the README's example would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gradio
import httpx
import pytest
from gradio_client.exceptions import AppError, AuthenticationError

from gpt2demo.generation import generate_text
from gpt2demo.model import load_model
from gpt2demo.settings import SamplingSettings
from gpt2demo.ui.i18n import MESSAGES
from gpt2demo.ui.panel import show_server
from gpt2demo.ui.server import REFUSAL_SLOTS, ServerOptions, parse_auth

from conftest import TUTORIAL_PROMPT
from launching import app, connect, free_port, launched, RawApi, wait_until  # app: a module fixture

import app as app_py  # noqa: E402  (app.py at the repository root)

ROOT = Path(__file__).resolve().parents[2]
LONG = 1000  # new tokens asked for: far more than a test waits for


@pytest.fixture(scope="module")
def client(app):
    return connect(app.url)


def test_the_api_is_named_generate_with_the_documented_parameters(client):
    info = client.view_api(print_info=False, return_format="dict")
    parameters = [p["parameter_name"] for p in info["named_endpoints"]["/generate"]["parameters"]]
    assert parameters == ["prompt", "max_new_tokens", "top_k", "temperature", "top_p", "repetition_penalty", "seed", "greedy"]
    assert list(info["named_endpoints"]) == ["/generate"]  # Stop, timers and the teaching tabs stay private


@pytest.fixture(scope="module")
def small_app(small_model_dir):
    """GPT-2 small shapes: slow enough on a CPU that the page's updates (at most 20 a second) show several states."""
    with launched(small_model_dir) as running:
        yield running


def test_partial_results_stream_and_the_final_text_equals_the_engines(small_app, small_model_dir):
    job = connect(small_app.url).submit(prompt=TUTORIAL_PROMPT, max_new_tokens=30, top_k=10, seed="1234",
                                        api_name="/generate")
    texts = [text for text, *_ in job]
    text, _html, status, seed = job.outputs()[-1]
    model = load_model(str(small_model_dir), "cpu")  # the same weights as the engine process's
    expected = generate_text(model, TUTORIAL_PROMPT, SamplingSettings(max_new_tokens=30, top_k=10, seed=1234))
    assert text == TUTORIAL_PROMPT + expected.text
    assert seed == "1234" and status.split(" · ")[-2:] == ["finished: length reached", "seed 1234"]
    assert texts[0] == TUTORIAL_PROMPT
    assert len(set(texts[:-1])) >= 3  # several different partial texts came before the final one
    assert all(later.startswith(earlier) for earlier, later in zip(texts, texts[1:]))


def test_a_random_run_reports_the_seed_that_repeats_it(client, tiny_model):
    text, _html, _status, seed = client.predict(prompt="The meaning of life is", max_new_tokens=15, temperature=0.8,
                                                top_p=0.9, api_name="/generate")
    settings = SamplingSettings(max_new_tokens=15, temperature=0.8, top_p=0.9, seed=int(seed))
    assert text == "The meaning of life is" + generate_text(tiny_model, "The meaning of life is", settings).text


@pytest.mark.parametrize(
    "bad, english, chinese",
    [
        (dict(top_k=-1), "top_k must be an integer from 0 to 50257 (got -1)", "top_k 必须是 0 到 50257 之间的整数（收到 -1）"),
        (dict(temperature="nan"), "temperature must be a number from 0.01 to 5.0 (got 'nan')",  # JSON cannot carry NaN
         "temperature 必须是 0.01 到 5.0 之间的数（收到 'nan'）"),
        (dict(max_new_tokens=5000), "max_new_tokens must be an integer from 1 to 1024 (got 5000)",
         "max_new_tokens 必须是 1 到 1024 之间的整数（收到 5000）"),
        (dict(greedy="maybe"), "greedy must be true or false (got 'maybe')", "greedy 必须是 true 或 false（收到 'maybe'）"),
    ],
)
def test_bad_parameters_come_back_as_a_clear_error_in_the_callers_language_and_the_next_request_works(
        app, client, tiny_model, bad, english, chinese):
    with pytest.raises(AppError) as caught:
        client.predict(prompt=TUTORIAL_PROMPT, api_name="/generate", **bad)
    assert str(caught.value) == english
    with pytest.raises(AppError) as caught:
        connect(app.url, headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}).predict(
            prompt=TUTORIAL_PROMPT, api_name="/generate", **bad)
    assert str(caught.value) == chinese
    text, *_ = client.predict(prompt=TUTORIAL_PROMPT, max_new_tokens=3, greedy=True, api_name="/generate")
    expected = generate_text(tiny_model, TUTORIAL_PROMPT, SamplingSettings(max_new_tokens=3, greedy=True))
    assert text == TUTORIAL_PROMPT + expected.text


def test_a_long_bad_value_is_quoted_only_as_a_short_excerpt(client):
    with pytest.raises(AppError) as caught:
        client.predict(prompt=TUTORIAL_PROMPT, seed="9" * 5000, api_name="/generate")
    assert str(caught.value) == "seed must be an integer from 0 to 4294967295 (got '99999999999999999...999999999999999999')"


def test_cancelling_a_job_stops_its_generation(app, client):
    wait_until(app.idle, "an idle engine")
    before = app.forward_passes()
    job = client.submit(prompt=TUTORIAL_PROMPT, max_new_tokens=LONG, api_name="/generate")
    wait_until(lambda: len(job.outputs()) >= 3, "three partial results")
    assert app.engine.stats().running == 1
    job.cancel()
    wait_until(app.idle, "the request to leave the batch and its handler to end")
    stopped_at = app.forward_passes()
    assert stopped_at - before < LONG  # the engine stopped long before the 1000th token
    assert app.engine.stats().cache_bytes == 0  # its cache row was given back


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_app_py_serves_and_the_client_example_runs_against_it(tiny_model_dir):
    # The real command, its engine process and all: the README's two commands.
    port = free_port()
    server = subprocess.Popen([sys.executable, "app.py", "--model", str(tiny_model_dir), "--device", "cpu", "--port", str(port)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until(lambda: answers(url), "app.py to serve")
        done = subprocess.run([sys.executable, str(ROOT / "examples" / "client_example.py"), url], capture_output=True,
                              text=True, timeout=120, cwd=ROOT)
    finally:
        server.terminate()
        console = server.communicate(timeout=30)[0]  # ends once the engine process has closed the pipe too
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(TUTORIAL_PROMPT)
    assert lines[-2].startswith("[40 tokens · ") and lines[-2].endswith("]") and "finished: length reached" in lines[-2]
    assert lines[-1].startswith("The same text again: seed='")
    assert f"[gpt2demo] model ready: {tiny_model_dir.name} (folder), 3,382,080 parameters" in console
    # The console's hints name app.py's flags, never Gradio's Python arguments.
    assert f"[gpt2demo] Running at {url} (open it in a browser; Ctrl+C stops the server)" in console
    assert "[gpt2demo] To share this page with a class through a public link, restart with --share" in console
    assert "share=True" not in console and "launch()" not in console


def test_launch_is_local_without_ssr_monitoring_uploads_or_analytics(app):
    assert app.demo.ssr_mode is False and app.demo.enable_monitoring is False
    assert app.demo.analytics_enabled is False and app.demo.max_file_size == 0
    assert app.url.startswith("http://127.0.0.1:")


def test_the_monitoring_endpoint_is_off(app):
    for path in ("/monitoring", "/monitoring/summary"):
        assert httpx.get(app.url.rstrip("/") + path).status_code == 403


def test_the_model_panel_names_the_folder_never_its_path_in_the_browsers_language(app, tiny_model_dir):
    facts = app.engine.state.facts
    english, banners, classroom = RawApi(app.url, language="en-US").run_now("show")
    name = tiny_model_dir.name  # the folder's own name, as pytest made it
    assert english == (f"**Model:** {name} · from a local folder · device cpu (float32) · 3,382,080 parameters · "
                       f"window 1024 tokens · loaded in {facts.load_seconds} s")
    assert banners == {"__type__": "update", "value": "", "visible": False}
    assert classroom == "Requests running: 0 · waiting: 0"
    chinese, _, classroom = RawApi(app.url, language="zh-CN").run_now("show")
    assert chinese == (f"**模型：** {name} · 来源：本地文件夹 · 设备 cpu（float32）· 3,382,080 个参数 · "
                       f"窗口 1024 个 token · 加载用时 {facts.load_seconds} 秒")
    assert classroom == "正在生成：0 个请求 · 排队：0 个"
    assert str(tiny_model_dir.parent) not in english + chinese


def test_an_unreachable_share_server_leaves_a_working_local_app_that_says_so(tiny_model_dir, monkeypatch, capsys):
    def no_internet(*args, **kwargs):
        raise ConnectionError("no route to the share server")

    monkeypatch.setattr(gradio.networking, "setup_tunnel", no_internet)
    with launched(tiny_model_dir, share=True) as running:
        console = capsys.readouterr().err
        _model, banners, _classroom = show_server(running.ctx)(None)
        text, *_ = connect(running.url).predict(prompt="Hello", max_new_tokens=2, api_name="/generate")
    assert "[gpt2demo] WARNING: ⚠️ **This page is public**" in console  # said before the link is tried
    assert "[gpt2demo] The public share link could not be created" in console and running.url in console
    assert banners["visible"] is True
    assert banners["value"].split("\n\n") == [MESSAGES["en"]["public_no_auth"], MESSAGES["en"]["share_failed"].format(url=running.url)]
    assert text.startswith("Hello")


def test_auth_is_required_when_given(tiny_model_dir):
    with launched(tiny_model_dir, auth=("teacher", "s3cret:x")) as running:
        with pytest.raises(AuthenticationError):
            connect(running.url)
        text, *_ = connect(running.url, auth=("teacher", "s3cret:x")).predict(prompt="Hello", max_new_tokens=2,
                                                                             api_name="/generate")
    assert text.startswith("Hello")


def test_app_flags(monkeypatch):
    monkeypatch.setenv("GPT2DEMO_MODEL", "bundled")
    args = app_py.parse_args([])
    assert (args.model, args.device, args.precision, args.host, args.port, args.share, args.auth, args.retry_download) == (
        "bundled", None, "float32", "127.0.0.1", 7860, False, None, False)
    # A handler for every request the engine holds, and REFUSAL_SLOTS more that only hear "busy".
    assert args.options.handler_concurrency == args.max_batch + args.queue_size + REFUSAL_SLOTS
    args = app_py.parse_args(["--model", "./gpt2", "--share", "--auth", "u:p:q", "--max-batch", "8", "--queue-size", "4",
                              "--concurrency", "8", "--host", "0.0.0.0", "--port", "8000", "--retry-download"])
    assert args.options == ServerOptions(host="0.0.0.0", port=8000, share=True, auth=("u", "p:q"), max_batch=8,
                                         queue_size=4, concurrency=8)
    assert args.retry_download is True
    assert app_py.parse_args(["--precision", "int8"]).precision == "int8"
    for bad in (["--auth", "nopassword"], ["--max-batch", "8", "--concurrency", "4"], ["--max-batch", "0"],
                ["--precision", "int4"], ["--precision", "int8", "--engine", "http://127.0.0.1:9/v1"]):
        with pytest.raises(SystemExit):
            app_py.parse_args(bad)


@pytest.mark.parametrize("text, pair", [("a:b", ("a", "b")), ("a:b:c", ("a", "b:c"))])
def test_parse_auth(text, pair):
    assert parse_auth(text) == pair


@pytest.mark.parametrize("text", ["ab", ":b", "a:", ""])
def test_parse_auth_refuses(text):
    with pytest.raises(ValueError, match="USER:PASS"):
        parse_auth(text)
