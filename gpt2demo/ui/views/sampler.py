"""The "You are the sampler" tab's logic: the class picks every token, or lets the sampler draw one.

The engine side is teaching.sampler.SamplerSession (one per browser tab, kept in
the page's SessionStore); this module draws it: the text as boxes (dashed = picked by a person),
the next position's candidates as a clickable table.
"""

from __future__ import annotations

import gradio as gr

from gpt2demo.errors import DemoError
from gpt2demo.settings import SamplingSettings
from gpt2demo.teaching.sampler import PICKED_BY_YOU, SamplerSession, start
from gpt2demo.ui.context import PageContext
from gpt2demo.ui.i18n import message, request_language, user_error
from gpt2demo.ui.runs import session_of
from gpt2demo.ui.views.features import CANDIDATES, missing_note, offers, probability_text
from gpt2demo.ui.views.generate import ready_state, settings_or_error
from gpt2demo.ui.views.inside import clicked_index
from gpt2demo.ui.widgets.candidates import candidates_html
from gpt2demo.ui.widgets.tokens import TokenBox, text_html

TAB = "sampler"
DEFAULTS = SamplingSettings()  # the tutorial's top-k = 10
CONTROLS = ("top_k", "temperature", "top_p", "seed")


def session_boxes(session: SamplerSession, language: str) -> list[TokenBox]:
    """One box per chosen token: shaded by its probability, dashed when a person picked it."""
    boxes = []
    for pick in session.picks:
        who = message(language, "picked_by_you" if pick.picked_by == PICKED_BY_YOU else "picked_by_sampler")
        boxes.append(TokenBox(pick.step.piece, shade=pick.step.probability,
                              classes=("tv-you",) if pick.picked_by == PICKED_BY_YOU else (),
                              title=f"#{pick.step.index} · {who} · p = {probability_text(pick.step.probability)}"))
    return boxes


def session_outputs(session: SamplerSession | None, language: str) -> tuple:
    """Values for: text, candidates, status."""
    if session is None:
        return "", "", message(language, "sampler_start")
    eos_token_id = session.engine.state.facts.eos_token_id
    text = text_html(session.prompt.text, session_boxes(session, language), eos_token_id)
    if session.finish_reason:
        candidates = f'<p class="tv-note">{message(language, "finish_" + session.finish_reason)}</p>'
    elif not offers(session.engine.state, CANDIDATES):  # "let the sampler pick" still works
        candidates = missing_note(CANDIDATES, language)
    else:
        candidates = candidates_html(session.candidates, None, None, session.settings, eos_token_id, language)
    yours = sum(pick.picked_by == PICKED_BY_YOU for pick in session.picks)
    status = message(language, "sampler_status", count=len(session.picks), yours=yours,
                     sampler=len(session.picks) - yours, seed=session.seed)
    return text, candidates, status


class SamplerHandlers:
    """The tab's events; each is one short request to the engine. The tab's session is held in ctx.sessions."""

    def __init__(self, ctx: PageContext) -> None:
        self.ctx = ctx

    async def start(self, prompt: str, top_k, temperature, top_p, seed, request: gr.Request = None):
        """Read the prompt and show the first position's candidates."""
        language = request_language(request)
        settings = settings_or_error(dict(top_k=top_k, temperature=temperature, top_p=top_p, repetition_penalty=1.0,
                                          greedy=False, seed=seed), language)
        await ready_state(self.ctx, language, None, lambda: False)
        try:
            session = await start(self.ctx.engine, "" if prompt is None else prompt, settings)
            self.ctx.sessions.put(session_of(request), TAB, session)  # a new start replaces the old session
        except DemoError as error:  # an unusable prompt, a busy server, too many tabs held
            raise user_error(error, language) from None
        return session_outputs(session, language)

    async def choose(self, event: gr.SelectData, request: gr.Request = None):
        """Take the clicked candidate as the next token."""
        return await self._act(request, lambda session: self._choose_clicked(session, event))

    async def sample(self, request: gr.Request = None):
        """Let the sampler draw the next token with the session's settings and seed."""
        return await self._act(request, lambda session: session.choose(None))

    async def go_back(self, event: gr.SelectData, request: gr.Request = None):
        """Go back to just before the clicked token; the next pick starts a new branch."""
        return await self._act(request, lambda session: self._back_to_clicked(session, event))

    async def undo(self, request: gr.Request = None):
        """Take back the last token."""
        return await self._act(request, lambda session: session.undo(max(len(session.picks) - 1, 0)))

    @staticmethod
    async def _choose_clicked(session: SamplerSession, event) -> None:
        index = clicked_index(event, len(session.candidates), "choose")
        if index is not None:  # a row from a page drawn before the last pick: nothing to take
            await session.choose(session.candidates[index].token_id)

    @staticmethod
    async def _back_to_clicked(session: SamplerSession, event) -> None:
        index = clicked_index(event, len(session.picks), "go_back")
        if index is not None:
            await session.undo(index)

    async def _act(self, request: gr.Request | None, action):
        language = request_language(request)
        session = self.ctx.sessions.get(session_of(request), TAB)
        if session is None:  # never started, or closed after a long idle: start again
            return session_outputs(None, language)
        try:
            await action(session)
        except DemoError as error:  # the text has ended, an index from a stale page, a busy server
            raise user_error(error, language) from None
        return session_outputs(session, language)
