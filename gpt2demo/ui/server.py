"""Serve the page: queue sizes, password, share link with a local fallback, safe launch settings."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
from starlette.middleware import Middleware

from gpt2demo.serving.interface import Engine
from gpt2demo.serving.interface import DEFAULT_MAX_BATCH, DEFAULT_QUEUE_SIZE
from gpt2demo.sources import log
from gpt2demo.ui.context import Exposure, PageContext
from gpt2demo.ui.guards import GuardRequests, LimitLogins, RequireLogin
from gpt2demo.ui.i18n import I18N, message
from gpt2demo.ui.page import build_page

SPARE_WORKERS = 8  # Gradio worker slots beyond the generate handlers (page loads, timers)
REFUSAL_SLOTS = 16  # generate handlers beyond what the engine holds, that only hear "busy"
# Gradio's own queue limit is only a guard against floods (its refusal is Gradio's English
# 503): a class never reaches it, because the engine refuses first (see handler_concurrency).
FLOOD_GUARD_EVENTS = 2048
# Gradio keeps ~230 KB per browser session it has seen (a copy of the page's config, ~30 ms to
# build); past this many, the oldest is forgotten and rebuilt at its next call. Nothing of ours
# lives there (sessions.py holds the tabs' state, and the engine checks every value), so the cap
# is only memory: as many as the tabs our session store holds, a front end that stops growing
# at ~115 MB of them (bench/soak.py), where Gradio's 1,000 went on to ~230 MB.
SESSIONS_HELD = 500
# Gradio's queue looks for new events every 1 ms while it is empty: 1000 wake-ups a second
# on the web server's cores. Every 10 ms costs a new request at most 10 ms; in an A/B run
# of bench/streaming.py's setting it raised the client/raw ratio from 0.88 to 0.95.
QUEUE_IDLE_POLL_SECONDS = 0.01
# Its progress loop (gr.Progress, shown while the model loads) wakes 100 times a second,
# running or idle; 20 progress updates a second are plenty.
PROGRESS_POLL_SECONDS = 0.05
# The console's own lines, in place of Gradio's (launch(quiet=True)): Gradio's hint names a
# Python argument, "set `share=True` in `launch()`", which a teacher running app.py cannot use.
CONSOLE_LOCAL = "Running at {url} (open it in a browser; Ctrl+C stops the server)"
CONSOLE_SHARE_HINT = "To share this page with a class through a public link, restart with --share (add --auth USER:PASS to require a login)."
CONSOLE_PUBLIC = "Public link for the class: {url} (temporary: it lasts while this server runs, up to a week)"


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
        # Every request the engine holds (max_batch decoding, queue_size in its line) has a handler,
        # and REFUSAL_SLOTS more run at once just to be told "busy; N ahead of you" by the engine:
        # the one admission limit is the engine's, so no request waits unanswered in Gradio's queue.
        if self.concurrency is not None:
            return self.concurrency
        return self.max_batch + self.queue_size + REFUSAL_SLOTS


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


def build_demo(engine: Engine, options: ServerOptions) -> tuple[gr.Blocks, PageContext]:
    """The page with its queue set up, and the context its handlers share (whose Exposure launch() fills in)."""
    check_options(options)
    ctx = PageContext(engine, Exposure(share_requested=options.share, has_auth=options.auth is not None))
    demo, _ = build_page(ctx, options.handler_concurrency)
    # api_open=False: without it Gradio also serves /gradio_api/run/generate, which runs the
    # handler outside the queue, past its size and concurrency limits.
    demo.queue(max_size=FLOOD_GUARD_EVENTS, api_open=False)
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
        max_file_size=0,  # the page has no upload components: refuse every upload (GuardRequests too)
        app_kwargs={"middleware": [  # outermost first: see guards.py
            Middleware(RequireLogin, enabled=options.auth is not None),
            Middleware(LimitLogins),
            Middleware(GuardRequests),
        ]},
        state_session_capacity=SESSIONS_HELD,
        mcp_server=False,
        run_history=False,  # prompts stay out of browsers' saved history on shared machines
        max_threads=options.handler_concurrency + SPARE_WORKERS,  # Gradio's workers bound its concurrency
        i18n=I18N,
        footer_links=["api"],
        quiet=True,  # its console hints speak of Python arguments: ours follow (CONSOLE_*)
    )
    ctx.exposure.local_url = local_url
    ctx.exposure.share_url = share_url
    log(CONSOLE_LOCAL.format(url=local_url))
    if share_url:
        log(CONSOLE_PUBLIC.format(url=share_url))
    elif ctx.exposure.share_failed:
        log(message("en", "share_failed", url=local_url))
    else:
        log(CONSOLE_SHARE_HINT)
    if block:
        demo.block_thread()
    return local_url
