"""The loaded model: loaded once per process, described without server paths."""

import threading

from gpt2demo.model import load_model


def test_the_model_is_loaded_once_under_concurrent_first_calls(tiny_model_dir, monkeypatch):
    from transformers import AutoModelForCausalLM

    calls = []
    original = AutoModelForCausalLM.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        calls.append(args[0])
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(counting))
    spec = str(tiny_model_dir) + "/"  # a new key for the same folder
    results = []
    threads = [threading.Thread(target=lambda: results.append(load_model(spec, "cpu"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert all(r is results[0] for r in results)
    assert results[0].model.training is False


def test_facts_name_source_device_and_size_but_no_path(tiny_model, tiny_model_dir):
    facts = tiny_model.facts()
    assert (facts.name, facts.source, facts.device, facts.precision, facts.window) == (tiny_model_dir.name, "folder", "cpu", "float32", 1024)
    assert (facts.parameters, facts.vocab_size, facts.eos_token_id, facts.fallback) == (3_382_080, 50257, 50256, ())
    assert str(tiny_model_dir.parent) not in repr(facts)
