"""int8 matrix products on the CPU (`--precision int8`), row by row.

Decoding reads every weight once per step, so weights stored as int8 (a quarter of
fp32's bytes) are read faster. Each weight matrix is quantized once at load, per
output channel (symmetric scales), and prepacked for one of two kernels, the first
that runs and passes int8_agrees() here (KERNELS):

- oneDNN's int8 product (torch.ops.onednn.qlinear_pointwise, x86): each row is
  quantized to bytes on its own scale here, multiplied in integers, returned fp32;
- PyTorch's dynamic quantized linear (torch.ops.quantized.linear_dynamic; FBGEMM on
  x86, QNNPACK on ARM), which quantizes its input itself, with the pins below.

oneDNN first: on 32 rows of GPT-2 small (1 thread, AVX-512 VNNI) its 49 products took
17.0 ms against FBGEMM's 19.2 and a 384-token prompt's 200 against 253, though one
row's 6.6 against 5.3; a class decoding together is where the time goes (one student
alone still writes 1.7-2.2x CTranslate2's int8 tokens a second). One kernel serves every row
count in a process, so a text never depends on the class around it. The embedding
lookup, layer norms, attention and the KV cache stay fp32.

One row, one scale. Both kernels take a single scale for their whole input, so in a
batch a row's result would depend on the other rows, and a prompt's on how its chunks
were cut, and the project promises that a request's text equals what it gives alone.
So every product first divides each row by its own largest magnitude, and multiplies
its output back by it: every row spans exactly [-1, 1], quantized the same whatever the
other rows hold. oneDNN is given that scale (1/127, bytes 1..255 around 128);
linear_dynamic finds its own from the input's range, so two constant columns, -1 and
+1, whose weights are zero, are appended to every row: the range is [-1, 1] in every
batch. The integer product itself is exact, so a row's result is bit for bit the one
it gives alone (tests/test_int8.py checks it).

Seven bits for the weights, eight for the inputs. On AVX2 (most laptops) FBGEMM and oneDNN
multiply unsigned input bytes by signed weight bytes with vpmaddubsw, which adds
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

PIN_COLUMNS = 2  # linear_dynamic's: the constant -1 and +1 appended to every row (their weights are zero)
WEIGHT_LEVELS = 63  # a channel's largest weight maps to 63: no 16-bit overflow on AVX2 (see above)
_PINS = torch.tensor([-1.0, 1.0])
ONEDNN = "onednn"
ENGINES = ("fbgemm", "qnnpack")  # PyTorch's quantized CPU engines for linear_dynamic: x86, then ARM
KERNELS = (ONEDNN, *ENGINES)  # in order of preference (see above)
INPUT_LEVELS = 127  # oneDNN's input: a row's largest magnitude maps to 127 around the zero point
INPUT_ZERO_POINT = 128  # bytes 1..255
_ROUNDED_ZERO_POINT = torch.tensor(INPUT_ZERO_POINT + 0.5)  # + 0.5, then truncation: rounds half up
PACKED_FOR_ROWS = 32  # oneDNN's weights are laid out for products of about this many rows: a class
SELF_CHECK_TOLERANCE = 0.05  # relative error of the load-time check's product (int8 rounding is ~1e-2)


@dataclass(frozen=True)
class Int8Weight:
    """One weight matrix, quantized per output channel and prepacked for its kernel."""

    kernel: str  # one of KERNELS
    packed: object  # oneDNN: its packed int8 tensor; else a torch.ScriptObject, (out, in + PIN_COLUMNS) int8
    in_features: int
    out_features: int
    scales: torch.Tensor | None = None  # oneDNN's: (out,) fp32, each channel's weight per level


_selected: list[str] = []  # the kernel check_int8() chose for this process


def selected_kernel() -> str:
    """The kernel check_int8() chose here; quantize_weight() and int8_linear() use it."""
    if not _selected:
        raise RuntimeError("check_int8() has not chosen an int8 kernel in this process")
    return _selected[-1]


def channel_scales(weight: torch.Tensor) -> torch.Tensor:
    """Each output channel's weight per level, (out,), of an (out, in) fp32 matrix: symmetric, zero point 0,
    its largest magnitude at WEIGHT_LEVELS."""
    return (weight.abs().amax(dim=1) / WEIGHT_LEVELS).clamp(min=1e-12)


def symmetric_levels(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An (out, in) fp32 matrix as int8 levels in [-WEIGHT_LEVELS, WEIGHT_LEVELS] per output channel, and the
    channels' scales (out,): weight ~ levels x scales[:, None]."""
    weight = weight.detach().float()
    scales = channel_scales(weight)
    levels = torch.round(weight / scales[:, None]).clamp_(-WEIGHT_LEVELS, WEIGHT_LEVELS).to(torch.int8)
    return levels, scales


