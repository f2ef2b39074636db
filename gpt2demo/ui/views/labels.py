"""The teaching views' labels and messages, in English and Chinese.

Static labels join the page's gr.I18n (add_labels), so the browser picks the
language; text the server writes while running (tables, captions, status) is
formatted here in the language of the request, as the rest of the page does.
The sampling controls reuse the Generate tab's labels, so a setting has one name.
"""

from __future__ import annotations

import gradio as gr

LANGUAGES = ("en", "zh")

LABELS = {
    "en": {
        "views_tab_inside": "Inside each step",
        "views_inside_intro": "Each token of the text is a box, darker when the model was surer of it. "
        "While it writes, the chart shows the current step's 10 most likely next tokens; "
        "afterwards **click a token** to see the choice it was.",
        "views_tokens": "Tokens (darker = more likely when chosen)",
        "views_chart": "Next-token candidates (after temperature)",
        "views_step_detail": "The selected step",
        "views_status_label": "Status",
        "views_tab_sampler": "You are the sampler",
        "views_sampler_intro": "Write one token at a time: **click a candidate** to choose it, or let the sampler "
        "draw one. **Click any token of the text** to go back to just before it and take another branch.",
        "views_start": "Start",
        "views_sampler_pick": "Let the sampler pick",
        "views_undo": "Undo last token",
        "views_sampler_text": "Text so far (click a token to go back to it)",
        "views_sampler_candidates": "Next token: click one",
        "views_tab_strategies": "Strategies side by side",
        "views_strategies_intro": "The same prompt and seed, decoded four ways in one batch. "
        "A red bar marks where a lane first leaves the greedy path; "
        "yellow tokens belong to a 3-token sequence that occurs twice, the start of a loop.",
        "views_your_lane": "Your lane",
        "views_compare": "Compare",
        "views_lanes": "Lanes",
        "views_tab_tokenizer": "Tokenizer",
        "views_tokenizer_intro": "How GPT-2 reads text: as tokens with numbers (the tutorial's `indexed_tokens`). "
        "Tokens are pieces of UTF-8 bytes, so a Chinese character often takes two or three of them.",
        "views_text": "Text",
        "views_tokenize": "Tokenize",
        "views_token_table": "Tokens, grouped by the characters they form",
        "views_tab_cost": "Cost of re-running",
        "views_cost_intro": "The tutorial feeds the **whole** text to the model for every new token; "
        "the KV cache keeps what was already computed and feeds only the newest token. "
        "Both write the same (greedy) text here; watch the time per token grow for one and stay flat for the other.",
        "views_cost_length": "New tokens",
        "views_race": "Run both",
        "views_cost_chart": "Time per token (ms) by position",
        "views_cost_table": "Tokens per second",
    },
    "zh": {
        "views_tab_inside": "看清每一步",
        "views_inside_intro": "文本中的每个 token 是一个小方框，颜色越深，模型选它时越有把握。生成时，图表显示当前这一步最可能的 10 个候选；"
        "生成之后**点击任意 token**，可以看到那一步是怎样选的。",
        "views_tokens": "Token（颜色越深 = 被选中时概率越高）",
        "views_chart": "下一个 token 的候选（温度之后）",
        "views_step_detail": "选中的这一步",
        "views_status_label": "状态",
        "views_tab_sampler": "你来当采样器",
        "views_sampler_intro": "一次写一个 token：**点击一个候选**来选它，或者让采样器抽一个。"
        "**点击文本中的任意 token**，可以回到它之前，走另一条分支。",
        "views_start": "开始",
        "views_sampler_pick": "让采样器来选",
        "views_undo": "撤销上一个 token",
        "views_sampler_text": "目前的文本（点击 token 回到那里）",
        "views_sampler_candidates": "下一个 token：点一个",
        "views_tab_strategies": "解码策略对比",
        "views_strategies_intro": "同一个提示、同一个种子，在一个批次里用四种方式解码。红色竖线标出某条线第一次离开贪心路径的位置；"
        "黄色 token 属于出现了两次的 3-token 序列，也就是循环的开始。",
        "views_your_lane": "你的设置",
        "views_compare": "对比",
        "views_lanes": "四条线",
        "views_tab_tokenizer": "分词器",
        "views_tokenizer_intro": "GPT-2 如何读文本：变成带编号的 token（即教程中的 `indexed_tokens`）。"
        "token 是 UTF-8 字节的片段，所以一个汉字常常要两三个 token。",
        "views_text": "文本",
        "views_tokenize": "分词",
        "views_token_table": "token，按它们组成的字符分组",
        "views_tab_cost": "重复计算的代价",
        "views_cost_intro": "教程每生成一个新 token，都把**整段**文本重新送进模型；KV 缓存保留已算过的结果，只送入最新的 token。"
        "这里两者写出相同的（贪心）文本；看一个的每 token 用时不断增长，另一个保持平稳。",
        "views_cost_length": "新 token 数",
        "views_race": "两种都运行",
        "views_cost_chart": "每个 token 的用时（毫秒），按位置",
        "views_cost_table": "每秒 token 数",
    },
}

