"""What every benchmark section shares: tables, fake distributions, databases, ceilings, processes."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
PY = sys.executable
PG_URL = os.environ.get("TEAMFLOW_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


# -- output ------------------------------------------------------------------------------------


def table(title: str, rows: list[dict[str, Any]], notes: Sequence[str] = ()) -> None:
    if not rows:
        return
    print(f"\n== {title}")
    cols = list(dict.fromkeys(c for r in rows for c in r))  # every row's columns, first seen first
    fmt = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, fmt, strict=True)).rstrip())
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(w) for c, w in zip(cols, fmt, strict=True)).rstrip())
    for note in notes:
        print(f"  {note}")


def _fmt(v: Any) -> str:
    if isinstance(v, str):
        return one_line(v)
    if isinstance(v, float):
        if v != v:  # NaN
            return "-"
        return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.3f}" if abs(v) < 1 else f"{v:.2f}"
    return "" if v is None else str(v)


def one_line(text: str, limit: int = 240) -> str:
    """A message for a table cell: its first and last lines (a traceback's tail says why)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) <= 1:
        return text.strip()[:limit]
    return f"{lines[0]} ... {lines[-1]}"[:limit]


def progress(line: str) -> None:
    """One line per measured run on stderr, so a long benchmark shows where it is."""
    print(line, file=sys.stderr, flush=True)


def median(xs: Sequence[float]) -> float:
    """The median (the lower middle one of an even count); NaN when there is nothing."""
    ordered = sorted(x for x in xs if x == x)
    return ordered[(len(ordered) - 1) // 2] if ordered else float("nan")


def ints(text: str) -> list[int]:
    """``"500,5000"`` -> ``[500, 5000]`` (for options that take a list)."""
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def words(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


# -- the bench plugin as an installed distribution -----------------------------------------------


def install_dist(site: Path, dist: str, entry_point: str) -> None:
    info = site / f"{dist.replace('-', '_')}-1.0.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0.0\n")
    (info / "entry_points.txt").write_text(f"[teamflow.plugins]\n{entry_point}\n")
    (info / "RECORD").write_text("")


def env_with(site: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEAMFLOW_")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(HERE)])
    env.update(extra)
    return env


# -- databases -----------------------------------------------------------------------------------


def pg_schema() -> tuple[str, Callable[[], None]]:
    """A fresh schema in the bench PostgreSQL database: its teamflow URL and what drops it."""
    import psycopg2

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    conn = psycopg2.connect(PG_URL)
    conn.autocommit = True
    conn.cursor().execute(f"CREATE SCHEMA {schema}")

    def cleanup() -> None:
        conn.cursor().execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()

    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}schema={schema}", cleanup


def sqlite_ceiling(tmp: Path, synchronous: str) -> float:
    """Single-row INSERT+COMMIT transactions per second on this disk, WAL, with ``synchronous``.

    The engine's goals are stated against these (a step costs at least one commit unless
    commits are shared), so figures are printed as a share of the ceiling measured in the
    same run: this machine's speed drifts within minutes.
    """
    count = 2000 if synchronous == "FULL" else 20000
    path = tmp / f"ceiling-{uuid.uuid4().hex[:6]}.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=wal")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    t0 = time.perf_counter()
    for _ in range(count):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (v) VALUES ('x')")
        conn.execute("COMMIT")
    ceiling = count / (time.perf_counter() - t0)
    conn.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return ceiling


# -- child processes -------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1
try:
    _LIBC: Any = ctypes.CDLL(None, use_errno=True)
except OSError:  # not Linux: the try/finally blocks alone stop the children
    _LIBC = None


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the bench dies, even by SIGKILL (Linux)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Processes:
    """Child processes (workers, servers), each with its output in a log file; ``stop`` ends all.

    Each runs in a session of its own (a signal to the bench's terminal does not reach it
    half-way through a measurement) and gets SIGTERM if the bench dies.
    """

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, command: list[str], env: dict[str, str], cwd: Path, name: str) -> subprocess.Popen[bytes]:
        log = self.logdir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent,
            )  # fmt: skip
        self.procs.append((proc, log))
        return proc

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc, _ in self.procs]

    def check_alive(self) -> None:
        for proc, log in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args} exited with code {proc.returncode}: {tail(log)}")

    def stop(self, grace_s: float = 30.0) -> None:
        """SIGTERM to every process group, then SIGKILL to what is still there after ``grace_s``."""
        for proc, _ in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc, _ in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10.0)
        self.procs.clear()


def tail(path: Path, limit: int = 800) -> str:
    try:
        return path.read_text(errors="replace")[-limit:].strip()
    except OSError:
        return ""
