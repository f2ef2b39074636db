"""The "Strategies side by side" tab: greedy, top-k = 10, top-p = 0.9 and the user's own setting.

All four lanes run as rows of one DecodeBatch (teaching.lanes), so they share
each forward pass. Each lane marks where it first leaves the greedy path (red
edge) and its tokens inside a repeated 3-gram (yellow): greedy's loops show.
"""

from __future__ import annotations

import threading
from html import escape

import gradio as gr

from gpt2demo.settings import SamplingSettings
from gpt2demo.teaching.lanes import LaneRun, first_divergence, repeated_ngrams, run_lanes, strategy_lanes
from gpt2demo.teaching.pieces import token_piece
from gpt2demo.ui.handlers import checked_settings
from gpt2demo.ui.i18n import label as page_label
from gpt2demo.ui.i18n import message as page_message
from gpt2demo.ui.i18n import request_language
from gpt2demo.ui.views.common import Throttle, TokenBox, describe_rule, percent, ready_model, render_boxes, stop_run, sampling_controls, teaching_html
from gpt2demo.ui.views.labels import label, message

DEFAULTS = SamplingSettings(max_new_tokens=40, top_k=40, temperature=0.8)  # "your lane" starts as a common choice
SHARED_CONTROLS = ("max_new_tokens", "seed")  # the same for all four lanes
LANE_CONTROLS = ("temperature", "top_k", "top_p", "repetition_penalty")  # your lane only
COMPARE_CONCURRENCY = 2  # four-row batches computed at once, outside the shared scheduler


def lane_title(run: LaneRun, language: str) -> str:
    if run.lane.key != "custom":
        return message(language, f"lane_{run.lane.key}")
    settings = run.lane.settings
    rule = describe_rule(settings, language)
    if settings.repetition_penalty != 1.0:
        rule += f" · penalty {settings.repetition_penalty:g}"
    return message(language, "lane_custom", settings=rule)


def lane_html(run: LaneRun, greedy_ids: list[int], tokenizer, eos_token_id: int | None, language: str) -> str:
    """One lane: title, tokens (repeats yellow, the first token off the greedy path with a red edge), a summary."""
    ids = run.token_ids
    repeated = repeated_ngrams(ids)
    diverges = None if run.lane.key == "greedy" else first_divergence(greedy_ids, ids)
    boxes = []
    for position, (step, token_id) in enumerate(zip([s for s in run.steps if s.token_id is not None], ids)):
        classes = (("tv-repeat",) if repeated[position] else ()) + (("tv-diverge",) if position == diverges else ())
        boxes.append(TokenBox(token_piece(tokenizer, token_id), classes=classes,
                              title=f"#{position} · p = {percent(step.probability)}"))
    notes = []
    if run.lane.key != "greedy":
        # Before the greedy lane has as many tokens, "no difference yet" is all that can be said.
        notes.append(message(language, "lane_same") if diverges is None or diverges >= len(ids)
                     else message(language, "lane_diverges", position=diverges))
    notes.append(message(language, "lane_repeats", repeated=sum(repeated), total=len(ids)))
    return (f'<div class="tv-lane" data-lane="{run.lane.key}"><h4>{escape(lane_title(run, language))}</h4>'
            f'<div class="tv-text">{render_boxes(boxes, eos_token_id)}</div>'
            f'<p class="tv-note">{escape(" · ".join(notes))}</p></div>')


def lanes_html(prompt: str, runs: list[LaneRun], tokenizer, eos_token_id: int | None, language: str) -> str:
    """The prompt once, then the four lanes under it."""
    greedy_ids = next(run.token_ids for run in runs if run.lane.key == "greedy")
    lanes = "".join(lane_html(run, greedy_ids, tokenizer, eos_token_id, language) for run in runs)
    return f'<div class="tv-text"><span class="tv-prompt">{escape(prompt)}</span></div>{lanes}'


class StrategyHandlers:
    def __init__(self, handlers) -> None:
        self.handlers = handlers

    def compare(self, prompt: str, max_new_tokens, seed, temperature, top_k, top_p, repetition_penalty,
                request: gr.Request = None):
        """Decode the prompt four ways in one batch, showing the lanes after every step."""
        language = request_language(request)
        model = ready_model(self.handlers.service, language)
        raw = dict(max_new_tokens=max_new_tokens, top_k=top_k, temperature=temperature, top_p=top_p,
                   repetition_penalty=repetition_penalty, greedy=False, seed=seed)
        lanes = strategy_lanes(checked_settings(raw, vocab_size=model.vocab_size))
        cancel = threading.Event()  # handed to the tab's state at the first update, for Stop
        try:
            throttle = Throttle()
            for batch_steps, runs in enumerate(run_lanes(model, prompt or "", lanes, cancel)):
                if not throttle.due(final=all(run.finished for run in runs)):
                    continue
                status = message(language, "lanes_status", steps=batch_steps, seed=lanes[0].settings.seed)
                if any(run.steps[-1].finish_reason == "stopped" for run in runs):
                    status += " · " + page_message(language, "finish_stopped")
                yield lanes_html(prompt or "", runs, model.tokenizer, model.eos_token_id, language), status, cancel
        except ValueError as error:  # an unusable prompt
            raise gr.Error(str(error), print_exception=False) from None
        finally:
            cancel.set()  # a closed tab: nothing more to compute


def build_strategies_tab(handlers) -> None:
    """Lay out the tab and wire its events."""
    events = StrategyHandlers(handlers)
    with gr.Tab(label("views_tab_strategies"), id="strategies", elem_id="tab-strategies"):
        gr.Markdown(label("views_strategies_intro"))
        with gr.Row():
            with gr.Column(scale=3):
                prompt = gr.Textbox(label=page_label("prompt"), placeholder=page_label("prompt_placeholder"), lines=1,
                                    max_lines=6, elem_id="strategies-prompt")
                with gr.Row():
                    compare = gr.Button(label("views_compare"), variant="primary", elem_id="strategies-compare")
                    stop = gr.Button(page_label("stop"), variant="stop", elem_id="strategies-stop")
                lanes = teaching_html("strategies-lanes", label=label("views_lanes"), show_label=True, container=True,
                                      padding=True, min_height=200)
                status = gr.Markdown(elem_id="strategies-status")
            with gr.Column(scale=2):
                shared = sampling_controls("strategies", DEFAULTS, SHARED_CONTROLS)
                with gr.Accordion(label("views_your_lane"), open=True):
                    own = sampling_controls("strategies", DEFAULTS, LANE_CONTROLS)
        cancel = gr.State(None)
    inputs = [prompt, *shared.values(), *own.values()]  # the order of compare()'s parameters
    gr.on([compare.click, prompt.submit], events.compare, inputs, [lanes, status, cancel], api_visibility="private",
          concurrency_limit=COMPARE_CONCURRENCY, concurrency_id="views-strategies", show_progress="hidden")
    stop.click(stop_run, [cancel], None, queue=False, api_visibility="private", show_progress="hidden")
