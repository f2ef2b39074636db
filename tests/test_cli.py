import subprocess
import sys
from pathlib import Path

from gpt2demo.generation import generate_text
from gpt2demo.settings import SamplingSettings

from conftest import TUTORIAL_IDS, TUTORIAL_PROMPT


REPO = Path(__file__).resolve().parents[1]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "gpt2demo", *args], capture_output=True, text=True, timeout=300, cwd=REPO)


def test_cli_prints_the_tokens_and_the_same_continuation_as_the_engine(tiny_model, tiny_model_dir):
    result = run_cli(TUTORIAL_PROMPT, "--model", str(tiny_model_dir), "--top-k", "10", "--max-new-tokens", "40", "--seed", "0", "--show-tokens")
    assert result.returncode == 0, result.stderr
    expected = generate_text(tiny_model, TUTORIAL_PROMPT, SamplingSettings(top_k=10, max_new_tokens=40, seed=0)).text
    assert result.stdout == f"{TUTORIAL_IDS}\n{TUTORIAL_PROMPT}{expected}\n"
    assert "[gpt2demo] seed 0" in result.stderr and "finished: length" in result.stderr


def test_cli_sampling_flags_reach_the_engine(tiny_model, tiny_model_dir):
    flags = ["--top-k", "0", "--top-p", "0.8", "--temperature", "0.6", "--repetition-penalty", "1.2", "--max-new-tokens", "25", "--seed", "5"]
    result = run_cli("Hello", "--model", str(tiny_model_dir), *flags)
    expected = generate_text(tiny_model, "Hello", SamplingSettings(top_k=0, top_p=0.8, temperature=0.6, repetition_penalty=1.2, max_new_tokens=25, seed=5)).text
    assert result.stdout == f"Hello{expected}\n"
    greedy = run_cli("Hello", "--model", str(tiny_model_dir), "--greedy", "--max-new-tokens", "25")
    assert greedy.stdout == "Hello" + generate_text(tiny_model, "Hello", SamplingSettings(greedy=True, max_new_tokens=25)).text + "\n"


def test_cli_bad_input_exits_2_with_a_message_naming_the_parameter(tiny_model_dir):
    for flags, message in [
        (["--top-k", "-5"], "error: --top-k must be an integer from 0 to 50257 (got '-5')\n"),
        (["--temperature", "inf"], "error: --temperature must be a number from 0.01 to 5.0 (got 'inf')\n"),
        (["--max-new-tokens", "2000"], "error: --max-new-tokens must be an integer from 1 to 1024 (got '2000')\n"),
        (["--seed", "abc"], "error: --seed must be an integer from 0 to 4294967295 (got 'abc')\n"),
    ]:
        result = run_cli("Hello", "--model", str(tiny_model_dir), *flags)
        assert (result.returncode, result.stderr, result.stdout) == (2, message, "")  # refused before loading anything
    result = run_cli("bell\x07", "--model", str(tiny_model_dir))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.endswith("error: the prompt contains an unsupported character U+0007 at position 4\n")


def test_cli_reports_a_missing_model_folder(tmp_path):
    result = run_cli("Hello", "--model", str(tmp_path / "gpt2"))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.endswith(f"error: model '{tmp_path / 'gpt2'}' is neither a folder nor one of gpt2, bundled, modelscope:ID, hf:ID\n")


def test_offline_the_cli_prints_only_the_continuation_and_starts_fast_the_second_time(tmp_path, monkeypatch):
    # No hub can be resolved here (nor in CI): the first run probes them, the second remembers.
    monkeypatch.setenv("GPT2DEMO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GPT2DEMO_OFFLINE", raising=False)
    runs = [run_cli("Hi", "--max-new-tokens", "5", "--seed", "1") for _ in range(2)]
    for result in runs:
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("Hi") and result.stdout.count("\n") == 1 and "[gpt2demo]" not in result.stdout
    assert "modelscope:AI-ModelScope/gpt2: unreachable" in runs[0].stderr
    assert "modelscope:AI-ModelScope/gpt2: remembered" in runs[1].stderr
    assert runs[0].stdout == runs[1].stdout  # the same bundled model and seed


def test_cli_precision_int8_reaches_the_engine_and_is_refused_off_the_cpu(tiny_model_dir):
    from gpt2demo.model import load_model

    int8_model = load_model(str(tiny_model_dir), "cpu", "int8")
    result = run_cli(TUTORIAL_PROMPT, "--model", str(tiny_model_dir), "--precision", "int8", "--greedy", "--max-new-tokens", "20")
    assert result.returncode == 0, result.stderr
    expected = generate_text(int8_model, TUTORIAL_PROMPT, SamplingSettings(greedy=True, max_new_tokens=20)).text
    assert result.stdout == f"{TUTORIAL_PROMPT}{expected}\n"
    assert "cpu int8, loaded in" in result.stderr  # the engine's "model ready" line
    refused = run_cli("Hello", "--model", str(tiny_model_dir), "--precision", "int8", "--device", "cuda")
    assert (refused.returncode, refused.stdout) == (2, "")
    assert refused.stderr.endswith("error: --precision int8 runs on the CPU only (device here: cuda); "
                                   "use --precision float32 there\n")
    for flags in (["--precision", "int4"], ["--precision", "int8", "--engine", "http://127.0.0.1:9/v1"]):
        result = run_cli("Hello", *flags)
        assert (result.returncode, result.stdout) == (2, "") and "--precision" in result.stderr
