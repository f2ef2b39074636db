"""The forward pass's matrix products: oneDNN where it works, addmm elsewhere, same results."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gpt2demo import linear
from gpt2demo.decoder import GPT2Decoder
from gpt2demo.linear import (addmm_linear, gelu_new, onednn_agrees, onednn_linear, pack_onednn_weight, padded_rows,
                             pick_linear, prepare_weight)

from conftest import TUTORIAL_IDS


SAMPLE = [torch.randn(64, 96), torch.randn(96, 64)]


def timings(onednn: float, addmm: float):
    """A measure that says how long each kernel took, and records what it was asked."""
    asked = []

    def measure(kernel, weights):
        asked.append((kernel, [tuple(w.shape) for w in weights]))
        return {onednn_linear: onednn, addmm_linear: addmm}[kernel]

    return measure, asked


def test_cpu_fp32_uses_onednn_where_it_was_faster_on_the_sample_and_everything_else_addmm():
    # This project's machines run torch's x86 CPU build, which has oneDNN.
    assert torch.backends.mkldnn.is_available()
    faster, asked = timings(onednn=1.0, addmm=2.0)
    assert pick_linear(torch.device("cpu"), torch.float32, SAMPLE, faster) is onednn_linear
    assert sorted(asked, key=lambda a: a[0].__name__) == [(addmm_linear, [(64, 96), (96, 64)]),
                                                          (onednn_linear, [(64, 96), (96, 64)])]
    slower, _ = timings(onednn=2.0, addmm=1.0)
    assert pick_linear(torch.device("cpu"), torch.float32, SAMPLE, slower) is addmm_linear
    for device, dtype in (("cpu", torch.float64), ("cuda", torch.float32), ("mps", torch.float32)):
        never, asked = timings(onednn=1.0, addmm=2.0)
        assert pick_linear(torch.device(device), dtype, SAMPLE, never) is addmm_linear and asked == []


def test_the_real_measure_times_both_kernels_at_one_and_sixteen_rows():
    seconds = [linear.product_seconds(kernel, SAMPLE) for kernel in (onednn_linear, addmm_linear)]
    assert all(0 < s < 1 for s in seconds) and linear.MEASURED_ROWS == (1, 16)
    assert pick_linear(torch.device("cpu"), torch.float32, SAMPLE) in (onednn_linear, addmm_linear)


def test_a_broken_onednn_op_falls_back_to_addmm(monkeypatch):
    def missing(*args):
        raise RuntimeError("no oneDNN in this build")

    monkeypatch.setattr(linear, "onednn_linear", missing)
    assert not onednn_agrees(torch.float32)
    assert pick_linear(torch.device("cpu"), torch.float32, SAMPLE) is addmm_linear


def test_rows_are_padded_to_a_few_sizes_so_onednn_keeps_few_kernels():
    assert [padded_rows(rows) for rows in (1, 2, 3, 4, 5, 8, 9, 33, 64, 65, 304, 1000, 1024, 1025, 4096)] == [
        1, 2, 3, 4, 8, 8, 16, 40, 64, 128, 320, 1024, 1024, 2048, 4096]
    sizes = {padded_rows(rows) for rows in range(1, 4097)}
    assert len(sizes) == 29  # 1-4, 8-64 by 8, 128-1024 by 64, 2048, 4096
    assert all(rows <= padded_rows(rows) < 2 * rows for rows in range(2, 4097))


@pytest.mark.parametrize("rows", [1, 7, 33, 100])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("tanh_gelu", [False, True])
def test_onednn_gives_addmms_products_and_leaves_its_inputs_alone(rows, with_bias, tanh_gelu):
    generator = torch.Generator().manual_seed(rows)
    x = torch.randn(rows, 768, generator=generator)
    weight = torch.randn(768, 3072, generator=generator) * 0.02  # (in, out), as GPT-2 stores it
    bias = torch.randn(3072, generator=generator) if with_bias else None
    before = (x.clone(), weight.clone())
    expected = x @ weight + (bias if with_bias else 0)
    if tanh_gelu:
        expected = F.gelu(expected, approximate="tanh")
    packed = pack_onednn_weight(weight)
    for product, w in ((onednn_linear, weight), (onednn_linear, packed), (addmm_linear, weight)):
        got = product(x, w, bias, tanh_gelu)
        assert got.shape == (rows, 3072)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert torch.equal(x, before[0]) and torch.equal(weight, before[1])


def test_each_kernel_gets_the_weights_laid_out_as_it_reads_them(tiny_model):
    # oneDNN reads its own blocked layout (a copy: transformers' modules keep theirs); addmm a plain (in, out) one.
    transposed = tiny_model.model.transformer.h[0].mlp.c_fc.weight.detach().t()
    assert prepare_weight(addmm_linear, transposed).is_contiguous() and not transposed.is_contiguous()
    onednn, addmm = (GPT2Decoder(tiny_model.model, kernel=kernel).weights() for kernel in (onednn_linear, addmm_linear))
    assert onednn.keys() == addmm.keys()
    assert all(weight.is_mkldnn for weight in onednn.values())
    assert not any(weight.is_mkldnn for weight in addmm.values())
    module = tiny_model.model.transformer.h[0].mlp.c_fc.weight
    assert torch.equal(addmm["h.0.mlp.c_fc"], module) and not module.is_mkldnn
    lm_head = tiny_model.model.lm_head.weight  # (vocab, n_embd): both kernels take it as (n_embd, vocab)
    assert torch.equal(addmm["lm_head"], lm_head.t()) and addmm["lm_head"].is_contiguous()
    assert torch.equal(onednn["lm_head"].to_dense(), lm_head)  # oneDNN's (out, in)


def test_the_decoder_gives_the_same_logits_through_either_kernel(tiny_model):
    logits = []
    for decoder in (GPT2Decoder(tiny_model.model, kernel=onednn_linear), GPT2Decoder(tiny_model.model, kernel=addmm_linear)):
        cache = decoder.new_cache()
        cache.add_row()
        first = decoder.prefill(cache, [0], [TUTORIAL_IDS])
        second = decoder.decode(cache, first.argmax(dim=-1))
        logits.append((first, second))
    for ours, reference in zip(*logits):
        torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-4)
        assert torch.equal(ours.argmax(dim=-1), reference.argmax(dim=-1))


def test_gelu_new_through_a_sigmoid_is_gpt2s_tanh_gelu_and_leaves_its_input_alone():
    y = torch.cat([torch.linspace(-12.0, 12.0, 10_001), torch.tensor([-1e4, -60.0, 0.0, 60.0, 1e4])])
    before = y.clone()
    exact = F.gelu(y.double(), approximate="tanh")
    got = gelu_new(y)
    assert got.dtype == torch.float32 and torch.equal(y, before)
    assert float((got.double() - exact).abs().max()) <= 1e-6
    assert got[-5:].tolist() == [0.0, 0.0, 0.0, 60.0, 1e4]  # saturated both ways, as the tanh form is
