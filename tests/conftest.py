"""Shared fixtures: stand-in GPT-2 checkpoints (real tokenizer, random weights) and engines on them."""

from __future__ import annotations

import pytest

from gpt2demo.model import LoadedModel, load_model
from gpt2demo.serving.local import LocalEngine
from tools.standin import GPT2_SMALL, TINY, build_standin

TUTORIAL_PROMPT = "Yesterday, a man named Jack said he saw an alien,"
TUTORIAL_IDS = [28065, 11, 257, 582, 3706, 3619, 531, 339, 2497, 281, 8756, 11]  # GPT-2's own ids
DEADLINE_SECONDS = 60  # anything still pending after this long is a hang


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A 2-layer, 64-wide GPT-2 with GPT-2's vocabulary and 1024-token window."""
    return build_standin(tmp_path_factory.mktemp("tiny-gpt2"), TINY, seed=0)


@pytest.fixture(scope="session")
def small_model_dir(tmp_path_factory):
    """GPT-2 small shapes (124M parameters), for tests where the real shapes matter."""
    return build_standin(tmp_path_factory.mktemp("gpt2-small"), GPT2_SMALL, seed=0)


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir) -> LoadedModel:
    return load_model(str(tiny_model_dir), "cpu")


def local_engine(model_dir, **options) -> LocalEngine:
    """A started LocalEngine on a model folder, ready (the caller closes it)."""
    engine = LocalEngine(str(model_dir), "cpu", **{"max_batch": 4, "queue_size": 8, **options}).start()
    state = engine.wait_ready_blocking(DEADLINE_SECONDS)
    assert state.phase == "ready", state.error
    return engine


@pytest.fixture
def engine(tiny_model_dir):
    """An in-process engine on the tiny model (its model is the process-wide tiny_model)."""
    engine = local_engine(tiny_model_dir)
    yield engine
    engine.close()
