"""The teaching tabs: see inside every step of GPT-2's writing.

  labels.py          their labels and messages, in English and Chinese
  common.py          token boxes, the candidate table, settings controls, shared by the tabs
  token_view.py      "Inside each step": tokens shaded by probability, click one for its step
  next_token_chart.py  the live bar chart of a step's candidates, cut-off coloured
  step_mode.py       "You are the sampler": pick each token, undo, branch
  strategies.py      greedy, top-k, top-p and yours side by side, loops marked
  tokenizer_view.py  the prompt as tokens, ids and bytes, grouped by characters
  cost_lesson.py     the tutorial's re-run against the KV cache, timed per token

The engine-side logic lives in gpt2demo.teaching; these modules only draw it.
"""

from __future__ import annotations

import gradio as gr

from gpt2demo.ui.views.cost_lesson import build_cost_tab
from gpt2demo.ui.views.labels import add_labels
from gpt2demo.ui.views.step_mode import build_sampler_tab
from gpt2demo.ui.views.strategies import build_strategies_tab
from gpt2demo.ui.views.token_view import build_inside_tab
from gpt2demo.ui.views.tokenizer_view import build_tokenizer_tab


def build_teaching_tabs(handlers, i18n: gr.I18n | None = None) -> None:
    """Add the teaching tabs inside the page's gr.Tabs; their labels join `i18n` (default: the page's)."""
    if i18n is None:
        from gpt2demo.ui.i18n import I18N as i18n
    add_labels(i18n)
    build_inside_tab(handlers)
    build_sampler_tab(handlers)
    build_strategies_tab(handlers)
    build_tokenizer_tab(handlers)
    build_cost_tab(handlers)
