"""The matrix products of a forward pass: x @ W + b, through oneDNN on CPU when it is there.

GPT-2 stores its projection weights as (in, out) (transformers' Conv1D). Decoding
multiplies one row per sequence by each of them, so the time goes to reading weights.
Which kernel reads them faster depends on the CPU, so the model measures both at load
(pick_linear) on its own first block. Measured on GPT-2 small shapes, all 48 block
products of one row:

    an AVX2 build machine, 2 threads:      addmm 15.8 ms   oneDNN 10.4 ms
    an AVX-512 build machine, 2 threads:   addmm 12.5 ms   oneDNN 23.1 ms
    the same, 1 thread:                    addmm 23.6 ms   oneDNN 39.1 ms

The oneDNN op (torch.ops.mkldnn._linear_pointwise, the one torch.compile's CPU
backend emits) is not public API, so it is used only after a check that it exists
and agrees with addmm, and only where it was the faster; anything else (CUDA, MPS, a
build without oneDNN, a float type it does not take) goes through addmm.

oneDNN keeps a compiled kernel for every input shape it meets (up to 1024 of them).
A server meets many: the rows of a decode step and the tokens of a prefill vary with
every request. So the rows are padded up to a few sizes (padded_rows): without it the
soak's server memory grew by 141 MB over 500 requests and kept growing.

--precision int8's products, with the same signature, are in int8.py.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

# (x (N, in), weight (in, out), bias (out,) or None, tanh_gelu, residual (N, out) or None) -> (N, out)
Linear = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None, bool, torch.Tensor | None], torch.Tensor]


# gelu_new's tanh written as a sigmoid: 0.5 x (1 + tanh(z)) = x sigmoid(2z), 2z = x (A + B x^2).
GELU_LINEAR = 2 * math.sqrt(2 / math.pi)
GELU_CUBIC = GELU_LINEAR * 0.044715


def gelu_new(y: torch.Tensor) -> torch.Tensor:
    """GPT-2's gelu_new of y (F.gelu(y, approximate="tanh")), through a sigmoid; y is left alone.

    torch's CPU tanh GELU cost 112 us on a 32-row MLP activation (32 x 3072) here, this
    50 us: its tanh is not vectorized, the sigmoid is. Within 4e-7 of the exact value (in
    float64), where the tanh form is within 2.5e-7.
    """
    u = y * y
    return u.mul_(GELU_CUBIC).add_(GELU_LINEAR).mul_(y).sigmoid_().mul_(y)


def addmm_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, tanh_gelu: bool = False,
                 residual: torch.Tensor | None = None) -> torch.Tensor:
    """x @ weight + bias (+ residual) with torch's own kernels; tanh_gelu applies GPT-2's gelu_new to that.

    GPT-2 never asks for both: a block adds its residuals to the products that have no GELU.
    """
    y = x @ weight if bias is None else torch.addmm(bias, x, weight)
    if residual is not None:
        y.add_(residual)
    return gelu_new(y) if tanh_gelu else y


def padded_rows(rows: int) -> int:
    """The row count oneDNN computes for `rows` rows: one of 29 sizes up to 4096, under 2x.

    Exact up to 4 (one student, a few), multiples of 8 up to 64 (a class decoding together:
    reading the weights dominates, so a few zero rows cost little), multiples of 64 up to
    1024 (prompts, read in passes of 16 tokens per joining student: computing, not reading,
    dominates there, so every padded row costs as much as a real one; 19 students' 304
    tokens padded to 512 took 0.62 s, to 320 0.38 s), powers of two beyond (long prompts
    read alone).
    """
    if rows <= 4:
        return rows
    if rows <= 64:
        return -(-rows // 8) * 8
    if rows <= 1024:
        return -(-rows // 64) * 64
    return 1 << (rows - 1).bit_length()


def onednn_ops() -> tuple:
    """oneDNN's linear op and its fused-addition form, each its one overload, or (None, None) in a build without it.

    Calling the overload itself skips the op's overload resolution, which runs at every
    call of the op by name: 49 calls a token, each right after a product has streamed
    megabytes of weights through the caches (one row, 2 threads: about 1% of a token).
    """
    try:
        ops = torch.ops.mkldnn._linear_pointwise
        return ops.default, ops.binary
    except (AttributeError, RuntimeError):
        return None, None


LINEAR_POINTWISE, LINEAR_ADD = onednn_ops()


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, tanh_gelu: bool = False,
                  residual: torch.Tensor | None = None) -> torch.Tensor:
    """The same product through oneDNN, with the GELU or the residual's addition fused into it.

    weight: packed by pack_onednn_weight (the fast way), or a plain (in, out) tensor,
    whose transposed view oneDNN reads as the (out, in) it takes. The fused addition
    saves a block two operations a token, each of which costs more than its arithmetic
    right after a product has streamed megabytes of weights through the caches.
    """
    rows = x.shape[0]
    padded = padded_rows(rows)
    if padded != rows:
        x = F.pad(x, (0, 0, 0, padded - rows))  # zero rows: their outputs are cut off below
        residual = None if residual is None else F.pad(residual, (0, 0, 0, padded - rows))
    out_in = weight if weight.is_mkldnn else weight.t()
    if residual is not None:
        y = LINEAR_ADD(x, residual, out_in, bias, "add")
        if tanh_gelu:
            y = gelu_new(y)
    else:
        activation, algorithm = ("gelu", "tanh") if tanh_gelu else ("none", "")
        y = LINEAR_POINTWISE(x, out_in, bias, activation, [], algorithm)
    return y if padded == rows else y[:rows]


PACKED_FOR_ROWS = 32  # a class decoding together


def pack_onednn_weight(weight: torch.Tensor) -> torch.Tensor:
    """An (in, out) weight in oneDNN's own blocked layout for products of about PACKED_FOR_ROWS rows.

    The plain layout makes oneDNN's kernel read the weight in an order that streams
    worse. Measured over GPT-2 small's 48 block products, plain -> packed:
    AVX-512 machine, 2 threads: 1 row 9.9 -> 7.9 ms, 32 rows 21.9 -> 20.4, 320 rows 170 -> 153;
    1 thread: 1 row 19.1 -> 12.8 ms, 16 rows 36.2 -> 25.8, 32 rows 47.8 -> 38.2.
    Packed for 1 row instead, it was slower than plain from 2 rows up, so one layout
    for a class serves every row count. A copy: the model's own weights stay as they
    are for transformers' forward.
    """
    return torch.ops.mkldnn._reorder_linear_weight(weight.t().contiguous(), PACKED_FOR_ROWS)


def prepare_weight(kernel: Linear, weight: torch.Tensor) -> torch.Tensor:
    """An (in, out) weight as `kernel` reads it fastest: packed for oneDNN, contiguous for addmm."""
    return pack_onednn_weight(weight) if kernel is onednn_linear else weight.contiguous()


def onednn_agrees(dtype: torch.dtype) -> bool:
    """Whether the oneDNN path exists here and gives addmm's results (to float rounding)."""
    try:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(3, 64, generator=generator).to(dtype)
        weight = torch.randn(64, 96, generator=generator).to(dtype)
        bias = torch.randn(96, generator=generator).to(dtype)
        residual = torch.randn(3, 96, generator=generator).to(dtype)
        with torch.no_grad():
            return all(
                torch.allclose(onednn_linear(x, w, b, gelu, r), addmm_linear(x, weight, b, gelu, r), rtol=1e-4, atol=1e-4)
                for w in (weight, pack_onednn_weight(weight))
                for b in (bias, None)
                for gelu in (False, True)
                for r in (None, residual)
            )
    except (RuntimeError, AttributeError, NotImplementedError, TypeError):  # no oneDNN in this build, or the op changed
        return False


