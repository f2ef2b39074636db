"""The Generate tab's logic: one generation as the page shows it, and the events that run it.

generate() streams a ticket of the engine. Two ways end it early:
- the tab's Stop button (Runs) cancels its ticket: the stream ends with the
  'stopped' step, so the status line can say so;
- Gradio closing or cancelling the handler (an API client's cancel, a closed tab)
  runs its `finally`, which cancels the ticket too.
Either way the shared batch drops the request before its next token.

The tab's last run is kept (ctx.recent_runs, ui/sessions.py) for its Download buttons: a JSON file or
an HTML page of the run's token view (views/export.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from html import escape

import gradio as gr

from gpt2demo.errors import DemoError
from gpt2demo.serving.interface import EngineState, PromptFit, Request, Step
from gpt2demo.settings import BOUNDS, SamplingSettings, check_integer, check_settings
from gpt2demo.ui.context import PageContext
from gpt2demo.ui.i18n import message, request_language, user_error
from gpt2demo.ui.pacing import paced, update_spacing
from gpt2demo.ui.panel import shown_error
from gpt2demo.ui.runs import session_of
from gpt2demo.ui.views.export import Run, download
from gpt2demo.ui.views.features import CANDIDATES, offers

TAB = "generate"
SEPARATOR = " · "
ACCEPT_SECONDS = 30.0  # the engine answers a submission (tokenizing a long prompt) within this


def render_html(prompt: str, continuation: str) -> str:
    """The prompt in grey and the continuation in the normal colour, escaped, line breaks kept.

    The continuation's span and the div are left open (the browser closes them): each
    update then starts with the one before, so Gradio sends only the new text.
    """
    return (
        '<div class="gpt2demo-output" style="white-space: pre-wrap; font-size: 1.1em; line-height: 1.6">'
        f'<span class="gpt2demo-prompt" style="color: var(--body-text-color-subdued, #888)">{escape(prompt)}</span>'
        f'<span class="gpt2demo-continuation">{escape(continuation)}'
    )


def describe_fit(fit: PromptFit | None, language: str) -> str:
    """The notice when the prompt was cut or the length lowered to fit the window; '' otherwise."""
    if fit is None:
        return ""
    notices = []
    if fit.cut_from is not None:
        notices.append(message(language, "notice_cut", tokens=fit.cut_from, kept=len(fit.token_ids), window=fit.window))
    if fit.lowered_from is not None:
        notices.append(message(language, "notice_lowered", allowed=fit.max_new_tokens))
    return " ".join(notices)


@dataclass
class GenerationView:
    """One generation as seen by the page, updated step by step."""

    prompt: str
    seed: int | None = None
    fit: PromptFit | None = None
    continuation: str = ""
    tokens: int = 0  # tokens written into the text (the final <|endoftext|> is not)
    first_token_at: float | None = None
    last_token_at: float | None = None
    waiting: bool = False  # still in the engine's line
    ahead: int = 0  # requests waiting before this one in that line
    finish_reason: str | None = None

    @property
    def text(self) -> str:
        """Prompt + continuation as plain text: the API's first output."""
        return self.prompt + self.continuation

    def add(self, step: Step, now: float) -> None:
        """Take in one step received at time `now` (seconds, any monotonic clock)."""
        self.continuation += step.text
        self.waiting, self.ahead = False, 0
        if step.token_id is not None and step.finish_reason != "eos":
            self.tokens += 1
            self.first_token_at = now if self.first_token_at is None else self.first_token_at
            self.last_token_at = now
        self.finish_reason = step.finish_reason

    def tokens_per_second(self) -> float | None:
        # Counted from the first token: the time before it is queueing and reading the prompt.
        if self.tokens < 2 or self.last_token_at == self.first_token_at:
            return None
        return (self.tokens - 1) / (self.last_token_at - self.first_token_at)

    def status(self, language: str) -> str:
        """Tokens so far, speed, seed and why it stopped (or where it waits), in one line."""
        if self.finish_reason is None and self.waiting:
            parts = [message(language, "waiting", ahead=self.ahead) if self.ahead else message(language, "waiting_next")]
        elif self.finish_reason is None and self.tokens == 0:
            parts = [message(language, "starting")]
        else:
            parts = [message(language, "tokens", count=self.tokens)]
            rate = self.tokens_per_second()
            if rate is not None:
                parts.append(message(language, "speed", rate=rate))
            state = f"finish_{self.finish_reason}" if self.finish_reason else "generating"
            parts.append(message(language, state))
        if self.seed is not None:
            parts.append(message(language, "seed", seed=self.seed))
        notice = describe_fit(self.fit, language)
        if notice:
            parts.append(notice)
        return SEPARATOR.join(parts)

    def outputs(self, language: str) -> tuple[str, str, str, str]:
        """Values for the page's outputs: plain text, HTML, status line, seed used ('' before it is known)."""
        seed = "" if self.seed is None else str(self.seed)
        return self.text, render_html(self.prompt, self.continuation), self.status(language), seed


def in_line(ticket, stats) -> bool:
    """Whether a request just accepted waits for a row: others are ahead of it, or every row is taken.

    (Accepted with nobody ahead and a row free, it is admitted a moment later: "starting".)
    """
    if ticket.admitted:
        return False
    return ticket.ahead > 0 or (stats.max_batch is not None and stats.running >= stats.max_batch)