MESSAGES = {
    "en": {
        "model_not_ready": "The model is still loading; try again in a moment.",
        "chosen": "chosen",
        "kept": "in the running",
        "cut": "cut off",
        "rank": "#",
        "token": "token",
        "id": "id",
        "probability": "probability",
        "cutoff_line": "cut-off: {rule}",
        "cutoff_summary": "{kept} of the {shown} most likely stay in the running ({rule}); the rest can never be drawn.",
        "cutoff_all": "All {shown} shown stay in the running ({rule}).",
        "rule_greedy": "greedy: only the most likely",
        "rule_none": "no cut",
        "chosen_outside": "chosen: {token} (p = {probability}), outside the {shown} shown",
        "step_title": "Step {index}: chose {token} with p = {probability}",
        "pick_hint": "Nothing selected yet: click a token.",
        "picked_by_you": "you",
        "picked_by_sampler": "sampler",
        "sampler_status": "{count} tokens · {yours} picked by you, {sampler} by the sampler · seed {seed}",
        "sampler_start": "Press Start.",
        "lane_greedy": "Greedy (always the most likely)",
        "lane_top_k": "Top-k = 10 (the tutorial)",
        "lane_top_p": "Top-p = 0.9",
        "lane_custom": "Yours: {settings}",
        "lane_same": "same as greedy so far",
        "lane_diverges": "leaves the greedy path at token {position}",
        "lane_repeats": "{repeated} of {total} tokens in a repeated 3-gram",
        "lanes_status": "{steps} batch steps for 4 lanes · seed {seed}",
        "group_summary": "{characters} characters → {tokens} tokens; {split} characters split over several tokens",
        "characters": "characters",
        "bytes": "bytes",
        "vocab_piece": "in vocab.json",
        "cost_tutorial": "tutorial: whole text every step",
        "cost_kv_cache": "KV cache: newest token only",
        "cost_method": "method",
        "cost_at": "first {count} tokens",
        "cost_ratio": "KV cache is {ratio:.1f}× faster",
        "cost_live": "{method}: {rate:.1f} tokens/s",
        "cost_same_text": "Both wrote the same text.",
        "cost_different_text": "The two texts differ (rounding near a tie).",
        "cost_position": "position",
        "cost_ms": "ms per token",
    },
    "zh": {
        "model_not_ready": "模型仍在加载，请稍后再试。",
        "chosen": "选中",
        "kept": "候选中",
        "cut": "被截掉",
        "rank": "#",
        "token": "token",
        "id": "编号",
        "probability": "概率",
        "cutoff_line": "截断线：{rule}",
        "cutoff_summary": "最可能的 {shown} 个中有 {kept} 个留在候选中（{rule}）；其余的不可能被抽到。",
        "cutoff_all": "显示的 {shown} 个都留在候选中（{rule}）。",
        "rule_greedy": "贪心：只有最可能的一个",
        "rule_none": "不截断",
        "chosen_outside": "选中：{token}（p = {probability}），不在显示的 {shown} 个之中",
        "step_title": "第 {index} 步：以 p = {probability} 选了 {token}",
        "pick_hint": "还没有选择：点击一个 token。",
        "picked_by_you": "你",
        "picked_by_sampler": "采样器",
        "sampler_status": "{count} 个 token · 你选了 {yours} 个，采样器选了 {sampler} 个 · 种子 {seed}",
        "sampler_start": "请点击“开始”。",
        "lane_greedy": "贪心（总选最可能的）",
        "lane_top_k": "Top-k = 10（教程）",
        "lane_top_p": "Top-p = 0.9",
        "lane_custom": "你的：{settings}",
        "lane_same": "到目前为止与贪心相同",
        "lane_diverges": "在第 {position} 个 token 离开贪心路径",
        "lane_repeats": "{total} 个 token 中有 {repeated} 个处在重复的 3-gram 里",
        "lanes_status": "4 条线共 {steps} 个批次步骤 · 种子 {seed}",
        "group_summary": "{characters} 个字符 → {tokens} 个 token；{split} 个字符被拆成了多个 token",
        "characters": "字符",
        "bytes": "字节",
        "vocab_piece": "vocab.json 中的写法",
        "cost_tutorial": "教程：每步重算整段文本",
        "cost_kv_cache": "KV 缓存：只算最新的 token",
        "cost_method": "方法",
        "cost_at": "前 {count} 个 token",
        "cost_ratio": "KV 缓存快 {ratio:.1f} 倍",
        "cost_live": "{method}：每秒 {rate:.1f} 个 token",
        "cost_same_text": "两种方法写出了相同的文本。",
        "cost_different_text": "两段文本不同（接近平局时的舍入误差）。",
        "cost_position": "位置",
        "cost_ms": "每 token 毫秒数",
    },
}


def add_labels(i18n: gr.I18n) -> None:
    """Put the views' labels into the page's gr.I18n (new dicts: the page's own tables stay untouched)."""
    for language in LANGUAGES:
        i18n.translations[language] = {**i18n.translations.get(language, {}), **LABELS[language]}


def label(key: str) -> gr.i18n.I18nData:
    """A static label the browser translates; fails at page build time on an unknown key."""
    if key not in LABELS["en"]:
        raise KeyError(key)
    return gr.i18n.I18nData(key)


def message(language: str, key: str, **values) -> str:
    """A server-written text in one language, with its values filled in."""
    return MESSAGES[language if language in MESSAGES else "en"][key].format(**values)
