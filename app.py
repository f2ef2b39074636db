"""The web demo: `python app.py` serves it at http://localhost:7860.

Parse the flags, start the engine, build the page, launch. Nothing else.
"""

from __future__ import annotations

import argparse
import os

from gpt2demo.serving import start_engine
from gpt2demo.serving.interface import DEFAULT_MAX_BATCH, DEFAULT_QUEUE_SIZE, PRECISIONS
from gpt2demo.sources import forget_failures
from gpt2demo.ui.server import ServerOptions, build_demo, check_options, launch, parse_auth


def auth_pair(text: str) -> tuple[str, str]:
    try:
        return parse_auth(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Watch GPT-2 write one token at a time, in the browser.")
    parser.add_argument("--model", default=os.environ.get("GPT2DEMO_MODEL"),
                        help="a folder, gpt2, bundled, modelscope:ID or hf:ID (default: $GPT2DEMO_MODEL or gpt2); "
                             "with --engine: the served model's name or its tokenizer's folder (default: the server's only model)")
    parser.add_argument("--engine", default=None, metavar="URL",
                        help="generate on an OpenAI-compatible vLLM server, e.g. http://127.0.0.1:8000/v1 "
                             "(README: 'When a class outgrows one machine')")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    parser.add_argument("--precision", choices=PRECISIONS, default=PRECISIONS[0],
                        help="float32 (default; bfloat16 on CUDA), or int8: the matrix products in int8, CPU only, "
                             "faster (README: 'How generation works')")
    # Hugging Face Spaces and ModelScope Studio say where to listen through Gradio's own variables.
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="0.0.0.0 to serve the local network (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                        help="default: $GRADIO_SERVER_PORT or 7860")
    parser.add_argument("--share", action="store_true", help="also make a public gradio.live link (use with --auth)")
    parser.add_argument("--auth", type=auth_pair, default=None, metavar="USER:PASS", help="require this login")
    parser.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH, help="requests decoded together")
    parser.add_argument("--queue-size", type=int, default=DEFAULT_QUEUE_SIZE,
                        help="requests that may wait; more are refused with 'server busy'")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="generate requests handled at once (default: max batch + queue size; at least max batch)")
    parser.add_argument("--retry-download", action="store_true",
                        help="try the model hubs now, even if they failed a few minutes ago")
    args = parser.parse_args(argv)
    if args.engine and args.precision != PRECISIONS[0]:
        parser.error("--precision is for the model this app runs; a vLLM server's own flags set its precision")
    args.options = ServerOptions(host=args.host, port=args.port, share=args.share, auth=args.auth,
                                 max_batch=args.max_batch, queue_size=args.queue_size, concurrency=args.concurrency)
    try:
        check_options(args.options)
    except ValueError as error:
        parser.error(str(error))
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.retry_download:
        forget_failures()
    engine = start_engine(args.model, args.device, args.max_batch, args.queue_size, args.precision, engine_url=args.engine)
    demo, ctx = build_demo(engine, args.options)
    try:
        launch(demo, ctx, args.options)
    finally:
        engine.close()


if __name__ == "__main__":
    main()
