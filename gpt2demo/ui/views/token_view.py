"""The "Inside each step" tab: the token view and the live next-token chart.

While GPT-2 writes (through the shared scheduler, like the Generate tab), every
new token appears as a box shaded by the probability it was chosen with, and
the chart shows that step's candidates. Clicking a box afterwards shows the
candidates of its step, the chosen one marked and the top-k/top-p cut drawn.
"""

from __future__ import annotations

import gradio as gr

from gpt2demo.engine import LoadedModel, Step
from gpt2demo.scheduler import Ticket
from gpt2demo.settings import SamplingSettings
from gpt2demo.teaching.pieces import token_piece
from gpt2demo.ui.i18n import label as page_label
from gpt2demo.ui.i18n import message as page_message
from gpt2demo.ui.i18n import request_language
from gpt2demo.ui.views.common import (
    Throttle, TokenBox, candidates_html, cutoff_summary, labeller, percent, ready_model, sampling_controls, teaching_html, text_html,
)
from gpt2demo.ui.views.labels import label, message
from gpt2demo.ui.views.next_token_chart import build_chart, chart_frame

DEFAULTS = SamplingSettings(max_new_tokens=40)  # short: the point is to look at each token
CONTROLS = ("max_new_tokens", "top_k", "temperature", "top_p", "seed")
STREAM_CONCURRENCY = 16  # tabs streaming at once; their requests share the scheduler's batch


class TokenView:
    """One generation as the token view, the chart and the step table show it, built step by step."""

    def __init__(self, model: LoadedModel, prompt: str, settings: SamplingSettings, seed: int | None = None,
                 ticket: Ticket | None = None) -> None:
        self.prompt = prompt
        self.ticket = ticket  # the scheduler's handle, so Stop can end the generation
        self.settings = settings
        self.seed = seed
        self.eos_token_id = model.eos_token_id
        self.tokenizer = model.tokenizer
        self.label_of = labeller(model)
        self.steps: list[Step] = []  # steps that wrote a token (a 'stopped' step has none)
        self.boxes: list[TokenBox] = []
        self.finish_reason: str | None = None

    def add(self, step: Step) -> None:
        """Take in the engine's next step."""
        self.finish_reason = step.finish_reason
        if step.token_id is None:
            return
        self.steps.append(step)
        piece = token_piece(self.tokenizer, step.token_id)
        self.boxes.append(TokenBox(piece, shade=step.probability, title=f"#{step.index} · id {step.token_id} · p = {percent(step.probability)}"))

    def html(self, selected: int | None = None) -> str:
        """The prompt in grey, then one box per token; the selected one outlined."""
        boxes = list(self.boxes)
        if selected is not None and 0 <= selected < len(boxes):
            box = boxes[selected]
            boxes[selected] = TokenBox(box.piece, box.shade, (*box.classes, "tv-selected"), box.title)
        return text_html(self.prompt, boxes, self.eos_token_id)

    def step_at(self, index: int | None) -> Step | None:
        """The step of box `index`; the latest one when index is None."""
        if not self.steps:
            return None
        return self.steps[-1 if index is None else index]

    def detail(self, index: int | None, language: str) -> str:
        """That step's title line and candidate table."""
        step = self.step_at(index)
        if step is None:
            return f'<p class="tv-note">{message(language, "pick_hint")}</p>'
        title = message(language, "step_title", index=step.index, token=self.label_of(step.token_id),
                        probability=percent(step.probability))
        table = candidates_html(step.candidates, step.token_id, step.probability, self.settings, self.label_of, language)
        return f"<h4>{title}</h4>{table}"

    def chart(self, index: int | None, language: str):
        return chart_frame(self.step_at(index), self.label_of, language)

    def cutoff(self, index: int | None, language: str) -> str:
        step = self.step_at(index)
        return "" if step is None else cutoff_summary(step.candidates, self.settings, language)

    def status(self, language: str) -> str:
        """Tokens so far, why it ended, the seed: as the Generate tab says it."""
        if not self.steps and not self.finish_reason:
            parts = [page_message(language, "starting")]
        else:
            parts = [page_message(language, "tokens", count=len(self.steps)),
                     page_message(language, f"finish_{self.finish_reason}" if self.finish_reason else "generating")]
        if self.seed is not None:
            parts.append(page_message(language, "seed", seed=self.seed))
        return " · ".join(parts)

    def outputs(self, language: str, selected: int | None = None) -> tuple:
        """Values for: token view, chart, cut-off line, step table, status, state."""
        return (self.html(selected), self.chart(selected, language), self.cutoff(selected, language),
                self.detail(selected, language), self.status(language), self)


