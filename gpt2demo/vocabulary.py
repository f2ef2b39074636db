"""A row alone's vocabulary product: its largest logits in float32, read from half the bytes.

Decoding one row reads every weight once per token, and GPT-2 small's vocabulary matrix
is 154 MB of its 498 in float32. A step's picks read only the row's few largest logits
one by one (the candidates shown, the top-k pool); the rest of the vocabulary enters
only the softmax's sum, the denominator of the probabilities shown. So a float16 copy
of the matrix (half the bytes) is multiplied first, and every float16 logit is known to
within a bound computed from the rounding (error_bound). The tokens whose float16 logit
could, within that bound, be among the K largest are then recomputed from their float32
rows: every logit that can be among the K largest is a float32 one, and every other is
below the K-th largest, so the top K, their order and any top-k cut are float32's.
The other tokens keep their float16 logits, which moves the probabilities shown by
about 1e-5 of their value (at most 3.5e-5 over 500 steps of the bundled model; see README).

Three things keep the float16 logits close. The rows' mean is taken out first and
multiplied in float32 (GPT-2's logits share a large common part, which float16 would
round with the rest); the product subtracts an offset as its bias, added in float32
before its one rounding (checked at load, kernel_agrees): the last step's K-th largest
value, which puts this step's largest ones near zero, where float16's steps are finest;
and the tokens up to NEAR below the K-th largest are recomputed too, while they are
few: they carry most of the softmax's sum outside the top K.

The bound. With w a float32 row less the mean row μ, h the float32 input, and ŵ, ĥ their
float16 roundings (δw = w - ŵ, known at load; |δh| <= 2^-11 |h|, or 2^-25 an entry among
float16's smallest):
    w·h - ŵ·ĥ = δw·h + ŵ·δh,   so   |w·h - ŵ·ĥ| <= |δw| |h| + |ŵ| |δh|   (Cauchy-Schwarz);
the kernel adds the n products ŵ_i ĥ_i and the bias -c in float32: at most
(n + 1) 2^-24 (|ŵ| |ĥ| + |c|) off; it rounds that sum to float16: within 2^-10 |d| of
its output d (2^-11 relative, with room), plus 2^-24 among float16's smallest numbers;
μ·h in float32 is within n 2^-24 |μ| |h|, and adding c + μ·h back rounds twice more.
The row terms are taken at their largest over the vocabulary, so one E per step bounds
every token: |logit - (d + c + μ·h)| <= E + R |d|, and d - E - R|d|, d + E + R|d| are
both increasing in d, so one threshold on the float16 outputs picks the tokens to
recompute.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy
import torch
import torch.nn.functional as F

from gpt2demo.linear import best_seconds

INPUT_ROUNDING = 2.0**-11  # float16's unit roundoff: rounding a float32 to it, relative
OUTPUT_ROUNDING = 2.0**-10 + 2.0**-24  # R: float16's output (2^-11 relative, with room), then + c in float32
TINY = 2.0**-24  # float16's subnormal spacing: the absolute part of its rounding
SUM_ROUNDING = 2.0**-24  # float32's unit roundoff: each of the kernel's additions
NORM_ROOM = 1.001  # the bound's own norms are float32 sums: their rounding, with room
FLOAT16_SAFE = 60_000.0  # below float16's largest number (65504): no input or output overflows
NEAR = 4.0  # also recomputed: the tokens this close below the K-th largest logit (e^-4 of its weight), ...
NEAR_ROWS = 1024  # ... as long as they are at most this many (3 MB of GPT-2's rows)
MAX_EXACT = 2048  # recomputed rows beyond this: the whole float32 product is cheaper to read
ROWS_A_BLOCK = 4096  # the load's float64 check of the rounding, a block at a time: 25 MB for GPT-2, not 309
MIN_BYTES = 32 * 2**20  # smaller matrices stay in the caches, where halving their bytes saves little
MEASURE_REPEATS = 7  # the best of these: a busy machine slows some runs, never speeds one up
WORTH_IT = 0.8  # used only where the screened product takes at most this much of the full one's time


class ScreenedVocabulary:
    """The vocabulary product of one row (1, C) -> (1, vocab), exact where the picks look.

    weight: the model's (vocab, C) float32 matrix (tied to the token embedding), read
    row by row for the recomputed tokens; a float16 copy of it is kept beside.
    """

    def __init__(self, weight: torch.Tensor) -> None:
        weight = weight.detach()
        self.weight = weight
        self.mean = weight.mean(dim=0)  # (C,): the rows' common part, multiplied in float32 at each step
        self.half = (weight - self.mean).half()  # (vocab, C): what is left of each row, in float16
        self.width = weight.shape[1]
        # Each row's part of the bound, at its largest over the vocabulary (see the module's docstring); the
        # rounding in float64, where w - mean - ŵ is exact (to float64's own rounding), a block of rows at a time.
        self.largest_rounding = max(float(torch.linalg.vector_norm(
            rows.double() - self.mean.double() - half.double(), dim=1).max())
            for rows, half in zip(weight.split(ROWS_A_BLOCK), self.half.split(ROWS_A_BLOCK)))  # max |δw|
        self.largest_row = float(torch.linalg.vector_norm(self.half.float(), dim=1).max())  # max |ŵ|
        self.mean_norm = float(torch.linalg.vector_norm(self.mean))
        self.outcomes: Counter[str] = Counter()  # "screened", or why the full product ran: for benchmarks and tests
        self.recomputed: Counter[int] = Counter()  # rows recomputed in float32 per screened step, by count
        self.offset = 0.0  # c, subtracted in the product: the last step's K-th largest ŵ·ĥ (a float16 number)

    def error_bound(self, input_norm: float, offset: float, added: float) -> float:
        """E: every float16 output d is within E + OUTPUT_ROUNDING |d| of its float32 logit minus `added`, for an
        input of norm |h| = input_norm, the product's bias -offset and its output's d + added."""
        # Rounding to nearest: each entry within 2^-11 of its value, or 2^-25 among float16's smallest.
        rounding_norm = INPUT_ROUNDING * input_norm + TINY / 2 * math.sqrt(self.width)  # |δh|
        rounded_norm = input_norm + rounding_norm  # |ĥ| <= |h| + |δh|
        products = self.largest_rounding * input_norm + self.largest_row * rounding_norm
        summing = (self.width + 1) * SUM_ROUNDING * (self.largest_row * rounded_norm + abs(offset))
        mean = self.width * SUM_ROUNDING * self.mean_norm * input_norm  # the mean's product, in float32
        return NORM_ROOM * (products + summing + mean + 2 * SUM_ROUNDING * abs(added)) + TINY

    def logits(self, hidden: torch.Tensor, exact_top: int) -> torch.Tensor | None:
        """hidden (1, C) float32 -> (1, vocab) logits whose `exact_top` largest are float32's; None where the
        screen cannot vouch for them (an overflow, too many tokens to recompute): run the full product then."""
        if not 0 < exact_top < self.half.shape[0]:
            self.outcomes["top"] += 1
            return None
        input_norm, offset = float(torch.linalg.vector_norm(hidden)), self.offset
        if not input_norm * max(1.0, self.largest_row) + abs(offset) < FLOAT16_SAFE:  # also refuses a NaN
            self.outcomes["overflow"] += 1
            return None
        bias = torch.tensor(-offset, dtype=torch.float16).expand(self.half.shape[0])
        shifted = F.linear(hidden.half(), self.half, bias).float()  # (1, vocab): d, each logit minus what is added below
        added = offset + float(torch.dot(self.mean, hidden[0]))
        bound = self.error_bound(input_norm, offset, added)
        kth = float(torch.topk(shifted, exact_top, dim=-1, sorted=False).values.min())
        lowest_true = kth - bound - OUTPUT_ROUNDING * abs(kth)  # the K-th largest logit, minus `added`, is at least this
        needed = below_reach(lowest_true, bound)
        # Those that can reach it, and those just below, which carry most of the softmax's sum outside them.
        recompute = (shifted[0] >= min(needed, kth - NEAR)).nonzero().squeeze(1)
        if recompute.numel() > NEAR_ROWS:
            recompute = (shifted[0] >= needed).nonzero().squeeze(1)
        if recompute.numel() > MAX_EXACT:
            self.outcomes["many"] += 1
            return None
        self.outcomes["screened"] += 1
        self.recomputed[recompute.numel()] += 1
        self.offset = float(numpy.float16(offset + kth))  # the next step's, exactly a float16
        logits = shifted.add_(added)
        logits[0].index_copy_(0, recompute, torch.mv(self.weight.index_select(0, recompute), hidden[0]))
        return logits


def below_reach(lowest_true: float, bound: float) -> float:
    """The float16 output under which a token's float32 logit (both minus the offset) is surely below
    lowest_true: the d with d + bound + OUTPUT_ROUNDING |d| = lowest_true, lowered a little for the
    comparison's own rounding."""
    target = lowest_true - bound
    output = target / (1 + OUTPUT_ROUNDING) if target >= 0 else target / (1 - OUTPUT_ROUNDING)
    return output - 1e-6 * (abs(output) + 1.0)  # the float32 comparison rounds the threshold: a margin far above that


