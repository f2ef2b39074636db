"""int8 matrix products on the CPU (`--precision int8`): FBGEMM's dynamic quantized linear, row by row.

Decoding reads every weight once per step, so weights stored as int8 (a quarter of
fp32's bytes) are read faster. Each weight matrix is quantized once at load, per
output channel (symmetric scales, qint8), and prepacked into FBGEMM's layout
(QNNPACK's on ARM); each product quantizes its input on the fly
(torch.ops.quantized.linear_dynamic), multiplies in integers and returns fp32.
The embedding lookup, layer norms, attention and the KV cache stay fp32.

One row, one scale. linear_dynamic picks a single activation scale for its whole
input, so in a batch a row's result would depend on the other rows, and a prompt's
on how its chunks were cut, and the project promises that a request's text equals
what it gives alone. So every product first divides each row by its own largest
magnitude and appends two constant columns, -1 and +1, whose weights are zero: every
row then spans exactly [-1, 1], the input's range (and so the scale
linear_dynamic picks) is the same whatever the other rows hold, and the output is
multiplied back by each row's magnitude. The integer product itself is exact, so a
row's result is bit for bit the one it gives alone (tests/test_int8.py checks it).

Seven bits for the weights, eight for the inputs. On AVX2 (most laptops) FBGEMM
multiplies unsigned input bytes by signed weight bytes with vpmaddubsw, which adds
each pair of products into 16 bits and saturates: 2 x 255 x 127 overflows. PyTorch's
usual answer is reduce_range (7-bit inputs); here the weights give up the bit instead
(each output channel spans [-63, 63]: 2 x 255 x 63 = 32130 fits), because one scale per
output channel loses less than one per input row. On the bundled model (real
weights; bench/int8_quality.py's figures, run on each variant) it was the better choice on both counts: next-token
KL against fp32 2.6e-4 against 5.5e-4, and perplexity on 16 held-out windows -0.002%
against +0.07%. With FBGEMM_ENABLE_INSTRUCTIONS=AVX2, 127-level weights gave a 99%
error on a worst-case product here and 63-level ones none (tests/test_int8.py).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gpt2demo.errors import BadRequest
from gpt2demo.linear import gelu_new

PIN_COLUMNS = 2  # the constant -1 and +1 appended to every row (their weights are zero)
WEIGHT_LEVELS = 63  # a channel's largest weight maps to 63: no 16-bit overflow on AVX2 (see above)
_PINS = torch.tensor([-1.0, 1.0])
ENGINES = ("fbgemm", "qnnpack")  # PyTorch's quantized CPU kernels: x86, then ARM
SELF_CHECK_TOLERANCE = 0.05  # relative error of the load-time check's product (int8 rounding is ~1e-2)


@dataclass(frozen=True)
class Int8Weight:
    """One weight matrix, quantized per output channel and prepacked for linear_dynamic."""

    packed: object  # torch.ScriptObject: (out, in + PIN_COLUMNS) int8 in the quantized engine's layout
    in_features: int
    out_features: int


def quantize_weight(weight: torch.Tensor) -> Int8Weight:
    """Quantize an (out, in) fp32 matrix: per output channel, symmetric, [-63, 63], padded with the pins' zero weights."""
    weight = F.pad(weight.detach().float(), (0, PIN_COLUMNS))  # (out, in + 2)
    # Symmetric: zero point 0, the largest magnitude of each output channel maps to WEIGHT_LEVELS.
    scales = (weight.abs().amax(dim=1) / WEIGHT_LEVELS).clamp(min=1e-12).double()
    zero_points = torch.zeros(weight.shape[0], dtype=torch.long)
    with warnings.catch_warnings():
        # torch 2.13 calls quantized tensors deprecated; linear_prepack still takes only them. Once
        # they are gone, int8_agrees() fails and --precision int8 is refused with a message.
        warnings.filterwarnings("ignore", message=".*quantize_per_channel", category=UserWarning)
        qweight = torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8)
    packed = torch.ops.quantized.linear_prepack(qweight, None)  # the bias is added after the rows' scales
    return Int8Weight(packed, weight.shape[1] - PIN_COLUMNS, weight.shape[0])


