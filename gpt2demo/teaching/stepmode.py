"""Step mode, "you are the sampler": one token at a time, picked by the teacher or the sampler.

The session keeps one row of KV cache. Going back to an earlier token only
shortens that row (the keys and values before it are still right) and feeds the
token before the cut again, so an undo costs one decode step, not a new prefill.

Every position draws once from the request's random stream, whoever picks, and
the stream's state is saved before each draw: after an undo the sampler would
pick what it picked before, and a session where the sampler makes every pick
writes exactly what generate_text() writes with the same seed.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import asdict, replace

import torch

from gpt2demo.engine import NUM_CANDIDATES, Candidate, LoadedModel, Step, prepare_prompt
from gpt2demo.sampling import Pick, pick_next_token
from gpt2demo.settings import SamplingSettings, bilingual, check_settings
from gpt2demo.textstream import TextStream

PICKED_BY_YOU = "you"
PICKED_BY_SAMPLER = "sampler"


class StepSession:
    """One prompt being continued token by token; choose(), undo(), and read the steps so far."""

    def __init__(self, model: LoadedModel, prompt: str, settings: SamplingSettings) -> None:
        """
        Args:
            model: from load_model().
            prompt: text to continue; empty means "start from <|endoftext|>".
            settings: temperature, top-k, top-p, penalty and seed as in generation;
                max_new_tokens ends the session like a generation's length.
        """
        settings = check_settings(**asdict(settings), vocab_size=model.vocab_size)
        seed = settings.seed if settings.seed is not None else secrets.randbelow(2**32)
        self.model = model
        self.settings = replace(settings, seed=seed)
        self.prompt = prepare_prompt(model, prompt, self.settings)
        self.generator = torch.Generator().manual_seed(seed)
        self.steps: list[Step] = []
        self.picked_by: list[str] = []  # PICKED_BY_YOU or PICKED_BY_SAMPLER, one per step
        self._stream_states: list[torch.Tensor] = []  # the random stream before each position's draw
        self._lock = threading.Lock()  # two quick clicks of one browser tab must not interleave
        self._cache = model.decoder.new_cache()
        self._row = self._cache.add_row()
        self._pending = self._draw(self._read_from_cache())

    # ------------------------------------------------------------ what the page reads

    @property
    def seed(self) -> int:
        return self.settings.seed

    @property
    def new_token_ids(self) -> list[int]:
        return [step.token_id for step in self.steps]

    @property
    def all_ids(self) -> list[int]:
        return self.prompt.token_ids + self.new_token_ids

    @property
    def text(self) -> str:
        """The continuation so far (never ending in half a character unless the session ended)."""
        return "".join(step.text for step in self.steps)

    @property
    def finish_reason(self) -> str | None:
        return self.steps[-1].finish_reason if self.steps else None

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        """The next position's most likely tokens (empty once the session ended)."""
        if self.finish_reason:
            return ()
        texts = self.model.token_texts
        pick = self._pending
        return tuple(
            Candidate(i, texts[i], p, kept)
            for i, p, kept in zip(pick.candidate_ids, pick.candidate_probabilities, pick.candidate_kept)
        )

    # ------------------------------------------------------------ what the teacher does

    def choose(self, token_id: int | None = None) -> Step:
        """Add the next token: one of the shown candidates, or None to let the sampler pick."""
        with self._lock:
            if self.finish_reason:
                raise ValueError(bilingual("This text has ended; go back to an earlier token to continue.",
                                           "这段文本已经结束；回到前面的某个 token 才能继续。"))
            pick = self._pending
            if token_id is None:
                token_id, probability, picked_by = pick.token_id, pick.probability, PICKED_BY_SAMPLER
            else:
                shown = dict(zip(pick.candidate_ids, pick.candidate_probabilities))
                if int(token_id) not in shown:
                    raise ValueError(bilingual(f"token {token_id} is not one of the shown candidates",
                                               f"token {token_id} 不在显示的候选中"))
                token_id, probability, picked_by = int(token_id), shown[int(token_id)], PICKED_BY_YOU
            step = self._append(token_id, probability, self.candidates)
            self.picked_by.append(picked_by)
            if not step.finish_reason:
                self._pending = self._draw(self._decode(token_id))
            return step

    def undo(self, keep: int) -> None:
        """Go back to the first `keep` new tokens (0 = just the prompt); the next pick branches from there."""
        with self._lock:
            if not 0 <= keep <= len(self.steps):
                raise ValueError(bilingual(f"keep must be from 0 to {len(self.steps)} (got {keep})",
                                           f"keep 必须在 0 到 {len(self.steps)} 之间（收到 {keep}）"))
            if keep == len(self.steps):
                return
            state = self._stream_states[keep]
            del self.steps[keep:], self.picked_by[keep:], self._stream_states[keep:]
            self.generator.set_state(state)
            self._pending = self._draw(self._read_from_cache())

    # ------------------------------------------------------------ internals

    def _read_from_cache(self) -> torch.Tensor:
        # Logits for the position after all_ids. The cache row still holds every kept
        # token's keys and values: shorten it to drop the rest and feed the last token again.
        self._stream = TextStream(self.model.tokenizer)
        for token_id in self.new_token_ids:
            self._stream.push(token_id)
        if not self.steps:
            return self.model.decoder.prefill(self._cache, [self._row], [self.prompt.token_ids])[0]
        self._cache.lengths[self._row] = len(self.all_ids) - 1
        return self._decode(self.all_ids[-1])

    def _decode(self, token_id: int) -> torch.Tensor:
        last = torch.tensor([token_id], device=self.model.device)
        return self.model.decoder.decode(self._cache, last)[0]  # (vocab,)

    def _draw(self, logits: torch.Tensor) -> Pick:
        # The same call Generation.advance makes, so the sampler's picks match a generation's.
        self._stream_states.append(self.generator.get_state())
        previous = torch.tensor(self.all_ids) if self.settings.repetition_penalty != 1.0 else torch.empty(0, dtype=torch.long)
        return pick_next_token(logits.float().cpu(), previous, self.settings, self.generator, NUM_CANDIDATES)

    def _append(self, token_id: int, probability: float, candidates: tuple[Candidate, ...]) -> Step:
        # Mirrors Generation.advance: <|endoftext|> ends the text unseen; the length limit ends it too.
        index = len(self.steps)
        if token_id == self.model.eos_token_id:
            step = Step(index, token_id, "", self._stream.flush(), probability, candidates, "eos")
        else:
            text = self._stream.push(token_id)
            finish_reason = None
            if index + 1 >= self.prompt.max_new_tokens:
                finish_reason = "context" if self.prompt.context_limited else "length"
                text += self._stream.flush()
            step = Step(index, token_id, self.model.token_texts[token_id], text, probability, candidates, finish_reason)
        self.steps.append(step)
        return step
