"""Each decode step's temporaries reuse memory already in place instead of faulting in fresh pages."""

import json
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# A class's 32 requests of the tutorial's prompt decoding 64 tokens each in int8, as
# bench/anchors.py runs them, in a process of its own: glibc's thresholds depend on the
# process's history, and this one must start from a model load. Prints the page faults
# of every step after the prompts are read.
CLASS_RUN = textwrap.dedent("""
    import json, resource, sys
    import torch
    torch.set_num_threads(1)
    from gpt2demo.generation import DecodeBatch, Generation
    from gpt2demo.model import load_model
    from gpt2demo.serving.interface import Request
    from gpt2demo.settings import SamplingSettings
    model = load_model(sys.argv[1], "cpu", "int8")
    batch = DecodeBatch(model)
    for seed in range(32):
        settings = SamplingSettings(top_k=10, max_new_tokens=64, seed=seed)
        batch.join(Generation(model, Request(settings, "Yesterday, a man named Jack said he saw an alien,")))
    faults = []
    while batch:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        batch.step()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(json.dumps(faults[2:]))
""")
LOGITS_PAGES = 32 * 50257 * 4 // 4096  # one (32, vocab) float tensor: 1570 pages of 4 KB


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the thresholds are glibc's")
def test_a_class_int8_step_faults_in_no_logits_sized_temporary(small_model_dir):
    run = subprocess.run([sys.executable, "-c", CLASS_RUN, str(small_model_dir)], capture_output=True, text=True,
                         timeout=600, cwd=REPO)
    assert run.returncode == 0, run.stderr[-2000:]
    faults = json.loads(run.stdout.strip().splitlines()[-1])
    # Most steps fault nothing: the cache's new positions fill a fresh page only every 16
    # positions (9216 pages then, at every row's head at once). With glibc's adaptive
    # thresholds most steps faulted 1570-4700 pages: one to three logits-sized temporaries.
    assert sorted(faults)[len(faults) // 2] < LOGITS_PAGES // 4, faults
