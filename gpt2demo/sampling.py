"""Pure tensor functions that turn next-token logits into a choice.

Same semantics and order as transformers' generation: repetition penalty, then
temperature, then top-k, then top-p; each is skipped at its neutral value. None
of them changes its input tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gpt2demo.settings import SamplingSettings


def apply_repetition_penalty(logits: torch.Tensor, previous_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """Make tokens already in the text less (penalty > 1) or more (< 1) likely.

    Like transformers (CTRL paper): a positive logit is divided by the penalty, a
    negative one multiplied, so the token always moves the same way.
    """
    if penalty == 1.0 or previous_ids.numel() == 0:
        return logits
    seen = logits.gather(-1, previous_ids)  # (B, n_previous)
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return logits.scatter(-1, previous_ids, seen)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Sharpen (< 1) or flatten (> 1) the distribution."""
    if temperature == 1.0:
        return logits
    return logits / temperature


def apply_top_k(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Keep only the top_k largest logits (ties at the k-th value are kept, as in transformers)."""
    if top_k <= 0 or top_k >= logits.shape[-1]:
        return logits
    kth_largest = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth_largest, float("-inf"))


def apply_top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability reaches top_p."""
    if top_p >= 1.0:
        return logits
    sorted_logits, sorted_ids = torch.sort(logits, dim=-1, descending=False)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    # Drop the low tail whose total is at most 1 - top_p; always keep the most likely token.
    drop_sorted = cumulative <= (1.0 - top_p)
    drop_sorted[..., -1:] = False
    drop = drop_sorted.scatter(-1, sorted_ids, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def warp_logits(logits: torch.Tensor, settings: SamplingSettings) -> torch.Tensor:
    """Temperature, top-k, top-p in transformers' order (the penalty is applied before)."""
    logits = apply_temperature(logits, settings.temperature)
    logits = apply_top_k(logits, settings.top_k)
    return apply_top_p(logits, settings.top_p)


@dataclass(frozen=True)
class Pick:
    """The token chosen at one step and what the distribution looked like."""

    token_id: int
    probability: float  # of the chosen token, softmax after penalty and temperature, before the cut
    candidate_ids: list[int]  # most likely first
    candidate_probabilities: list[float]  # same distribution as `probability`
    candidate_kept: list[bool]  # whether top-k/top-p left the candidate in the running


def pick_next_token(
    logits: torch.Tensor,
    previous_ids: torch.Tensor,
    settings: SamplingSettings,
    generator: torch.Generator | None,
    num_candidates: int = 10,
) -> Pick:
    """Choose the next token of one sequence and describe the choice.

    Args:
        logits: (vocab,) raw next-token logits of the model.
        previous_ids: (n,) ids already in the sequence, for the repetition penalty.
        generator: the request's own random stream, so each request is reproducible alone or batched.
        num_candidates: how many of the most likely tokens to report.
    """
    logits = logits.float().unsqueeze(0)  # (1, vocab)
    penalized = apply_repetition_penalty(logits, previous_ids.unsqueeze(0), settings.repetition_penalty)
    # What the teaching views show: the distribution after temperature, before any cut.
    shown_probs = apply_temperature(penalized, 1.0 if settings.greedy else settings.temperature).softmax(dim=-1)[0]
    if settings.greedy:
        token_id = int(penalized[0].argmax())
        kept_mask = None
    else:
        warped = warp_logits(penalized, settings)[0]
        kept_mask = torch.isfinite(warped)
        token_id = int(torch.multinomial(warped.softmax(dim=-1), 1, generator=generator))
    top_probs, top_ids = torch.topk(shown_probs, min(num_candidates, shown_probs.shape[-1]))
    kept = [True] * len(top_ids) if kept_mask is None else kept_mask[top_ids].tolist()
    if settings.greedy:
        kept = [i == 0 for i in range(len(top_ids))]
    return Pick(
        token_id=token_id,
        probability=float(shown_probs[token_id]),
        candidate_ids=top_ids.tolist(),
        candidate_probabilities=top_probs.tolist(),
        candidate_kept=kept,
    )
