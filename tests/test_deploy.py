"""Deploy as it is: the metadata Hugging Face Spaces and ModelScope Studio read, and app.py
started the way those platforms start it (their environment variables, no flags)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import gradio
import httpx
from gradio_client import Client
from packaging.requirements import Requirement

from launching import wait_until
from tools.ports import free_port

ROOT = Path(__file__).resolve().parents[1]


def spaces_header() -> dict[str, str]:
    """The YAML block at the top of README.md, as Spaces reads it (flat `key: value` lines)."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "---", "README.md must start with the Spaces YAML header"
    end = lines.index("---", 1)
    header = {}
    for line in lines[1:end]:
        key, _, value = line.partition(":")
        header[key.strip()] = value.strip().strip('"')
    return header


def pinned(name: str) -> Requirement:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and Requirement(line).name == name:
            return Requirement(line)
    raise AssertionError(f"{name} is not in requirements.txt")


def test_the_spaces_header_names_the_app_and_versions_the_requirements_allow():
    header = spaces_header()
    assert (header["sdk"], header["app_file"], header["python_version"]) == ("gradio", "app.py", "3.11")
    assert (ROOT / header["app_file"]).is_file()
    assert pinned("gradio").specifier.contains(header["sdk_version"])
    # The version the tests ran with is the one the platforms install.
    assert header["sdk_version"] == gradio.__version__
    assert platform.python_version().startswith(header["python_version"] + ".")


def test_modelscope_studio_deploys_the_same_gradio_on_a_cpu():
    studio = json.loads((ROOT / "ms_deploy.json").read_text())
    assert studio["sdk_type"] == "gradio"
    assert studio["sdk_version"] == spaces_header()["sdk_version"]
    assert studio["resource_configuration"].startswith("platform/") and "cpu" in studio["resource_configuration"]


def test_app_py_listens_where_the_platform_says(tiny_model_dir):
    # Spaces and Studio run `python app.py` with no flags; where to listen comes from Gradio's
    # variables, the model from ours.
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GPT2DEMO_MODEL": str(tiny_model_dir)}
    server = subprocess.Popen([sys.executable, "app.py", "--device", "cpu"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        def serves() -> bool:
            try:
                return httpx.get(url + "gradio_api/info", timeout=1).status_code == 200
            except httpx.HTTPError:
                assert server.poll() is None, "app.py exited"
                return False

        wait_until(serves, "app.py to serve on the platform's port")
        text, _html, status, _seed = Client(url, verbose=False).predict(
            "Hello", 5, 10, 1.0, 1.0, 1.0, "1", False, api_name="/generate")
        assert text.startswith("Hello") and "finished: length reached" in status
    finally:
        server.terminate()
        console = server.communicate(timeout=30)[0]
    assert f"Running at {url} " in console
    assert f"model ready: {tiny_model_dir.name} (folder)" in console  # GPT2DEMO_MODEL's
