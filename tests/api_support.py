"""A real ``teamflow serve`` subprocess for the HTTP, schemathesis and browser tests.

Each server gets a free loopback port, its own SQLite file and a temporary working
directory (so no ``teamflow.toml`` is picked up unless a test writes one); its output
goes to a log file that failures print.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

STARTUP_S = 60.0
STOP_S = 20.0
# The seed article's two curl bodies, byte for byte.
PAYMENTS_REFUND = b'{"namespace": "payments", "name": "process_refund", "version": "2.1.0", "context": {"payment_id": "pay_123"}}'
CS_REFUND = b'{"namespace": "customer_success", "name": "process_refund", "version": "1.3.0", "context": {"ticket_id": "cs_456"}}'
JSON = {"Content-Type": "application/json"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def teamflow_command(*args: str) -> list[str]:
    """``teamflow ...`` run by this interpreter (the script next to it when installed)."""
    script = Path(sys.executable).with_name("teamflow")
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "teamflow.cli", *args]


class LiveServer:
    """A running ``teamflow serve``: its URL, process and log."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, log: Path, workdir: Path) -> None:
        self.process = process
        self.url = url
        self.log = log
        self.workdir = workdir

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0, **kwargs)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = STOP_S) -> tuple[int, float]:
        """SIGTERM, then wait; return (exit status, seconds it took). Kills it if it overstays."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError(
                f"teamflow serve ignored SIGTERM for {timeout}s; log:\n{self.output()}"
            ) from None
        return code, time.monotonic() - started


def _environment(database: Path, extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEAMFLOW_")}
    env.update(TEAMFLOW_DATABASE_URL=f"sqlite:///{database}", TEAMFLOW_LOG_LEVEL="INFO")
    env.update(extra)
    return env


@contextmanager
def live_server(
    workdir: Path, *, workers: int = 2, env: Mapping[str, str] | None = None
) -> Iterator[LiveServer]:
    """Start ``teamflow serve``, wait for /health/ready, yield it; stop it (SIGTERM) at the end."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = workdir / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            teamflow_command("serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)),
            cwd=workdir,
            env=_environment(workdir / "teamflow.db", env or {}),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    server = LiveServer(process, f"http://127.0.0.1:{port}", log, workdir)
    try:
        _wait_ready(server)
        yield server
    finally:
        if process.poll() is None:
            server.stop()


def _wait_ready(server: LiveServer) -> None:
    deadline = time.monotonic() + STARTUP_S
    last = "no answer"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(
                f"teamflow serve exited with {server.process.returncode}; log:\n{server.output()}"
            )
        try:
            response = httpx.get(f"{server.url}/health/ready", timeout=2.0)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text}"
        except httpx.TransportError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise AssertionError(f"teamflow serve not ready after {STARTUP_S}s ({last}); log:\n{server.output()}")


def poll(
    fetch: Callable[[], Any], until: Callable[[Any], bool], timeout: float = 30.0, every: float = 0.1
) -> Any:
    """Call ``fetch`` until ``until(result)`` holds; return the last result or fail with it."""
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if until(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met after {timeout}s; last: {result!r}")
        time.sleep(every)


def wait_finished(client: httpx.Client, task_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """Poll GET /tasks/{id} until the task ends; return the detail."""
    detail: dict[str, Any] = poll(
        lambda: client.get(f"/tasks/{task_id}").json(),
        lambda d: d["status"] in ("completed", "failed", "cancelled"),
        timeout=timeout,
    )
    return detail