def quantize_conv1d(weight: torch.Tensor) -> Int8Weight:
    """The same for a transformers Conv1D weight, stored (in, out)."""
    return quantize_weight(weight.t())


def int8_linear(x: torch.Tensor, weight: Int8Weight, bias: torch.Tensor | None, tanh_gelu: bool = False,
                residual: torch.Tensor | None = None) -> torch.Tensor:
    """x @ W + bias (+ residual) with W in int8, each row of x quantized on its own scale; (N, in) -> (N, out).

    Same signature as linear.py's products, so the decoder calls any of them alike.
    """
    # abs().amax() rather than the inf-norm, which is the same value (a max is exact) but was 15x
    # slower on CPU: 76 against 5 us for 32 rows of 768, a tenth of a 32-row int8 step.
    magnitude = x.abs().amax(dim=1, keepdim=True).clamp_min_(1e-30)  # (N, 1)
    # A division, not a product with 1/magnitude: x / x is exactly 1, so no row spans more than
    # [-1, 1] by a rounding and widens the range for the others. An all-zero row stays zero.
    pinned = torch.cat([x / magnitude, _PINS.expand(x.shape[0], PIN_COLUMNS)], dim=1)  # (N, in + 2)
    y = torch.ops.quantized.linear_dynamic(pinned, weight.packed, False)  # 8-bit inputs: see the docstring
    # In place where there is no bias: the lm_head's output is a (rows, vocab) temporary of its own.
    y = y.mul_(magnitude) if bias is None else torch.addcmul(bias, y, magnitude)
    if residual is not None:
        y.add_(residual)
    return gelu_new(y) if tanh_gelu else y


def pick_engine() -> str | None:
    """The quantized engine to use here, or None when this PyTorch has neither."""
    supported = torch.backends.quantized.supported_engines
    return next((engine for engine in ENGINES if engine in supported), None)


def int8_agrees() -> bool:
    """Whether the int8 product runs here, is close to fp32's, cannot overflow, and gives a row alone its batch result."""
    try:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(5, 64, generator=generator)
        weight = torch.randn(96, 64, generator=generator) * 0.05  # (out, in)
        bias = torch.randn(96, generator=generator)
        quantized = quantize_weight(weight)
        # The worst case for 16-bit overflow: every input at the top of its range, every weight too.
        top = torch.ones(1, 64)
        top[0, 0] = -1.0
        with torch.no_grad():
            got = int8_linear(x, quantized, bias)
            expected = torch.addmm(bias, x, weight.t())
            alone = int8_linear(x[2:3], quantized, bias)
            worst = int8_linear(top, quantize_weight(torch.ones(4, 64)), None)
        close = float((got - expected).norm() / expected.norm()) < SELF_CHECK_TOLERANCE
        no_overflow = float((worst - 62.0).abs().max()) < 62.0 * SELF_CHECK_TOLERANCE
        return close and no_overflow and torch.equal(alone, got[2:3])
    except (RuntimeError, AttributeError, NotImplementedError):  # no quantized kernels in this build
        return False


def check_int8(device: str) -> None:
    """Refuse --precision int8 where it cannot run (BadRequest); otherwise select the quantized engine.

    Selecting the engine is process-wide; nothing else in gpt2demo uses quantized ops.
    """
    if device != "cpu":
        raise BadRequest("precision_device", parameter="precision", got="int8", device=device, supported="float32")
    engine = pick_engine()
    if engine is not None:
        torch.backends.quantized.engine = engine  # before the check: prepacking is per engine
    if engine is None or not int8_agrees():
        raise BadRequest("precision_kernels", parameter="precision", got="int8", engines=", ".join(ENGINES),
                         supported="float32")
