"""HTTP as users load it: ``teamflow serve`` on SQLite FULL, driven by wrk (a compiled load generator).

For each server configuration (``--workers 0``, an API-only node, then ``--workers 2``, the
embedded workers on), a fresh SQLite database (``synchronous=FULL``, the default) in a
temporary directory, and ``teamflow serve --host 127.0.0.1 --port P --workers W`` with the
three team plugins installed (nothing else configured). Once ``GET /health/ready`` answers 200,
one task is created (its id for ``GET /tasks/{id}``), then wrk runs one route at a time with
``-t THREADS -c CONNECTIONS -d SECONDS --latency --timeout 30s`` (a slow answer is measured, not
dropped as a timeout):

1. ``GET /health/live``: the floor, what the framework serves with no database;
2. ``POST /workflows/execute``: async, ``wrk/execute.lua`` (the seed's refund, a new payment id
   each request, ``Content-Type: application/json``);
3. with embedded workers only: the backlog drain, from the end of the POST load until no task
   is pending or in progress (polled in the database file, read-only, every 50 ms);
4. ``GET /tasks/{id}`` of the task created first; 5. ``GET /tasks`` (the first page).

``--workers 0`` runs twice: access control off, then on (a token made with ``teamflow tokens
create``, sent on every request but the floor's), to show what the checks cost.

Each route's row: requests/s, p50/p99 latency, errors (socket errors + non-2xx/3xx answers),
and the ratios to the floor of the same server (req/s ratio, p99 ratio).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from common import PY, Processes, sqlite_ceiling, table

HERE = Path(__file__).parent
LUA_EXECUTE = HERE / "wrk" / "execute.lua"
STARTUP_S = 60.0
DRAIN_TIMEOUT_S = 900.0
REFUND = {
    "namespace": "payments",
    "name": "process_refund",
    "version": "2.1.0",
    "context": {"payment_id": "pay_wrk_first"},
}
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests/s, p50/p99 (ms), requests and errors from ``wrk --latency`` output."""

    def latency(pct: str) -> float | None:
        match = re.search(rf"^\s*{pct}%\s+([0-9.]+)(us|ms|s|m|h)\s*$", output, re.M)
        return float(match.group(1)) * _UNITS[match.group(2)] if match else None

    rps = re.search(r"Requests/sec:\s+([0-9.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if rps is None or total is None:
        raise RuntimeError(f"cannot read wrk's output:\n{output[-1000:]}")
    socket_errors = sum(int(g) for g in sockets.groups()) if sockets else 0
    bad_status = int(non2xx.group(1)) if non2xx else 0
    return {
        "requests": int(total.group(1)),
        "req_per_s": float(rps.group(1)),
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "errors": socket_errors + bad_status,
        "socket_errors": socket_errors,
        "non_2xx_3xx": bad_status,
    }


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _post_json(url: str, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def _wait_ready(base: str, servers: Processes) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        servers.check_alive()
        try:
            if _get(f"{base}/health/ready", timeout=2.0)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"teamflow serve was not ready after {STARTUP_S:.0f} s")


def _open_tasks(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        row = conn.execute(
            "SELECT COUNT(*) FROM tf_task WHERE status NOT IN ('completed', 'failed', 'cancelled')"
        ).fetchone()
        return int(row[0])
    finally:
        conn.close()


def _drain_s(db: Path, servers: Processes) -> tuple[float | None, int]:
    """Seconds until no task is open (None: not within DRAIN_TIMEOUT_S), and the tasks left."""
    started = time.perf_counter()
    while True:
        left = _open_tasks(db)
        if left == 0:
            return time.perf_counter() - started, 0
        if time.perf_counter() - started > DRAIN_TIMEOUT_S:
            return None, left
        servers.check_alive()
        time.sleep(0.05)


def _wrk(
    url: str, seconds: float, connections: int, threads: int, script: Path | None = None, token: str | None = None
) -> dict[str, Any]:
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s", "--latency",
               "--timeout", "30s"]  # fmt: skip
    env = dict(os.environ)
    if token is not None:
        command += ["-H", f"Authorization: Bearer {token}"]
        env["TEAMFLOW_BENCH_TOKEN"] = token  # the POST script builds its own headers
    if script is not None:
        command += ["-s", str(script)]
    done = subprocess.run(
        [*command, url], capture_output=True, text=True, timeout=seconds + 120, check=False, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {(done.stdout + done.stderr)[-800:]}")
    return parse_wrk(done.stdout)


def _serve_command() -> list[str]:
    script = Path(PY).with_name("teamflow")
    return [str(script)] if script.exists() else [PY, "-m", "teamflow.cli"]


def _create_token(env: dict[str, str], workdir: Path) -> str:
    """A token of scopes read and execute on payments, made as an operator would (the CLI)."""
    done = subprocess.run(
        [*_serve_command(), "tokens", "create", "--name", "bench", "--namespace", "payments", "--scope", "read",
         "--scope", "execute"],
        env=env, cwd=workdir, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return done.stdout.strip().splitlines()[-1]


def run_server(
    tmp: Path, workers: int, seconds: float, connections: int, threads: int, access: bool = False
) -> list[dict[str, Any]]:
    """Every route against one ``teamflow serve --workers W``; one row per route. ``access``:
    a token exists (access control on) and every request but the floor carries it."""
    workdir = tmp / f"http-workers-{workers}{'-access' if access else ''}"
    workdir.mkdir()
    db = workdir / "teamflow.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEAMFLOW_")}
    env["TEAMFLOW_DATABASE_URL"] = f"sqlite:///{db}"
    token = _create_token(env, workdir) if access else None
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    servers = Processes(workdir)
    rows: list[dict[str, Any]] = []
    server = f"serve --workers {workers}" + (", access control on" if access else "")
    try:
        servers.start(
            [*_serve_command(), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
            env, workdir, "serve",
        )  # fmt: skip
        _wait_ready(base, servers)
        first = _post_json(f"{base}/workflows/execute", REFUND, token)["id"]
        floor = _wrk(f"{base}/health/live", seconds, connections, threads)
        rows.append({"server": server, "route": "GET /health/live (floor)", **floor})
        post = _wrk(f"{base}/workflows/execute", seconds, connections, threads, LUA_EXECUTE, token)
        rows.append({"server": server, "route": "POST /workflows/execute (async)", **post})
        if workers > 0:
            drained, left = _drain_s(db, servers)
            rows[-1]["drain_s"] = drained
            if drained is None:
                rows[-1]["note"] = f"{left} tasks still open after {DRAIN_TIMEOUT_S:.0f} s"
        rows.append({"server": server, "route": "GET /tasks/{id}", **_wrk(f"{base}/tasks/{first}", seconds,
                                                                            connections, threads, token=token)})  # fmt: skip
        rows.append(
            {"server": server, "route": "GET /tasks",
             **_wrk(f"{base}/tasks", seconds, connections, threads, token=token)}
        )  # fmt: skip
    finally:
        servers.stop()
    for row in rows:
        row["x_floor_req_per_s"] = row["req_per_s"] / floor["req_per_s"] if floor["req_per_s"] else None
        row["x_floor_p99"] = row["p99_ms"] / floor["p99_ms"] if floor["p99_ms"] and row["p99_ms"] else None
    return rows


def bench_http(tmp: Path, seconds: float, connections: int, threads: int) -> None:
    if shutil.which("wrk") is None:
        print("\n== http (wrk): not run: wrk is not installed (Debian: apt-get install wrk)")
        return
    ceiling = sqlite_ceiling(tmp, "FULL")
    rows: list[dict[str, Any]] = []
    for workers, access in ((0, False), (0, True), (2, False)):
        rows += run_server(tmp, workers, seconds, connections, threads, access)
    plain = {r["route"]: r for r in rows if r["server"] == "serve --workers 0"}
    for row in rows:
        if row["server"].endswith("access control on") and row["route"] in plain:
            row["x_access_off"] = row["req_per_s"] / plain[row["route"]]["req_per_s"]
    keys = ("server", "route", "req_per_s", "p50_ms", "p99_ms", "errors", "x_floor_req_per_s", "x_floor_p99",
            "x_access_off", "requests", "socket_errors", "non_2xx_3xx", "drain_s", "note")  # fmt: skip
    table(
        f"HTTP: teamflow serve on SQLite FULL, wrk -t{threads} -c{connections} -d{seconds:g}s, one route at a time",
        [{k: r.get(k) for k in keys} for r in rows],
        [
            "x_floor_*: the route over GET /health/live of the same server (req/s ratio, p99 ratio); errors = "
            "socket errors (connect, read, write, timeout > 30 s) + non-2xx/3xx answers",
            "drain_s: after the POST load stopped, until no task is pending or in progress (embedded workers)",
            "x_access_off: req/s with access control on (a token of scopes read, execute on every request) over "
            "the same route with it off, both --workers 0, in this run",
            f"SQLite FULL commit ceiling of this run: {ceiling:,.0f} single-row commits/s",
        ],
    )
