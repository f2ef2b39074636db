"""The web demo: `python app.py` serves it at http://localhost:7860.

Parse the flags, start loading the model, build the page, launch. Nothing else.
"""

from __future__ import annotations

import argparse
import os

from gpt2demo.engine import configure_threads
from gpt2demo.scheduler import DEFAULT_MAX_BATCH, DEFAULT_QUEUE_SIZE
from gpt2demo.ui.server import ServerOptions, build_demo, check_options, launch, parse_auth
from gpt2demo.ui.service import ModelService


def auth_pair(text: str) -> tuple[str, str]:
    try:
        return parse_auth(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Watch GPT-2 write one token at a time, in the browser.")
    parser.add_argument("--model", default=os.environ.get("GPT2DEMO_MODEL", "gpt2"),
                        help="a folder, gpt2, bundled, modelscope:ID or hf:ID (default: $GPT2DEMO_MODEL or gpt2)")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve the local network (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="also make a public gradio.live link (use with --auth)")
    parser.add_argument("--auth", type=auth_pair, default=None, metavar="USER:PASS", help="require this login")
    parser.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH, help="requests decoded together")
    parser.add_argument("--queue-size", type=int, default=DEFAULT_QUEUE_SIZE,
                        help="requests that may wait; more are refused with 'server busy'")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="generate requests handled at once (default: max batch + queue size; at least max batch)")
    args = parser.parse_args(argv)
    args.options = ServerOptions(host=args.host, port=args.port, share=args.share, auth=args.auth,
                                 max_batch=args.max_batch, queue_size=args.queue_size, concurrency=args.concurrency)
    try:
        check_options(args.options)
    except ValueError as error:
        parser.error(str(error))
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print(f"[gpt2demo] torch uses {configure_threads()} threads (one per core; see engine.configure_threads)", flush=True)
    service = ModelService(args.model, args.device, args.max_batch, args.queue_size).start()
    demo, handlers = build_demo(service, args.options)
    try:
        launch(demo, handlers, args.options)
    finally:
        service.close()


if __name__ == "__main__":
    main()
