"""--precision int8: oneDNN or FBGEMM products row by row, close to fp32, refused where they cannot run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gpt2demo import int8
from gpt2demo.cli import describe
from gpt2demo.errors import BadRequest
from gpt2demo.int8 import Int8Weight, available_kernels, int8_agrees, int8_linear, quantize_conv1d, quantize_weight
from gpt2demo.model import load_model
from gpt2demo.serving import start_engine
from gpt2demo.serving.interface import EngineState, Request
from gpt2demo.settings import SamplingSettings
from gpt2demo.ui.i18n import describe_error
from gpt2demo.ui.panel import describe_model

from conftest import DEADLINE_SECONDS, TUTORIAL_IDS, TUTORIAL_PROMPT, local_engine

REPO = Path(__file__).resolve().parents[1]
RELATIVE_ERROR = 0.03  # per row, against fp32; 8-bit inputs and 7-bit weights measured up to 0.019 here


KERNELS_HERE = [kernel for kernel in int8.KERNELS if kernel in available_kernels()]


@pytest.fixture(scope="module")
def tiny_int8(tiny_model_dir):
    return load_model(str(tiny_model_dir), "cpu", "int8")


@pytest.fixture(params=KERNELS_HERE)
def kernel(request):
    """Each int8 kernel this PyTorch has, with its quantized engine selected."""
    if request.param in int8.ENGINES:
        previous = torch.backends.quantized.engine
        torch.backends.quantized.engine = request.param
        yield request.param
        torch.backends.quantized.engine = previous
    else:
        yield request.param


def test_this_machine_has_every_int8_kernel_and_the_app_picks_onednn():
    # The build machines are x86 with oneDNN: both kernels' tests below run there, none is skipped.
    assert KERNELS_HERE == ["onednn", "fbgemm", "qnnpack"]
    assert int8.check_int8("cpu") == "onednn" and int8.selected_kernel() == "onednn"


def gpt2_like(seed: int, rows: int = 33):
    """A c_fc-shaped product, (in, out) as GPT-2 stores it, and rows of magnitudes from 1e-3 to 1e3."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(768, 3072, generator=generator) * 0.02
    bias = torch.randn(3072, generator=generator) * 0.02
    x = torch.randn(rows, 768, generator=generator) * torch.logspace(-3, 3, rows)[:, None]
    return x, weight, bias


@pytest.mark.parametrize("tanh_gelu", [False, True])
@pytest.mark.parametrize("with_bias", [True, False])
def test_int8_products_are_within_3_percent_of_fp32_in_every_row(tanh_gelu, with_bias, kernel):
    x, weight, bias = gpt2_like(seed=1)
    bias = bias if with_bias else None
    before = x.clone()
    expected = x @ weight + (0 if bias is None else bias)
    expected = F.gelu(expected, approximate="tanh") if tanh_gelu else expected
    got = int8_linear(x, quantize_conv1d(weight, kernel), bias, tanh_gelu)
    assert got.shape == (33, 3072) and got.dtype == torch.float32
    error = (got - expected).norm(dim=1) / expected.norm(dim=1)  # (rows,)
    assert float(error.max()) < RELATIVE_ERROR
    assert torch.equal(x, before)


def test_a_row_gives_alone_exactly_what_it_gives_in_any_batch(kernel):
    # One scale per row, not per batch: a small row next to a large one keeps its precision.
    x, weight, bias = gpt2_like(seed=2)
    x[5] = 0  # a padding row
    quantized = quantize_conv1d(weight, kernel)
    batch = int8_linear(x, quantized, bias)
    for start, stop in [(i, i + 1) for i in range(33)] + [(0, 4), (3, 11), (20, 33)]:
        assert torch.equal(int8_linear(x[start:stop], quantized, bias), batch[start:stop])
    assert torch.equal(batch[5], bias)
    ours, expected = int8_linear(x, quantized, None), x @ weight
    assert float(((ours[0] - expected[0]).norm() / expected[0].norm())) < RELATIVE_ERROR


def test_one_scale_for_the_whole_batch_would_lose_the_small_rows_next_to_the_large():
    x, weight, _ = gpt2_like(seed=2)
    quantized = quantize_conv1d(weight, "fbgemm")
    whole = torch.ops.quantized.linear_dynamic(F.pad(x, (0, int8.PIN_COLUMNS)), quantized.packed, True)
    expected = x @ weight
    assert float(((whole[0] - expected[0]).norm() / expected[0].norm())) > 0.5


