"""Turn a model spec into a local folder; the only module that touches the network.

Specs:
  ./path/to/folder   a transformers checkpoint (what `modelscope download ... --local_dir gpt2` makes)
  modelscope:ID      downloaded with modelscope's snapshot_download into our cache
  hf:ID              downloaded with huggingface_hub's snapshot_download into our cache
  gpt2               the default: a cached GPT-2 with no network call, else ModelScope
                     AI-ModelScope/gpt2, else Hugging Face openai-community/gpt2, else the
                     small offline model bundled with the package (if present)
  bundled            the small offline model bundled with the package

Offline, a start must not wait: a hub whose name cannot be resolved or whose port
cannot be reached within PROBE_SECONDS is skipped before its library is called (the
ModelScope client retries a failed lookup with back-off, 1 + 2 + 4 s and more), and
a failed attempt is remembered in the cache folder for REMEMBER_SECONDS, so the next
start goes straight to the bundled model. `retry=True` (app.py and the CLI's
--retry-download, or GPT2DEMO_RETRY=1) tries the hubs again at once.

Diagnostics go to stderr, one short line per source tried: stdout is the CLI's text.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from gpt2demo.errors import ModelSourceError
from gpt2demo.serving.interface import SourceAttempt

BUNDLED_DIR = Path(__file__).parent / "bundled"
MODELSCOPE_GPT2 = "AI-ModelScope/gpt2"
HF_GPT2 = "openai-community/gpt2"
COMPLETE_MARKER = ".gpt2demo-complete"  # written only after a download finished and was checked
FAILURES_FILE = "unreachable-hubs.json"  # in the cache folder: hubs that failed lately
MANUAL_FETCH_COMMAND = "modelscope download --model AI-ModelScope/gpt2 --local_dir gpt2 && python app.py --model ./gpt2"
PROBE_SECONDS = 3.0  # to resolve a hub's name and open a connection to it
REMEMBER_SECONDS = 15 * 60  # how long a failed hub is skipped without trying
DETAIL_CHARS = 160  # of a library's error, kept for the page's "details"

# Only what loading needs: GPT-2's repos also hold TF, Flax, ONNX and Rust copies.
ALLOW_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors"]
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILE_SETS = (("tokenizer.json",), ("vocab.json", "merges.txt"), ("vocab.txt",))


@dataclass(frozen=True)
class ResolvedSource:
    """A local checkpoint folder and where it came from."""

    path: Path
    kind: str  # "folder", "modelscope", "huggingface" or "bundled"
    name: str  # what the model panel calls it: "modelscope:AI-ModelScope/gpt2", "bundled", a folder's own name
    fallback: tuple[SourceAttempt, ...] = ()  # set when the default spec had to fall back to the bundled model


def log(text: str) -> None:
    print(f"[gpt2demo] {text}", file=sys.stderr, flush=True)


def cache_root() -> Path:
    """Where downloads live: $GPT2DEMO_CACHE, else ~/.cache/gpt2demo."""
    return Path(os.environ.get("GPT2DEMO_CACHE", Path.home() / ".cache" / "gpt2demo"))


def _env_on(*names: str) -> bool:
    return any(os.environ.get(name, "") in ("1", "true", "True") for name in names)


def offline_requested() -> bool:
    """HF_HUB_OFFLINE=1 or GPT2DEMO_OFFLINE=1 skips every download attempt."""
    return _env_on("GPT2DEMO_OFFLINE", "HF_HUB_OFFLINE")


def shorten(text: str, limit: int = DETAIL_CHARS, folder: Path | None = None, name: str = "") -> str:
    """One line of at most `limit` characters, with no path of this server in it.

    A library's error can run to a page, and it quotes the files it could not read: the
    model folder becomes its `name`, the download cache "$GPT2DEMO_CACHE" (the page shows
    these details to every visitor).
    """
    text = " ".join(str(text).split())
    places = {str(cache_root()): "$GPT2DEMO_CACHE"}
    if folder is not None:
        places.update({str(folder): name, str(folder.resolve()): name})
    for place, shown in sorted(places.items(), key=lambda item: -len(item[0])):
        text = text.replace(place, shown)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_model_folder(path: Path, name: str | None = None) -> None:
    """Raise ModelSourceError naming the first file a checkpoint folder is missing."""
    name = name or path.name
    if not path.is_dir():
        raise ModelSourceError("no_folder", folder=name)
    if not (path / "config.json").is_file():
        raise ModelSourceError("no_config", folder=name)
    if not any((path / file).is_file() for file in WEIGHT_FILES):
        raise ModelSourceError("no_weights", folder=name, wanted=" or ".join(WEIGHT_FILES))
    if not any(all((path / file).is_file() for file in files) for files in TOKENIZER_FILE_SETS):
        raise ModelSourceError("no_tokenizer", folder=name, wanted=" or ".join("+".join(f) for f in TOKENIZER_FILE_SETS))


# ---------------------------------------------------------------- the network edge


def hub_host(hub: str) -> str:
    """The host a hub's library talks to (their own environment variables move it)."""
    if hub == "modelscope":
        return os.environ.get("MODELSCOPE_DOMAIN", "www.modelscope.cn").split("://")[-1].split("/")[0]
    return urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"


