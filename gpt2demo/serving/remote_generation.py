"""One request to a remote server: what to send, and the Steps its streamed tokens become.

The same rules as generation.Generation, so the page cannot tell the engines
apart: the prompt fitted into the window (finish reason "context" when the window
ends the text), a person's forced tokens reported first as Steps without
candidates, max_steps ending the stream with "paused", <|endoftext|> ending it with
"eos" and no text, a cancelled stream's last Step "stopped", and text handed out
only in whole characters (TextStream over the new tokens).

Two differences the server imposes (README, "When a class outgrows one machine"):
- forced tokens are sent as part of the prompt, so they cannot draw from the
  server's random stream: a sampler session is seeded and repeats itself, but
  need not write what a Generate run with the same seed writes;
- a candidate's probability is the server's processed log probability: the
  distribution it sampled from, after the top-k/top-p cut and renormalised
  (locally: after temperature, before the cut). Tokens the cut removed come
  back only as fillers with no probability, so they are not shown.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import replace

from gpt2demo.errors import BadRequest
from gpt2demo.serving.interface import Accepted, Candidate, Request, Step
from gpt2demo.serving.openai_wire import CUT_BELOW, ServedChunk, ServedToken, completion_body
from gpt2demo.serving.served_model import ServedModel
from gpt2demo.settings import check_prompt
from gpt2demo.textstream import TextStream

NUM_CANDIDATES = 15  # as generation.NUM_CANDIDATES: the views show the same number of candidates


class RemoteGeneration:
    """One request's state on this side of the wire: its fitted prompt, seed, text and finish."""

    def __init__(self, model: ServedModel, request: Request, candidates: bool) -> None:
        """Tokenize, fit and check the request (raises BadRequest); nothing is sent yet.

        Args:
            candidates: the server sends processed logprobs, so steps carry candidates and probabilities.
        """
        settings = request.settings
        model.check_settings(settings)
        forced = model.check_token_ids("forced_token_ids", request.forced_token_ids)
        self.model, self.with_candidates = model, candidates
        seed = settings.seed if settings.seed is not None else secrets.randbelow(2**32)
        self.settings = replace(settings, seed=seed)  # the seed actually used, so the run can be repeated
        if request.token_ids is not None:
            prompt_ids = model.check_token_ids("token_ids", request.token_ids)
        else:
            prompt_ids = model.encode(check_prompt(request.prompt))
        self.prompt = model.fit(prompt_ids, settings.max_new_tokens)
        if len(forced) > self.prompt.max_new_tokens:
            raise BadRequest("integer", parameter="forced_token_ids", low=0, high=self.prompt.max_new_tokens,
                             got=len(forced))
        self.max_steps = request.max_steps
        self.stream = TextStream(model, model.decodes_piecewise)
        self.new_token_ids: list[int] = []
        self.sampled = 0
        self.finish_reason: str | None = None
        self.forced_steps = [self._force(token_id) for token_id in forced]
        if self.max_steps == 0 and self.finish_reason is None:  # only the picks' texts were asked for
            self.finish_reason = "paused"
            last = self.forced_steps.pop() if self.forced_steps else Step(0, None, "", None, (), forced=True)
            self.forced_steps.append(replace(last, finish_reason="paused"))

    @property
    def seed(self) -> int:
        return self.settings.seed

    @property
    def accepted(self) -> Accepted:
        return Accepted(seed=self.seed, prompt=self.prompt, ahead=0)

    def body(self) -> dict:
        """The completion request: the prompt and the picks as token ids, as many tokens as are left to write."""
        left = self.prompt.max_new_tokens - len(self.new_token_ids)
        max_tokens = left if self.max_steps is None else min(left, self.max_steps)
        return completion_body(self.model.served_name, [*self.prompt.token_ids, *self.new_token_ids], self.settings,
                               self.seed, max_tokens, NUM_CANDIDATES if self.with_candidates else None)

    def _force(self, token_id: int) -> Step:
        if self.finish_reason:
            raise BadRequest("text_ended")
        return self._append(token_id, None, (), forced=True)

    def _append(self, token_id: int, probability: float | None, candidates: tuple, forced: bool = False) -> Step:
        index = len(self.new_token_ids)
        self.new_token_ids.append(token_id)
        piece = self.model.pieces[token_id]
        if token_id == self.model.eos_token_id:
            self.finish_reason = "eos"  # <|endoftext|> ends the text, unseen
            return Step(index, piece, self.stream.flush(), probability, candidates, "eos", forced)
        text = self.stream.push(token_id)
        if index + 1 >= self.prompt.max_new_tokens:
            self.finish_reason = "context" if self.prompt.context_limited else "length"
            text += self.stream.flush()
        elif not forced and self.max_steps is not None and self.sampled >= self.max_steps:
            self.finish_reason = "paused"
        return Step(index, piece, text, probability, candidates, self.finish_reason, forced)

    def take(self, chunk: ServedChunk) -> list[Step]:
        """The Steps of one streamed chunk (tokens after the end are not taken)."""
        steps = []
        for token in chunk.tokens:
            if self.finish_reason:
                break
            self.sampled += 1
            probability = None if token.logprob is None or not self.with_candidates else math.exp(token.logprob)
            steps.append(self._append(token.token_id, probability, self.candidates(token)))
        if chunk.finish_reason == "stop" and steps and self.finish_reason is None:
            # The server stopped on an end token of its own configuration: the text ends here all the same.
            self.finish_reason = "eos"
            steps[-1] = replace(steps[-1], text=steps[-1].text + self.stream.flush(), finish_reason="eos")
        return steps

    def candidates(self, token: ServedToken) -> tuple[Candidate, ...]:
        """The step's most likely tokens, best first; kept = in the running (greedy: only the chosen one)."""
        if not self.with_candidates:
            return ()
        ranked = sorted(token.top, key=lambda entry: -entry[1])[:NUM_CANDIDATES]  # stable: the chosen first on a tie
        pieces = self.model.pieces
        if self.settings.greedy:  # vLLM reports the model's own distribution for temperature 0
            return tuple(Candidate(pieces[i], math.exp(lp), rank == 0) for rank, (i, lp) in enumerate(ranked))
        return tuple(Candidate(pieces[i], math.exp(lp), True) for i, lp in ranked if lp > CUT_BELOW)

    def stopped_step(self) -> Step:
        """The final step of a cancelled generation: no token, only the text still held back."""
        self.finish_reason = "stopped"
        return Step(len(self.new_token_ids), None, self.stream.flush(), None, (), "stopped")
