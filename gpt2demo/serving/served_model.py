"""The model a remote server serves, as this front end knows it: its tokenizer, window and facts.

The remote engine tokenizes, fits and decodes here, with the served model's own
tokenizer files, by the rules the local engine uses (generation.fit_prompt,
LoadedModel.encode/start_token_ids, TextStream), so a prompt becomes the same
token ids and the same tokens become the same text whichever engine runs. It
sends the server token ids, never text: vLLM's tokenizer would turn a typed
<|endoftext|> into the special token, where gpt2demo keeps it plain text.

No torch here: the web server's process stays free of it. The tokenizer is
transformers' AutoTokenizer (which does import torch), loaded only when a remote
engine starts, so `import app` still pulls in neither.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from gpt2demo.errors import BadRequest, ModelSourceError, excerpt
from gpt2demo.pieces import PieceTable
from gpt2demo.serving.interface import ModelFacts, PromptFit
from gpt2demo.settings import BOUNDS, SamplingSettings
from gpt2demo.sources import TOKENIZER_FILE_SETS, resolve_source
from gpt2demo.textstream import decodes_piecewise

MODEL_SETTINGS_FILE = "gpt2demo.json"  # as model.MODEL_SETTINGS_FILE: {"empty_prompt": text}
DEFAULT_WINDOW = 1024  # GPT-2's, when neither the server nor the config says
VLLM_MAX_TEMPERATURE = 2.0  # vLLM refuses more ("temperature must be in [0, 2]"); gpt2demo allows 5


def gpt2_parameters(config: dict) -> int:
    """GPT-2's parameter count from its config.json (embeddings tied), as LoadedModel.n_params counts it; 0 if unknown."""
    try:
        width, layers = int(config["n_embd"]), int(config["n_layer"])
        vocab, positions = int(config["vocab_size"]), int(config["n_positions"])
    except (KeyError, TypeError, ValueError):
        return 0  # not a GPT-2 config: the panel then says 0 rather than guess
    inner = int(config.get("n_inner") or 4 * width)
    attention = (width * 3 * width + 3 * width) + (width * width + width)  # c_attn, c_proj (weights + biases)
    mlp = (width * inner + inner) + (inner * width + width)  # c_fc, c_proj
    layer_norms = 2 * 2 * width  # ln_1, ln_2: weight + bias
    return vocab * width + positions * width + layers * (attention + mlp + layer_norms) + 2 * width  # + ln_f


@dataclass(frozen=True)
class TokenizerFolder:
    """Where the served model's tokenizer was found, and what the panel may call it."""

    path: Path
    name: str  # never a path: a folder's own name, or the spec


def find_tokenizer(spec: str) -> TokenizerFolder:
    """A folder with the model's tokenizer files: the spec's folder as it is, else sources.resolve_source(spec).

    A local folder needs only its tokenizer files (and, for the panel's facts,
    config.json): the weights live on the server.
    """
    folder = Path(spec).expanduser()
    if folder.is_dir():
        if not any(all((folder / name).is_file() for name in names) for names in TOKENIZER_FILE_SETS):
            raise ModelSourceError("no_tokenizer", folder=folder.resolve().name,
                                   wanted=" or ".join(" + ".join(names) for names in TOKENIZER_FILE_SETS))
        return TokenizerFolder(folder.resolve(), folder.resolve().name)
    resolved = resolve_source(spec)
    return TokenizerFolder(resolved.path, resolved.name)


def load_tokenizer(path: Path):
    from transformers import AutoTokenizer  # imports torch: only a remote engine's front end pays for it

    try:
        return AutoTokenizer.from_pretrained(path)
    except Exception as error:
        raise ModelSourceError("damaged", folder=path.name, part="tokenizer files",
                               detail=f"{type(error).__name__}: {error}"[:200]) from error


