"""Every label, hint and message of the page, in English and Chinese.

Static text (labels, hints, buttons) goes through gr.I18n: the browser picks the
language itself. Text the server writes while running (status line, model
panel, banners) cannot go through gr.I18n, so it is formatted here in the
language the browser asks for in its Accept-Language header. Errors from
settings.py and the engine are already bilingual and are shown as they are.
"""

from __future__ import annotations

import gradio as gr

LANGUAGES = ("en", "zh")

LABELS = {
    "en": {
        "title": "# GPT-2, one token at a time",
        "intro": "Type the beginning of a text and press **Generate**: GPT-2 continues it one token at a time. "
        "Your prompt is shown in grey, the model's words in full colour.",
        "tab_generate": "Generate",
        "prompt": "Prompt",
        "prompt_info": "Enter generates; Shift+Enter starts a new line.",
        "prompt_placeholder": "Yesterday, a man named Jack said he saw an alien,",
        "settings": "Sampling settings",
        "max_new_tokens": "Length (new tokens)",
        "max_new_tokens_info": "At most what GPT-2's window leaves after the prompt.",
        "top_k": "Top-k",
        "top_k_info": "Pick among the k most likely tokens; 0 = off.",
        "temperature": "Temperature",
        "temperature_info": "Below 1: safer choices; above 1: wilder ones.",
        "top_p": "Top-p (nucleus)",
        "top_p_info": "Keep the most likely tokens whose probabilities add up to p; 1 = off.",
        "repetition_penalty": "Repetition penalty",
        "repetition_penalty_info": "Above 1 makes repeating a token less likely; 1 = off.",
        "seed": "Seed",
        "seed_info": "Blank = random. Put a used seed here to repeat a run exactly.",
        "greedy": "Greedy",
        "greedy_info": "Always take the most likely token (ignores top-k, top-p and temperature).",
        "generate": "Generate",
        "stop": "Stop",
        "output": "Text",
        "plain_text": "Plain text (to copy)",
        "status": "Status",
        "seed_used": "Seed used",
        "reuse_seed": "Use this seed again",
        "examples": "Examples",
        "model": "Model",
    },
    "zh": {
        "title": "# GPT-2 逐个 token 生成演示",
        "intro": "输入一段文字的开头，点击 **生成**：GPT-2 会一个 token 一个 token 地接着写。灰色是你的提示，正常颜色是模型写的。",
        "tab_generate": "生成",
        "prompt": "提示",
        "prompt_info": "按 Enter 生成；Shift+Enter 换行。",
        "prompt_placeholder": "Yesterday, a man named Jack said he saw an alien,",
        "settings": "采样设置",
        "max_new_tokens": "长度（新 token 数）",
        "max_new_tokens_info": "最多为提示之后 GPT-2 窗口剩余的长度。",
        "top_k": "Top-k",
        "top_k_info": "只在概率最高的 k 个 token 中选；0 = 关闭。",
        "temperature": "温度",
        "temperature_info": "小于 1：更保守；大于 1：更随意。",
        "top_p": "Top-p（核采样）",
        "top_p_info": "保留概率最高、累计概率达到 p 的 token；1 = 关闭。",
        "repetition_penalty": "重复惩罚",
        "repetition_penalty_info": "大于 1 时，已出现的 token 更不容易再出现；1 = 关闭。",
        "seed": "随机种子",
        "seed_info": "留空 = 随机。填入用过的种子可以完全重现一次生成。",
        "greedy": "贪心",
        "greedy_info": "总是选概率最高的 token（忽略 top-k、top-p 和温度）。",
        "generate": "生成",
        "stop": "停止",
        "output": "文本",
        "plain_text": "纯文本（便于复制）",
        "status": "状态",
        "seed_used": "本次种子",
        "reuse_seed": "再用这个种子",
        "examples": "示例",
        "model": "模型",
    },
}

