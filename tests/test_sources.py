"""Model sources. Only the network edge is replaced: the two libraries' snapshot_download and the hub probe."""

import shutil

import huggingface_hub
import modelscope
import pytest

from gpt2demo import sources
from gpt2demo.model import load_from_folder
from gpt2demo.serving.interface import SourceAttempt
from gpt2demo.sources import COMPLETE_MARKER, MANUAL_FETCH_COMMAND, ModelSourceError, check_model_folder, resolve_source


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GPT2DEMO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GPT2DEMO_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("GPT2DEMO_RETRY", raising=False)
    monkeypatch.chdir(tmp_path)  # so a ./gpt2 folder of the developer's is not picked up
    monkeypatch.setattr(sources, "probe_hub", lambda host, *args: None)  # the hubs answer (the tests fake them)
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
    assert (error.value.code, error.value.facts) == ("unavailable", {"tried": [
        ("modelscope:AI-ModelScope/gpt2", "download", "ConnectionError: modelscope.cn unreachable"),
        ("huggingface:openai-community/gpt2", "download", "OSError: huggingface.co unreachable")], "command": MANUAL_FETCH_COMMAND})


def test_both_hubs_failing_falls_back_to_the_bundled_model_with_a_notice(cache, tiny_model_dir, monkeypatch):
    monkeypatch.setattr(sources, "BUNDLED_DIR", tiny_model_dir)
    monkeypatch.setattr(modelscope, "snapshot_download", fake_hub(tiny_model_dir, [], "ms", fail=ConnectionError("down")))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_hub(tiny_model_dir, [], "hf", fail=ConnectionError("down")))
    source = resolve_source("gpt2")
    assert (source.path, source.kind, source.name) == (tiny_model_dir, "bundled", "bundled")
    assert source.fallback == (SourceAttempt("modelscope:AI-ModelScope/gpt2", "download", "ConnectionError: down"),
                               SourceAttempt("huggingface:openai-community/gpt2", "download", "ConnectionError: down"))


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
    with pytest.raises(ModelSourceError) as error:
        resolve_source("modelscope:AI-ModelScope/gpt2")
    assert error.value.facts["detail"] == "ConnectionResetError: connection lost at 40%"
    folder = cache / "modelscope" / "AI-ModelScope--gpt2"
    assert (folder / "config.json").is_file() and not (folder / COMPLETE_MARKER).exists()
    monkeypatch.setattr(modelscope, "snapshot_download", interrupted)
    source = resolve_source("modelscope:AI-ModelScope/gpt2", retry=True)  # the next try downloads again into the same folder
    assert source.path == folder and (folder / COMPLETE_MARKER).is_file() and len(calls) == 1


def test_a_download_missing_files_is_reported_and_not_marked_complete(cache, tiny_model_dir, tmp_path, monkeypatch):
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copyfile(tiny_model_dir / "config.json", partial / "config.json")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_hub(partial, [], "hf"))
    with pytest.raises(ModelSourceError) as error:
        resolve_source("hf:someone/broken")
    assert (error.value.code, error.value.facts["folder"]) == ("no_weights", "huggingface:someone/broken")
    assert not (cache / "huggingface" / "someone--broken" / COMPLETE_MARKER).exists()


def test_local_folder_checks_name_the_missing_file(tmp_path, tiny_model_dir):
    folder = tmp_path / "gpt2"
    shutil.copytree(tiny_model_dir, folder)
    check_model_folder(folder)
    for missing, code in (("merges.txt", "no_tokenizer"), ("model.safetensors", "no_weights"), ("config.json", "no_config")):
        (folder / missing).unlink()
        with pytest.raises(ModelSourceError) as error:
            resolve_source(str(folder))
        assert (error.value.code, error.value.facts["folder"]) == (code, "gpt2")  # its name, not its path


def test_a_corrupt_weights_file_gives_a_message_naming_the_folder(tmp_path, tiny_model_dir):
    folder = tmp_path / "corrupt"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "model.safetensors").write_bytes(b"\x00not a safetensors file")
    source = resolve_source(str(folder))
    with pytest.raises(ModelSourceError) as error:
        load_from_folder(source, __import__("torch").device("cpu"))
    assert (error.value.code, error.value.facts["folder"], error.value.facts["part"]) == (
        "damaged", "corrupt", "model.safetensors or config.json")


def test_unknown_spec_lists_the_accepted_forms(cache):
    with pytest.raises(ModelSourceError) as error:
        resolve_source("no-such-thing")
    assert (error.value.code, error.value.facts) == ("unknown_spec", {"spec": "no-such-thing"})


def test_an_unreachable_hub_is_skipped_without_calling_its_library_and_remembered(cache, tiny_model_dir, monkeypatch):
    monkeypatch.setattr(sources, "BUNDLED_DIR", tiny_model_dir)
    probed = []
    monkeypatch.setattr(sources, "probe_hub", lambda host, *args: probed.append(host) or f"{host}: name not resolved")
    monkeypatch.setattr(modelscope, "snapshot_download", refuse_network("modelscope"))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse_network("huggingface_hub"))
    first = resolve_source("gpt2")
    assert [(a.source, a.kind, a.detail) for a in first.fallback] == [
        ("modelscope:AI-ModelScope/gpt2", "unreachable", "www.modelscope.cn: name not resolved"),
        ("huggingface:openai-community/gpt2", "unreachable", "huggingface.co: name not resolved")]
    second = resolve_source("gpt2")  # the next start goes straight to the bundled model
    assert [a.kind for a in second.fallback] == ["remembered", "remembered"] and len(probed) == 2
    resolve_source("gpt2", retry=True)  # --retry-download: the hubs are tried again now
    assert len(probed) == 4


def test_the_probe_names_a_host_that_cannot_be_resolved():
    assert sources.probe_hub("no-such-host.invalid", seconds=2.0).startswith("no-such-host.invalid: name not resolved")
