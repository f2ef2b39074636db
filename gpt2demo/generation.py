"""One request's generation and the batch that advances many of them in one forward pass.

Data flows one way: Request -> fit_prompt (tokens that fit the window) ->
Generation (one request's state: seed, random stream, text) -> DecodeBatch (the
shared KV cache and forward passes) -> Steps for the views.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field, replace
from typing import Iterator

import torch

from gpt2demo.errors import BadRequest, excerpt
from gpt2demo.model import LoadedModel
from gpt2demo.sampling import Pick, exact_top, pick_next_tokens
from gpt2demo.serving.interface import Accepted, Candidate, PromptFit, Request, Step
from gpt2demo.settings import SamplingSettings, check_prompt
from gpt2demo.textstream import TextStream

NUM_CANDIDATES = 15  # top candidates reported with every step: more than the default top-k, so the views show the cut
# Prompt tokens read per step (rows x padded chunk). Alone, a 1000-token prompt takes two
# passes. While others decode, a step reads PREFILL_TOKENS_PER_JOINING tokens for each
# joining request, at least PREFILL_TOKENS_BUSY and at most PREFILL_TOKENS_ALONE: a student
# pasting a long text slows the running streams' steps instead of stopping them, and a
# class pressing Generate together has the tutorial's prompt (12 tokens) read in one step
# each, not in small slices shared by all of them (32 joining at 64 tokens a step: 2 each,
# so nobody's first token came before the sixth step; TTFT p95 4.25 s at N = 32).
PREFILL_TOKENS_ALONE = 512
PREFILL_TOKENS_BUSY = 64
PREFILL_TOKENS_PER_JOINING = 16


def prefill_budget(decoding: int, joining: int) -> int:
    """Prompt tokens one step reads while `decoding` requests decode and `joining` wait for their first token."""
    if not decoding:
        return PREFILL_TOKENS_ALONE
    return min(PREFILL_TOKENS_ALONE, max(PREFILL_TOKENS_BUSY, PREFILL_TOKENS_PER_JOINING * joining))


def check_for_model(model: LoadedModel, settings: SamplingSettings) -> None:
    """The one settings rule that depends on the model: top_k at most its vocabulary."""
    if settings.top_k > model.vocab_size:
        raise BadRequest("integer", parameter="top_k", low=0, high=model.vocab_size, got=excerpt(settings.top_k))


def check_token_ids(model: LoadedModel, parameter: str, token_ids) -> list[int]:
    """Token ids sent by a caller: integers of this model's vocabulary."""
    ids = list(token_ids)
    if any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < model.vocab_size for i in ids):
        raise BadRequest("integer", parameter=parameter, low=0, high=model.vocab_size - 1, got=excerpt(ids))
    return ids


