"""Command line: continue a prompt like the tutorial, printing tokens as they come.

    python -m gpt2demo "Yesterday, a man named Jack said he saw an alien," --top-k 10 --max-new-tokens 100 --seed 0
"""

from __future__ import annotations

import argparse
import sys

from gpt2demo.settings import BOUNDS, SamplingSettings, check_settings

EXIT_BAD_INPUT = 2  # argparse's own code for usage errors


def build_parser() -> argparse.ArgumentParser:
    defaults = SamplingSettings()
    parser = argparse.ArgumentParser(prog="python -m gpt2demo", description="Continue a prompt with GPT-2, one token at a time.")
    parser.add_argument("prompt", help="text to continue; empty starts from <|endoftext|>")
    parser.add_argument("--model", default=None, help="folder, gpt2, bundled, modelscope:ID or hf:ID (default: $GPT2DEMO_MODEL or gpt2)")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    parser.add_argument("--max-new-tokens", default=defaults.max_new_tokens, help=f"{BOUNDS.max_new_tokens[0]}..{BOUNDS.max_new_tokens[1]} (default {defaults.max_new_tokens})")
    parser.add_argument("--top-k", default=defaults.top_k, help=f"0 = off (default {defaults.top_k}, as in the tutorial)")
    parser.add_argument("--top-p", default=defaults.top_p, help=f"{BOUNDS.top_p[0]}..1, 1 = off (default {defaults.top_p})")
    parser.add_argument("--temperature", default=defaults.temperature, help=f"{BOUNDS.temperature[0]}..{BOUNDS.temperature[1]} (default {defaults.temperature})")
    parser.add_argument("--repetition-penalty", default=defaults.repetition_penalty, help=f"{BOUNDS.repetition_penalty[0]}..{BOUNDS.repetition_penalty[1]}, 1 = off (default 1.0)")
    parser.add_argument("--seed", default=None, help="same seed and settings give the same text (default: random, printed to stderr)")
    parser.add_argument("--greedy", action="store_true", help="always take the most likely token")
    parser.add_argument("--show-tokens", action="store_true", help="first print the prompt's token ids, like the tutorial's indexed_tokens")
    return parser


def main(argv: list[str] | None = None) -> int:
    import os

    args = build_parser().parse_args(argv)
    try:
        settings = check_settings(
            max_new_tokens=args.max_new_tokens,
            top_k=args.top_k,
            top_p=args.top_p,
            temperature=args.temperature,
            repetition_penalty=args.repetition_penalty,
            greedy=args.greedy,
            seed=args.seed,
        )
        from gpt2demo.engine import Generation, configure_threads, generate_steps, load_model
        from gpt2demo.sources import ModelSourceError

        configure_threads()
        try:
            model = load_model(args.model or os.environ.get("GPT2DEMO_MODEL", "gpt2"), args.device)
        except ModelSourceError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        generation = Generation(model, args.prompt, settings)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.show_tokens:
        print(generation.prompt.token_ids, flush=True)
    if generation.prompt.notice:
        print(f"[gpt2demo] {generation.prompt.notice}", file=sys.stderr)
    print(f"[gpt2demo] seed {generation.seed}", file=sys.stderr)
    sys.stdout.write(args.prompt)
    for step in generate_steps(model, args.prompt, settings, generation=generation):
        sys.stdout.write(step.text)
        sys.stdout.flush()
    sys.stdout.write("\n")
    print(f"[gpt2demo] finished: {step.finish_reason}", file=sys.stderr)
    return 0
