"""Do the teaching views slow generation down? Tokens/s with the views on and off.

Off: consume generate_steps() and do nothing else. On: also render, after every
step, what the "Inside each step" tab sends the page (token-view HTML, chart
data, cut-off line, step table, status) — every step, without the tab's
4-updates-a-second pacing, so this is the worst case.

GPT-2 small shapes (124M parameters, random weights: speed does not depend on
the weights' values) with GPT-2's real tokenizer, 100 new tokens, top-k = 10.
The machine is shared, so runs alternate (off, on, on, off, ...) and medians
are reported; the render time per step is also timed alone, which load hardly
moves. Prints a table; the last line is JSON.
Usage: python -m bench.views_overhead [--repeats 7] [--new-tokens 100]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch

from gpt2demo.generation import generate_steps
from gpt2demo.model import load_model
from gpt2demo.serving.interface import Request
from gpt2demo.settings import SamplingSettings
from gpt2demo.ui.views.inside import TokenView
from tools.standin import GPT2_SMALL, build_standin

PROMPT = "Yesterday, a man named Jack said he saw an alien,"
LIMIT_PERCENT = 10.0  # the views may cost at most this much of plain generation's tokens/s


def run(model, settings: SamplingSettings, views: bool) -> tuple[float, list[float]]:
    """Tokens/s of one generation, and the seconds spent rendering each step (empty when views are off)."""
    view = TokenView(PROMPT, settings, model.eos_token_id, settings.seed) if views else None
    render_seconds: list[float] = []
    tokens = 0
    started = time.perf_counter()
    for step in generate_steps(model, Request(settings, PROMPT)):
        tokens += step.token_id is not None
        if view is not None:
            render_started = time.perf_counter()
            view.add(step)
            view.outputs("en")  # exactly what the tab yields to the page for this step
            render_seconds.append(time.perf_counter() - render_started)
    return tokens / (time.perf_counter() - started), render_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="runs of each kind; medians are reported")
    parser.add_argument("--new-tokens", type=int, default=100)
    args = parser.parse_args()
    settings = SamplingSettings(max_new_tokens=args.new_tokens, top_k=10, seed=0)
    with tempfile.TemporaryDirectory() as folder:
        build_standin(folder, GPT2_SMALL)
        model = load_model(folder, "cpu")
        run(model, settings, views=True)  # warm-up: first-call allocations, pandas, tokenizer caches
        rates = {"off": [], "on": []}
        render_ms: list[float] = []
        for repeat in range(args.repeats):
            order = ("off", "on") if repeat % 2 == 0 else ("on", "off")  # neither always runs first
            for kind in order:
                rate, seconds = run(model, settings, views=kind == "on")
                rates[kind].append(rate)
                render_ms.extend(1000 * s for s in seconds)
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    overhead = 100 * (off - on) / off
    step_ms = 1000 / off
    render = statistics.median(render_ms)
    print(f"GPT-2 small shapes (124M), {args.new_tokens} new tokens, top-k 10, torch threads {torch.get_num_threads()}, "
          f"median of {args.repeats} alternating runs")
    for kind in ("off", "on"):
        print(f"  views {kind:3s} {statistics.median(rates[kind]):6.2f} tok/s   runs: {', '.join(f'{v:.2f}' for v in rates[kind])}")
    print(f"  overhead {overhead:+.1f}% of tokens/s (limit {LIMIT_PERCENT:.0f}%)")
    print(f"  rendering alone: median {render:.2f} ms per step, {100 * render / step_ms:.1f}% of a {step_ms:.1f} ms step")
    print(json.dumps({
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "views_off_tok_s": round(off, 2),
        "views_on_tok_s": round(on, 2),
        "overhead_percent": round(overhead, 2),
        "render_ms_per_step": round(render, 3),
        "render_percent_of_step": round(100 * render / step_ms, 2),
        "within_limit": overhead <= LIMIT_PERCENT,
    }))


if __name__ == "__main__":
    main()
