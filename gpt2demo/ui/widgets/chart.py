"""The live next-token chart: one step's most likely tokens as bars, coloured by the cut-off.

Bars are the probabilities after temperature (what Candidate.probability holds);
blue bars stay in the running after top-k/top-p, grey ones are cut off, the
orange one is the token that was chosen.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from gpt2demo.serving.interface import Step
from gpt2demo.ui.i18n import LANGUAGES, MESSAGES, label
from gpt2demo.ui.widgets.tokens import piece_label

COLORS = {"chosen": "#f97316", "kept": "#3b82f6", "cut": "#9ca3af"}
COLOR_MAP = {MESSAGES[language][state]: color for language in LANGUAGES for state, color in COLORS.items()}
CHART_COLUMNS = ["token", "percent", "status"]


def chart_frame(step: Step | None, eos_token_id: int | None, language: str) -> pd.DataFrame:
    """One bar per candidate, most likely first, in percent: '1. the' (ranks keep equal-looking tokens apart)."""
    if step is None:
        return pd.DataFrame(columns=CHART_COLUMNS)
    messages = MESSAGES[language]
    rows = []
    for rank, candidate in enumerate(step.candidates, start=1):
        state = "chosen" if candidate.token_id == step.token_id else "kept" if candidate.kept else "cut"
        rows.append((f"{rank}. {piece_label(candidate.piece, eos_token_id)}", 100 * candidate.probability, messages[state]))
    return pd.DataFrame(rows, columns=CHART_COLUMNS)


def build_chart(elem_id: str) -> gr.BarPlot:
    """An empty bar chart that chart_frame() values fill."""
    # No height=: in Gradio 6.31 a streamed BarPlot with a fixed height loses its y values.
    return gr.BarPlot(chart_frame(None, None, "en"), x="token", y="percent", color="status", color_map=COLOR_MAP,
                      sort="-y", x_label_angle=-30, x_title=" ", y_title="%", color_title=" ",
                      label=label("views_chart"), elem_id=elem_id)