def kernel_agrees(width: int = 768) -> bool:
    """Whether this PyTorch's float16 row product adds its products and its bias in float32 and rounds once,
    as the bound assumes, on a case that float16 additions or a bias added after rounding get wrong: one
    large product, many small ones, and the large one taken off again by the bias."""
    try:
        weight = torch.ones(2, width, dtype=torch.float16)
        row = torch.full((1, width), 0.25, dtype=torch.float16)
        row[0, 0] = 1024.0
        got = F.linear(row, weight, torch.full((2,), -1024.0, dtype=torch.float16)).float()
        exact = 0.25 * (width - 1)  # a float16 number: the one rounding leaves it as it is
        return bool(((got - exact).abs() <= OUTPUT_ROUNDING * exact).all())
    except (RuntimeError, NotImplementedError):  # no float16 product in this build
        return False


def screen_for(weight: torch.Tensor, full_product) -> ScreenedVocabulary | None:
    """A ScreenedVocabulary for a CPU float32 matrix where it is faster than full_product (hidden (1, C) ->
    (1, vocab)) on the model's own weights, timed here; None where it would not pay or cannot run."""
    if weight.device.type != "cpu" or weight.dtype != torch.float32 or weight.numel() * 4 < MIN_BYTES:
        return None
    if not kernel_agrees(weight.shape[1]):
        return None
    screen = ScreenedVocabulary(weight)
    hidden = torch.randn(1, weight.shape[1], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        screened = best_seconds(lambda: screen.logits(hidden, 16), MEASURE_REPEATS)
        full = best_seconds(lambda: full_product(hidden), MEASURE_REPEATS)
    screen.outcomes.clear()  # a fresh screen: the timing's random row leaves no count and no offset
    screen.recomputed.clear()
    screen.offset = 0.0
    return screen if screened <= WORTH_IT * full else None
