"""The "Inside each step" tab's logic: the token view and the live next-token chart.

While GPT-2 writes (one request in the shared batch, like the Generate tab), every
new token appears as a box shaded by the probability it was chosen with, and the
chart shows that step's candidates. Clicking a box afterwards shows the candidates
of its step, the chosen one marked and the top-k/top-p cut drawn.

The tab's run downloads as a JSON file or an HTML page (views/export.py), and a JSON
file loaded back replays here, with the same clicks, without the model.
"""

from __future__ import annotations

import math

import gradio as gr

from gpt2demo.errors import BadRequest, DemoError
from gpt2demo.serving.interface import Request, Step
from gpt2demo.settings import SamplingSettings
from gpt2demo.ui.context import PageContext
from gpt2demo.ui.i18n import message, request_language, user_error
from gpt2demo.ui.pacing import VIEW_UPDATE_SECONDS, paced, update_spacing
from gpt2demo.ui.runs import session_of
from gpt2demo.ui.views.export import Run, download, load_run, step_box
from gpt2demo.ui.views.features import CANDIDATES, missing_note, missing_text, offers, probability_text
from gpt2demo.ui.views.generate import ACCEPT_SECONDS, ready_state, settings_or_error
from gpt2demo.ui.widgets.candidates import candidates_html, cutoff_summary
from gpt2demo.ui.widgets.chart import chart_frame
from gpt2demo.ui.widgets.tokens import TokenBox, piece_label, text_html

TAB = "inside"
DEFAULTS = SamplingSettings(max_new_tokens=40)  # short: the point is to look at each token
CONTROLS = ("max_new_tokens", "top_k", "temperature", "top_p", "seed")


class TokenView:
    """One generation as the token view, the chart and the step table show it, built step by step."""

    def __init__(self, prompt: str, settings: SamplingSettings, eos_token_id: int | None, seed: int | None = None,
                 candidates: bool = True, model: str = "") -> None:
        """
        Args:
            candidates: the engine sends candidates (False: a server without processed logprobs; the views say so).
            model: the model's name (ModelFacts.name), for the run's file.
        """
        self.prompt = prompt
        self.settings = settings
        self.seed = seed
        self.eos_token_id = eos_token_id
        self.candidates = candidates
        self.model = model
        self.steps: list[Step] = []  # steps that wrote a token (a 'stopped' step has none)
        self.boxes: list[TokenBox] = []
        self.finish_reason: str | None = None
        self.replayed = False  # drawn from a loaded file, not the model

    @classmethod
    def replay(cls, run: Run) -> TokenView:
        """The view of a run loaded from a file: the same boxes, clicks and tables as when it was written."""
        view = cls(run.prompt, run.settings, run.eos_token_id, run.seed, run.candidates, run.model)
        for step in run.steps:
            view.add(step)
        view.finish_reason, view.replayed = run.finish_reason, True
        return view

    def run(self) -> Run:
        """The view's run so far, for its files."""
        return Run(self.model, self.eos_token_id, self.candidates, self.prompt, self.settings, self.seed,
                   tuple(self.steps), self.finish_reason)

    def add(self, step: Step) -> None:
        """Take in the engine's next step."""
        self.finish_reason = step.finish_reason
        if step.token_id is None:
            return
        self.steps.append(step)
        self.boxes.append(step_box(step))

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
        title = message(language, "step_title", index=step.index, token=piece_label(step.piece, self.eos_token_id),
                        probability=probability_text(step.probability))
        if not self.candidates:
            return f"<h4>{title}</h4>{missing_note(CANDIDATES, language)}"
        table = candidates_html(step.candidates, step.piece, step.probability, self.settings, self.eos_token_id, language)
        return f"<h4>{title}</h4>{table}"

    def chart(self, index: int | None, language: str):
        return chart_frame(self.step_at(index), self.eos_token_id, language)

    def cutoff(self, index: int | None, language: str) -> str:
        step = self.step_at(index)
        if not self.candidates:
            return missing_text(CANDIDATES, language)
        return "" if step is None else cutoff_summary(step.candidates, self.settings, language)

    def status(self, language: str) -> str:
        """Tokens so far, why it ended, the seed: as the Generate tab says it."""
        if not self.steps and not self.finish_reason:
            parts = [message(language, "starting")]
        else:
            parts = [message(language, "tokens", count=len(self.steps)),
                     message(language, f"finish_{self.finish_reason}" if self.finish_reason else "generating")]
        if self.seed is not None:
            parts.append(message(language, "seed", seed=self.seed))
        if self.replayed:
            parts.append(message(language, "export_replayed", model=self.model))
        return " · ".join(parts)

    def outputs(self, language: str, selected: int | None = None) -> tuple:
        """Values for: token view, chart, cut-off line, step table, status."""
        return (self.html(selected), self.chart(selected, language), self.cutoff(selected, language),
                self.detail(selected, language), self.status(language))


