"""One student's tokens/s through `python app.py` on a machine that is doing other things too.

    python -m bench.contention [--threads default,1,2] [--new-tokens 200] [--repeats 3]

For each torch thread setting (GPT2DEMO_THREADS; "default" = the app's own policy)
it serves a GPT-2-small-shaped stand-in with `python app.py` (its engine in its own
process) and times one light client's stream of `--new-tokens` tokens (first token
to last, as the page's status line counts) in three phases:

- idle: nothing else runs;
- busy: another process keeps one core busy (a compile, a video call);
- browser: the student is headless Chromium showing the page (a teacher projecting from
  the laptop that serves): it clicks Generate and reads the status line.

Every figure is the status line's tokens/s (counted by the page's handler from the
first token to the last), read by a light client in the first two phases and from the
page itself in the third.

Prints a table and the ratios busy/idle and browser/idle (targets 0.6 and 0.8); the
last line is JSON. Needs /usr/bin/chromium and playwright (bash tests/run.sh installs both).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

from bench.harness import LightClient, app_process, busy_neighbour, median
from tools.ports import free_port
from tools.standin import GPT2_SMALL, build_standin

PROMPT = "Yesterday, a man named Jack said he saw an alien,"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TARGETS = {"busy": 0.6, "browser": 0.8}


def status_speed(status: str) -> float:
    """'200 tokens · 12.3 tokens/s · finished: ...' -> 12.3"""
    part = next((p for p in status.split(" · ") if p.endswith(" tokens/s")), None)
    if part is None:
        raise RuntimeError(f"no speed in the status line: {status!r}")
    return float(part.split(" ")[0])


def one_stream(url: str, new_tokens: int, seed: int) -> float:
    async def run():
        client = LightClient(url)
        try:
            result = await client.generate(PROMPT, max_new_tokens=new_tokens, seed=str(seed))
        finally:
            await client.close()
        if result.error:
            raise RuntimeError(f"the stream failed: {result.error}")
        return status_speed(result.status)

    return asyncio.run(run())


def browser_streams(url: str, new_tokens: int, repeats: int) -> list[float]:
    """The page in Chromium generating `repeats` times; the status line's speed of each run."""
    from playwright.sync_api import sync_playwright

    speeds = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        page.locator("#max-new-tokens input[type=number]").fill(str(new_tokens))
        page.locator("#max-new-tokens input[type=number]").press("Enter")
        for repeat in range(repeats):
            page.locator("#seed textarea, #seed input").first.fill(str(repeat))
            page.click("#generate")
            page.wait_for_function("() => !/finished|stopped/.test(document.querySelector('#status').innerText)",
                                   timeout=60_000)  # the last run's line is gone: this run has started
            page.wait_for_function("() => /finished|stopped/.test(document.querySelector('#status').innerText)",
                                   timeout=600_000)
            speeds.append(status_speed(page.inner_text("#status")))
        browser.close()
    return speeds


def measure(url: str, phase: str, new_tokens: int, repeats: int) -> float:
    if phase == "browser":
        return median(browser_streams(url, new_tokens, repeats))
    speeds = []
    for repeat in range(repeats):
        if phase == "busy":
            with busy_neighbour():
                speeds.append(one_stream(url, new_tokens, repeat))
        else:
            speeds.append(one_stream(url, new_tokens, repeat))
    return median(speeds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="default,1,2")
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        build_standin(Path(folder), GPT2_SMALL)
        for threads in args.threads.split(","):
            env = {} if threads == "default" else {"GPT2DEMO_THREADS": threads}
            port = free_port()
            url = f"http://127.0.0.1:{port}/"
            with app_process(folder, port, env=env):
                one_stream(url, 20, 99)  # warm-up: first-request costs
                result = {"threads": threads}
                for phase in ("idle", "busy", "browser"):
                    result[phase] = round(measure(url, phase, args.new_tokens, args.repeats), 2)
                for phase in TARGETS:
                    result[f"{phase}/idle"] = round(result[phase] / result["idle"], 3)
                rows.append(result)
    print(f"GPT-2 small shapes, one student's stream of {args.new_tokens} tokens (median of {args.repeats}), tok/s")
    print(f"{'threads':>8} {'idle':>8} {'busy':>8} {'browser':>8} {'busy/idle':>10} {'browser/idle':>13}")
    for row in rows:
        print(f"{row['threads']:>8} {row['idle']:>8} {row['busy']:>8} {row['browser']:>8} {row['busy/idle']:>10} "
              f"{row['browser/idle']:>13}")
    print(json.dumps({"rows": rows, "targets": TARGETS}))


if __name__ == "__main__":
    main()
