"""The top of the page: the model panel (never a server path), the banners, the classroom line."""

import gradio as gr
import pytest

from gpt2demo.errors import ModelSourceError
from gpt2demo.serving.interface import EngineState, EngineStats, ModelFacts, SourceAttempt
from gpt2demo.serving.local import LocalEngine
from gpt2demo.sources import MANUAL_FETCH_COMMAND
from gpt2demo.ui.context import Exposure, PageContext
from gpt2demo.ui.i18n import MESSAGES, describe_error
from gpt2demo.ui.panel import describe_banners, describe_model, describe_queue, show_server, shown_spec

from conftest import DEADLINE_SECONDS

TRIED = (SourceAttempt("modelscope:AI-ModelScope/gpt2", "offline"),
         SourceAttempt("huggingface:gpt2", "unreachable", "ConnectionError: <no route>"))


def browser(language: str = "en-US,en;q=0.9") -> gr.Request:
    return gr.Request(headers={"accept-language": language}, session_hash="tab-1")


def bundled_facts(fallback=TRIED) -> ModelFacts:
    return ModelFacts(name="bundled", source="bundled", device="cpu", precision="float32", parameters=1_234_567,
                      window=256, vocab_size=4096, eos_token_id=0, load_seconds=0.5, fallback=fallback)


@pytest.mark.parametrize("spec, shown", [
    ("/srv/models/gpt2-tiny", "gpt2-tiny"), ("./gpt2/", "gpt2"), ("C:/Users/teacher/gpt2", "gpt2"),
    ("gpt2", "gpt2"), ("bundled", "bundled"), ("modelscope:AI-ModelScope/gpt2", "modelscope:AI-ModelScope/gpt2"),
    ("hf:openai-community/gpt2", "hf:openai-community/gpt2"),
])
def test_a_folder_is_shown_by_its_own_name_never_its_path(spec, shown):
    assert shown_spec(spec) == shown
    assert describe_model(EngineState("loading", spec, "cpu"), "en") == f"**Model:** loading {shown} on cpu…"


def test_show_server_reports_the_model_and_the_classroom(engine, tiny_model_dir):
    model_line, banners, classroom = show_server(PageContext(engine))(browser())
    facts = engine.state.facts
    assert facts.name == tiny_model_dir.name and str(tiny_model_dir.parent) not in model_line
    assert model_line == (
        f"**Model:** {tiny_model_dir.name} · from a local folder · device cpu (float32) · 3,382,080 parameters · "
        f"window 1024 tokens · loaded in {facts.load_seconds} s"
    )
    assert banners == gr.update(value="", visible=False)
    assert classroom == "Requests running: 0 · waiting: 0"
    zh_line = show_server(PageContext(engine))(browser("zh-CN"))[0]
    assert zh_line.startswith("**模型：** ") and "来源：本地文件夹" in zh_line


def test_a_failed_load_is_shown_in_the_model_panel_in_the_readers_language():
    def failing_loader(spec, device, precision):
        raise ModelSourceError("unavailable", tried=[(a.source, a.kind, a.detail) for a in TRIED], command=MANUAL_FETCH_COMMAND)

    engine = LocalEngine("gpt2", "cpu", loader=failing_loader).start()
    try:
        state = engine.wait_ready_blocking(DEADLINE_SECONDS)
        assert state.phase == "failed"
        for language, start in (("en", "**Model:** "), ("zh", "**模型：** ")):
            assert describe_model(state, language) == start + describe_error(state.error, language)
        assert describe_model(state, "en").startswith("**Model:** GPT-2 could not be had (tried: ")
    finally:
        engine.close()


def test_the_offline_banner_is_short_and_keeps_the_details_collapsed():
    state = EngineState("ready", "gpt2", "cpu", facts=bundled_facts())
    public = Exposure(share_requested=True, has_auth=False, local_url="http://127.0.0.1:7860/", share_url=None)
    assert describe_banners(state, public, "en").split("\n\n") == [
        MESSAGES["en"]["fallback_banner"],
        f"To get GPT-2, run `{MANUAL_FETCH_COMMAND}`",
        "<details><summary>Details: where GPT-2 was looked for</summary><ul>"
        "<li><code>modelscope:AI-ModelScope/gpt2</code>: not in the cache, and offline mode is on (GPT2DEMO_OFFLINE)</li>"
        "<li><code>huggingface:gpt2</code>: could not be reached (ConnectionError: &lt;no route&gt;)</li></ul></details>",
        MESSAGES["en"]["public_no_auth"],
        MESSAGES["en"]["share_failed"].format(url="http://127.0.0.1:7860/"),
    ]
    assert "\n" not in MESSAGES["en"]["fallback_banner"] and "\n" not in MESSAGES["zh"]["fallback_banner"]  # one line why
    chinese = describe_banners(state, Exposure(), "zh").split("\n\n")
    assert chinese[:2] == [MESSAGES["zh"]["fallback_banner"], f"获取 GPT-2：运行 `{MANUAL_FETCH_COMMAND}`"]
    assert chinese[2].startswith("<details><summary>详情：在哪些地方找过 GPT-2</summary>") and len(chinese) == 3


def test_banners_for_a_shared_page_and_none_for_a_plain_one():
    shared = Exposure(share_requested=True, has_auth=True, local_url="http://x/", share_url="https://abc.gradio.live")
    loading = EngineState("loading", "gpt2", "cpu")
    assert describe_banners(loading, shared, "en") == "Public link: https://abc.gradio.live"
    assert describe_banners(loading, Exposure(), "en") == ""
    gpt2 = EngineState("ready", "gpt2", "cpu", facts=bundled_facts(fallback=()))
    assert describe_banners(gpt2, Exposure(), "en") == ""  # GPT-2 itself: nothing to warn about


def test_the_classroom_line_in_both_languages():
    assert describe_queue(EngineStats(running=3, waiting=2), "en") == "Requests running: 3 · waiting: 2"
    assert describe_queue(EngineStats(running=3, waiting=2), "zh") == "正在生成：3 个请求 · 排队：2 个"