def show_loading(progress: gr.Progress, state: EngineState, language: str) -> None:
    """Mirror the loader's newest progress bar into the page."""
    bar = state.progress
    if bar is None:
        progress(None, desc=message(language, "loading"))
    else:
        progress((bar.done, bar.total), desc=message(language, "loading_file", desc=bar.desc or "…"))


def reuse_seed(seed_used) -> str:
    """Copy the seed a run used into the seed box, to repeat the run; anything but a seed gives ''."""
    try:
        return str(check_integer("seed", seed_used, *BOUNDS.seed))
    except DemoError:  # the box is the page's own output: only a hand-made request sends something else
        return ""


def settings_or_error(raw: dict, language: str) -> SamplingSettings:
    """check_settings, the one check of a request's values; a bad one becomes the page's gr.Error."""
    try:
        return check_settings(**raw)
    except DemoError as error:
        raise user_error(error, language) from None


async def ready_state(ctx: PageContext, language: str, progress: gr.Progress | None, should_stop) -> EngineState:
    """Wait for the model (mirroring the loader's progress); a failed load is the page's gr.Error."""
    report = (lambda state: show_loading(progress, state, language)) if progress is not None else (lambda state: None)
    state = await ctx.engine.wait_ready(report, should_stop)
    if state.phase == "failed":
        raise user_error(shown_error(state), language)  # as the model panel says it: no server paths
    return state


class GenerateHandlers:
    """The Generate tab's events."""

    def __init__(self, ctx: PageContext) -> None:
        self.ctx = ctx

    async def generate(
        self,
        prompt: str,
        max_new_tokens: int = SamplingSettings.max_new_tokens,
        top_k: int = SamplingSettings.top_k,
        temperature: float = SamplingSettings.temperature,
        top_p: float = SamplingSettings.top_p,
        repetition_penalty: float = SamplingSettings.repetition_penalty,
        seed: str | int | None = "",
        greedy: bool = False,
        request: gr.Request = None,
        progress=gr.Progress(),
    ):
        """Stream the prompt and its continuation: (text, html, status, seed used) as tokens come."""
        language = request_language(request)
        settings = settings_or_error(dict(max_new_tokens=max_new_tokens, top_k=top_k, temperature=temperature,
                                          top_p=top_p, repetition_penalty=repetition_penalty, greedy=greedy, seed=seed),
                                     language)  # refused now, not after a model download
        prompt = "" if prompt is None else prompt  # anything else but text: the engine's check names it
        shown = prompt if isinstance(prompt, str) else ""
        run = self.ctx.runs.open(request, TAB)
        accepted, written = None, []  # for the run kept for the Download buttons
        try:
            state = await ready_state(self.ctx, language, progress, lambda: run.stop_requested)
            if run.stop_requested:
                yield GenerationView(shown, finish_reason="stopped").outputs(language)
                return
            ticket = run.attach(self.ctx.engine.submit(Request(settings, prompt)))
            try:
                accepted = await ticket.accepted(ACCEPT_SECONDS)
                view = GenerationView(shown, accepted.seed, accepted.prompt, waiting=in_line(ticket, self.ctx.engine.stats()),
                                      ahead=ticket.ahead)
                yield view.outputs(language)
                async for steps in paced(ticket, lambda: update_spacing(self.ctx.engine.stats())):
                    now = time.perf_counter()
                    for step in steps:
                        view.add(step, now)
                    written.extend(steps)
                    if not steps and view.tokens == 0 and view.finish_reason is None:
                        view.waiting, view.ahead = not ticket.admitted, ticket.ahead
                    yield view.outputs(language)
            except DemoError as error:  # refused (bad prompt, busy), or ended by the engine (failed step, shutdown)
                raise user_error(error, language) from None
        finally:
            self.ctx.runs.close(run)  # no further token is computed for this request
            if accepted is not None:
                facts = state.facts
                kept = Run.of(facts.name, facts.eos_token_id, offers(state, CANDIDATES), shown, settings, accepted.seed,
                              written)
                self.ctx.recent_runs.put(session_of(request), kept)

    async def limit_length(self, prompt: str, max_new_tokens, request: gr.Request = None):
        """Set the length slider's maximum to what the model's window leaves after this prompt."""
        language = request_language(request)
        if self.ctx.engine.state.phase != "ready":
            return gr.update()
        try:
            wanted = check_integer("max_new_tokens", max_new_tokens, *BOUNDS.max_new_tokens)
            room = (await self.ctx.engine.fit(prompt, BOUNDS.max_new_tokens[1])).max_new_tokens  # the engine's own rule
        except DemoError as error:  # an unusable prompt or value: say so beside the slider's change
            raise user_error(error, language) from None
        return gr.update(maximum=room, value=min(wanted, room))

    def download(self, kind: str, request: gr.Request = None) -> str:
        """The tab's last run as a file for the page's download script: kind 'json' or 'html'."""
        language = request_language(request)
        run = self.ctx.recent_runs.get(session_of(request))
        if run is None:
            raise gr.Error(message(language, "export_nothing"), print_exception=False)
        return download(run, kind, language)

    def download_json(self, request: gr.Request = None) -> str:
        """The last run as JSON, to load into the Inside tab later."""
        return self.download("json", request)

    def download_html(self, request: gr.Request = None) -> str:
        """The last run's token view as a page for slides."""
        return self.download("html", request)