class InsideHandlers:
    """The tab's events, bound to the page's handlers (shared service and request checks)."""

    def __init__(self, handlers) -> None:
        self.handlers = handlers

    async def generate(self, prompt: str, max_new_tokens, top_k, temperature, top_p, seed, request: gr.Request = None):
        """Stream a generation into the token view and the chart, one step at a time."""
        language = request_language(request)
        model = ready_model(self.handlers.service, language)
        raw = dict(max_new_tokens=max_new_tokens, top_k=top_k, temperature=temperature, top_p=top_p,
                   repetition_penalty=1.0, greedy=False, seed=seed)
        ticket = self.handlers.submit(prompt or "", raw, language)  # checks settings and prompt, queues it
        view = TokenView(model, prompt or "", ticket.generation.settings, ticket.generation.seed, ticket)
        try:
            yield view.outputs(language)  # at once, so that Stop finds the ticket in the tab's state
            throttle = Throttle()
            async for step in ticket:
                view.add(step)
                if throttle.due(final=step.finish_reason is not None):
                    yield view.outputs(language)
        finally:
            ticket.cancel()  # Stop or a closed tab: the batch drops this request before its next token

    def stop(self, view: TokenView | None) -> None:
        """End the generation before its next token; its stream then says 'stopped'."""
        if view is not None and view.ticket is not None:
            view.ticket.cancel()

    def select(self, view: TokenView | None, event: gr.SelectData, request: gr.Request = None):
        """Show the clicked token's step: its candidates, the choice, the cut."""
        if view is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        language = request_language(request)
        index = int(event.index)
        if not 0 <= index < len(view.steps):
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        html, chart, cutoff, detail, _, _ = view.outputs(language, selected=index)
        return html, chart, cutoff, detail


def build_inside_tab(handlers) -> None:
    """Lay out the tab and wire its events."""
    events = InsideHandlers(handlers)
    with gr.Tab(label("views_tab_inside"), id="inside", elem_id="tab-inside"):
        gr.Markdown(label("views_inside_intro"))
        with gr.Row():
            with gr.Column(scale=3):
                prompt = gr.Textbox(label=page_label("prompt"), placeholder=page_label("prompt_placeholder"), lines=1,
                                    max_lines=6, elem_id="inside-prompt")
                with gr.Row():
                    generate = gr.Button(page_label("generate"), variant="primary", elem_id="inside-generate")
                    stop = gr.Button(page_label("stop"), variant="stop", elem_id="inside-stop")
                tokens = teaching_html("inside-tokens", clickable=True, label=label("views_tokens"), show_label=True,
                                       container=True, padding=True, min_height=120, max_height=400, autoscroll=True)
                status = gr.Markdown(elem_id="inside-status")
            with gr.Column(scale=2):
                with gr.Accordion(page_label("settings"), open=False):
                    controls = sampling_controls("inside", DEFAULTS, CONTROLS)
        with gr.Row():
            with gr.Column():
                chart = build_chart("inside-chart")
                cutoff = gr.Markdown(elem_id="inside-cutoff")
            with gr.Column():
                detail = teaching_html("inside-detail", label=label("views_step_detail"), show_label=True, container=True,
                                       padding=True)
        view = gr.State(None)
    gr.on([generate.click, prompt.submit], events.generate, [prompt, *controls.values()],
                [tokens, chart, cutoff, detail, status, view], api_visibility="private",
                concurrency_limit=STREAM_CONCURRENCY, concurrency_id="views-inside", show_progress="hidden")
    stop.click(events.stop, [view], None, queue=False, api_visibility="private", show_progress="hidden")
    tokens.select(events.select, [view], [tokens, chart, cutoff, detail], api_visibility="private",
                  queue=False, show_progress="hidden")
