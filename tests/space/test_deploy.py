"""The Space as it would be deployed: the folder `space/build_space.py` writes, installed in a fresh virtual
environment from its own requirements.txt (this repository's package as a wheel), started, and called."""

import os
import socket
import subprocess
import sys
import time

import pytest

from ..helpers import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_the_built_space_installs_and_serves(tmp_path, model_dir):
    space = tmp_path / "space"
    subprocess.run([sys.executable, str(ROOT / "space" / "build_space.py"), str(space)], check=True, timeout=300)
    assert sorted(p.name for p in space.iterdir()) == ["README.md", "app.py", "examples", "handlers.py",
                                                       "requirements.txt", "wheels"]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    # torch first, as on this machine (its CPU build); the Space's own pip installs the rest from requirements.txt
    subprocess.run([*pip, f"torch=={__import__('torch').__version__.split('+')[0]}"], check=True, timeout=600)
    subprocess.run([*pip, "-r", "requirements.txt"], cwd=space, check=True, timeout=900)
    port = free_port()
    env = {**os.environ, "FVQ_MODEL": model_dir, "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False",
           "PYTHONPATH": ""}
    server = subprocess.Popen([str(venv / "bin" / "python"), "app.py"], cwd=space, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        from gradio_client import Client, handle_file

        url, deadline = f"http://127.0.0.1:{port}/", time.time() + 120
        while True:
            try:
                client = Client(url, verbose=False)
                break
            except Exception:
                if server.poll() is not None or time.time() > deadline:
                    raise AssertionError(f"the Space did not start: {server.stdout.read()[-3000:]}") from None
                time.sleep(1)
        photo = space / "examples" / "coffee.jpg"
        *_, summary = client.predict([handle_file(str(photo))], model_dir, 0, api_name="/reconstruct")
        assert "distinct codes of 256" in summary
    finally:
        server.terminate()
        server.wait(timeout=30)
