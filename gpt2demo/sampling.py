"""Pure tensor functions that turn next-token logits into a choice.

Same semantics and order as transformers' generation: repetition penalty, then
temperature, then top-k, then top-p; each is skipped at its neutral value. None
of them changes its input tensor.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy
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


def kth_largest(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """The k-th largest value along the last axis, kept as (..., 1): the top-k threshold."""
    return torch.topk(logits, top_k, dim=-1).values[..., -1:]


# Rows of a batch whose top values come from blocks (top_values): at 32 rows 0.6 ms against
# torch.topk's 1.5 over GPT-2's vocabulary here; at one row no faster in the real loop (a
# pick took 0.45-0.59 ms with blocks, 0.41-0.47 without).
TOP_VALUES_MIN_ROWS = 4
TOP_VALUES_BLOCK = 128  # vocabulary entries a block: 32 to 256 measured within 10% of each other


def top_values(scores: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.topk(scores, count, dim=-1) of a (rows, vocab) batch: the same values, most likely first.

    By blocks: each row's largest value of every block, the `count` best blocks, and the
    top among their entries only. Every one of a row's `count` largest values lies in
    those blocks (a block left out has `count` blocks above its best entry), so the
    values are exactly torch.topk's; among tied values the ids may be other tied ones.
    """
    rows, vocab = scores.shape
    blocks = vocab // TOP_VALUES_BLOCK
    if rows < TOP_VALUES_MIN_ROWS or blocks < 4 * count or scores.device.type != "cpu":
        return torch.topk(scores, count, dim=-1)
    whole = blocks * TOP_VALUES_BLOCK
    block_best = scores[:, :whole].reshape(rows, blocks, TOP_VALUES_BLOCK).amax(dim=-1)
    best_blocks = torch.topk(block_best, count, dim=-1, sorted=False).indices  # (rows, count)
    ids = (best_blocks[:, :, None] * TOP_VALUES_BLOCK + torch.arange(TOP_VALUES_BLOCK)).view(rows, -1)
    ids = torch.cat([ids, torch.arange(whole, vocab).expand(rows, -1)], dim=1)  # the last, partial block
    values, where = torch.topk(scores.gather(1, ids), count, dim=-1)
    return values, ids.gather(1, where)