def test_onednns_product_is_the_exact_integer_product_of_each_rows_bytes_and_the_weights_levels():
    x, weight, _ = gpt2_like(seed=4, rows=6)
    x[2] = 0
    levels, scales = int8.symmetric_levels(weight.t())  # (out, in)
    got = int8_linear(x, quantize_conv1d(weight, "onednn"), None)
    magnitude = x.abs().amax(dim=1, keepdim=True).clamp_min(1e-30)
    # Each row to bytes 1..255 around 128, rounded half up: x * 127 / magnitude + 128.5, truncated.
    row_bytes = torch.floor(x.double() * 127 / magnitude.double() + 128.5).clamp(1, 255)
    sums = (row_bytes - 128) @ levels.double().t()  # the integers oneDNN adds up, exactly (float64 holds them)
    expected = sums / 127 * scales.double() * magnitude.double()
    assert float(((got.double() - expected).abs() / expected.abs().clamp_min(1e-6)).max()) < 1e-4
    assert torch.equal(got[2], torch.zeros(3072))


def test_a_weight_is_quantized_per_output_channel_symmetric_in_63_levels():
    weight = torch.tensor([[0.3, -1.0, 0.6], [2.0, 1.2, -2.0]])  # (out, in)
    levels, scales = int8.symmetric_levels(weight)
    assert levels.dtype == torch.int8 and levels.tolist() == [[19, -63, 38], [63, 38, -63]]
    assert torch.allclose(scales, torch.tensor([1.0, 2.0]) / 63)
    onednn = quantize_weight(weight, "onednn")
    assert (onednn.kernel, onednn.in_features, onednn.out_features) == ("onednn", 3, 2)
    assert torch.equal(onednn.scales, scales)
    quantized = quantize_weight(weight, "fbgemm")
    assert (quantized.in_features, quantized.out_features) == (3, 2)
    qweight, bias = torch.ops.quantized.linear_unpack(quantized.packed)
    assert bias is None and qweight.shape == (2, 3 + int8.PIN_COLUMNS)
    assert qweight.int_repr().tolist() == [[19, -63, 38, 0, 0], [63, 38, -63, 0, 0]]
    assert torch.allclose(qweight.q_per_channel_scales(), torch.tensor([1.0, 2.0], dtype=torch.float64) / 63)
    assert qweight.q_per_channel_zero_points().tolist() == [0, 0]


AVX2_CHECK = """
import json, sys, torch
from gpt2demo import int8
kernel = sys.argv[1]
torch.backends.quantized.engine = "fbgemm"
generator = torch.Generator().manual_seed(3)
x, weight = torch.randn(8, 768, generator=generator), torch.randn(3072, 768, generator=generator) * 0.02
got, expected = int8.int8_linear(x, int8.quantize_weight(weight, kernel), None), x @ weight.t()
error = float(((got - expected).norm(dim=1) / expected.norm(dim=1)).max())
ours = int8.int8_agrees(kernel)
int8.WEIGHT_LEVELS = 127  # what the weights may not use: pairs of 255 x 127 overflow 16 bits
print(json.dumps([error, ours, int8.int8_agrees(kernel)]))
"""


@pytest.mark.parametrize("kernel_name", ["onednn", "fbgemm"])
def test_on_avx2s_16_bit_sums_the_63_level_weights_do_not_overflow_and_127_levels_would(kernel_name):
    # These variables make FBGEMM and oneDNN take the AVX2 kernels (vpmaddubsw) most laptops run.
    avx2 = {"FBGEMM_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    result = subprocess.run([sys.executable, "-c", AVX2_CHECK, kernel_name], capture_output=True, text=True,
                            timeout=120, cwd=REPO, env={**os.environ, **avx2})
    assert result.returncode == 0, result.stderr
    error, ours, full_range = json.loads(result.stdout)
    assert error < RELATIVE_ERROR and ours is True
    assert full_range is False  # the load-time check's worst case catches the overflow


