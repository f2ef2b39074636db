"""Model sources. Only the network edge is replaced: the two libraries' snapshot_download."""

import shutil

import huggingface_hub
import modelscope
import pytest

from gpt2demo import sources
from gpt2demo.engine import load_from_folder
from gpt2demo.sources import COMPLETE_MARKER, MANUAL_FETCH_COMMAND, ModelSourceError, check_model_folder, resolve_source


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GPT2DEMO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GPT2DEMO_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.chdir(tmp_path)  # so a ./gpt2 folder of the developer's is not picked up
    return tmp_path / "cache"


def fake_hub(model_dir, calls, name, fail=None):
    """A snapshot_download that 'downloads' the stand-in checkpoint, or fails like the network does."""

    def snapshot_download(model_id, local_dir=None, allow_patterns=None, **kwargs):
        calls.append((name, model_id, local_dir, tuple(allow_patterns or ())))
        if fail:
            raise fail
        for path in model_dir.iterdir():
            if any(path.match(p) for p in allow_patterns):
                shutil.copyfile(path, f"{local_dir}/{path.name}")
        return local_dir

    return snapshot_download


def refuse_network(name):
    def snapshot_download(*args, **kwargs):
        raise AssertionError(f"{name} was called although the model is cached")

    return snapshot_download


def test_default_uses_the_cache_without_any_network_call(cache, tiny_model_dir, monkeypatch):
    folder = cache / "modelscope" / "AI-ModelScope--gpt2"
    shutil.copytree(tiny_model_dir, folder)
    (folder / COMPLETE_MARKER).write_text("ok\n")
    monkeypatch.setattr(modelscope, "snapshot_download", refuse_network("modelscope"))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse_network("huggingface_hub"))
    source = resolve_source("gpt2")
    assert (source.path, source.kind, source.name) == (folder, "modelscope", "modelscope:AI-ModelScope/gpt2")


def test_failing_modelscope_falls_through_to_hugging_face(cache, tiny_model_dir, monkeypatch):
    calls = []
    monkeypatch.setattr(modelscope, "snapshot_download", fake_hub(tiny_model_dir, calls, "ms", fail=ConnectionError("no route")))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_hub(tiny_model_dir, calls, "hf"))
    source = resolve_source("gpt2")
    folder = cache / "huggingface" / "openai-community--gpt2"
    assert (source.path, source.kind) == (folder, "huggingface")
    assert [(c[0], c[1], c[2]) for c in calls] == [("ms", "AI-ModelScope/gpt2", str(cache / "modelscope" / "AI-ModelScope--gpt2")), ("hf", "openai-community/gpt2", str(folder))]
    assert (folder / COMPLETE_MARKER).is_file()
    loaded = load_from_folder(source, __import__("torch").device("cpu"))  # the real from_pretrained path
    assert loaded.encode("Hello world") == [15496, 995]


def test_both_hubs_failing_without_bundled_model_says_what_was_tried(cache, tiny_model_dir, monkeypatch, tmp_path):
    monkeypatch.setattr(sources, "BUNDLED_DIR", tmp_path / "no-bundled-model")
    monkeypatch.setattr(modelscope, "snapshot_download", fake_hub(tiny_model_dir, [], "ms", fail=ConnectionError("modelscope.cn unreachable")))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_hub(tiny_model_dir, [], "hf", fail=OSError("huggingface.co unreachable")))
    with pytest.raises(ModelSourceError) as error:
        resolve_source("gpt2")
    message = str(error.value)
    assert "modelscope:AI-ModelScope/gpt2 could not be downloaded (ConnectionError: modelscope.cn unreachable)" in message
    assert "huggingface:openai-community/gpt2 could not be downloaded (OSError: huggingface.co unreachable)" in message
    assert MANUAL_FETCH_COMMAND in message


def test_both_hubs_failing_falls_back_to_the_bundled_model_with_a_notice(cache, tiny_model_dir, monkeypatch):
    monkeypatch.setattr(sources, "BUNDLED_DIR", tiny_model_dir)
    monkeypatch.setattr(modelscope, "snapshot_download", fake_hub(tiny_model_dir, [], "ms", fail=ConnectionError("down")))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_hub(tiny_model_dir, [], "hf", fail=ConnectionError("down")))
    source = resolve_source("gpt2")
    assert (source.path, source.kind) == (tiny_model_dir, "bundled")
    assert "small offline model" in source.fallback_notice and MANUAL_FETCH_COMMAND in source.fallback_notice


def test_offline_mode_makes_no_download_attempt(cache, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("GPT2DEMO_OFFLINE", "1")
    monkeypatch.setattr(sources, "BUNDLED_DIR", tiny_model_dir)
    monkeypatch.setattr(modelscope, "snapshot_download", refuse_network("modelscope"))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse_network("huggingface_hub"))
    assert resolve_source("gpt2").kind == "bundled"


def test_an_interrupted_download_is_never_loaded_and_is_resumed(cache, tiny_model_dir, monkeypatch):
    calls = []
    interrupted = fake_hub(tiny_model_dir, calls, "ms")

    def half_then_fail(model_id, local_dir=None, allow_patterns=None, **kwargs):
        shutil.copyfile(tiny_model_dir / "config.json", f"{local_dir}/config.json")
        raise ConnectionResetError("connection lost at 40%")

    monkeypatch.setattr(modelscope, "snapshot_download", half_then_fail)
    with pytest.raises(ModelSourceError, match="connection lost at 40%"):
        resolve_source("modelscope:AI-ModelScope/gpt2")
    folder = cache / "modelscope" / "AI-ModelScope--gpt2"
    assert (folder / "config.json").is_file() and not (folder / COMPLETE_MARKER).exists()
    monkeypatch.setattr(modelscope, "snapshot_download", interrupted)
    source = resolve_source("modelscope:AI-ModelScope/gpt2")  # the next try downloads again into the same folder
    assert source.path == folder and (folder / COMPLETE_MARKER).is_file() and len(calls) == 1


def test_a_download_missing_files_is_reported_and_not_marked_complete(cache, tiny_model_dir, tmp_path, monkeypatch):
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copyfile(tiny_model_dir / "config.json", partial / "config.json")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_hub(partial, [], "hf"))
    with pytest.raises(ModelSourceError, match="has no weights file"):
        resolve_source("hf:someone/broken")
    assert not (cache / "huggingface" / "someone--broken" / COMPLETE_MARKER).exists()


def test_local_folder_checks_name_the_missing_file(tmp_path, tiny_model_dir):
    folder = tmp_path / "gpt2"
    shutil.copytree(tiny_model_dir, folder)
    check_model_folder(folder)
    (folder / "merges.txt").unlink()
    with pytest.raises(ModelSourceError, match="has no tokenizer files"):
        resolve_source(str(folder))
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelSourceError, match="has no weights file"):
        resolve_source(str(folder))
    (folder / "config.json").unlink()
    with pytest.raises(ModelSourceError, match="has no config.json"):
        resolve_source(str(folder))


def test_a_corrupt_weights_file_gives_a_message_naming_the_folder(tmp_path, tiny_model_dir):
    folder = tmp_path / "corrupt"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "model.safetensors").write_bytes(b"\x00not a safetensors file")
    source = resolve_source(str(folder))
    with pytest.raises(ModelSourceError, match=f"model folder {folder} could not be loaded"):
        load_from_folder(source, __import__("torch").device("cpu"))


def test_unknown_spec_lists_the_accepted_forms(cache):
    with pytest.raises(ModelSourceError, match="neither a folder nor one of gpt2, bundled, modelscope:ID, hf:ID"):
        resolve_source("no-such-thing")
