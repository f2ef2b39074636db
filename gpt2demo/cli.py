"""Command line: continue a prompt like the tutorial, printing tokens as they come.

    python -m gpt2demo "Yesterday, a man named Jack said he saw an alien," --top-k 10 --max-new-tokens 100 --seed 0

Only the text goes to stdout (so `> story.txt` keeps just the story); the seed,
notices, download attempts and errors go to stderr, in English. The request runs
on the engine's thread like every other (a LocalEngine in this process), or on
a vLLM server with --engine URL.
"""

from __future__ import annotations

import argparse
import os
import sys

from gpt2demo.errors import BadRequest, DemoError
from gpt2demo.serving.interface import PRECISIONS, Request
from gpt2demo.settings import BOUNDS, SamplingSettings, check_settings

EXIT_BAD_INPUT = 2  # argparse's own code for usage errors
EXIT_NO_MODEL = 1

FLAGS = {"max_new_tokens": "--max-new-tokens", "top_k": "--top-k", "top_p": "--top-p", "temperature": "--temperature",
         "repetition_penalty": "--repetition-penalty", "seed": "--seed", "greedy": "--greedy", "precision": "--precision"}
WORDS = {
    "integer": "{parameter} must be an integer from {low} to {high} (got {got})",
    "number": "{parameter} must be a number from {low} to {high} (got {got})",
    "boolean": "{parameter} must be true or false (got {got})",
    "prompt_length": "the prompt must be at most {limit} characters (got {got})",
    "prompt_character": "the prompt contains an unsupported character {codepoint} at position {position}",
    "no_folder": "model folder {folder} does not exist",
    "no_config": "model folder {folder} has no config.json",
    "no_weights": "model folder {folder} has no weights file ({wanted})",
    "no_tokenizer": "model folder {folder} has no tokenizer files ({wanted})",
    "damaged": "model folder {folder} could not be loaded: its {part} is damaged ({detail})",
    "unknown_spec": "model {spec!r} is neither a folder nor one of gpt2, bundled, modelscope:ID, hf:ID",
    "download": "{source} could not be downloaded ({detail})",
    "unreachable": "{source} could not be reached ({detail})",
    "offline": "{source} is not in the cache and offline mode is on",
    "unavailable": "GPT-2 could not be had (tried: {tried}). To fetch it by hand: {command}",
    "load_failed": "the model could not be loaded ({kind}: {detail})",
    "step_failed": "generation failed ({kind}: {detail})",
    "engine_unreachable": "the generation server at {url} could not be reached ({detail}); is it running?",
    "engine_timeout": "the generation server at {url} sent nothing for {seconds:g} s",
    "gone": "the generation server at {url} stopped answering mid-stream ({detail})",
    "engine_protocol": "the generation server does not answer as gpt2demo needs ({detail}); it must be vLLM",
    "model_not_served": "the server at {url} does not serve {model} (it serves: {served}); give --model one of those",
    "choose_model": "the server at {url} serves several models ({served}); give --model one of them",
    "tokenizer_mismatch": "the tokenizer in {folder} does not match the model {served} served at {url}; "
                          "give --model that model's own folder or hub id",
    "engine_error": "the generation server refused the request (HTTP {status}: {detail})",
    "closed": "the engine was closed",
    "precision_device": "{parameter} {got} runs on the CPU only (device here: {device}); use {parameter} {supported} there",
    "precision_kernels": "{parameter} {got} needs PyTorch's quantized CPU kernels ({engines}), which this PyTorch "
                         "lacks or fails its check; use {parameter} {supported}",
}


def describe(error: DemoError) -> str:
    """An error as the command line says it: in English, parameters named by their flags."""
    facts = dict(error.facts)
    if "parameter" in facts:
        facts["parameter"] = FLAGS.get(facts["parameter"], facts["parameter"])
    if "tried" in facts:
        facts["tried"] = "; ".join(f"{source}: {kind}" for source, kind, _ in facts["tried"])
    try:
        return WORDS[error.code].format(**facts)
    except (KeyError, IndexError):
        return str(error)


