"""The launched app driven through gradio_client, as an API user or the README's example would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gradio
import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError, AuthenticationError

from gpt2demo.engine import generate_text
from gpt2demo.settings import SamplingSettings
from gpt2demo.ui.i18n import MESSAGES
from gpt2demo.ui.server import ServerOptions, parse_auth

from conftest import TUTORIAL_PROMPT
from launching import free_port, launched, wait_until

import app as app_py  # noqa: E402  (app.py at the repository root)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def app(tiny_model_dir):
    with launched(tiny_model_dir) as running:
        yield running


@pytest.fixture(scope="module")
def client(app):
    return Client(app.url, verbose=False, analytics_enabled=False)


def test_the_api_is_named_generate_with_the_documented_parameters(client):
    info = client.view_api(print_info=False, return_format="dict")
    parameters = [p["parameter_name"] for p in info["named_endpoints"]["/generate"]["parameters"]]
    assert parameters == ["prompt", "max_new_tokens", "top_k", "temperature", "top_p", "repetition_penalty", "seed", "greedy"]
    assert list(info["named_endpoints"]) == ["/generate"]  # Stop, timers and the rest stay private


@pytest.fixture(scope="module")
def small_app(small_model_dir):
    """GPT-2 small shapes: slow enough on a CPU that the page's updates (at most 20 a second) show several states."""
    with launched(small_model_dir) as running:
        yield running


def test_partial_results_stream_and_the_final_text_equals_the_engines(small_app):
    handlers = small_app.handlers
    client = Client(small_app.url, verbose=False, analytics_enabled=False)
    job = client.submit(prompt=TUTORIAL_PROMPT, max_new_tokens=30, top_k=10, seed="1234", api_name="/generate")
    texts = [text for text, *_ in job]
    text, _html, status, seed = job.outputs()[-1]
    expected = generate_text(handlers.service.model, TUTORIAL_PROMPT, SamplingSettings(max_new_tokens=30, top_k=10, seed=1234))
    assert text == TUTORIAL_PROMPT + expected.text
    assert seed == "1234" and status.split(" · ")[-2:] == ["finished: length reached", "seed 1234"]
    assert texts[0] == TUTORIAL_PROMPT
    assert len(set(texts[:-1])) >= 3  # several different partial texts came before the final one
    assert all(later.startswith(earlier) for earlier, later in zip(texts, texts[1:]))


def test_a_random_run_reports_the_seed_that_repeats_it(app, client):
    handlers = app.handlers
    text, _html, _status, seed = client.predict(prompt="The meaning of life is", max_new_tokens=15, temperature=0.8,
                                                top_p=0.9, api_name="/generate")
    settings = SamplingSettings(max_new_tokens=15, temperature=0.8, top_p=0.9, seed=int(seed))
    assert text == "The meaning of life is" + generate_text(handlers.service.model, "The meaning of life is", settings).text


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(top_k=-1), "top_k must be an integer from 0 to 50257 (got -1)"),
        (dict(temperature="nan"), "temperature must be a number from 0.01 to 5.0 (got 'nan')"),  # JSON cannot carry NaN
        (dict(max_new_tokens=5000), "max_new_tokens must be an integer from 1 to 1024 (got 5000)"),
        (dict(greedy="maybe"), "greedy must be true or false (got 'maybe')"),
    ],
)
def test_bad_parameters_come_back_as_a_clear_error_and_the_next_request_works(app, client, bad, message):
    with pytest.raises(AppError) as caught:
        client.predict(prompt=TUTORIAL_PROMPT, api_name="/generate", **bad)
    assert str(caught.value).startswith(message)
    text, *_ = client.predict(prompt=TUTORIAL_PROMPT, max_new_tokens=3, greedy=True, api_name="/generate")
    expected = generate_text(app.handlers.service.model, TUTORIAL_PROMPT, SamplingSettings(max_new_tokens=3, greedy=True))
    assert text == TUTORIAL_PROMPT + expected.text