MEASURED_ROWS = (1, 16)  # one student; a class decoding together
MEASURE_REPEATS = 5  # the best of these: a busy machine slows some runs, never speeds one up


def best_seconds(run: Callable[[], object], repeats: int = MEASURE_REPEATS) -> float:
    """The best of `repeats` timed calls of run(), after one untimed call (a first call may build its kernel)."""
    run()
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def product_seconds(kernel: Linear, weights: Sequence[torch.Tensor]) -> float:
    """How long `kernel` takes over `weights` (each (in, out)) at MEASURED_ROWS rows: the best of MEASURE_REPEATS."""
    total = 0.0
    with torch.no_grad():
        for rows in MEASURED_ROWS:
            inputs = [torch.zeros(rows, weight.shape[0], dtype=weight.dtype) for weight in weights]
            prepared = [prepare_weight(kernel, weight) for weight in weights]

            def run_all() -> None:
                for x, weight in zip(inputs, prepared):
                    kernel(x, weight, None, False)

            total += best_seconds(run_all)  # its untimed call: oneDNN builds its kernel for a new shape on first use
    return total


def pick_linear(device: torch.device, dtype: torch.dtype, sample: Sequence[torch.Tensor],
                measure: Callable[[Linear, Sequence[torch.Tensor]], float] = product_seconds) -> Linear:
    """oneDNN for fp32 on CPU when it works and was faster on `sample` (some of the model's weights), else addmm."""
    if device.type == "cpu" and dtype == torch.float32 and torch.backends.mkldnn.is_available() and onednn_agrees(dtype):
        if measure(onednn_linear, sample) < measure(addmm_linear, sample):
            return onednn_linear
    return addmm_linear