def fit_prompt(model: LoadedModel, prompt_ids: list[int], max_new_tokens: int) -> PromptFit:
    """Left-truncate a too-long prompt, lower max_new_tokens to what the window leaves.

    A prompt at or over the window keeps its newest tokens, leaving room for what was
    asked (at most half the window); a prompt that fits is kept whole, and then only
    max_new_tokens shrinks.
    """
    ids = prompt_ids or model.start_token_ids
    window = model.window
    wanted = min(max_new_tokens, window - 1)
    cut_from = None
    if len(ids) >= window:
        keep = window - min(wanted, window // 2)
        cut_from, ids = len(ids), ids[-keep:]
    allowed = min(wanted, window - len(ids))
    return PromptFit(token_ids=tuple(ids), text=model.decode(ids), max_new_tokens=allowed, window=window,
                     cut_from=cut_from, lowered_from=max_new_tokens if allowed < max_new_tokens else None)


def prompt_ids(model: LoadedModel, request: Request) -> list[int]:
    """The request's prompt as token ids: given, or the checked text encoded."""
    if request.token_ids is not None:
        return check_token_ids(model, "token_ids", request.token_ids)
    return model.encode(check_prompt(request.prompt))


class Generation:
    """One request's running state: its settings, random stream, text and cancel signal."""

    def __init__(self, model: LoadedModel, request: Request, cancel: threading.Event | None = None) -> None:
        """Tokenize and fit the request (raises BadRequest); nothing runs on the model yet."""
        settings = request.settings
        check_for_model(model, settings)
        forced = check_token_ids(model, "forced_token_ids", request.forced_token_ids)
        self.model = model
        seed = settings.seed if settings.seed is not None else secrets.randbelow(2**32)
        self.settings = replace(settings, seed=seed)  # the seed actually used, so the run can be repeated
        self.prompt = fit_prompt(model, prompt_ids(model, request), settings.max_new_tokens)
        if len(forced) > self.prompt.max_new_tokens:
            raise BadRequest("integer", parameter="forced_token_ids", low=0, high=self.prompt.max_new_tokens,
                             got=len(forced))
        self.max_steps = request.max_steps
        self.cancel = cancel or threading.Event()
        self.generator = torch.Generator().manual_seed(seed)  # this request's own stream
        self.stream = TextStream(model.tokenizer, model.decodes_piecewise)
        self.all_ids = list(self.prompt.token_ids)  # prompt + new, for the repetition penalty
        self.cached = 0  # tokens of all_ids already in the KV cache
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
    def new_token_ids(self) -> list[int]:
        return self.all_ids[len(self.prompt.token_ids) :]

    @property
    def accepted(self) -> Accepted:
        return Accepted(seed=self.seed, prompt=self.prompt, ahead=0)

    def _force(self, token_id: int) -> Step:
        # A person's pick: the random stream draws as if the sampler had picked here, so
        # what is sampled after a run of picks matches a generation that made them.
        if self.finish_reason:
            raise BadRequest("text_ended")
        if not self.settings.greedy:
            torch.rand((), generator=self.generator, dtype=torch.float64)
        return self._append(token_id, None, (), forced=True)

    def _append(self, token_id: int, probability: float | None, candidates: tuple, forced: bool = False) -> Step:
        index = len(self.new_token_ids)
        self.all_ids.append(token_id)
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

    def stopped_step(self) -> Step:
        """The final step of a cancelled generation: no token, only the text still held back."""
        self.finish_reason = "stopped"
        return Step(len(self.new_token_ids), None, self.stream.flush(), None, (), "stopped")

    def advance(self, logits: torch.Tensor) -> Step:
        """Pick the next token from this request's logits (vocab,) and decide whether it is done."""
        return advance_all([self], logits.unsqueeze(0))[0]

    def take(self, pick: Pick) -> Step:
        """The step of a pick made for this request (advance_all makes a batch's picks together)."""
        pieces = self.model.pieces
        candidates = tuple(
            Candidate(pieces[i], p, kept)
            for i, p, kept in zip(pick.candidate_ids, pick.candidate_probabilities, pick.candidate_kept)
        )
        self.sampled += 1
        return self._append(pick.token_id, pick.probability, candidates)


def advance_all(generations: list[Generation], logits: torch.Tensor) -> list[Step]:
    """Each generation's next step from its row of logits (rows, vocab), the picks made together."""
    previous = [torch.tensor(g.all_ids) if g.settings.repetition_penalty != 1.0 else torch.empty(0, dtype=torch.long)
                for g in generations]
    picks = pick_next_tokens(logits.float().cpu(), previous, [g.settings for g in generations],
                             [g.generator for g in generations], NUM_CANDIDATES)
    return [generation.take(pick) for generation, pick in zip(generations, picks)]


class DecodeBatch:
    """Running generations that share one KV cache and one forward pass per step.

    A joining request's tokens are read into a staging cache, a chunk per step, and
    its row moves into the main cache once they are all read, so a decode step only
    ever computes on rows that are decoding.
    """

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.cache = model.decoder.new_cache()
        self.rows: list[Generation] = []  # rows[i] owns cache row i
        self.staging = model.decoder.new_cache()
        self.joining: list[Generation] = []  # joining[i] owns staging row i

    def __len__(self) -> int:
        return len(self.rows) + len(self.joining)

    def join(self, generation: Generation) -> list[Step]:
        """Take in a request: its forced steps now; it decodes once its tokens are read (unless already done)."""
        steps = list(generation.forced_steps)
        if generation.cancel.is_set():
            steps.append(generation.stopped_step())
        if generation.finish_reason is None:
            self.joining.append(generation)  # its staging row is added at the next step, with the others'
        return steps

    def step(self) -> list[tuple[Generation, Step]]:
        """One token for every decoding request, and a chunk of the joining ones' prompts.

        Finished and cancelled requests leave the batch (their cache rows are freed).
        """
        self.staging.add_rows(len(self.joining) - self.staging.rows)  # the requests that joined since the last step
        results = self._drop_cancelled()
        if self.rows:
            last_tokens = torch.tensor([g.all_ids[-1] for g in self.rows], device=self.model.device)
            # Only the largest logits the picks read need be float32's (sampling.exact_top).
            wanted = exact_top([g.settings for g in self.rows], NUM_CANDIDATES, self.model.vocab_size)
            logits = self.model.decoder.decode(self.cache, last_tokens, wanted)  # (rows, vocab)
            stepped = list(zip(self.rows, advance_all(self.rows, logits)))
            for generation, _ in stepped:
                generation.cached += 1
            results += stepped
            self._remove_finished()
        if self.joining:
            results += self._read_prompts(prefill_budget(len(self.rows), len(self.joining)))
        return results

    def _drop_cancelled(self) -> list[tuple[Generation, Step]]:
        results = []
        for generations, cache in ((self.rows, self.cache), (self.joining, self.staging)):
            cancelled = [g for g in generations if g.cancel.is_set()]
            results += [(generation, generation.stopped_step()) for generation in cancelled]
            _remove(generations, cache, cancelled)
        return results

    def _remove_finished(self) -> None:
        _remove(self.rows, self.cache, [g for g in self.rows if g.finish_reason])

    def _read_prompts(self, budget: int) -> list[tuple[Generation, Step]]:
        # One pass over as many joining rows as the budget allows, each given an equal chunk
        # (right-padded to the widest, so equal chunks waste least); a row whose tokens are
        # all read samples its first token from this pass and moves to the main cache.
        unread = [len(g.all_ids) - g.cached for g in self.joining]
        count = min(len(self.joining), budget)
        width = min(max(unread[:count]), max(budget // count, 1))
        rows = list(range(count))
        chunks = [g.all_ids[g.cached : g.cached + width] for g in self.joining[:count]]
        logits = self.model.decoder.extend(self.staging, rows, chunks)
        done = []
        for row, (generation, chunk) in enumerate(zip(self.joining[:count], chunks)):
            generation.cached += len(chunk)
            if generation.cached == len(generation.all_ids):
                done.append(row)
        read = [self.joining[row] for row in done]
        results = list(zip(read, advance_all(read, logits[done]))) if done else []
        decoding = [row for row, (_, step) in zip(done, results) if not step.finish_reason]
        self.cache.adopt_rows(self.staging, decoding)
        self.rows += [self.joining[row] for row in decoding]
        _remove(self.joining, self.staging, read)
        return results


def _remove(generations: list[Generation], cache, leaving: list[Generation]) -> None:
    """Take `leaving` out of a batch's rows and their cache rows, then give the cache's spare memory back once."""
    # Highest row first: the last row moves into a leaving one's place, and so is never one
    # that leaves too (32 rows ending together copied 16 rows' caches, ~90 MB, for nothing).
    for row in sorted((generations.index(generation) for generation in leaving), reverse=True):
        cache.remove_row(row, shrink=False)
        generations[row] = generations[-1]  # mirror the cache's move of the last row
        generations.pop()
    if leaving:
        cache.shrink()


# ---------------------------------------------------------------- one request alone, for tests and benchmarks


def generate_steps(model: LoadedModel, request: Request, generation: Generation | None = None) -> Iterator[Step]:
    """A batch of one in the calling thread: every Step of one request (the engine runs requests on its own thread)."""
    generation = generation or Generation(model, request)
    batch = DecodeBatch(model)
    yield from batch.join(generation)
    while batch:
        for _, step in batch.step():
            yield step


@dataclass
class GenerationResult:
    """A whole generation, for callers that do not stream."""

    text: str
    token_ids: list[int]
    finish_reason: str
    seed: int
    prompt: PromptFit
    steps: list[Step] = field(repr=False, default_factory=list)


def generate_text(model: LoadedModel, prompt: str, settings: SamplingSettings = SamplingSettings()) -> GenerationResult:
    """Run a generation to the end and return its text (the continuation only)."""
    request = Request(settings, prompt)
    generation = Generation(model, request)
    steps = list(generate_steps(model, request, generation))
    return GenerationResult(
        text="".join(s.text for s in steps),
        token_ids=generation.new_token_ids,
        finish_reason=steps[-1].finish_reason,
        seed=generation.seed,
        prompt=generation.prompt,
        steps=steps,
    )
