"""The "Strategies side by side" tab's logic: greedy, top-k, top-p and yours, loops marked."""

from __future__ import annotations

from html import escape

import gradio as gr

from gpt2demo.errors import DemoError
from gpt2demo.settings import SamplingSettings
from gpt2demo.teaching.lanes import LaneRun, first_divergence, repeated_ngrams, run_lanes, strategy_lanes
from gpt2demo.ui.context import PageContext
from gpt2demo.ui.i18n import message, request_language, user_error
from gpt2demo.ui.pacing import VIEW_UPDATE_SECONDS
from gpt2demo.ui.views.features import probability_text
from gpt2demo.ui.views.generate import ready_state, settings_or_error
from gpt2demo.ui.widgets.candidates import describe_rule
from gpt2demo.ui.widgets.tokens import TokenBox, render_boxes

TAB = "strategies"
DEFAULTS = SamplingSettings(max_new_tokens=40, top_k=40, temperature=0.8)  # "your lane" starts as a common choice
SHARED_CONTROLS = ("max_new_tokens", "seed")  # the same for all four lanes
LANE_CONTROLS = ("temperature", "top_k", "top_p", "repetition_penalty")  # your lane only


def lane_title(run: LaneRun, language: str) -> str:
    if run.lane.key != "custom":
        return message(language, f"lane_{run.lane.key}")
    settings = run.lane.settings
    rule = describe_rule(settings, language)
    if settings.repetition_penalty != 1.0:
        rule += " · " + message(language, "rule_penalty", penalty=settings.repetition_penalty)
    return message(language, "lane_custom", settings=rule)


def lane_html(run: LaneRun, greedy_ids: list[int], eos_token_id: int | None, language: str) -> str:
    """One lane: title, tokens (repeats yellow, the first token off the greedy path with a red edge), a summary."""
    ids = run.token_ids
    repeated = repeated_ngrams(ids)
    diverges = None if run.lane.key == "greedy" else first_divergence(greedy_ids, ids)
    boxes = []
    for position, step in enumerate(s for s in run.steps if s.token_id is not None):
        classes = (("tv-repeat",) if repeated[position] else ()) + (("tv-diverge",) if position == diverges else ())
        boxes.append(TokenBox(step.piece, classes=classes, title=f"#{position} · p = {probability_text(step.probability)}"))
    notes = []
    if run.lane.key != "greedy":
        # Before the greedy lane has as many tokens, "no difference yet" is all that can be said.
        notes.append(message(language, "lane_same") if diverges is None or diverges >= len(ids)
                     else message(language, "lane_diverges", position=diverges))
    notes.append(message(language, "lane_repeats", repeated=sum(repeated), total=len(ids)))
    return (f'<div class="tv-lane" data-lane="{run.lane.key}"><h4>{escape(lane_title(run, language))}</h4>'
            f'<div class="tv-text">{render_boxes(boxes, eos_token_id)}</div>'
            f'<p class="tv-note">{escape(" · ".join(notes))}</p></div>')


def lanes_html(prompt: str, runs: list[LaneRun], eos_token_id: int | None, language: str) -> str:
    """The prompt once, then the four lanes under it."""
    greedy_ids = next(run.token_ids for run in runs if run.lane.key == "greedy")
    lanes = "".join(lane_html(run, greedy_ids, eos_token_id, language) for run in runs)
    return f'<div class="tv-text"><span class="tv-prompt">{escape(prompt)}</span></div>{lanes}'


def lanes_status(runs: list[LaneRun], seed: int, language: str) -> str:
    steps = max(len(run.steps) for run in runs)
    status = message(language, "lanes_status", steps=steps, seed=seed)
    if any(run.steps and run.steps[-1].finish_reason == "stopped" for run in runs):
        status += " · " + message(language, "finish_stopped")
    return status


class StrategyHandlers:
    """The tab's events."""

    def __init__(self, ctx: PageContext) -> None:
        self.ctx = ctx

    async def compare(self, prompt: str, max_new_tokens, seed, temperature, top_k, top_p, repetition_penalty,
                      request: gr.Request = None):
        """Decode the prompt four ways in the shared batch, showing the lanes as they grow."""
        language = request_language(request)
        custom = settings_or_error(dict(max_new_tokens=max_new_tokens, top_k=top_k, temperature=temperature, top_p=top_p,
                                        repetition_penalty=repetition_penalty, greedy=False, seed=seed), language)
        lanes = strategy_lanes(custom)
        prompt = "" if prompt is None else prompt
        run = self.ctx.runs.open(request, TAB)
        try:
            state = await ready_state(self.ctx, language, None, lambda: run.stop_requested)
            eos_token_id = state.facts.eos_token_id
            async for runs in run_lanes(self.ctx.engine, prompt, lanes, run.attach, VIEW_UPDATE_SECONDS):
                yield lanes_html(prompt, runs, eos_token_id, language), lanes_status(runs, lanes[0].settings.seed, language)
        except DemoError as error:  # an unusable prompt, a busy server
            raise user_error(error, language) from None
        finally:
            self.ctx.runs.close(run)