def probe_hub(host: str, port: int = 443, seconds: float = PROBE_SECONDS) -> str | None:
    """None if `host` resolves and accepts a connection within `seconds`, else why not.

    The lookup runs in a thread so a resolver that hangs cannot hold the start.
    """
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=seconds):
                outcome.append(None)
        except socket.gaierror as error:
            outcome.append(f"{host}: name not resolved ({error.strerror or error})")
        except OSError as error:
            outcome.append(f"{host}:{port}: {error.strerror or type(error).__name__}")

    thread = threading.Thread(target=attempt, name="gpt2demo-hub-probe", daemon=True)
    thread.start()
    thread.join(seconds + 0.5)
    return outcome[0] if outcome else f"{host}: no answer within {seconds:g} s"


def _snapshot_download(hub: str, model_id: str, folder: Path, patterns: list[str]) -> None:
    # The network edge: tests replace the two libraries' snapshot_download and probe_hub, nothing else.
    if hub == "modelscope":
        from modelscope import snapshot_download

        snapshot_download(model_id, local_dir=str(folder), allow_patterns=patterns)
    else:
        from huggingface_hub import snapshot_download

        snapshot_download(model_id, local_dir=str(folder), allow_patterns=patterns)


# ---------------------------------------------------------------- failures remembered


def _failures_path() -> Path:
    return cache_root() / FAILURES_FILE


def recent_failure(hub: str, now: float | None = None) -> dict | None:
    """The hub's failure within REMEMBER_SECONDS, as recorded, or None."""
    try:
        failures = json.loads(_failures_path().read_text())
        failure = failures.get(hub)
    except (OSError, ValueError, AttributeError):
        return None
    now = time.time() if now is None else now
    if not isinstance(failure, dict) or not 0 <= now - float(failure.get("at", 0)) < REMEMBER_SECONDS:
        return None
    return failure


def remember_failure(hub: str, detail: str | None) -> None:
    """Record (detail) or clear (None) a hub's failure; a cache folder we cannot write only costs the memory."""
    path = _failures_path()
    try:
        failures = json.loads(path.read_text()) if path.is_file() else {}
        if not isinstance(failures, dict):
            failures = {}
    except (OSError, ValueError):
        failures = {}
    if detail is None:
        failures.pop(hub, None)
    else:
        failures[hub] = {"at": time.time(), "detail": detail}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(failures))
    except OSError:
        pass


def forget_failures() -> None:
    """Try every hub again at the next start."""
    _failures_path().unlink(missing_ok=True)


# ---------------------------------------------------------------- downloads


def _download_folder(hub: str, model_id: str) -> Path:
    # One folder per hub and id, so a half download is never mistaken for another model.
    return cache_root() / hub / re.sub(r"[^A-Za-z0-9._-]+", "--", model_id)


def _is_complete(folder: Path) -> bool:
    return (folder / COMPLETE_MARKER).is_file()


