"""HTTP throughput and latency of ``teamflow serve`` on SQLite.

Starts ``teamflow serve --workers 2`` as a subprocess on a free loopback port with a
fresh SQLite database in a temporary directory, then ``clients`` concurrent httpx async
clients each loop, until ``seconds`` have passed: ``POST /workflows/execute`` (the seed's
payments refund, async, a new payment id every time) followed by ``GET /tasks/{id}`` of
the task it created. Requests per second and p50/p99 latency are reported per route.

The load generator shares the machine with the server (and its embedded workers, which
run the tasks the POSTs create), so the figures are a floor, not a ceiling.

    python benchmarks/http_bench.py --seconds 20 --clients 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REQUEST_TIMEOUT_S = 30.0
STARTUP_S = 60.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (0 when it is empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(fraction * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def _summary(latencies: list[float], errors: int, elapsed: float) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "errors": errors,
        "requests_per_s": round(len(ordered) / elapsed, 1),
        "p50_ms": round(_percentile(ordered, 0.50) * 1000, 2),
        "p99_ms": round(_percentile(ordered, 0.99) * 1000, 2),
    }


async def _drive(url: str, seconds: float, clients: int) -> dict[str, Any]:
    latencies: dict[str, list[float]] = {"execute": [], "get_task": []}
    errors = {"execute": 0, "get_task": 0}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds

    async def user(number: int) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits) as client:
            sent = 0
            while loop.time() < deadline:
                sent += 1
                body = {
                    "namespace": "payments",
                    "name": "process_refund",
                    "version": "2.1.0",
                    "context": {"payment_id": f"pay_bench_{number}_{sent}"},
                }
                started = time.perf_counter()
                try:
                    response = await client.post("/workflows/execute", json=body)
                except httpx.HTTPError:
                    errors["execute"] += 1
                    continue
                latencies["execute"].append(time.perf_counter() - started)
                if response.status_code != 202:
                    errors["execute"] += 1
                    continue
                started = time.perf_counter()
                try:
                    response = await client.get(f"/tasks/{response.json()['id']}")
                except httpx.HTTPError:
                    errors["get_task"] += 1
                    continue
                latencies["get_task"].append(time.perf_counter() - started)
                if response.status_code != 200:
                    errors["get_task"] += 1

    started = loop.time()
    await asyncio.gather(*(user(n) for n in range(clients)))
    elapsed = loop.time() - started
    return {
        "seconds": round(elapsed, 2),
        "clients": clients,
        **{route: _summary(latencies[route], errors[route], elapsed) for route in latencies},
    }


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"teamflow serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"teamflow serve was not ready after {STARTUP_S}s:\n{log.read_text()}")


def run(seconds: float = 20, clients: int = 50) -> dict[str, Any]:
    """Serve on a temporary SQLite database, drive it for ``seconds``, and return the figures."""
    script = Path(sys.executable).with_name("teamflow")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "teamflow.cli"]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="teamflow-bench-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TEAMFLOW_")}
        env.update(TEAMFLOW_DATABASE_URL=f"sqlite:///{tmp}/teamflow.db", TEAMFLOW_LOG_LEVEL="WARNING")
        log = Path(tmp) / "server.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [*command, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
                cwd=tmp, env=env, stdout=sink, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            _wait_ready(url, process, log)
            figures = asyncio.run(_drive(url, seconds, clients))
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
    return {"server": "teamflow serve --workers 2 (SQLite)", **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()
    print(json.dumps(run(seconds=args.seconds, clients=args.clients), indent=2))


if __name__ == "__main__":
    main()