MESSAGES = {
    "en": {
        "tokens": "{count} tokens",
        "speed": "{rate:.1f} tokens/s",
        "seed": "seed {seed}",
        "starting": "starting…",
        "generating": "generating…",
        "waiting": "waiting: {ahead} ahead of you",
        "finish_eos": "finished: end of text",
        "finish_length": "finished: length reached",
        "finish_context": "finished: the context window is full",
        "finish_stopped": "stopped",
        "loading": "Loading the model…",
        "loading_file": "Loading the model: {desc}",
        "model_loading": "**Model:** loading {spec} on {device}…",
        "model_failed": "**Model:** could not be loaded. {error}",
        "model_ready": "**Model:** {name} · from {kind} · device {device} ({dtype}) · {parameters} parameters · "
        "window {window} tokens · loaded in {load_seconds} s",
        "kind_folder": "a local folder",
        "kind_modelscope": "ModelScope",
        "kind_huggingface": "Hugging Face",
        "kind_bundled": "the offline model bundled with gpt2demo",
        "fallback_banner": "⚠️ **Offline model in use.** {notice}",
        "public_no_auth": "⚠️ **This page is public** through a share link and has no password: anyone with the link "
        "can use it. Restart with `--auth USER:PASS` to require one.",
        "share_failed": "The public share link could not be created (no internet connection to the share server?). "
        "The demo is served locally only, at {url}",
        "share_url": "Public link: {url}",
        "classroom": "Requests running: {running} · waiting: {waiting}",
    },
    "zh": {
        "tokens": "{count} 个 token",
        "speed": "每秒 {rate:.1f} 个 token",
        "seed": "种子 {seed}",
        "starting": "正在开始…",
        "generating": "正在生成…",
        "waiting": "排队中：前面还有 {ahead} 个请求",
        "finish_eos": "结束：文本结束",
        "finish_length": "结束：达到设定长度",
        "finish_context": "结束：上下文窗口已满",
        "finish_stopped": "已停止",
        "loading": "正在加载模型…",
        "loading_file": "正在加载模型：{desc}",
        "model_loading": "**模型：** 正在 {device} 上加载 {spec}…",
        "model_failed": "**模型：** 无法加载。{error}",
        "model_ready": "**模型：** {name} · 来源：{kind} · 设备 {device}（{dtype}）· {parameters} 个参数 · "
        "窗口 {window} 个 token · 加载用时 {load_seconds} 秒",
        "kind_folder": "本地文件夹",
        "kind_modelscope": "ModelScope（魔搭）",
        "kind_huggingface": "Hugging Face",
        "kind_bundled": "gpt2demo 自带的离线模型",
        "fallback_banner": "⚠️ **正在使用离线模型。** {notice}",
        "public_no_auth": "⚠️ **本页面已通过分享链接公开**，且没有密码：任何拿到链接的人都能使用。"
        "请用 `--auth 用户名:密码` 重新启动以设置密码。",
        "share_failed": "无法创建公开分享链接（可能无法连接分享服务器）。演示只在本机提供：{url}",
        "share_url": "公开链接：{url}",
        "classroom": "正在生成：{running} 个请求 · 排队：{waiting} 个",
    },
}

I18N = gr.I18n(**{language: LABELS[language] for language in LANGUAGES})


def label(key: str) -> gr.i18n.I18nData:
    """A static text the browser translates; fails at page build time on an unknown key."""
    if key not in LABELS["en"]:
        raise KeyError(key)
    return I18N(key)


def pick_language(accept_language: str | None) -> str:
    """'zh' when the browser's first choice is Chinese, else 'en' (the header's order, not its q-values)."""
    first = (accept_language or "").split(",")[0].strip().lower()
    return "zh" if first.startswith("zh") else "en"


def request_language(request: gr.Request | None) -> str:
    """The language of the browser (or client) that sent the request."""
    headers = getattr(request, "headers", None) or {}
    return pick_language(headers.get("accept-language"))


def message(language: str, key: str, **values) -> str:
    """A server-written message in one language, with its values filled in."""
    return MESSAGES[language if language in MESSAGES else "en"][key].format(**values)
