"""The prompt box and the sampling controls: one builder for every tab.

Ranges come from settings.BOUNDS and defaults from SamplingSettings, so a limit
lives in one place; labels are the Generate tab's, so a setting has one name.
"""

from __future__ import annotations

import gradio as gr

from gpt2demo.settings import BOUNDS, SamplingSettings
from gpt2demo.ui.i18n import label

TUTORIAL_PROMPT = "Yesterday, a man named Jack said he saw an alien,"  # every tab starts from it


def element_id(prefix: str, name: str) -> str:
    """'<prefix>-<name>', or the name alone for the Generate tab's controls."""
    name = name.replace("_", "-")
    return f"{prefix}-{name}" if prefix else name


def prompt_box(prefix: str, max_lines: int = 8, **kwargs) -> gr.Textbox:
    """A prompt box that starts with the tutorial's prompt (an empty one still works)."""
    return gr.Textbox(TUTORIAL_PROMPT, label=label("prompt"), info=label("prompt_info"), lines=1, max_lines=max_lines,
                      placeholder=label("prompt_placeholder"), elem_id=element_id(prefix, "prompt"), **kwargs)


def share_prompts(boxes: list[gr.Textbox]) -> None:
    """Typing in any tab's prompt box types it into every other one, in the browser (no server call)."""
    for box in boxes:
        others = [other for other in boxes if other is not box]
        # Gradio 6.31's Textbox fires .input on keypress only: a paste, a Chinese IME's text or
        # a final Backspace fire none. .blur (leaving the box, e.g. for another tab) covers them.
        gr.on([box.input, box.blur], None, [box], others, js=f"(text) => Array({len(others)}).fill(text)", queue=False,
              api_visibility="private", show_progress="hidden")


def sampling_controls(prefix: str, defaults: SamplingSettings, names: tuple[str, ...]) -> dict[str, gr.components.Component]:
    """The chosen sampling controls, in the order named; element ids from element_id()."""

    def slider(name: str, step: float) -> gr.Slider:
        return gr.Slider(*getattr(BOUNDS, name), value=getattr(defaults, name), step=step, label=label(name),
                         info=label(f"{name}_info"), elem_id=element_id(prefix, name))

    makers = {
        "max_new_tokens": lambda: slider("max_new_tokens", 1),
        # A number box, not a slider: k runs up to the vocabulary size, but the useful values are small.
        "top_k": lambda: gr.Number(defaults.top_k, minimum=BOUNDS.top_k[0], maximum=BOUNDS.top_k[1], precision=0, step=1,
                                   label=label("top_k"), info=label("top_k_info"), elem_id=element_id(prefix, "top_k")),
        "temperature": lambda: slider("temperature", 0.01),
        "top_p": lambda: slider("top_p", 0.01),
        "repetition_penalty": lambda: slider("repetition_penalty", 0.01),
        # Text, not a number box: a number box cannot be blank, and blank means "random".
        "seed": lambda: gr.Textbox("" if defaults.seed is None else str(defaults.seed), label=label("seed"),
                                   info=label("seed_info"), max_lines=1, elem_id=element_id(prefix, "seed")),
        "greedy": lambda: gr.Checkbox(defaults.greedy, label=label("greedy"), info=label("greedy_info"),
                                      elem_id=element_id(prefix, "greedy")),
    }
    return {name: makers[name]() for name in names}
