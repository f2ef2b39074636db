"""A class through `python app.py --engine URL` on a vLLM server, beside the same class on the local engine.

    python -m bench.remote [--streams 1,8,32] [--new-tokens 64] [--shape small|bundled]

Serves a GPT-2-small-shaped stand-in (124M parameters, random weights, GPT-2's
tokenizer), or the bundled model, twice in turn, never both at once:
- local: `python app.py --model FOLDER` (the engine in its own process);
- remote: a vLLM server on the same folder (tools/vllm_server.py: --dtype float32,
  --enforce-eager, processed logprobs; CPU, since this machine has no GPU), and
  `python app.py --engine URL --model FOLDER` in front of it.
N students press Generate together (light clients, as in bench/classroom.py: raw
SSE over Gradio's queue protocol, all in one asyncio loop), mixed prompts, top-k 10,
each stream's text checked against the same seeded request run alone through the
same app (vLLM's random stream is its own, so the two engines' texts differ).

There is no GPU here: the remote figures are vLLM's CPU backend on the same two
cores as the app, which says what the front end costs, not what a GPU server gives.
Prints one table per engine in bench/classroom.py's format; the last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

from bench.classroom import PROMPTS, light_class, print_rows
from bench.harness import LightClient, app_process, process_tree_rss_mb
from gpt2demo.sources import BUNDLED_DIR
from tools.ports import free_port
from tools.standin import GPT2_SMALL, build_standin
from tools.vllm_server import VllmServer

NO_GPU_NOTE = ("no GPU on this machine: vLLM runs on its CPU backend, on the same 2 cores as the app and the "
               "clients, so these figures show the front end's cost and the protocol's, not a GPU server's speed")


async def texts_alone(url: str, new_tokens: int) -> list[str]:
    """Each prompt's seeded text run alone through the app: what every student of the class must get."""
    client = LightClient(url)
    try:
        results = [await client.generate(prompt, max_new_tokens=new_tokens, seed=str(i)) for i, prompt in enumerate(PROMPTS)]
    finally:
        await client.close()
    return [result.text for result in results]


def run_class(url: str, counts: list[int], new_tokens: int, app_pid: int) -> dict:
    """The expected texts, a warm-up, then a class of each size, and the app's memory after them."""
    expected = asyncio.run(texts_alone(url, new_tokens))
    asyncio.run(light_class(url, 2, 4, [""] * len(PROMPTS)))  # warm-up: first-request costs
    rows = [asyncio.run(light_class(url, n, new_tokens, expected)) for n in counts]
    return {"rows": rows, "app_rss_mb": round(process_tree_rss_mb(app_pid))}


def local_run(folder: str, counts: list[int], new_tokens: int) -> dict:
    port = free_port()
    with app_process(folder, port) as app:
        return run_class(f"http://127.0.0.1:{port}/", counts, new_tokens, app.pid)


def remote_run(folder: str, counts: list[int], new_tokens: int) -> dict:
    with VllmServer(folder) as server:
        port = free_port()
        with app_process(folder, port, extra=["--engine", server.url]) as app:
            run = run_class(f"http://127.0.0.1:{port}/", counts, new_tokens, app.pid)
        run["vllm_rss_mb"] = round(process_tree_rss_mb(server.process.pid))
        return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="1,8,32")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--shape", choices=["small", "bundled"], default="small")
    args = parser.parse_args()
    counts = [int(n) for n in args.streams.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        folder = str(BUNDLED_DIR) if args.shape == "bundled" else str(build_standin(Path(scratch), GPT2_SMALL))
        local = local_run(folder, counts, args.new_tokens)
        remote = remote_run(folder, counts, args.new_tokens)
    print(f"{'GPT-2 small shapes' if args.shape == 'small' else 'the bundled model'}, {args.new_tokens} new tokens "
          "per stream, top-k 10")
    print(f"note: {NO_GPU_NOTE}")
    print_rows("local engine (python app.py):", local["rows"])
    print_rows("vLLM on this CPU (python app.py --engine URL):", remote["rows"])
    print(f"memory: app.py with its engine process {local['app_rss_mb']} MB; app.py --engine {remote['app_rss_mb']} MB "
          f"+ the vLLM server {remote['vllm_rss_mb']} MB")
    print(json.dumps({"shape": args.shape, "new_tokens": args.new_tokens, "note": NO_GPU_NOTE,
                      "local": local, "remote": remote}))


if __name__ == "__main__":
    main()
