"""Errors in words: one message per DemoError code (gpt2demo/errors.py), in English and Chinese.

Parameter names stay as the API spells them (max_new_tokens, top_k), in both
languages: they are what a student types into a client and what README documents.
"""

LABELS = {"en": {}, "zh": {}}

MESSAGES = {
    "en": {
        "error_integer": "{parameter} must be an integer from {low} to {high} (got {got})",
        "error_number": "{parameter} must be a number from {low} to {high} (got {got})",
        "error_boolean": "{parameter} must be true or false (got {got})",
        "error_prompt_type": "prompt must be text (got {got})",
        "error_prompt_length": "prompt must be at most {limit} characters (got {got})",
        "error_prompt_character": "prompt contains an unsupported character {codepoint} at position {position}",
        "error_not_a_candidate": "token {token_id} is not one of the shown candidates",
        "error_text_ended": "This text has ended; go back to an earlier token to continue.",
        "error_inputs": "{event} takes {expected} inputs (got {got})",
        "error_event": "{event}: this request does not fit the page ({problem})",
        "error_unknown_inputs": "{event} has no input named {got} (its inputs: {expected})",
        "error_precision_device": "--{parameter} {got} runs on the CPU only (device here: {device}); "
        "start the app with --{parameter} {supported}.",
        "error_precision_kernels": "--{parameter} {got} needs PyTorch's quantized CPU kernels ({engines}), which this "
        "PyTorch lacks or which failed their check; start the app with --{parameter} {supported}.",
        "error_busy": "The server is busy; {ahead} requests are ahead of you. Please try again in a moment.",
        "error_sessions": "Too many open pages ({limit}); close this one and try again in a few minutes.",
        "error_loading": "The model is still loading; try again in a moment.",
        "error_load_failed": "The model could not be loaded: {kind}: {detail}",
        "error_closed": "The server is shutting down.",
        "error_engine_ended": "The model's process ended unexpectedly (exit code {exit_code}); restart the app.",
        "error_unsupported": "This view needs {feature}, which the engine in use does not offer.",
        "error_step_failed": "Generation failed: {kind}: {detail}",
        "error_no_folder": "model folder {folder} does not exist",
        "error_no_config": "model folder {folder} has no config.json",
        "error_no_weights": "model folder {folder} has no weights file ({wanted})",
        "error_no_tokenizer": "model folder {folder} has no tokenizer files ({wanted})",
        "error_damaged": "model folder {folder} could not be loaded: its {part} is damaged ({detail})",
        "error_offline": "{source} is not in the cache and offline mode is on",
        "error_remembered": "{source} failed {minutes} min ago and was not tried again ({detail})",
        "error_unreachable": "{source} could not be reached ({detail})",
        "error_download": "{source} could not be downloaded ({detail})",
        "error_unknown_spec": "model {spec} is neither a folder nor one of gpt2, bundled, modelscope:ID, hf:ID",
        "error_unavailable": "GPT-2 could not be had (tried: {tried}). To fetch it by hand: {command}",
        "error_engine_unreachable": "The generation server at {url} could not be reached ({detail}); check that it is running.",
        "error_engine_timeout": "The generation server at {url} sent nothing for {seconds:g} s; it may be overloaded. "
        "Try again in a moment.",
        "error_gone": "The generation server at {url} stopped answering in the middle of the text ({detail}). "
        "Try again once it is back.",
        "error_engine_protocol": "The generation server does not answer as gpt2demo needs ({detail}); "
        "it must be vLLM's OpenAI-compatible server.",
        "error_model_not_served": "The server at {url} does not serve {model} (it serves: {served}); "
        "start the app with --model set to one of those.",
        "error_choose_model": "The server at {url} serves several models ({served}); start the app with --model set to one.",
        "error_tokenizer_mismatch": "The tokenizer in {folder} reads text differently from the model the server at {url} "
        "serves ({served}); give --model that model's own folder or hub id.",
        "error_engine_error": "The generation server refused the request (HTTP {status}: {detail}).",
        "error_unknown": "Something went wrong ({code}).",
    },
    "zh": {
        "error_integer": "{parameter} 必须是 {low} 到 {high} 之间的整数（收到 {got}）",
        "error_number": "{parameter} 必须是 {low} 到 {high} 之间的数（收到 {got}）",
        "error_boolean": "{parameter} 必须是 true 或 false（收到 {got}）",
        "error_prompt_type": "prompt 必须是文本（收到 {got}）",
        "error_prompt_length": "prompt 最多 {limit} 个字符（收到 {got}）",
        "error_prompt_character": "prompt 在第 {position} 个位置含有不支持的字符 {codepoint}",
        "error_not_a_candidate": "token {token_id} 不在显示的候选中",
        "error_text_ended": "这段文本已经结束；回到前面的某个 token 才能继续。",
        "error_inputs": "{event} 需要 {expected} 个输入（收到 {got}）",
        "error_event": "{event}：这个请求与页面不符（{problem}）",
        "error_unknown_inputs": "{event} 没有名为 {got} 的输入（它的输入：{expected}）",
        "error_precision_device": "--{parameter} {got} 只能在 CPU 上运行（这里的设备：{device}）；"
        "请用 --{parameter} {supported} 启动应用。",
        "error_precision_kernels": "--{parameter} {got} 需要 PyTorch 的量化 CPU 内核（{engines}），"
        "而这个 PyTorch 没有它们或它们未通过检查；请用 --{parameter} {supported} 启动应用。",
        "error_busy": "服务器繁忙，前面还有 {ahead} 个请求，请稍后再试。",
        "error_sessions": "打开的页面太多（{limit} 个）；请关闭本页，几分钟后再试。",
        "error_loading": "模型仍在加载，请稍后再试。",
        "error_load_failed": "模型无法加载：{kind}: {detail}",
        "error_closed": "服务器正在关闭。",
        "error_engine_ended": "模型进程意外结束（退出码 {exit_code}）；请重新启动应用。",
        "error_unsupported": "这个视图需要 {feature}，当前的引擎不提供。",
        "error_step_failed": "生成失败：{kind}: {detail}",
        "error_no_folder": "模型文件夹 {folder} 不存在",
        "error_no_config": "模型文件夹 {folder} 中没有 config.json",
        "error_no_weights": "模型文件夹 {folder} 中没有权重文件（{wanted}）",
        "error_no_tokenizer": "模型文件夹 {folder} 中没有分词器文件（{wanted}）",
        "error_damaged": "模型文件夹 {folder} 无法加载：其中的 {part} 已损坏（{detail}）",
        "error_offline": "{source} 不在缓存中，且已开启离线模式",
        "error_remembered": "{source} 在 {minutes} 分钟前失败，这次没有再试（{detail}）",
        "error_unreachable": "无法连接 {source}（{detail}）",
        "error_download": "{source} 下载失败（{detail}）",
        "error_unknown_spec": "模型 {spec} 既不是文件夹，也不是 gpt2、bundled、modelscope:ID、hf:ID 之一",
        "error_unavailable": "无法获取 GPT-2（尝试了：{tried}）。手动获取：{command}",
        "error_engine_unreachable": "无法连接位于 {url} 的生成服务器（{detail}）；请确认它正在运行。",
        "error_engine_timeout": "位于 {url} 的生成服务器 {seconds:g} 秒没有任何回应，可能负载过高，请稍后再试。",
        "error_gone": "位于 {url} 的生成服务器在生成途中停止了响应（{detail}）。等它恢复后再试。",
        "error_engine_protocol": "生成服务器的回应不符合 gpt2demo 的要求（{detail}）；它必须是 vLLM 的 OpenAI 兼容服务器。",
        "error_model_not_served": "位于 {url} 的服务器没有提供 {model}（它提供：{served}）；请用 --model 指定其中之一来启动应用。",
        "error_choose_model": "位于 {url} 的服务器提供多个模型（{served}）；请用 --model 指定其中之一来启动应用。",
        "error_tokenizer_mismatch": "{folder} 中的分词器与位于 {url} 的服务器所提供的模型（{served}）读文本的方式不同；"
        "请给 --model 该模型自己的文件夹或模型库 ID。",
        "error_engine_error": "生成服务器拒绝了这个请求（HTTP {status}：{detail}）。",
        "error_unknown": "出错了（{code}）。",
    },
}
