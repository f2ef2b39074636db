"""The functions the page's events call; tests call them directly.

generate() is an async generator over the scheduler's ticket. Two ways end it early:
- the page's Stop button (stop()) cancels the tab's ticket: the stream ends with
  its 'stopped' step, so the status line can say so;
- Gradio closing or cancelling the handler (an API client's cancel, a closed tab)
  runs its `finally`, which cancels the ticket.
Either way the shared batch drops the request before its next token.
"""

from __future__ import annotations

import time

import gradio as gr

from gpt2demo.engine import prepare_prompt
from gpt2demo.scheduler import ServerBusy, Ticket
from gpt2demo.settings import BOUNDS, SamplingSettings, check_settings
from gpt2demo.ui.classroom import describe_queue
from gpt2demo.ui.i18n import message, request_language
from gpt2demo.ui.live_output import UPDATE_SECONDS, GenerationView
from gpt2demo.ui.model_panel import Exposure, describe_banners, describe_model
from gpt2demo.ui.runs import Runs
from gpt2demo.ui.service import LoadingProgress, ModelService

UPDATE_SECONDS_PER_RUNNING = 0.01  # per other running request: 32 running, 0.31 s apart
TICK_SECONDS = 0.5  # with no token coming: refresh "waiting: N ahead", and let Gradio notice a closed tab


def checked_settings(raw: dict, vocab_size: int | None = None) -> SamplingSettings:
    """check_settings, with its (bilingual) message shown to the user as a gr.Error."""
    try:
        return check_settings(**raw, vocab_size=vocab_size)
    except ValueError as error:
        raise gr.Error(str(error), print_exception=False) from None


def show_loading(progress: gr.Progress, state: LoadingProgress | None, language: str) -> None:
    """Mirror the loader's newest progress bar into the page."""
    if state is None:
        progress(None, desc=message(language, "loading"))
    else:
        progress((state.done, state.total), desc=message(language, "loading_file", desc=state.desc or "…"))


def session_of(request: gr.Request | None) -> str | None:
    return getattr(request, "session_hash", None)


def reuse_seed(seed_used: str) -> str:
    """Copy the seed a run used into the seed box, to repeat the run."""
    return seed_used


class Handlers:
    """Event handlers bound to the one shared model service."""

    def __init__(self, service: ModelService, exposure: Exposure | None = None) -> None:
        self.service = service
        self.exposure = exposure or Exposure()
        self.runs = Runs()

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
        """Stream the prompt and its continuation: (text, html, status, seed used) as tokens come (see update_spacing)."""
        language = request_language(request)
        raw = dict(max_new_tokens=max_new_tokens, top_k=top_k, temperature=temperature, top_p=top_p,
                   repetition_penalty=repetition_penalty, greedy=greedy, seed=seed)
        checked_settings(raw)  # refuse a bad value now, not after a model download
        run = self.runs.open(session_of(request))
        try:
            loaded = await self.service.wait(lambda state: show_loading(progress, state, language), lambda: run.stop_requested)
            if not loaded:
                yield GenerationView(prompt or "", finish_reason="stopped").outputs(language)
                return
            ticket = self.submit(prompt, raw, language)
            run.attach(ticket)
            view = GenerationView(prompt or "", ticket.generation.seed, ticket.generation.prompt.notice)
            view.waiting, view.ahead = self.in_line(ticket), ticket.ahead
            yield view.outputs(language)
            last_update = 0.0  # the first token goes out at once
            while not view.finish_reason:
                hold = last_update + self.update_spacing() - time.perf_counter()
                try:
                    steps = await ticket.take(TICK_SECONDS, hold=max(hold, 0.0))
                except RuntimeError as error:  # the scheduler ended the request (failed step, shutdown)
                    raise gr.Error(str(error), print_exception=False) from None
                now = time.perf_counter()
                for step in steps:
                    view.add(step, now)
                if not steps and run.stop_requested:
                    # Stopped while still in line: the scheduler drops it unrun when its turn comes.
                    view.finish_reason = "stopped"
                elif not steps and view.tokens == 0:
                    view.waiting, view.ahead = self.in_line(ticket), ticket.ahead
                # A tick with no step still yields: Gradio notices a closed tab only at a yield.
                last_update = now
                yield view.outputs(language)
        finally:
            self.runs.close(run)  # no further token is computed for this request

    def update_spacing(self) -> float:
        """Seconds between two updates of one page (the first token and the last always go at once).

        Each update costs the server (render, diff, send) on the cores that also decode.
        Alone, updates come at most every UPDATE_SECONDS. With many requests running, each
        stream's updates are spaced by UPDATE_SECONDS_PER_RUNNING per other running request,
        which keeps the batch fed (at 32 streams: 161 instead of 138 tokens/s in
        bench/classroom.py, when that was measured).
        """
        return max(UPDATE_SECONDS, UPDATE_SECONDS_PER_RUNNING * (self.service.stats().running - 1))

    def submit(self, prompt: str, raw: dict, language: str) -> Ticket:
        """Queue the request on the shared scheduler; every refusal becomes a gr.Error."""
        if self.service.model is None:
            raise gr.Error(message(language, "model_failed", error=self.service.error), print_exception=False)
        settings = checked_settings(raw, vocab_size=self.service.model.vocab_size)
        try:
            return self.service.scheduler.submit(prompt, settings)
        except (ValueError, ServerBusy) as error:  # a bad prompt; a full line ("N ahead of you")
            raise gr.Error(str(error), print_exception=False) from None

    def in_line(self, ticket: Ticket) -> bool:
        """Whether a request that has no token yet is still waiting for a place in the batch."""
        return not ticket.admitted

    def stop(self, request: gr.Request = None) -> None:
        """Stop this tab's generation before its next token (Stop button, closed tab)."""
        self.runs.stop_session(session_of(request))

    def limit_length(self, prompt: str, max_new_tokens: float):
        """Set the length slider's maximum to what the model's window leaves after this prompt."""
        model = self.service.model
        if model is None:
            return gr.update()
        try:
            widest = SamplingSettings(max_new_tokens=BOUNDS.max_new_tokens[1])
            room = prepare_prompt(model, prompt, widest).max_new_tokens  # the engine's own rule
        except ValueError:  # an unusable prompt: generate() will say why
            return gr.update()
        return gr.update(maximum=room, value=min(int(max_new_tokens or room), room))

    def show_server(self, request: gr.Request = None):
        """Model panel, banners and classroom line, in the visitor's language."""
        language = request_language(request)
        banners = describe_banners(self.service, self.exposure, language)
        return (
            describe_model(self.service, language),
            gr.update(value=banners, visible=bool(banners)),
            describe_queue(self.service.stats(), language),
        )