class ServedModel:
    """The served model's tokenizer and window; encode, fit and decode as the local engine does."""

    def __init__(self, tokenizer, folder: TokenizerFolder, served_name: str, window: int | None) -> None:
        """
        Args:
            served_name: the model's name in the server's /v1/models (what requests say).
            window: the server's context length (vLLM's max_model_len); None: the config's n_positions.
        """
        self.tokenizer = tokenizer
        self.folder = folder
        self.served_name = served_name
        self.config = self._read_json("config.json")
        self.window = int(window or self.config.get("n_positions") or DEFAULT_WINDOW)
        self.pieces = PieceTable(tokenizer)
        self.decodes_piecewise = decodes_piecewise(tokenizer)  # for its TextStreams
        self._lock = threading.Lock()  # page threads tokenize while the stream thread decodes

    def _read_json(self, name: str) -> dict:
        path = self.folder.path / name
        try:
            return json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError):
            return {}

    @property
    def vocab_size(self) -> int:
        return int(self.config.get("vocab_size") or len(self.tokenizer))

    @property
    def eos_token_id(self) -> int | None:
        return self.tokenizer.eos_token_id

    @property
    def start_token_ids(self) -> list[int]:
        """What an empty prompt starts from: the folder's gpt2demo.json, else <|endoftext|> (as LoadedModel)."""
        empty_prompt = self._read_json(MODEL_SETTINGS_FILE).get("empty_prompt")
        if isinstance(empty_prompt, str) and self.encode(empty_prompt):
            return self.encode(empty_prompt)
        for token_id in (self.tokenizer.bos_token_id, self.tokenizer.eos_token_id, self.tokenizer.cls_token_id):
            if token_id is not None:
                return [int(token_id)]
        return [0]

    def encode(self, text: str) -> list[int]:
        """Text to ids; special-token strings a user types (<|endoftext|>) stay plain text."""
        with self._lock:
            return self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]

    def decode(self, token_ids, skip_special_tokens: bool = True) -> str:
        """Ids to text (TextStream calls this too)."""
        with self._lock:
            return self.tokenizer.decode(list(token_ids), skip_special_tokens=skip_special_tokens)

    def fit(self, prompt_ids: list[int], max_new_tokens: int) -> PromptFit:
        """generation.fit_prompt's rule, without torch: keep the newest tokens of a prompt at or over the window."""
        ids = prompt_ids or self.start_token_ids
        window = self.window
        wanted = min(max_new_tokens, window - 1)
        cut_from = None
        if len(ids) >= window:
            keep = window - min(wanted, window // 2)
            cut_from, ids = len(ids), ids[-keep:]
        allowed = min(wanted, window - len(ids))
        return PromptFit(token_ids=tuple(ids), text=self.decode(ids), max_new_tokens=allowed, window=window,
                         cut_from=cut_from, lowered_from=max_new_tokens if allowed < max_new_tokens else None)

    def check_token_ids(self, parameter: str, token_ids) -> list[int]:
        """Token ids sent by a caller: integers of this model's vocabulary (generation.check_token_ids)."""
        ids = list(token_ids)
        if any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.vocab_size for i in ids):
            raise BadRequest("integer", parameter=parameter, low=0, high=self.vocab_size - 1, got=excerpt(ids))
        return ids

    def check_settings(self, settings: SamplingSettings) -> None:
        """What depends on the model and the server: top_k at most the vocabulary, temperature at most vLLM's 2."""
        if settings.top_k > self.vocab_size:
            raise BadRequest("integer", parameter="top_k", low=0, high=self.vocab_size, got=excerpt(settings.top_k))
        if not settings.greedy and settings.temperature > VLLM_MAX_TEMPERATURE:
            raise BadRequest("number", parameter="temperature", low=BOUNDS.temperature[0], high=VLLM_MAX_TEMPERATURE,
                             got=excerpt(settings.temperature))

    def facts(self, device: str, features: frozenset[str], load_seconds: float) -> ModelFacts:
        """What the model panel shows: the served name (a folder's own name, never its path) and the config's size."""
        return ModelFacts(
            name=shown_name(self.served_name),
            source="remote",
            device=device,
            precision="unknown",  # the server's --dtype; the OpenAI API does not tell
            parameters=gpt2_parameters(self.config),
            window=self.window,
            vocab_size=self.vocab_size,
            eos_token_id=self.eos_token_id,
            load_seconds=round(load_seconds, 2),
            features=features,
        )


def shown_name(served_name: str) -> str:
    """A served model's name as visitors may see it: vLLM names a model by its folder's path unless told otherwise."""
    folder = Path(served_name).expanduser()
    if served_name.startswith(("/", "~", ".")) or folder.is_dir():
        return folder.resolve().name if folder.is_dir() else folder.name
    return served_name
