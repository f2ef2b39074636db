import subprocess
import sys

from gpt2demo.engine import generate_text
from gpt2demo.settings import SamplingSettings

from conftest import TUTORIAL_IDS, TUTORIAL_PROMPT


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "gpt2demo", *args], capture_output=True, text=True, timeout=300)


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
        (["--top-k", "-5"], "top_k must be an integer from 0 to 50257 (got '-5')"),
        (["--temperature", "inf"], "temperature must be a number from 0.01 to 5.0"),
        (["--max-new-tokens", "2000"], "max_new_tokens must be an integer from 1 to 1024"),
        (["--seed", "abc"], "seed must be an integer"),
    ]:
        result = run_cli("Hello", "--model", str(tiny_model_dir), *flags)
        assert result.returncode == 2 and message in result.stderr and result.stdout == ""
    result = run_cli("bell\x07", "--model", str(tiny_model_dir))
    assert result.returncode == 2 and "unsupported character U+0007" in result.stderr


def test_cli_reports_a_missing_model_folder(tmp_path):
    result = run_cli("Hello", "--model", str(tmp_path / "gpt2"))
    assert result.returncode == 1
    assert "is neither a folder nor one of gpt2, bundled" in result.stderr
