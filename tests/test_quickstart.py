"""The README's quick start, run as a new user runs it (issue 17, point 4).

A copy of the checkout (its tracked files and the new ones not ignored, so work not yet
committed is tested too; no ``.venv``, no ``.nox``) stands for a fresh clone. The test
reads the Quick start's two lines from README.md, runs the first with bash in a process
group of its own, on a PATH without this test's venv, waits until the service answers
``/health/ready``, checks that ``/workflows`` holds the three team namespaces, stops it
as Ctrl-C does, and then, in a new shell, activates ``.venv`` as the README says and runs
``teamflow --version``, ``pip --version`` and ``teamflow check``, then the README's
commands that add a new plugin to that environment.

The second line (``nox -s tests``) is not run: it is the suite this test is part of. The
test only checks that it uses the same venv and ends with that command, which CI runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostvenv import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PORT = 3000  # where the README says the service listens
NAMESPACES = {"payments", "customer_success", "inventory"}
START_S = 420  # venv, installs from the index, start-up
STOP_S = 30


def quick_start() -> tuple[list[str], str]:
    """The README's Quick start: its two command lines, and the block adding a plugin."""
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## Quick start\n(.*?)(?=^## )", text, re.M | re.S)
    assert section, "the README has no '## Quick start' section"
    blocks = re.findall(r"^```bash\n(.*?)^```", section.group(1), re.M | re.S)
    assert blocks, "the README's Quick start has no ```bash block"
    lines = [line for line in blocks[0].splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(lines) == 2, f"the Quick start's first block should hold two lines, holds {lines}"
    plugin = [block for block in blocks[1:] if "teamflow new-plugin" in block]
    assert plugin, "the Quick start says nowhere how to add a plugin (`teamflow new-plugin ...`, `pip install`)"
    return lines, plugin[0]


def copy_checkout(dest: Path) -> None:
    """The checkout as a clone of it would be once its work is committed: the tracked files,
    and the new files not ignored in its tracked folders (not a folder of its own, such as
    the ``teamflow-billing`` a reader of the quick start made here)."""

    def listed(*options: str) -> list[str]:
        out = subprocess.run(["git", "ls-files", "-z", *options], cwd=ROOT, capture_output=True, check=True).stdout
        return [name for name in out.decode().split("\0") if name]

    tracked = listed("--cached")
    folders = {Path(name).parts[0] for name in tracked if len(Path(name).parts) > 1}
    new = [name for name in listed("--others", "--exclude-standard") if Path(name).parts[0] in folders]
    for name in tracked + new:
        source = ROOT / name
        if source.is_file():  # a tracked file being deleted in the working tree is gone
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    assert not (dest / ".venv").exists() and (dest / "pyproject.toml").is_file()


def fresh_env() -> dict[str, str]:
    """This machine's environment (the package index settings included) without this test's
    venv: no VIRTUAL_ENV, no venv or nox ``bin`` on PATH, no PYTHONPATH, no TEAMFLOW_*."""
    ours = {Path(p).resolve() for p in (Path(sys.prefix) / "bin", Path(sys.executable).parent)}
    path = [
        p for p in os.environ.get("PATH", "").split(os.pathsep)
        if p and Path(p).resolve() not in ours and not (Path(p) / "activate").is_file()
    ]
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith("TEAMFLOW_") and k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "NOX_CURRENT_SESSION")
    }
    env["PATH"] = os.pathsep.join(path)
    return env


def port_free(port: int) -> bool:
    """Nothing listens on ``port`` (connections closed lately, in TIME_WAIT, do not count:
    uvicorn binds with SO_REUSEADDR too)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, b""


def bash(script: str, *, cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    """Run ``script`` in a new bash (a new shell: nothing activated) and return what it printed."""
    done = subprocess.run(
        ["bash", "-c", script], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=timeout,
    )
    assert done.returncode == 0, f"{script!r} exited {done.returncode}:\n{done.stdout}"
    return done.stdout


@pytest.fixture
def clone(tmp_path: Path) -> Iterator[Path]:
    dest = tmp_path / "teamflow"
    copy_checkout(dest)
    yield dest


def test_readme_quick_start_leaves_a_working_teamflow_and_pip(clone: Path) -> None:
    (serve_line, tests_line), add_plugin = quick_start()
    env = fresh_env()
    assert shutil.which("python3.11", path=env["PATH"]), "the quick start needs python3.11 on PATH"

    # Line 2 is the suite itself: not run here, but it must be CI's command, in the same venv.
    assert tests_line.rstrip().endswith("nox -s tests"), tests_line
    for step in ("python3.11 -m venv .venv", ". .venv/bin/activate"):
        assert step in serve_line and step in tests_line, f"both lines should run {step!r}"
    assert serve_line.rstrip().endswith("teamflow serve"), serve_line

    port = PORT
    if not port_free(PORT):  # something else listens on 3000 here: the same line, another port
        port = free_port()
        serve_line = f"{serve_line} --port {port}"

    log = clone / "quickstart-serve.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            ["bash", "-c", serve_line], cwd=clone, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the shell, pip, teamflow
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_S
        while (status := get(f"{base}/health/ready")[0]) != 200:
            assert server.poll() is None, f"line 1 exited {server.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no 200 from /health/ready within {START_S} s:\n{log.read_text()}"
            time.sleep(0.5)
        assert status == 200
        status, body = get(f"{base}/workflows")
        assert status == 200, body
        listed = {ns["name"] for ns in json.loads(body)["namespaces"]}
        assert listed >= NAMESPACES, f"/workflows lists {sorted(listed)}"
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGINT)  # Ctrl-C in the user's terminal
            try:
                server.wait(STOP_S)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
                pytest.fail(f"line 1 did not stop within {STOP_S} s of Ctrl-C:\n{log.read_text()}")
    assert server.returncode == 0, f"line 1 exited {server.returncode} on Ctrl-C:\n{log.read_text()}"
    assert port_free(port), f"port {port} still held after the stop"

    # A new shell, as the README says: activate .venv, and teamflow and pip are there.
    version = tomllib.loads((clone / "pyproject.toml").read_text())["project"]["version"]
    venv = clone / ".venv"
    shown = bash(". .venv/bin/activate && teamflow --version && pip --version && teamflow check", cwd=clone, env=env)
    assert f"teamflow, version {version}" in shown, shown
    assert re.search(rf"^pip \S+ from {re.escape(str(venv))}/", shown, re.M), shown
    assert re.search(r"^ok: 3 plugin\(s\)", shown, re.M), shown
    found = bash(". .venv/bin/activate && command -v teamflow pip python", cwd=clone, env=env).split()
    assert found == [str(venv / "bin" / name) for name in ("teamflow", "pip", "python")], found

    # The README's way to add a plugin to that environment works there.
    shown = bash(f"set -e\n. .venv/bin/activate\n{add_plugin}", cwd=clone, env=env)
    assert re.search(r"^ok: 4 plugin\(s\)", shown, re.M), shown