def clicked_index(event, count: int, what: str) -> int | None:
    """The index a click reported (a token box, a table row), if it names one of `count`; else None."""
    index = getattr(event, "index", None)
    # A hand-made event may carry anything: NaN and infinity are no index either (int() of one raises).
    if isinstance(index, bool) or not isinstance(index, (int, float)) or not math.isfinite(index):
        raise BadRequest("event", event=what, problem="no index")
    index = int(index)
    return index if 0 <= index < count else None


class InsideHandlers:
    """The tab's events."""

    def __init__(self, ctx: PageContext) -> None:
        self.ctx = ctx

    async def generate(self, prompt: str, max_new_tokens, top_k, temperature, top_p, seed, request: gr.Request = None):
        """Stream a generation into the token view and the chart, a few steps per update."""
        language = request_language(request)
        settings = settings_or_error(dict(max_new_tokens=max_new_tokens, top_k=top_k, temperature=temperature,
                                          top_p=top_p, repetition_penalty=1.0, greedy=False, seed=seed), language)
        prompt = "" if prompt is None else prompt
        run = self.ctx.runs.open(request, TAB)
        try:
            state = await ready_state(self.ctx, language, None, lambda: run.stop_requested)
            ticket = run.attach(self.ctx.engine.submit(Request(settings, prompt)))
            try:
                accepted = await ticket.accepted(ACCEPT_SECONDS)
                view = TokenView(prompt, settings, state.facts.eos_token_id, accepted.seed, offers(state, CANDIDATES),
                                 state.facts.name)
                self.ctx.sessions.put(session_of(request), TAB, view)  # for clicks on its tokens, later
                yield view.outputs(language)
                spacing = lambda: update_spacing(self.ctx.engine.stats(), VIEW_UPDATE_SECONDS)  # noqa: E731
                async for steps in paced(ticket, spacing):
                    for step in steps:
                        view.add(step)
                    if self.ctx.sessions.get(session_of(request), TAB) is not view:
                        return  # a loaded file took the tab's place (its Load stopped this run): draw nothing over it
                    yield view.outputs(language)
            except DemoError as error:
                raise user_error(error, language) from None
        finally:
            self.ctx.runs.close(run)

    def select(self, event: gr.SelectData, request: gr.Request = None):
        """Show the clicked token's step: its candidates, the choice, the cut."""
        language = request_language(request)
        view = self.ctx.sessions.get(session_of(request), TAB)
        if view is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        try:
            index = clicked_index(event, len(view.steps), "select")
        except DemoError as error:
            raise user_error(error, language) from None
        if index is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        html, chart, cutoff, detail, _ = view.outputs(language, selected=index)
        return html, chart, cutoff, detail

    def download(self, kind: str, request: gr.Request = None) -> str:
        """The tab's run as a file for the page's download script: kind 'json' or 'html'."""
        language = request_language(request)
        view = self.ctx.sessions.get(session_of(request), TAB)
        if view is None:
            raise gr.Error(message(language, "export_nothing"), print_exception=False)
        return download(view.run(), kind, language)

    def download_json(self, request: gr.Request = None) -> str:
        """The run as JSON, to load back later."""
        return self.download("json", request)

    def download_html(self, request: gr.Request = None) -> str:
        """The run's token view as a page for slides."""
        return self.download("html", request)

    def load(self, text, size, request: gr.Request = None):
        """Replay a run file's token view, without the model; its boxes click as a live run's."""
        language = request_language(request)
        try:
            run = load_run(text, size)
            if run is None:  # the file chooser was closed
                return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            self.ctx.runs.stop(session_of(request), TAB)  # a generation still streaming would draw over it
            view = TokenView.replay(run)
            self.ctx.sessions.put(session_of(request), TAB, view)
        except DemoError as error:
            raise user_error(error, language) from None
        return view.outputs(language)
