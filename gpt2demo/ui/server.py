"""Serve the page: queue sizes, password, share link with a local fallback, safe launch settings."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
from starlette.middleware import Middleware

from gpt2demo.serving.interface import Engine
from gpt2demo.serving.interface import DEFAULT_MAX_BATCH, DEFAULT_QUEUE_SIZE
from gpt2demo.sources import log
from gpt2demo.ui.context import Exposure, PageContext
from gpt2demo.ui.i18n import I18N, message
from gpt2demo.ui.page import build_page

SPARE_WORKERS = 8  # Gradio worker slots beyond the generate handlers (page loads, timers)
# Gradio's queue looks for new events every 1 ms while it is empty: 1000 wake-ups a second
# on the web server's cores. Every 10 ms costs a new request at most 10 ms; in an A/B run
# of bench/streaming.py's setting it raised the client/raw ratio from 0.88 to 0.95.
QUEUE_IDLE_POLL_SECONDS = 0.01
# Its progress loop (gr.Progress, shown while the model loads) wakes 100 times a second,
# running or idle; 20 progress updates a second are plenty.
PROGRESS_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class ServerOptions:
    """What app.py's flags decide about serving."""

    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    auth: tuple[str, str] | None = None
    max_batch: int = DEFAULT_MAX_BATCH  # requests decoded together
    queue_size: int = DEFAULT_QUEUE_SIZE  # requests that may wait for a place in the batch
    concurrency: int | None = None  # generate handlers at once; None = max_batch + queue_size

    @property
    def handler_concurrency(self) -> int:
        # Beyond max_batch, handlers wait in the engine's line, where they can show "N ahead of you".
        return self.concurrency if self.concurrency is not None else self.max_batch + self.queue_size


def parse_auth(text: str) -> tuple[str, str]:
    """'USER:PASS' -> (user, password); the password may itself contain ':'."""
    user, colon, password = text.partition(":")
    if not colon or not user or not password:
        raise ValueError("--auth must look like USER:PASS")
    return user, password


def check_options(options: ServerOptions) -> None:
    """Raise ValueError when the numbers cannot keep the batch full."""
    if options.max_batch < 1 or options.queue_size < 0:
        raise ValueError("--max-batch must be at least 1 and --queue-size at least 0")
    if options.handler_concurrency < options.max_batch:
        raise ValueError(
            f"--concurrency ({options.handler_concurrency}) must be at least --max-batch ({options.max_batch}), "
            "or the batch can never be full"
        )


class RefuseUploads:
    """ASGI middleware: 403 for Gradio's upload route, which the page never needs.

    max_file_size=0 refuses every upload with content, but Gradio still stores an
    empty file; with no upload component on the page, the route has no legitimate use.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].rstrip("/").endswith("/upload"):
            await send({"type": "http.response.start", "status": 403, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"uploads are not accepted"})
            return
        await self.app(scope, receive, send)


def build_demo(engine: Engine, options: ServerOptions) -> tuple[gr.Blocks, PageContext]:
    """The page with its queue set up, and the context its handlers share (whose Exposure launch() fills in)."""
    check_options(options)
    ctx = PageContext(engine, Exposure(share_requested=options.share, has_auth=options.auth is not None))
    demo, _ = build_page(ctx, options.handler_concurrency)
    # api_open=False: without it Gradio also serves /gradio_api/run/generate, which runs the
    # handler outside the queue, past its size and concurrency limits.
    demo.queue(max_size=options.queue_size, api_open=False)
    slow_down_idle_polling(demo)
    return demo, ctx


def slow_down_idle_polling(demo: gr.Blocks) -> None:
    """Make Gradio's queue wake up less often: QUEUE_IDLE_POLL_SECONDS, PROGRESS_POLL_SECONDS.

    Gradio has no setting for either: this sets its queue's attributes, and leaves alone
    a Gradio that lacks them (test_http_api checks through queue_polling that this one has them).
    """
    queue = getattr(demo, "_queue", None)
    if queue is not None and hasattr(queue, "sleep_when_free"):
        queue.sleep_when_free = QUEUE_IDLE_POLL_SECONDS
    if queue is not None and hasattr(queue, "progress_update_sleep_when_free"):
        queue.progress_update_sleep_when_free = PROGRESS_POLL_SECONDS


def queue_polling(demo: gr.Blocks) -> tuple[float | None, float | None]:
    """The queue's idle and progress polling intervals in seconds; None where this Gradio has no such attribute.

    Gradio keeps its queue private: this is the one place outside slow_down_idle_polling
    that looks at it, so tests can check that the settings arrived without reaching in.
    """
    queue = getattr(demo, "_queue", None)
    return getattr(queue, "sleep_when_free", None), getattr(queue, "progress_update_sleep_when_free", None)


def launch(demo: gr.Blocks, ctx: PageContext, options: ServerOptions, block: bool = True) -> str:
    """Start serving; returns the local URL. With block=True, serve until interrupted."""
    if options.share and options.auth is None:
        log("WARNING: " + message("en", "public_no_auth"))
    _, local_url, share_url = demo.launch(
        server_name=options.host,
        server_port=options.port,
        share=options.share,
        auth=options.auth,
        prevent_thread_lock=True,  # so the share outcome can be recorded before blocking
        ssr_mode=False,  # security advisory on Gradio 6.27-6.31 with SSR on
        enable_monitoring=False,  # no /monitoring endpoint
        max_file_size=0,  # the page has no upload components: refuse every upload
        app_kwargs={"middleware": [Middleware(RefuseUploads)]},  # ...even an empty one
        mcp_server=False,
        run_history=False,  # prompts stay out of browsers' saved history on shared machines
        max_threads=options.handler_concurrency + SPARE_WORKERS,  # Gradio's workers bound its concurrency
        i18n=I18N,
        footer_links=["api"],
    )
    ctx.exposure.local_url = local_url
    ctx.exposure.share_url = share_url
    if ctx.exposure.share_failed:
        log(message("en", "share_failed", url=local_url))
    if block:
        demo.block_thread()
    return local_url
