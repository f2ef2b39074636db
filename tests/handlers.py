"""Helpers for tests that call the page's handlers directly, as Gradio would."""

from __future__ import annotations

import gradio as gr


def selected(index: int) -> gr.SelectData:
    """A click on the box or row with this data-index."""
    return gr.SelectData(None, {"index": index, "value": ""})


async def collect(outputs) -> list:
    """Every update a streaming handler yields."""
    return [item async for item in outputs]