def test_the_int8_decoder_quantizes_every_product_and_the_lm_head_but_not_the_embedding(tiny_int8, tiny_model):
    weights = tiny_int8.decoder.weights()
    assert {weight.kernel for weight in weights.values()} == {int8.selected_kernel()}
    assert sorted(weights) == sorted([f"h.{layer}.{name}" for layer in range(2) for name in
                                      ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")] + ["lm_head"])
    shapes = {name: (w.in_features, w.out_features) for name, w in weights.items() if isinstance(w, Int8Weight)}
    assert shapes == {**{f"h.{layer}.{name}": shape for layer in range(2) for name, shape in (
        ("attn.c_attn", (64, 192)), ("attn.c_proj", (64, 64)), ("mlp.c_fc", (64, 256)), ("mlp.c_proj", (256, 64)))},
        "lm_head": (64, 50257)}
    # The lookup stays fp32 and tied; the fp32 engine's products still take the fp32 weights.
    embedding = tiny_int8.model.transformer.wte.weight
    assert embedding.dtype == torch.float32 and embedding is tiny_int8.model.lm_head.weight
    assert all(isinstance(w, torch.Tensor) and w.dtype == torch.float32 for w in tiny_model.decoder.weights().values())
    assert tiny_int8.decoder.precision == "int8" and tiny_int8.facts().precision == "int8"


def test_int8_logits_stay_close_to_fp32_and_keep_the_top_token(tiny_int8, tiny_model):
    logits = {}
    for model in (tiny_model, tiny_int8):
        cache = model.decoder.new_cache()
        cache.add_row()
        first = model.decoder.prefill(cache, [0], [TUTORIAL_IDS])
        logits[model.decoder.precision] = (first, model.decoder.decode(cache, first.argmax(dim=-1)))
    for reference, quantized in zip(logits["float32"], logits["int8"]):
        assert float((quantized - reference).norm() / reference.norm()) < RELATIVE_ERROR
        assert torch.equal(quantized.argmax(dim=-1), reference.argmax(dim=-1))


def test_the_cost_races_tutorial_step_runs_the_same_int8_products(tiny_int8):
    decoder = tiny_int8.decoder
    cache = decoder.new_cache()
    cache.add_row()
    assert torch.equal(decoder.recompute(TUTORIAL_IDS), decoder.prefill(cache, [0], [TUTORIAL_IDS])[0])


def test_greedy_int8_text_from_the_engine_repeats_and_continues_the_prompt(tiny_model_dir, tiny_int8):
    engine = local_engine(tiny_model_dir, precision="int8")
    try:
        assert engine.state.facts.precision == "int8"
        settings = SamplingSettings(greedy=True, max_new_tokens=30)
        runs = []
        for _ in range(2):
            ticket = engine.submit(Request(settings, TUTORIAL_PROMPT))
            steps = list(ticket)
            runs.append([step.token_id for step in steps])
            assert ticket.accepted_blocking().prompt.token_ids == tuple(TUTORIAL_IDS)
            assert (len(steps), steps[-1].finish_reason) == (30, "length")
            assert "".join(step.text for step in steps) == tiny_int8.decode(runs[-1])
        assert runs[0] == runs[1]
        assert all(0 <= token_id < tiny_int8.vocab_size for token_id in runs[0])
    finally:
        engine.close()


def test_the_precision_reaches_the_engine_process_and_the_model_panel(tiny_model_dir):
    engine = start_engine(str(tiny_model_dir), "cpu", max_batch=2, queue_size=2, precision="int8")
    try:
        state = engine.wait_ready_blocking(DEADLINE_SECONDS)
        assert state.phase == "ready", state.error
        assert state.facts.precision == "int8"
        assert "· device cpu (int8) ·" in describe_model(state, "en")
        assert "· 设备 cpu（int8）·" in describe_model(state, "zh")
    finally:
        engine.close()


def test_int8_is_refused_off_the_cpu_before_the_model_is_even_looked_for(tmp_path):
    with pytest.raises(BadRequest) as refused:
        load_model(str(tmp_path / "no-such-folder"), "cuda", "int8")  # a missing folder would be ModelSourceError
    error = refused.value
    assert (error.code, error.facts) == ("precision_device", dict(parameter="precision", got="int8", device="cuda",
                                                                  supported="float32"))
    assert describe(error) == "--precision int8 runs on the CPU only (device here: cuda); use --precision float32 there"
    assert describe_error(error, "en") == ("--precision int8 runs on the CPU only (device here: cuda); "
                                           "start the app with --precision float32.")
    state = EngineState("failed", "gpt2", "mps", error=BadRequest("precision_device", **{**error.facts, "device": "mps"}))
    assert describe_model(state, "en") == ("**Model:** --precision int8 runs on the CPU only (device here: mps); "
                                           "start the app with --precision float32.")


def test_int8_is_refused_without_quantized_kernels_or_when_they_fail_the_check(tmp_path, monkeypatch):
    expected = ("--precision int8 needs PyTorch's quantized CPU kernels (onednn, fbgemm, qnnpack), which this "
                "PyTorch lacks or fails its check; use --precision float32")
    monkeypatch.setattr(int8, "available_kernels", lambda: [])
    with pytest.raises(BadRequest) as refused:
        load_model(str(tmp_path), "cpu", "int8")
    assert describe(refused.value) == expected
    monkeypatch.undo()

    def broken(*args):
        raise RuntimeError("Didn't find engine for operation quantized::linear_prepack NoQEngine")

    monkeypatch.setattr(int8, "int8_linear", broken)
    assert not any(int8_agrees(kernel) for kernel in KERNELS_HERE)
    with pytest.raises(BadRequest) as refused:
        load_model(str(tmp_path), "cpu", "int8")
    assert refused.value.code == "precision_kernels" and describe(refused.value) == expected