def apply_top_k(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Keep only the top_k largest logits (ties at the k-th value are kept, as in transformers)."""
    if top_k <= 0 or top_k >= logits.shape[-1]:
        return logits
    return logits.masked_fill(logits < kth_largest(logits, top_k), float("-inf"))


def ascending_order(logits: torch.Tensor) -> torch.Tensor:
    """The indices that sort each row of `logits` ascending.

    On the CPU through numpy's sort (SIMD where the CPU has it): over GPT-2's 50257 logits
    0.5 ms against torch.sort's 3.5 ms here, and a Strategies comparison's top-p lane sorts
    every step. Equal values may come in another order; a cut falling between two tied
    tokens keeps one of them either way.
    """
    if logits.device.type != "cpu":
        return torch.sort(logits, dim=-1).indices
    values = logits.detach()
    if values.dtype not in (torch.float32, torch.float64):  # numpy has no bfloat16; widening keeps the order
        values = values.float()
    return torch.from_numpy(numpy.argsort(values.numpy(), axis=-1))


def apply_top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability reaches top_p."""
    if top_p >= 1.0:
        return logits
    sorted_ids = ascending_order(logits)
    sorted_logits = logits.gather(-1, sorted_ids)
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


# Pools up to this wide are searched on Python floats (draw_indices): right after a forward
# pass each small tensor operation costs ~10 us here, and a top-k pool has a few entries.
SEARCH_IN_PYTHON_MAX = 64


def draw_indices(pools: torch.Tensor, generators: list[torch.Generator | None]) -> list[int]:
    """Draw one index from each row of `pools` (rows, n): logits, -inf where cut, each row with its own random stream.

    By inverting the cumulative sum of each row's softmax: torch.multinomial draws one
    exponential per entry (5 ms over GPT-2's 50257 tokens here); one uniform and a binary
    search give the same distribution for ~0.1 ms. A row gets the same index drawn with
    the others as alone: softmax, cumsum and the search each work along a row only.
    """
    # float64: the batched and the lone forward pass differ by rounding (~1e-11), and a draw
    # that lands that close to a boundary would otherwise flip between neighbouring tokens.
    cumulative = torch.cumsum(pools.softmax(dim=-1), dim=-1, dtype=torch.float64)
    if pools.shape[-1] > SEARCH_IN_PYTHON_MAX:
        uniforms = torch.stack([torch.rand((), generator=generator, dtype=torch.float64) for generator in generators])
        targets = (uniforms * cumulative[:, -1])[:, None]
        # right=True: the first entry whose cumulative sum exceeds the target; zero-probability
        # entries add nothing to the sum, so they can never be drawn.
        choices = torch.searchsorted(cumulative, targets, right=True)[:, 0].tolist()
    else:
        # The same float64 numbers and the same search (bisect_right is searchsorted's right=True)
        # on Python floats: a top-k pool's few entries, without the five tensor operations above.
        rows = cumulative.tolist()
        choices = [bisect.bisect_right(row, torch.rand((), generator=generator, dtype=torch.float64).item() * row[-1])
                   for row, generator in zip(rows, generators)]
    last = pools.shape[-1] - 1
    return [min(choice, last) for choice in choices]


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
    penalized = apply_repetition_penalty(logits.float().unsqueeze(0), previous_ids.unsqueeze(0), settings.repetition_penalty)[0]
    scaled = penalized if settings.greedy else apply_temperature(penalized, settings.temperature)
    shown_probs = scaled.softmax(dim=-1)  # what the teaching views show: after temperature, before any cut
    top_probs, top_ids = torch.topk(shown_probs, min(num_candidates, shown_probs.shape[-1]))
    if settings.greedy:
        token_id = int(top_ids[0])  # the argmax, as transformers' greedy search (penalty applied)
        kept = [i == 0 for i in range(len(top_ids))]
    else:
        # Same distribution as apply_top_k then apply_top_p over the whole vocabulary, but
        # the top-p sort and the draw run over the top-k survivors only.
        survivors = None
        if 0 < settings.top_k < scaled.shape[-1]:
            survivors = (scaled >= kth_largest(scaled, settings.top_k)).nonzero().squeeze(-1)
        pool = scaled if survivors is None else scaled[survivors]
        pool = apply_top_p(pool.unsqueeze(0), settings.top_p)[0]
        (choice,) = draw_indices(pool.unsqueeze(0), [generator])
        token_id = choice if survivors is None else int(survivors[choice])
        kept_mask = torch.zeros_like(scaled, dtype=torch.bool)
        kept_mask[slice(None) if survivors is None else survivors] = torch.isfinite(pool)
        kept = kept_mask[top_ids].tolist()
    return Pick(
        token_id=token_id,
        probability=float(shown_probs[token_id]),
        candidate_ids=top_ids.tolist(),
        candidate_probabilities=top_probs.tolist(),
        candidate_kept=kept,
    )


def exact_top(settings: list[SamplingSettings], num_candidates: int, vocab: int) -> int | None:
    """How many of each row's largest logits pick_next_tokens reads one by one for these rows; None where
    some row's pick reads every logit (a repetition penalty, or sampling with no top-k cut).

    Beyond them, the logits enter only the softmax's sum: the decoder may give them less exactly
    (vocabulary.py). A penalty is applied before any cut and can lift or sink any token, and a
    draw with no top-k cut (top-p alone, or none) weighs the whole vocabulary.
    """
    widths = []
    for row in settings:
        if row.repetition_penalty != 1.0:
            return None
        cut = row.top_k if 0 < row.top_k < vocab else 0  # as pick_next_tokens cuts
        if not row.greedy and not cut:
            return None
        widths.append(min(vocab, max(num_candidates, cut) + 1))  # pick_next_tokens' width: one more shows a tie
    return max(widths, default=None)


def pick_next_tokens(logits: torch.Tensor, previous_ids: list[torch.Tensor], settings: list[SamplingSettings],
                     generators: list[torch.Generator | None], num_candidates: int = 10) -> list[Pick]:
    """pick_next_token for every row of a batch, with the vocabulary-wide work done once for all rows.

    The same picks, draw for draw: a row with a top-k cut samples from its k survivors in
    vocabulary order, exactly as pick_next_token does; a greedy row takes the argmax. Rows
    whose work is the whole vocabulary anyway (a repetition penalty, no top-k cut, a tie
    at the k-th value) take pick_next_token itself. The probabilities shown come from one
    softmax over the whole batch instead of one per row (the same values to float rounding,
    within 1e-4 relative), and rows with the same top-k and top-p draw together. At 32 rows
    this is the difference between about 29 ms and 2 ms a step here.

    Args:
        logits: (rows, vocab) raw next-token logits.
        previous_ids, settings, generators: per row, as pick_next_token takes them.
    """
    logits = logits.float()
    rows, vocab = logits.shape
    temperatures = [1.0 if s.greedy else s.temperature for s in settings]
    scaled = logits if all(t == 1.0 for t in temperatures) else logits / torch.tensor(temperatures)[:, None]
    cuts = [s.top_k if 0 < s.top_k < vocab else 0 for s in settings]
    width = min(vocab, max([num_candidates, *cuts]) + 1)  # one more than any cut: a tie at the k-th value shows
    best_values, top_ids = top_values(scaled, width)  # (rows, width), most likely first
    # One fused pass: 0.8-1.1 ms for 32 rows here against logsumexp's 1.7-2.4 (a shifted copy, then its exp).
    probabilities = scaled.softmax(dim=-1)  # (rows, vocab)
    shown = min(num_candidates, vocab)
    # The rows' few values as Python lists, once: right after a forward pass has streamed the
    # weights through the caches, each small tensor operation costs tens of microseconds, and
    # a row alone made ten of them here (a sort, indexing, a finiteness test) for 16 numbers.
    all_ids, all_values = top_ids.tolist(), best_values.tolist()
    # Every top value's probability: the candidates shown and, as a drawn or greedy token is
    # always one of them, the chosen one's too, in one gather.
    top_probabilities = probabilities.gather(1, top_ids).tolist()
    alone: dict[int, Pick] = {}  # row -> its pick_next_token
    token_ids: dict[int, int] = {}  # row -> the token it takes
    kept: dict[int, list[bool]] = {}
    draws: dict[tuple[int, float], list[tuple[int, tuple[int, ...], tuple[float, ...]]]] = {}  # (k, top_p) -> rows
    for row, (row_settings, k) in enumerate(zip(settings, cuts)):
        tie = k and all_values[row][k] == all_values[row][k - 1] if k < width else False
        if row_settings.repetition_penalty != 1.0 or (not row_settings.greedy and (not k or tie)):
            alone[row] = pick_next_token(logits[row], previous_ids[row], row_settings, generators[row], num_candidates)
        elif row_settings.greedy:
            token_ids[row], kept[row] = all_ids[row][0], [i == 0 for i in range(shown)]
        else:
            # The survivors in vocabulary order, as nonzero() gives them to pick_next_token; their
            # values back in float32 (they came from it, so exactly), hence the same draw.
            survivors, values = zip(*sorted(zip(all_ids[row][:k], all_values[row][:k])))
            draws.setdefault((k, row_settings.top_p), []).append((row, survivors, values))
    for (_, top_p), group in draws.items():
        pools = apply_top_p(torch.tensor([values for _, _, values in group], dtype=torch.float32), top_p)
        choices = draw_indices(pools, [generators[row] for row, _, _ in group])
        alive = torch.isfinite(pools).tolist() if top_p < 1.0 else [None] * len(group)  # no top-p: all k alive
        for (row, survivors, _), choice, row_alive in zip(group, choices, alive):
            token_ids[row] = survivors[choice]
            living = set(survivors) if row_alive is None else {i for i, finite in zip(survivors, row_alive) if finite}
            kept[row] = [i in living for i in all_ids[row][:shown]]
    return [alone[row] if row in alone else
            Pick(token_ids[row], top_probabilities[row][all_ids[row].index(token_ids[row])], all_ids[row][:shown],
                 top_probabilities[row][:shown], kept[row])
            for row in range(rows)]