def test_cancelling_a_job_stops_its_generation(app, client):
    handlers = app.handlers
    service = handlers.service
    job = client.submit(prompt=TUTORIAL_PROMPT, max_new_tokens=1000, api_name="/generate")
    wait_until(lambda: len(job.outputs()) >= 3, "three partial results")
    (run,) = handlers.runs.snapshot()
    generation = run.ticket.generation
    job.cancel()
    wait_until(lambda: generation.finish_reason is not None, "the generation to end")
    assert generation.finish_reason == "stopped" and len(generation.new_token_ids) < 1000
    wait_until(lambda: service.stats().running == 0, "the batch to empty")
    assert service.stats().rows == 0


def test_app_py_serves_and_the_client_example_runs_against_it(tiny_model_dir):
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
        console = server.communicate(timeout=30)[0]
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(TUTORIAL_PROMPT)
    assert lines[-2].startswith("[40 tokens · ") and lines[-2].endswith("]") and "finished: length reached" in lines[-2]
    assert lines[-1].startswith("The same text again: seed='")
    assert "[gpt2demo] model ready: " in console


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_launch_is_local_without_ssr_monitoring_uploads_or_analytics(app):
    assert app.demo.ssr_mode is False and app.demo.enable_monitoring is False
    assert app.demo.analytics_enabled is False and app.demo.max_file_size == 0
    assert app.url.startswith("http://127.0.0.1:")


def test_the_monitoring_endpoint_is_off(app):
    for path in ("/monitoring", "/monitoring/summary"):
        assert httpx.get(app.url.rstrip("/") + path).status_code == 403


def test_an_unreachable_share_server_leaves_a_working_local_app_that_says_so(tiny_model_dir, monkeypatch, capsys):
    def no_internet(*args, **kwargs):
        raise ConnectionError("no route to the share server")

    monkeypatch.setattr(gradio.networking, "setup_tunnel", no_internet)
    with launched(tiny_model_dir, share=True) as running:
        console = capsys.readouterr().out
        _model, banners, _classroom = running.handlers.show_server(None)
        text, *_ = Client(running.url, verbose=False, analytics_enabled=False).predict(
            prompt="Hello", max_new_tokens=2, api_name="/generate")
    assert "[gpt2demo] WARNING: ⚠️ **This page is public**" in console  # said before the link is tried
    assert "[gpt2demo] The public share link could not be created" in console and running.url in console
    assert banners["visible"] is True
    assert banners["value"].split("\n\n") == [MESSAGES["en"]["public_no_auth"], MESSAGES["en"]["share_failed"].format(url=running.url)]
    assert text.startswith("Hello")


def test_auth_is_required_when_given(tiny_model_dir):
    with launched(tiny_model_dir, auth=("teacher", "s3cret:x")) as running:
        with pytest.raises(AuthenticationError):
            Client(running.url, verbose=False, analytics_enabled=False)
        text, *_ = Client(running.url, auth=("teacher", "s3cret:x"), verbose=False, analytics_enabled=False).predict(
            prompt="Hello", max_new_tokens=2, api_name="/generate")
    assert text.startswith("Hello")


def test_app_flags(monkeypatch):
    monkeypatch.setenv("GPT2DEMO_MODEL", "bundled")
    args = app_py.parse_args([])
    assert (args.model, args.device, args.host, args.port, args.share, args.auth) == ("bundled", None, "127.0.0.1", 7860, False, None)
    assert args.options.handler_concurrency == args.max_batch + args.queue_size
    args = app_py.parse_args(["--model", "./gpt2", "--share", "--auth", "u:p:q", "--max-batch", "8", "--queue-size", "4",
                              "--concurrency", "8", "--host", "0.0.0.0", "--port", "8000"])
    assert args.options == ServerOptions(host="0.0.0.0", port=8000, share=True, auth=("u", "p:q"), max_batch=8,
                                         queue_size=4, concurrency=8)
    for bad in (["--auth", "nopassword"], ["--max-batch", "8", "--concurrency", "4"], ["--max-batch", "0"]):
        with pytest.raises(SystemExit):
            app_py.parse_args(bad)


@pytest.mark.parametrize("text, pair", [("a:b", ("a", "b")), ("a:b:c", ("a", "b:c"))])
def test_parse_auth(text, pair):
    assert parse_auth(text) == pair


@pytest.mark.parametrize("text", ["ab", ":b", "a:", ""])
def test_parse_auth_refuses(text):
    with pytest.raises(ValueError, match="USER:PASS"):
        parse_auth(text)
