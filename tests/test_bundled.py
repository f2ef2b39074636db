"""The bundled offline model: present, small, loads like GPT-2, and writes words.

No network and no corpus package needed: the held-out word list is committed in
tests/data/ (Austen's novels are public domain). Only the last test reads the
corpus, and it is skipped where the Debian package r-cran-janeaustenr is absent.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from gpt2demo.sources import BUNDLED_DIR as BUNDLED
from tools import corpus

HELDOUT_WORDS = Path(__file__).parent / "data" / "heldout_words.txt"
TUTORIAL_PROMPT = "Yesterday, a man named Jack said he saw an alien,"
MAX_BYTES = 20 * 1024 * 1024
REQUIRED = ("config.json", "generation_config.json", "model.safetensors",
            "tokenizer.json", "tokenizer_config.json")


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(BUNDLED)


@pytest.fixture(scope="module")
def model():
    return AutoModelForCausalLM.from_pretrained(BUNDLED).eval()


def test_files_exist_and_fit_in_20_mb():
    missing = [name for name in REQUIRED if not (BUNDLED / name).is_file()]
    assert missing == []
    total = sum(f.stat().st_size for f in BUNDLED.iterdir() if f.is_file())
    assert total <= MAX_BYTES, f"bundled/ holds {total} bytes"


def test_config_is_gpt2_with_eos_and_bos(tokenizer):
    config = json.loads((BUNDLED / "config.json").read_text())
    assert config["model_type"] == "gpt2"
    assert config["architectures"] == ["GPT2LMHeadModel"]
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert (config["eos_token_id"], config["bos_token_id"]) == (eos, eos)


def test_model_loads_as_fp32_gpt2(model):
    assert type(model).__name__ == "GPT2LMHeadModel"
    assert model.dtype == torch.float32


def test_tokenizer_round_trips_english_exactly(tokenizer):
    text = ("It is a truth universally acknowledged, that a single man in possession\n"
            "of a good fortune, must be in want of a wife.  \"Yes!\" said Jack -- 42%,\n\n"
            "café, naïve & 'quoted'; tabs\tand trailing space ")
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert tokenizer.eos_token_id not in ids  # plain text never yields the special id


def test_endoftext_encodes_to_the_eos_id(tokenizer):
    assert tokenizer.eos_token == tokenizer.bos_token == "<|endoftext|>"
    assert tokenizer("<|endoftext|>")["input_ids"] == [tokenizer.eos_token_id]
    ids = tokenizer("The end.<|endoftext|>Chapter")["input_ids"]
    assert ids.count(tokenizer.eos_token_id) == 1


def test_sample_is_mostly_real_words(tokenizer, model):
    """A seeded top-k=10 sample: >= 80% of its words occur in held-out Austen."""
    known = set(HELDOUT_WORDS.read_text().split())
    prompt = tokenizer(TUTORIAL_PROMPT, return_tensors="pt")
    torch.manual_seed(0)
    with torch.no_grad():
        # min_new_tokens holds back EOS so the sample is always exactly 200 tokens
        out = model.generate(**prompt, do_sample=True, top_k=10, top_p=1.0, temperature=1.0,
                             max_new_tokens=200, min_new_tokens=200,
                             pad_token_id=tokenizer.eos_token_id)
    new_ids = out[0, prompt["input_ids"].shape[1]:]  # (200,)
    assert len(new_ids) == 200
    sample_words = re.findall(r"[a-z]+", tokenizer.decode(new_ids).lower())
    assert len(sample_words) >= 100, sample_words
    real = sum(word in known for word in sample_words)
    assert real / len(sample_words) >= 0.80, (real, len(sample_words), sample_words)


def test_committed_word_list_matches_the_corpus_split():
    if not (corpus.JANEAUSTENR_DATA / "Rdata.rdx").exists():
        pytest.skip("corpus package r-cran-janeaustenr not installed")
    expected = sorted(corpus.words(corpus.load_split().heldout))
    assert HELDOUT_WORDS.read_text().split() == expected


def real_word_share(text: str, known: set[str]) -> tuple[int, float]:
    words = re.findall(r"[a-z]+", text.lower())
    return len(words), sum(word in known for word in words) / max(len(words), 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_an_empty_prompt_writes_prose_too(seed):
    """The model's own start for an empty prompt (gpt2demo.json: a paragraph break), not title-page capitals."""
    from gpt2demo.generation import generate_text
    from gpt2demo.model import load_model
    from gpt2demo.settings import SamplingSettings

    loaded = load_model("bundled", "cpu")
    assert loaded.start_token_ids == loaded.encode("\n\n")
    result = generate_text(loaded, "", SamplingSettings(top_k=10, max_new_tokens=200, seed=seed))
    count, share = real_word_share(result.text, set(HELDOUT_WORDS.read_text().split()))
    assert count >= 100 and share >= 0.80, (count, share, result.text[:300])


def test_the_demos_own_path_writes_mostly_real_words():
    """Through `--model bundled`: the same wrapper and generator the page and CLI use."""
    from gpt2demo.generation import generate_text
    from gpt2demo.model import load_model
    from gpt2demo.settings import SamplingSettings

    known = set(HELDOUT_WORDS.read_text().split())
    loaded = load_model("bundled", "cpu")
    assert (loaded.source.kind, loaded.window, loaded.vocab_size) == ("bundled", 512, 4096)
    result = generate_text(loaded, TUTORIAL_PROMPT, SamplingSettings(top_k=10, max_new_tokens=200, seed=0))
    sample_words = re.findall(r"[a-z]+", result.text.lower())
    assert len(sample_words) >= 100, (result.finish_reason, sample_words)
    real = sum(word in known for word in sample_words)
    assert real / len(sample_words) >= 0.80, (real, len(sample_words), sample_words)
