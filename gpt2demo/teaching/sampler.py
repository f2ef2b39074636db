"""Step mode, "you are the sampler": one token at a time, picked by the class or by the sampler.

Each action is one short request to the engine: the prompt's tokens, the picks so
far as forced tokens, and one sampled step (max_steps=1), which brings the next
position's candidates and the sampler's own pick. The session keeps no cache of
its own (a few kilobytes of picks and candidates), so a class of sampler tabs costs
the server nothing between clicks, and a remote engine serves it the same way.

Every position draws once from the request's random stream, whoever picks (the
engine draws for each forced token too): after an undo the sampler picks what it
picked before, and a session where the sampler makes every pick writes exactly what
a generation with the same seed writes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from gpt2demo.errors import BadRequest, excerpt
from gpt2demo.serving.interface import Candidate, Engine, PromptFit, Request, Step
from gpt2demo.settings import BOUNDS, SamplingSettings, check_integer

PICKED_BY_YOU = "you"
PICKED_BY_SAMPLER = "sampler"


@dataclass(frozen=True)
class Pick:
    """One chosen token: the step as the page shows it, what was on offer, and who chose."""

    step: Step  # the token's piece, probability and the candidates it was chosen among
    picked_by: str


class SamplerSession:
    """One prompt being continued token by token; choose(), undo(), and read the picks so far."""

    def __init__(self, engine: Engine, settings: SamplingSettings) -> None:
        """Use `await start(engine, prompt, settings)`; settings are checked where they entered."""
        self.engine = engine
        self.settings = settings  # the seed is fixed once the first request reports it
        self.prompt: PromptFit | None = None
        self.picks: list[Pick] = []
        self.offered: Step | None = None  # the next position: the sampler's pick and the candidates
        self.text = ""  # the continuation so far, as the engine decodes the picks
        self.finish_reason: str | None = None
        self._lock = asyncio.Lock()  # two quick clicks of one browser tab must not interleave

    @property
    def seed(self) -> int | None:
        return self.settings.seed

    @property
    def token_ids(self) -> list[int]:
        return [pick.step.token_id for pick in self.picks]

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        """The next position's most likely tokens (empty once the text ended)."""
        return () if self.offered is None else self.offered.candidates

    async def _ask(self, prompt: str = "") -> None:
        # One request: the picks so far, then (unless the text ended) one sampled step.
        request = Request(self.settings, prompt, None if self.prompt is None else self.prompt.token_ids,
                          tuple(self.token_ids), max_steps=0 if self.finish_reason else 1)
        ticket = self.engine.submit(request)
        accepted = await ticket.accepted()
        steps = []
        while not ticket.done:
            steps += await ticket.take(timeout=60.0)
        self.prompt, self.settings = accepted.prompt, replace(self.settings, seed=accepted.seed)
        sampled = [step for step in steps if not step.forced and step.token_id is not None]
        forced = [step for step in steps if step.forced and step.token_id is not None]
        # Each pick's text as the engine decoded it: a person's pick was made from the sampler's
        # step, whose text is the sampler's token's, not the one chosen.
        self.picks = [Pick(replace(pick.step, text=step.text), pick.picked_by) for pick, step in zip(self.picks, forced)]
        self.text = "".join(step.text for step in forced)
        self.offered = sampled[-1] if sampled else None  # None once the text ended

    async def _ask_or_restore(self, picks: list[Pick], finish_reason: str | None) -> None:
        # A refused request (a busy server) leaves the session as it was before the click: the
        # candidates on offer still belong to its last position.
        try:
            await self._ask()
        except BaseException:
            self.picks, self.finish_reason = picks, finish_reason
            raise

    async def choose(self, token_id: int | None = None) -> Step:
        """Add the next token: one of the shown candidates, or None to let the sampler pick."""
        async with self._lock:
            if self.finish_reason or self.offered is None:
                raise BadRequest("text_ended")
            offered = self.offered
            if token_id is None:
                step, picked_by = offered, PICKED_BY_SAMPLER
            else:
                shown = {c.token_id: c for c in offered.candidates}
                if token_id not in shown:
                    raise BadRequest("not_a_candidate", token_id=excerpt(token_id))
                choice = shown[token_id]
                step, picked_by = replace(offered, piece=choice.piece, probability=choice.probability), PICKED_BY_YOU
            before = list(self.picks), self.finish_reason
            self.picks.append(Pick(step, picked_by))
            self.finish_reason = self._ends_with(step)
            self.picks[-1] = Pick(replace(step, finish_reason=self.finish_reason), picked_by)
            await self._ask_or_restore(*before)
            return self.picks[-1].step

    async def undo(self, keep) -> None:
        """Go back to the first `keep` picks (0 = just the prompt); the next pick branches from there."""
        async with self._lock:
            keep = check_integer("keep", keep, 0, len(self.picks))
            if keep == len(self.picks):
                return
            before = list(self.picks), self.finish_reason
            del self.picks[keep:]
            self.finish_reason = self._ends_with(self.picks[-1].step) if self.picks else None
            await self._ask_or_restore(*before)

    def _ends_with(self, step: Step) -> str | None:
        # Mirrors the engine: <|endoftext|> ends the text unseen, and so does the length limit.
        if step.token_id == self.engine.state.facts.eos_token_id:
            return "eos"
        if len(self.picks) >= self.prompt.max_new_tokens:
            return "context" if self.prompt.context_limited else "length"
        return None


async def start(engine: Engine, prompt: str, settings: SamplingSettings) -> SamplerSession:
    """A session on `prompt`, showing the first position's candidates.

    Args:
        settings: temperature, top-k, top-p and seed as in generation; the text may run
            to the window's end (max_new_tokens is set to the most allowed).
    """
    session = SamplerSession(engine, replace(settings, max_new_tokens=BOUNDS.max_new_tokens[1], greedy=False))
    async with session._lock:
        await session._ask(prompt)
    return session
