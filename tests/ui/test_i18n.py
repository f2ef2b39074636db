"""Every word of the page in both languages, the browser's language, and errors (data) turned into words."""

from string import Formatter

import gradio as gr
import pytest

from gpt2demo.errors import BadRequest, EngineBusy, EngineUnavailable, GenerationFailed, ModelSourceError
from gpt2demo.settings import check_settings
from gpt2demo.sources import MANUAL_FETCH_COMMAND
from gpt2demo.ui.i18n import I18N, LABELS, LANGUAGES, MESSAGES, describe_error, errors, label, message, page
from gpt2demo.ui.i18n import pick_language, request_language, user_error, views


def fields(text: str) -> set[str]:
    return {name for _, name, _, _ in Formatter().parse(text) if name}


def browser(language: str | None) -> gr.Request:
    return gr.Request(headers={} if language is None else {"accept-language": language}, session_hash="tab-1")


@pytest.mark.parametrize("area", [page, views, errors], ids=["page", "views", "errors"])
def test_every_label_and_message_exists_in_both_languages_with_the_same_blanks(area):
    assert area.LABELS["en"].keys() == area.LABELS["zh"].keys()
    assert area.MESSAGES["en"].keys() == area.MESSAGES["zh"].keys()
    assert all(area.LABELS["zh"].values()) and all(area.MESSAGES["zh"].values())
    assert {key: fields(text) for key, text in area.MESSAGES["zh"].items()} == {
        key: fields(text) for key, text in area.MESSAGES["en"].items()}


def test_the_areas_join_into_one_table_that_gradio_translates():
    assert LANGUAGES == ("en", "zh")
    for language in LANGUAGES:
        assert LABELS[language] == {**page.LABELS[language], **views.LABELS[language], **errors.LABELS[language]}
        assert MESSAGES[language] == {**page.MESSAGES[language], **views.MESSAGES[language], **errors.MESSAGES[language]}
    assert I18N.translations["zh"]["title"] == page.LABELS["zh"]["title"]
    assert I18N.translations["zh"]["views_tab_tokenizer"] == "分词器"
    assert label("views_tab_tokenizer").key == "views_tab_tokenizer"
    with pytest.raises(KeyError):
        label("no_such_label")  # a typo fails when the page is built, not in a visitor's browser


def test_messages_fill_in_their_values_and_an_unknown_language_reads_english():
    assert message("en", "tokens", count=3) == "3 tokens"
    assert message("zh", "tokens", count=3) == "3 个 token"
    assert message("fr", "speed", rate=2.345) == "2.3 tokens/s"


@pytest.mark.parametrize(
    "header, language",
    [("zh-CN,zh;q=0.9,en;q=0.8", "zh"), ("zh-TW", "zh"), ("en-US,zh;q=0.9", "en"), ("", "en"), (None, "en"),
     ("en;q=0.1, zh;q=0.9", "en")],  # the header's order decides, not its q-values
)
def test_pick_language_follows_the_browsers_first_choice(header, language):
    assert pick_language(header) == language
    assert request_language(browser(header)) == language


def test_a_request_without_headers_is_english():
    assert request_language(None) == "en"


def test_a_bad_setting_is_worded_in_the_readers_language_only():
    with pytest.raises(BadRequest) as error:
        check_settings(top_k=-1)
    assert describe_error(error.value, "en") == "top_k must be an integer from 0 to 50257 (got -1)"
    assert describe_error(error.value, "zh") == "top_k 必须是 0 到 50257 之间的整数（收到 -1）"


def test_a_bad_value_is_quoted_only_as_a_short_excerpt():
    huge = "9" * 100_000
    with pytest.raises(BadRequest) as error:
        check_settings(seed=huge)
    text = describe_error(error.value, "en")
    assert text.startswith("seed must be an integer from 0 to 4294967295 (got '9999") and len(text) < 120


@pytest.mark.parametrize("error, english, chinese", [
    (EngineBusy("busy", ahead=3), "The server is busy; 3 requests are ahead of you. Please try again in a moment.",
     "服务器繁忙，前面还有 3 个请求，请稍后再试。"),
    (EngineUnavailable("loading", spec="gpt2"), "The model is still loading; try again in a moment.", "模型仍在加载，请稍后再试。"),
    (GenerationFailed("step_failed", kind="RuntimeError", detail="boom"), "Generation failed: RuntimeError: boom",
     "生成失败：RuntimeError: boom"),
    (BadRequest("prompt_character", codepoint="U+0000", position=1),
     "prompt contains an unsupported character U+0000 at position 1", "prompt 在第 1 个位置含有不支持的字符 U+0000"),
])
def test_engine_errors_in_both_languages(error, english, chinese):
    assert (describe_error(error, "en"), describe_error(error, "zh")) == (english, chinese)


def test_the_sources_tried_are_worded_too():
    error = ModelSourceError("unavailable", tried=[("modelscope:AI-ModelScope/gpt2", "offline", ""),
                                                   ("huggingface:gpt2", "unreachable", "ConnectionError")],
                             command=MANUAL_FETCH_COMMAND)
    assert describe_error(error, "en") == (
        "GPT-2 could not be had (tried: modelscope:AI-ModelScope/gpt2: not in the cache, and offline mode is on "
        f"(GPT2DEMO_OFFLINE); huggingface:gpt2: could not be reached). To fetch it by hand: {MANUAL_FETCH_COMMAND}")
    assert describe_error(error, "zh") == (
        "无法获取 GPT-2（尝试了：modelscope:AI-ModelScope/gpt2: 不在缓存中，且已开启离线模式（GPT2DEMO_OFFLINE）; "
        f"huggingface:gpt2: 无法连接）。手动获取：{MANUAL_FETCH_COMMAND}")


def test_an_error_without_words_still_says_something():
    assert describe_error(BadRequest("no_such_code"), "en") == "Something went wrong (no_such_code)."
    assert describe_error(EngineBusy("busy"), "zh") == "出错了（busy）。"  # facts missing: no half-filled message
    assert describe_error(ValueError("x" * 500), "en") == "Generation failed: ValueError: " + "x" * 200


def test_user_error_is_a_gr_error_in_the_readers_language():
    error = user_error(EngineUnavailable("closed"), "zh")
    assert isinstance(error, gr.Error) and error.message == "服务器正在关闭。"