def quantize_weight(weight: torch.Tensor, kernel: str | None = None) -> Int8Weight:
    """Quantize an (out, in) fp32 matrix for `kernel` (the selected one by default): per output channel,
    symmetric, [-63, 63]; for linear_dynamic padded with the pins' zero weights."""
    kernel = kernel or selected_kernel()
    out_features, in_features = weight.shape
    if kernel == ONEDNN:
        levels, scales = symmetric_levels(weight)
        # Contiguous: a Conv1D weight comes transposed, and prepacking reads the memory as (out, in).
        packed = torch.ops.onednn.qlinear_prepack(levels.contiguous(), [PACKED_FOR_ROWS, in_features])
        return Int8Weight(kernel, packed, in_features, out_features, scales)
    weight = F.pad(weight.detach().float(), (0, PIN_COLUMNS))  # (out, in + 2)
    scales = channel_scales(weight).double()  # the pins' zero weights change no channel's largest magnitude
    zero_points = torch.zeros(weight.shape[0], dtype=torch.long)
    with warnings.catch_warnings():
        # torch 2.13 calls quantized tensors deprecated; linear_prepack still takes only them. Once
        # they are gone, int8_agrees() fails and --precision int8 is refused with a message.
        warnings.filterwarnings("ignore", message=".*quantize_per_channel", category=UserWarning)
        qweight = torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8)
    packed = torch.ops.quantized.linear_prepack(qweight, None)  # the bias is added after the rows' scales
    return Int8Weight(kernel, packed, in_features, out_features)


def quantize_conv1d(weight: torch.Tensor, kernel: str | None = None) -> Int8Weight:
    """The same for a transformers Conv1D weight, stored (in, out)."""
    return quantize_weight(weight.t(), kernel)


_NO_ZERO_POINTS: dict[int, torch.Tensor] = {}  # oneDNN's weight zero points, all 0, by channel count


def onednn_product(x: torch.Tensor, magnitude: torch.Tensor, weight: Int8Weight) -> torch.Tensor:
    """x / magnitude (each row in [-1, 1]) @ W through oneDNN; (N, in) -> (N, out) fp32."""
    # Rows to bytes in two operations: x * 127 / magnitude + 128.5, truncated (every value is positive).
    quantized = torch.addcmul(_ROUNDED_ZERO_POINT, x, INPUT_LEVELS / magnitude).to(torch.uint8)
    zero_points = _NO_ZERO_POINTS.get(weight.out_features)
    if zero_points is None:
        zero_points = _NO_ZERO_POINTS.setdefault(weight.out_features, torch.zeros(weight.out_features, dtype=torch.int32))
    return torch.ops.onednn.qlinear_pointwise(quantized, 1.0 / INPUT_LEVELS, INPUT_ZERO_POINT, weight.packed,
                                              weight.scales, zero_points, None, 1.0, 0, torch.float32, "none", [], "")