def build_parser() -> argparse.ArgumentParser:
    defaults = SamplingSettings()
    parser = argparse.ArgumentParser(prog="python -m gpt2demo", description="Continue a prompt with GPT-2, one token at a time.")
    parser.add_argument("prompt", help="text to continue; empty starts from <|endoftext|>")
    parser.add_argument("--model", default=None, help="folder, gpt2, bundled, modelscope:ID or hf:ID (default: $GPT2DEMO_MODEL or gpt2)")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    parser.add_argument("--precision", choices=PRECISIONS, default=PRECISIONS[0],
                        help="float32 (default; bfloat16 on CUDA), or int8: the matrix products in int8, CPU only, faster")
    parser.add_argument("--max-new-tokens", default=defaults.max_new_tokens, help=f"{BOUNDS.max_new_tokens[0]}..{BOUNDS.max_new_tokens[1]} (default {defaults.max_new_tokens})")
    parser.add_argument("--top-k", default=defaults.top_k, help=f"0 = off (default {defaults.top_k}, as in the tutorial)")
    parser.add_argument("--top-p", default=defaults.top_p, help=f"{BOUNDS.top_p[0]}..1, 1 = off (default {defaults.top_p})")
    parser.add_argument("--temperature", default=defaults.temperature, help=f"{BOUNDS.temperature[0]}..{BOUNDS.temperature[1]} (default {defaults.temperature})")
    parser.add_argument("--repetition-penalty", default=defaults.repetition_penalty, help=f"{BOUNDS.repetition_penalty[0]}..{BOUNDS.repetition_penalty[1]}, 1 = off (default 1.0)")
    parser.add_argument("--seed", default=None, help="same seed and settings give the same text (default: random, printed to stderr)")
    parser.add_argument("--greedy", action="store_true", help="always take the most likely token")
    parser.add_argument("--show-tokens", action="store_true", help="first print the prompt's token ids, like the tutorial's indexed_tokens")
    parser.add_argument("--retry-download", action="store_true", help="try the model hubs now, even if they failed a few minutes ago")
    parser.add_argument("--engine", default=None, metavar="URL",
                        help="generate on an OpenAI-compatible vLLM server, e.g. http://127.0.0.1:8000/v1 "
                             "(--model then names the served model or its tokenizer's folder)")
    return parser


def note(text: str) -> None:
    print(f"[gpt2demo] {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.engine and args.precision != PRECISIONS[0]:
        parser.error("--precision is for the model run here; a vLLM server's own flags set its precision")
    try:
        settings = check_settings(max_new_tokens=args.max_new_tokens, top_k=args.top_k, top_p=args.top_p,
                                  temperature=args.temperature, repetition_penalty=args.repetition_penalty,
                                  greedy=args.greedy, seed=args.seed)
    except BadRequest as error:
        print(f"error: {describe(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from gpt2demo.sources import forget_failures

    if args.retry_download:
        forget_failures()
    engine = start_cli_engine(args)
    state = engine.start().wait_ready_blocking()
    if state.phase == "failed":
        print(f"error: {describe(state.error)}", file=sys.stderr)
        return EXIT_BAD_INPUT if isinstance(state.error, BadRequest) else EXIT_NO_MODEL  # a flag the machine refuses
    ticket = engine.submit(Request(settings, args.prompt))
    try:
        return stream(ticket, args)
    except BadRequest as error:
        print(f"error: {describe(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except DemoError as error:
        print(f"error: {describe(error)}", file=sys.stderr)
        return EXIT_NO_MODEL
    except KeyboardInterrupt:
        ticket.cancel()
        return 130
    finally:
        engine.close()


def start_cli_engine(args):
    """A remote engine for --engine, else a LocalEngine in this process (with its math threads set); not started."""
    if args.engine:
        from gpt2demo.serving.remote import RemoteEngine

        return RemoteEngine(args.engine, args.model or os.environ.get("GPT2DEMO_MODEL"), max_requests=1)
    from gpt2demo.serving.local import LocalEngine
    from gpt2demo.threads import configure_threads

    configure_threads()
    return LocalEngine(args.model or os.environ.get("GPT2DEMO_MODEL", "gpt2"), args.device, max_batch=1, queue_size=0,
                       precision=args.precision)


def stream(ticket, args) -> int:
    """Print the continuation to stdout as it comes; everything else to stderr."""
    accepted = ticket.accepted_blocking()
    if args.show_tokens:
        print(list(accepted.prompt.token_ids), flush=True)
    fit = accepted.prompt
    if fit.cut_from is not None:
        note(f"the prompt had {fit.cut_from} tokens; only its last {len(fit.token_ids)} fit the {fit.window}-token window")
    if fit.lowered_from is not None:
        note(f"--max-new-tokens was lowered to {fit.max_new_tokens}, what the window leaves")
    note(f"seed {accepted.seed}")
    sys.stdout.write(args.prompt)
    step = None
    for step in ticket:
        sys.stdout.write(step.text)
        sys.stdout.flush()
    sys.stdout.write("\n")
    note(f"finished: {step.finish_reason}")
    return 0