def download(hub: str, model_id: str, retry: bool = False) -> Path:
    """Fetch a checkpoint into the cache (resuming a partial one) and mark it complete.

    A folder without the completion marker is never loaded, so an interrupted
    download is resumed by the next call instead of being read half-written.

    Raises:
        ModelSourceError: code "offline", "remembered", "unreachable" or "download".
    """
    folder = _download_folder(hub, model_id)
    source = f"{hub}:{model_id}"
    if _is_complete(folder):
        return folder
    if offline_requested():
        raise ModelSourceError("offline", source=source)
    failure = None if retry else recent_failure(hub)
    if failure is not None:
        raise ModelSourceError("remembered", source=source, detail=str(failure.get("detail", "")),
                               minutes=max(1, round((time.time() - float(failure["at"])) / 60)))
    unreachable = probe_hub(hub_host(hub))
    if unreachable is not None:
        remember_failure(hub, unreachable)
        raise ModelSourceError("unreachable", source=source, detail=unreachable)
    log(f"downloading {source} ...")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        _snapshot_download(hub, model_id, folder, ALLOW_PATTERNS)
        if not any((folder / name).is_file() for name in WEIGHT_FILES):
            # Older repos ship only the PyTorch pickle.
            _snapshot_download(hub, model_id, folder, ["pytorch_model.bin"])
    except Exception as error:  # network, auth, missing repo: all end the same way for the user
        detail = shorten(f"{type(error).__name__}: {error}")
        remember_failure(hub, detail)
        raise ModelSourceError("download", source=source, detail=detail) from error
    check_model_folder(folder, source)
    (folder / COMPLETE_MARKER).write_text("ok\n")
    remember_failure(hub, None)
    log(f"downloaded {source}")
    return folder


DEFAULT_CHAIN = (("modelscope", MODELSCOPE_GPT2), ("huggingface", HF_GPT2))


def _resolve_default(retry: bool) -> ResolvedSource:
    # A cached copy first, so a warm start makes no network call at all.
    for hub, model_id in DEFAULT_CHAIN:
        folder = _download_folder(hub, model_id)
        if _is_complete(folder):
            return ResolvedSource(folder, hub, f"{hub}:{model_id}")
    tried: list[SourceAttempt] = []
    for hub, model_id in DEFAULT_CHAIN:
        try:
            return ResolvedSource(download(hub, model_id, retry), hub, f"{hub}:{model_id}")
        except ModelSourceError as error:
            attempt = SourceAttempt(error.facts["source"], error.code, error.facts.get("detail", ""))
            tried.append(attempt)
            log(f"{attempt.source}: {attempt.kind}" + (f" ({shorten(attempt.detail, 80)})" if attempt.detail else ""))
    if (BUNDLED_DIR / "config.json").is_file():
        log("GPT-2 could not be had; using the small offline model bundled with gpt2demo "
            f"(much weaker text). To get GPT-2: {MANUAL_FETCH_COMMAND}")
        return ResolvedSource(BUNDLED_DIR, "bundled", "bundled", fallback=tuple(tried))
    raise ModelSourceError("unavailable", tried=[(a.source, a.kind, a.detail) for a in tried], command=MANUAL_FETCH_COMMAND)


def resolve_source(spec: str, retry: bool | None = None) -> ResolvedSource:
    """Turn a model spec into a checked local folder, downloading if needed.

    Args:
        spec: a folder, "modelscope:ID", "hf:ID", "gpt2" or "bundled".
        retry: try hubs that failed lately again now (default: $GPT2DEMO_RETRY).
    Raises:
        ModelSourceError: with what was tried and how to fix it.
    """
    retry = _env_on("GPT2DEMO_RETRY") if retry is None else retry
    spec = spec.strip()
    if spec.startswith("modelscope:"):
        return ResolvedSource(download("modelscope", spec.removeprefix("modelscope:"), retry), "modelscope", spec)
    if spec.startswith("hf:"):
        return ResolvedSource(download("huggingface", spec.removeprefix("hf:"), retry), "huggingface", spec)
    if spec == "bundled":
        check_model_folder(BUNDLED_DIR, "bundled")
        return ResolvedSource(BUNDLED_DIR, "bundled", "bundled")
    folder = Path(spec).expanduser()
    # An existing folder wins, so the tutorial's `--local_dir gpt2` folder is used as it is.
    if folder.is_dir():
        check_model_folder(folder)
        return ResolvedSource(folder.resolve(), "folder", folder.resolve().name)
    if spec == "gpt2":
        return _resolve_default(retry)
    raise ModelSourceError("unknown_spec", spec=spec[:80])