def dynamic_product(x: torch.Tensor, magnitude: torch.Tensor, weight: Int8Weight) -> torch.Tensor:
    """The same through linear_dynamic, which quantizes its input itself: the pins fix its range."""
    # A division, not a product with 1/magnitude: x / x is exactly 1, so no row spans more than
    # [-1, 1] by a rounding and widens the range for the others. An all-zero row stays zero.
    pinned = torch.cat([x / magnitude, _PINS.expand(x.shape[0], PIN_COLUMNS)], dim=1)  # (N, in + 2)
    return torch.ops.quantized.linear_dynamic(pinned, weight.packed, False)  # 8-bit inputs: see the docstring


def int8_linear(x: torch.Tensor, weight: Int8Weight, bias: torch.Tensor | None, tanh_gelu: bool = False,
                residual: torch.Tensor | None = None) -> torch.Tensor:
    """x @ W + bias (+ residual) with W in int8, each row of x quantized on its own scale; (N, in) -> (N, out).

    Same signature as linear.py's products, so the decoder calls any of them alike.
    """
    # abs().amax() rather than the inf-norm, which is the same value (a max is exact) but was 15x
    # slower on CPU: 76 against 5 us for 32 rows of 768, a tenth of a 32-row int8 step.
    magnitude = x.abs().amax(dim=1, keepdim=True).clamp_min_(1e-30)  # (N, 1)
    y = (onednn_product if weight.kernel == ONEDNN else dynamic_product)(x, magnitude, weight)
    # In place where there is no bias: the lm_head's output is a (rows, vocab) temporary of its own.
    y = y.mul_(magnitude) if bias is None else torch.addcmul(bias, y, magnitude)
    if residual is not None:
        y.add_(residual)
    return gelu_new(y) if tanh_gelu else y


def available_kernels() -> list[str]:
    """The int8 kernels this PyTorch has, in order of preference (KERNELS)."""
    kernels = [ONEDNN] if torch.backends.mkldnn.is_available() and hasattr(torch.ops.onednn, "qlinear_pointwise") else []
    supported = torch.backends.quantized.supported_engines
    return kernels + [engine for engine in ENGINES if engine in supported]


def int8_agrees(kernel: str) -> bool:
    """Whether `kernel`'s product runs here, is close to fp32's, cannot overflow, and gives a row alone its batch result."""
    try:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(5, 64, generator=generator)
        weight = torch.randn(96, 64, generator=generator) * 0.05  # (out, in)
        bias = torch.randn(96, generator=generator)
        quantized = quantize_weight(weight, kernel)
        # The worst case for 16-bit overflow: every input at the top of its range, every weight too.
        top = torch.ones(1, 64)
        top[0, 0] = -1.0
        with torch.no_grad():
            got = int8_linear(x, quantized, bias)
            expected = torch.addmm(bias, x, weight.t())
            alone = int8_linear(x[2:3], quantized, bias)
            worst = int8_linear(top, quantize_weight(torch.ones(4, 64), kernel), None)
        close = float((got - expected).norm() / expected.norm()) < SELF_CHECK_TOLERANCE
        no_overflow = float((worst - 62.0).abs().max()) < 62.0 * SELF_CHECK_TOLERANCE
        return close and no_overflow and torch.equal(alone, got[2:3])
    except (RuntimeError, AttributeError, NotImplementedError):  # no such kernel in this build, or it changed
        return False


def check_int8(device: str) -> str:
    """Refuse --precision int8 where it cannot run (BadRequest); otherwise choose the kernel and return it.

    The choice is process-wide (as PyTorch's quantized engine is); nothing else in gpt2demo
    uses quantized ops.
    """
    if device != "cpu":
        raise BadRequest("precision_device", parameter="precision", got="int8", device=device, supported="float32")
    for kernel in available_kernels():
        if kernel in ENGINES:
            torch.backends.quantized.engine = kernel  # before the check: prepacking is per engine
        if int8_agrees(kernel):
            _selected[:] = [kernel]
            return kernel
    raise BadRequest("precision_kernels", parameter="precision", got="int8", engines=", ".join(KERNELS),
                     supported="float32")
