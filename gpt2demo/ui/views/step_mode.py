"""The "You are the sampler" tab: the class picks every token, or lets the sampler draw one.

The engine side is teaching.stepmode.StepSession (one per browser tab, kept in a
gr.State); this module only draws it: the text as boxes (dashed = picked by a
person), the next position's candidates as a clickable table.
"""

from __future__ import annotations

import gradio as gr

from gpt2demo.settings import BOUNDS, SamplingSettings
from gpt2demo.teaching.pieces import token_piece
from gpt2demo.teaching.stepmode import PICKED_BY_YOU, StepSession
from gpt2demo.ui.handlers import checked_settings
from gpt2demo.ui.i18n import label as page_label
from gpt2demo.ui.i18n import message as page_message
from gpt2demo.ui.i18n import request_language
from gpt2demo.ui.views.common import (
    TokenBox, candidates_html, labeller, percent, ready_model, sampling_controls, teaching_html, text_html,
)
from gpt2demo.ui.views.labels import label, message

DEFAULTS = SamplingSettings()  # the tutorial's top-k = 10
CONTROLS = ("top_k", "temperature", "top_p", "seed")
SESSION_SECONDS = 2 * 3600  # a session (and its KV cache) is dropped after two idle hours
CLICK_CONCURRENCY = 8  # clicks computed at once, over all tabs (each is one decode step)


def session_boxes(session: StepSession, language: str) -> list[TokenBox]:
    """One box per chosen token: shaded by its probability, dashed when a person picked it."""
    boxes = []
    for step, picked_by in zip(session.steps, session.picked_by):
        who = message(language, "picked_by_you" if picked_by == PICKED_BY_YOU else "picked_by_sampler")
        boxes.append(TokenBox(token_piece(session.model.tokenizer, step.token_id), shade=step.probability,
                              classes=("tv-you",) if picked_by == PICKED_BY_YOU else (),
                              title=f"#{step.index} · {who} · p = {percent(step.probability)}"))
    return boxes


def session_outputs(session: StepSession | None, language: str) -> tuple:
    """Values for: text, candidates, status, state."""
    if session is None:
        return "", "", message(language, "sampler_start"), None
    text = text_html(session_prompt(session), session_boxes(session, language), session.model.eos_token_id)
    if session.finish_reason:
        candidates = f'<p class="tv-note">{page_message(language, "finish_" + session.finish_reason)}</p>'
    else:
        candidates = candidates_html(session.candidates, None, None, session.settings, labeller(session.model), language)
    yours = session.picked_by.count(PICKED_BY_YOU)
    status = message(language, "sampler_status", count=len(session.steps), yours=yours,
                     sampler=len(session.steps) - yours, seed=session.seed)
    return text, candidates, status, session


def session_prompt(session: StepSession) -> str:
    """The prompt as the model sees it (after fitting it in the window)."""
    return session.model.tokenizer.decode(session.prompt.token_ids)


class SamplerHandlers:
    """The tab's events; each runs at most one decode step of the tab's own session."""

    def __init__(self, handlers) -> None:
        self.handlers = handlers

    def start(self, prompt: str, top_k, temperature, top_p, seed, request: gr.Request = None):
        """Read the prompt and show the first position's candidates."""
        language = request_language(request)
        model = ready_model(self.handlers.service, language)
        raw = dict(max_new_tokens=BOUNDS.max_new_tokens[1], top_k=top_k, temperature=temperature, top_p=top_p,
                   repetition_penalty=1.0, greedy=False, seed=seed)
        settings = checked_settings(raw, vocab_size=model.vocab_size)
        try:
            session = StepSession(model, prompt or "", settings)
        except ValueError as error:  # an unusable prompt
            raise gr.Error(str(error), print_exception=False) from None
        return session_outputs(session, language)

    def choose(self, session: StepSession | None, event: gr.SelectData, request: gr.Request = None):
        """Take the clicked candidate as the next token."""
        candidates = session.candidates if session else ()
        if not 0 <= int(event.index) < len(candidates):
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return self._act(session, lambda: session.choose(candidates[int(event.index)].token_id), request)

    def sample(self, session: StepSession | None, request: gr.Request = None):
        """Let the sampler draw the next token with the session's settings and seed."""
        return self._act(session, lambda: session.choose(None), request)

    def go_back(self, session: StepSession | None, event: gr.SelectData, request: gr.Request = None):
        """Go back to just before the clicked token; the next pick starts a new branch."""
        return self._act(session, lambda: session.undo(int(event.index)), request)

    def undo(self, session: StepSession | None, request: gr.Request = None):
        """Take back the last token."""
        return self._act(session, lambda: session.undo(max(len(session.steps) - 1, 0)), request)

    @staticmethod
    def _act(session: StepSession | None, action, request: gr.Request | None):
        language = request_language(request)
        if session is None:
            return session_outputs(None, language)
        try:
            action()
        except ValueError as error:  # the text has ended, or an index from a stale page
            raise gr.Error(str(error), print_exception=False) from None
        return session_outputs(session, language)


def build_sampler_tab(handlers) -> None:
    """Lay out the tab and wire its events."""
    events = SamplerHandlers(handlers)
    with gr.Tab(label("views_tab_sampler"), id="sampler", elem_id="tab-sampler"):
        gr.Markdown(label("views_sampler_intro"))
        with gr.Row():
            with gr.Column(scale=3):
                prompt = gr.Textbox(label=page_label("prompt"), placeholder=page_label("prompt_placeholder"), lines=1,
                                    max_lines=6, elem_id="sampler-prompt")
                start = gr.Button(label("views_start"), variant="primary", elem_id="sampler-start")
                text = teaching_html("sampler-text", clickable=True, label=label("views_sampler_text"), show_label=True,
                                     container=True, padding=True, min_height=100)
                with gr.Row():
                    sample = gr.Button(label("views_sampler_pick"), elem_id="sampler-sample")
                    undo = gr.Button(label("views_undo"), elem_id="sampler-undo")
                status = gr.Markdown(elem_id="sampler-status")
            with gr.Column(scale=2):
                candidates = teaching_html("sampler-candidates", clickable=True, label=label("views_sampler_candidates"),
                                           show_label=True, container=True, padding=True)
                with gr.Accordion(page_label("settings"), open=False):
                    controls = sampling_controls("sampler", DEFAULTS, CONTROLS)
        session = gr.State(None, time_to_live=SESSION_SECONDS)
    outputs = [text, candidates, status, session]
    common = dict(api_visibility="private", concurrency_limit=CLICK_CONCURRENCY, concurrency_id="views-sampler",
                  show_progress="hidden")
    gr.on([start.click, prompt.submit], events.start, [prompt, *controls.values()], outputs, **common)
    candidates.select(events.choose, [session], outputs, **common)
    sample.click(events.sample, [session], outputs, **common)
    text.select(events.go_back, [session], outputs, **common)
    undo.click(events.undo, [session], outputs, **common)
