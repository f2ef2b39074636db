"""Turn a model spec into a local folder; the only module that touches the network.

Specs:
  ./path/to/folder   a transformers checkpoint (what `modelscope download ... --local_dir gpt2` makes)
  modelscope:ID      downloaded with modelscope's snapshot_download into our cache
  hf:ID              downloaded with huggingface_hub's snapshot_download into our cache
  gpt2               the default: a cached GPT-2 with no network call, else ModelScope
                     AI-ModelScope/gpt2, else Hugging Face openai-community/gpt2, else the
                     small offline model bundled with the package (if present)
  bundled            the small offline model bundled with the package
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from gpt2demo.settings import bilingual

BUNDLED_DIR = Path(__file__).parent / "bundled"
MODELSCOPE_GPT2 = "AI-ModelScope/gpt2"
HF_GPT2 = "openai-community/gpt2"
COMPLETE_MARKER = ".gpt2demo-complete"  # written only after a download finished and was checked
MANUAL_FETCH_COMMAND = "modelscope download --model AI-ModelScope/gpt2 --local_dir gpt2 && python app.py --model ./gpt2"

# Only what loading needs: GPT-2's repos also hold TF, Flax, ONNX and Rust copies.
ALLOW_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors"]
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILE_SETS = (("tokenizer.json",), ("vocab.json", "merges.txt"), ("vocab.txt",))


class ModelSourceError(RuntimeError):
    """A model could not be found, fetched or read; the message says what was tried."""


@dataclass(frozen=True)
class ResolvedSource:
    """A local checkpoint folder and where it came from."""

    path: Path
    kind: str  # "folder", "modelscope", "huggingface" or "bundled"
    name: str  # what to call it in the model panel, e.g. "modelscope:AI-ModelScope/gpt2"
    fallback_notice: str = ""  # set when the default spec had to fall back to the bundled model
    tried: list[str] = field(default_factory=list)


def cache_root() -> Path:
    """Where downloads live: $GPT2DEMO_CACHE, else ~/.cache/gpt2demo."""
    return Path(os.environ.get("GPT2DEMO_CACHE", Path.home() / ".cache" / "gpt2demo"))


def offline_requested() -> bool:
    """HF_HUB_OFFLINE=1 or GPT2DEMO_OFFLINE=1 skips every download attempt."""
    return any(os.environ.get(name, "") in ("1", "true", "True") for name in ("GPT2DEMO_OFFLINE", "HF_HUB_OFFLINE"))


def check_model_folder(path: Path) -> None:
    """Raise ModelSourceError naming the first file a checkpoint folder is missing."""
    if not path.is_dir():
        raise ModelSourceError(f"model folder {path} does not exist")
    if not (path / "config.json").is_file():
        raise ModelSourceError(f"model folder {path} has no config.json")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise ModelSourceError(f"model folder {path} has no weights file ({' or '.join(WEIGHT_FILES)})")
    if not any(all((path / name).is_file() for name in names) for names in TOKENIZER_FILE_SETS):
        wanted = " or ".join("+".join(names) for names in TOKENIZER_FILE_SETS)
        raise ModelSourceError(f"model folder {path} has no tokenizer files ({wanted})")


def _download_folder(hub: str, model_id: str) -> Path:
    # One folder per hub and id, so a half download is never mistaken for another model.
    return cache_root() / hub / re.sub(r"[^A-Za-z0-9._-]+", "--", model_id)


def _is_complete(folder: Path) -> bool:
    return (folder / COMPLETE_MARKER).is_file()


def _snapshot_download(hub: str, model_id: str, folder: Path, patterns: list[str]) -> None:
    # The network edge: tests replace these two library functions and nothing else.
    if hub == "modelscope":
        from modelscope import snapshot_download

        snapshot_download(model_id, local_dir=str(folder), allow_patterns=patterns)
    else:
        from huggingface_hub import snapshot_download

        snapshot_download(model_id, local_dir=str(folder), allow_patterns=patterns)


def download(hub: str, model_id: str) -> Path:
    """Fetch a checkpoint into the cache (resuming a partial one) and mark it complete.

    A folder without the completion marker is never loaded, so an interrupted
    download is resumed by the next call instead of being read half-written.
    """
    folder = _download_folder(hub, model_id)
    if _is_complete(folder):
        return folder
    if offline_requested():
        raise ModelSourceError(f"{hub}:{model_id} is not in the cache and offline mode is on")
    print(f"[gpt2demo] downloading {hub}:{model_id} into {folder} ...", flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        _snapshot_download(hub, model_id, folder, ALLOW_PATTERNS)
        if not any((folder / name).is_file() for name in WEIGHT_FILES):
            # Older repos ship only the PyTorch pickle.
            _snapshot_download(hub, model_id, folder, ["pytorch_model.bin"])
    except ModelSourceError:
        raise
    except Exception as error:  # network, auth, missing repo: all end the same way for the user
        raise ModelSourceError(f"{hub}:{model_id} could not be downloaded ({type(error).__name__}: {error})") from error
    check_model_folder(folder)
    (folder / COMPLETE_MARKER).write_text("ok\n")
    print(f"[gpt2demo] downloaded {hub}:{model_id}", flush=True)
    return folder


def _resolve_default() -> ResolvedSource:
    # A cached copy first, so a warm start makes no network call at all.
    for hub, model_id, kind in (("modelscope", MODELSCOPE_GPT2, "modelscope"), ("huggingface", HF_GPT2, "huggingface")):
        folder = _download_folder(hub, model_id)
        if _is_complete(folder):
            return ResolvedSource(folder, kind, f"{hub}:{model_id}")
    tried = []
    for hub, model_id in (("modelscope", MODELSCOPE_GPT2), ("huggingface", HF_GPT2)):
        try:
            return ResolvedSource(download(hub, model_id), hub, f"{hub}:{model_id}", tried=tried)
        except ModelSourceError as error:
            tried.append(str(error))
            print(f"[gpt2demo] {error}", flush=True)
    attempts = "; ".join(tried)
    if (BUNDLED_DIR / "config.json").is_file():
        notice = bilingual(
            f"GPT-2 could not be had ({attempts}). Using the small offline model bundled with gpt2demo; "
            f"its text is much weaker than GPT-2's. To get real GPT-2: {MANUAL_FETCH_COMMAND}",
            f"无法获取 GPT-2（{attempts}）。正在使用 gpt2demo 自带的小型离线模型，生成质量远不如 GPT-2。"
            f"获取真正的 GPT-2：{MANUAL_FETCH_COMMAND}",
        )
        print(f"[gpt2demo] {notice}", flush=True)
        return ResolvedSource(BUNDLED_DIR, "bundled", "bundled", fallback_notice=notice, tried=tried)
    raise ModelSourceError(f"GPT-2 could not be had. Tried: {attempts}. To fetch it by hand: {MANUAL_FETCH_COMMAND}")


def resolve_source(spec: str) -> ResolvedSource:
    """Turn a model spec into a checked local folder, downloading if needed.

    Args:
        spec: a folder, "modelscope:ID", "hf:ID", "gpt2" or "bundled".
    Raises:
        ModelSourceError: with what was tried and how to fix it.
    """
    spec = spec.strip()
    if spec.startswith("modelscope:"):
        model_id = spec.removeprefix("modelscope:")
        return ResolvedSource(download("modelscope", model_id), "modelscope", spec)
    if spec.startswith("hf:"):
        model_id = spec.removeprefix("hf:")
        return ResolvedSource(download("huggingface", model_id), "huggingface", spec)
    if spec == "bundled":
        check_model_folder(BUNDLED_DIR)
        return ResolvedSource(BUNDLED_DIR, "bundled", "bundled")
    folder = Path(spec).expanduser()
    # An existing folder wins, so the tutorial's `--local_dir gpt2` folder is used as it is.
    if folder.is_dir():
        check_model_folder(folder)
        return ResolvedSource(folder.resolve(), "folder", str(folder))
    if spec == "gpt2":
        return _resolve_default()
    raise ModelSourceError(
        f"model {spec!r} is neither a folder nor one of gpt2, bundled, modelscope:ID, hf:ID"
    )
