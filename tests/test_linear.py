"""The forward pass's matrix products: oneDNN where it works, addmm elsewhere, same results."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gpt2demo import linear
from gpt2demo.decoder import GPT2Decoder
from gpt2demo.linear import addmm_linear, onednn_agrees, onednn_linear, padded_rows, pick_linear

from conftest import TUTORIAL_IDS


def test_cpu_fp32_uses_onednn_here_and_everything_else_addmm():
    # This project's machines run torch's x86 CPU build, which has oneDNN.
    assert torch.backends.mkldnn.is_available()
    assert pick_linear(torch.device("cpu"), torch.float32) is onednn_linear
    assert pick_linear(torch.device("cpu"), torch.float64) is addmm_linear
    assert pick_linear(torch.device("cuda"), torch.float32) is addmm_linear
    assert pick_linear(torch.device("mps"), torch.float32) is addmm_linear


def test_a_broken_onednn_op_falls_back_to_addmm(monkeypatch):
    def missing(*args):
        raise RuntimeError("no oneDNN in this build")

    monkeypatch.setattr(linear, "onednn_linear", missing)
    assert not onednn_agrees(torch.float32)
    assert pick_linear(torch.device("cpu"), torch.float32) is addmm_linear


def test_rows_are_padded_to_a_few_sizes_so_onednn_keeps_few_kernels():
    assert [padded_rows(rows) for rows in (1, 2, 3, 4, 5, 8, 9, 33, 64, 65, 1000, 1024, 4096)] == [
        1, 2, 3, 4, 8, 8, 16, 40, 64, 128, 1024, 1024, 4096]
    sizes = {padded_rows(rows) for rows in range(1, 4097)}
    assert len(sizes) == 18  # 1-4, 8-64 by 8, 128-4096
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
    for product in (onednn_linear, addmm_linear):
        got = product(x, weight, bias, tanh_gelu)
        assert got.shape == (rows, 3072)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert torch.equal(x, before[0]) and torch.equal(weight, before[1])


def test_the_decoder_gives_the_same_logits_through_either_kernel(tiny_model):
    fast = tiny_model.decoder
    plain = GPT2Decoder(tiny_model.model)
    plain._linear = addmm_linear
    logits = []
    for decoder in (fast, plain):
        cache = decoder.new_cache()
        cache.add_row()
        first = decoder.prefill(cache, [0], [TUTORIAL_IDS])
        second = decoder.decode(cache, first.argmax(dim=-1))
        logits.append((first, second))
    assert fast._linear is onednn_linear
    for ours, reference in zip(*logits):
        torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-4)
        assert torch.equal(ours.argmax(dim=-1), reference.argmax(dim=-1))
