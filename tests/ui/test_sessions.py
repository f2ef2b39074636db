"""What the teaching tabs hold between clicks: given back on close or idle, and at most so many tabs."""

import gradio as gr
import pytest

from gpt2demo.errors import EngineBusy
from gpt2demo.settings import SamplingSettings
from gpt2demo.ui.context import PageContext
from gpt2demo.ui.sessions import SessionStore
from gpt2demo.ui.views.export import Run


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_tab_keeps_its_objects_until_it_closes():
    store = SessionStore(capacity=3, idle_seconds=60, clock=Clock())
    store.put("tab-1", "sampler", "session A")
    store.put("tab-1", "inside", "view A")
    assert (store.get("tab-1", "sampler"), store.get("tab-1", "inside"), store.get("tab-2", "sampler")) == ("session A", "view A", None)
    store.drop("tab-1")
    assert store.get("tab-1", "sampler") is None and len(store) == 0


def test_an_idle_tab_is_forgotten_and_a_click_keeps_a_tab_alive():
    clock = Clock()
    store = SessionStore(capacity=3, idle_seconds=60, clock=clock)
    store.put("busy", "sampler", 1)
    store.put("idle", "sampler", 2)
    clock.now = 59
    assert store.get("busy", "sampler") == 1
    clock.now = 61
    assert (store.get("busy", "sampler"), store.get("idle", "sampler"), len(store)) == (1, None, 1)


def test_beyond_the_capacity_a_new_tab_is_told_and_working_tabs_keep_theirs():
    clock = Clock()
    store = SessionStore(capacity=2, idle_seconds=60, clock=clock)
    store.put("a", "sampler", 1)
    store.put("b", "sampler", 2)
    store.put("a", "inside", 3)  # a tab already held may always keep more
    with pytest.raises(EngineBusy) as full:
        store.put("c", "sampler", 4)
    assert (full.value.code, full.value.facts) == ("sessions", {"limit": 2})
    clock.now = 60  # both idle now: their room goes to the new tab
    store.put("c", "sampler", 4)
    assert (store.get("a", "sampler"), store.get("c", "sampler"), len(store)) == (None, 4, 1)


def test_a_closed_page_gives_back_its_last_generate_run_and_its_tab_objects():
    ctx = PageContext(engine=None)
    ctx.recent_runs.put("page-1", Run("tiny", None, False, "Hi", SamplingSettings(), 1, (), "length"))
    ctx.sessions.put("page-1", "sampler", "session A")
    assert (len(ctx.recent_runs), len(ctx.sessions)) == (1, 1)
    ctx.close_page(gr.Request(session_hash="page-1"))
    assert (ctx.recent_runs.get("page-1"), len(ctx.recent_runs), len(ctx.sessions)) == (None, 0, 0)
