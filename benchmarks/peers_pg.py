"""The peers teamflow is measured against on PostgreSQL (issues 4 and 13), and the commit ceilings.

Two harnesses. ``run_user`` (issue 13) measures as a user would: workers started and warm
first, a one-caller enqueue inside the timed window, steps that check the result they receive;
``benchmarks/user_bench.py`` runs it in the same rounds as teamflow (see its docstring).
The drain only harness, ``run_peers``, is described here.

``run_peers(n_tasks, pg_dsn)`` (drain only: tasks stored before the workers start) runs, one system at a time, for each peer (DBOS Transact and
Procrastinate), each shape and each worker count (1 and 2 worker *processes*):

1. a fresh database (``bench_dbos`` / ``bench_procrastinate``, dropped again afterwards) on the
   server of ``pg_dsn``; the peer's own schema applied to it by the peer itself;
2. ``n_tasks`` tasks enqueued up front by a separate process (not timed);
3. the worker processes started; each one connects and loads the peer, prints ``ready`` and
   waits for a go file, so the workers start dequeuing together;
4. the workers drain the queue; the parent polls until every task's last step is recorded, then
   kills the workers (``try/finally``: no worker outlives the run, even on an error; a worker
   also exits by itself when its parent is gone, so a SIGKILLed run leaves no orphan either).

Each configuration runs ``repeats`` times (3 by default, round-robin over the configurations)
and its row is the run with the median steps/s (the lower middle one when an even number of
runs succeeded; a run that failed, e.g. because the server restarted, is left out), since other
work on a shared 2-core machine only ever makes a run slower.

Shapes (all steps are no-ops): ``chain`` = a -> b -> c -> d; ``diamond`` = a, then b and c in
parallel, then d (d waits for both). How each peer expresses them is told in
``peer_apps/dbos_app.py`` and ``peer_apps/procrastinate_app.py``; in both, each step's result is
durably recorded by the system itself (DBOS: its step checkpoint; Procrastinate: the arguments
of the job the step defers, and for the final step a row in a result table).

Timing. Every step records ``time.time()`` when its body starts and when it ends, and that pair
*is* the step's result, so it is read back from what the system stored (DBOS:
``dbos.operation_outputs``; Procrastinate: the timings carried from job to job into
``peer_results``). Workers and parent share one machine, hence one clock.

* ``seconds``: from the earliest step start to the latest step end over all tasks. Worker
  start-up (imports, pools, the peer's launch) and the enqueueing are excluded; so is the durable
  write of the very last step's result, which lands a few ms after the window closes.
* ``tasks_per_s`` = tasks / seconds, ``steps_per_s`` = 4 x tasks / seconds.
* Step latency = step end - the moment the step became ready, where ready is the end of its
  predecessor (chain b, c, d: the previous step; diamond b and c: a; diamond d: the later of b
  and c). It therefore includes the durable recording of the predecessor's result, the
  hand-off to the next step (for DBOS, inside the worker's thread; for Procrastinate, the defer,
  the job's wait in the queue and its fetch by a worker) and the step itself. The first step of each task is left out: with every task enqueued up
  front, its "ready" time is the enqueue, and its wait is the backlog (it grows with N to the
  whole run), a throughput figure rather than a latency one. ``p50_step_ms``/``p99_step_ms``
  are nearest-rank percentiles over the 3 x N remaining steps (``step_latencies_ms``).

Settings given to each peer (its best on this 2-core machine in our tries, kept fixed here):
``DBOS_SETTINGS`` and ``PROCRASTINATE_SETTINGS`` below.

``ceilings(pg_dsn, seconds)``: single-row ``INSERT`` + ``COMMIT`` per second from one
connection, measured with ``pgbench`` (``-n -c 1 -T seconds`` on a one-line custom script) and
with the same loop in Python psycopg2 (autocommit off, ``commit()`` after each insert).

    python benchmarks/peers_pg.py --tasks 500 [--dsn postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import math
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg2
from measure import STATS_SETTLE_S, Probe, usage

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
SYSTEMS = ("dbos", "procrastinate")
SHAPES = ("chain", "diamond")
WORKER_COUNTS = (1, 2)
STEPS_PER_TASK = 4
PEER_APPS = Path(__file__).resolve().parent / "peer_apps"

# Predecessors of each step; a step without an entry is a task's first step.
PREDECESSORS: dict[str, dict[str, tuple[str, ...]]] = {
    "chain": {"b": ("a",), "c": ("b",), "d": ("c",)},
    "diamond": {"b": ("a",), "c": ("a",), "d": ("b", "c")},
}

# DBOS: a queue with a per-process limit, so two workers share the backlog (with no limit the
# first worker to poll claims all of it); one executor thread per workflow that limit admits
# (a sync workflow holds a thread while it runs); the queue's polling interval, which bounds how
# fast freed slots are refilled (DBOS dequeues by polling, every 1 s by default). Tried on this
# machine: limits 8, 16, 32 and intervals 0.01 to 0.2 s; 16 and 0.01 s gave the best steps/s
# over 1 and 2 workers (8 has lower latency and about 10% less throughput, 32 the reverse).
DBOS_SETTINGS = {"worker_concurrency": 16, "threads": 16, "polling_interval_sec": 0.01}
# Procrastinate: jobs run concurrently per worker process (an asyncio worker; its pool holds one
# connection per job plus spares for LISTEN and housekeeping). Tried 1 to 32: 2 to 6 are best
# here (more only adds contention on the fetch), 4 is kept. The fallback poll is 0.1 s instead
# of 5 s (see peer_apps/procrastinate_app.py: a missed NOTIFY once stalled a run for 5 s).
PROCRASTINATE_SETTINGS = {"concurrency": 4, "fetch_job_polling_interval": 0.1}

START_TIMEOUT_S = 90.0
POLL_S = 0.05


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (0 when it is empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), math.ceil(fraction * len(sorted_values))))
    return sorted_values[rank - 1]


def step_latencies_ms(shape: str, timings: dict[Any, dict[str, tuple[float, float]]]) -> list[float]:
    """Latency of every non-first step: its end minus the latest end among its predecessors."""
    out: list[float] = []
    for steps in timings.values():
        for step, preds in PREDECESSORS[shape].items():
            ready = max(steps[p][1] for p in preds)
            out.append((steps[step][1] - ready) * 1000.0)
    return out


def summarize(
    system: str, shape: str, workers: int, n_tasks: int, timings: dict[Any, dict[str, tuple[float, float]]]
) -> dict[str, Any]:
    """One result row from every task's step timings (all tasks must be complete)."""
    if len(timings) != n_tasks:
        raise RuntimeError(f"{len(timings)} of {n_tasks} tasks have a full set of step results")
    starts = [t0 for steps in timings.values() for t0, _ in steps.values()]
    ends = [t1 for steps in timings.values() for _, t1 in steps.values()]
    seconds = max(ends) - min(starts)
    lat = sorted(step_latencies_ms(shape, timings))
    return {
        "system": system,
        "shape": shape,
        "workers": workers,
        "tasks": n_tasks,
        "seconds": round(seconds, 3),
        "tasks_per_s": round(n_tasks / seconds, 1),
        "steps_per_s": round(STEPS_PER_TASK * n_tasks / seconds, 1),
        "p50_step_ms": round(percentile(lat, 0.50), 2),
        "p99_step_ms": round(percentile(lat, 0.99), 2),
        "error": None,
    }


def _error_row(system: str, shape: str, workers: int, n_tasks: int, error: str) -> dict[str, Any]:
    return {
        "system": system,
        "shape": shape,
        "workers": workers,
        "tasks": n_tasks,
        "seconds": None,
        "tasks_per_s": None,
        "steps_per_s": None,
        "p50_step_ms": None,
        "p99_step_ms": None,
        "error": error,
    }


# --------------------------------------------------------------------------- databases


def _with_dbname(dsn: str, dbname: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


def _admin(dsn: str, *statements: str) -> None:
    conn = psycopg2.connect(dsn)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def _drop_database(dsn: str, dbname: str) -> None:
    for attempt in range(5):
        try:
            _admin(
                dsn,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{dbname}' AND pid <> pg_backend_pid()",
                f'DROP DATABASE IF EXISTS "{dbname}"',
            )
            return
        except psycopg2.OperationalError:
            if attempt == 4:
                raise
            time.sleep(1.0)


@contextlib.contextmanager
def _fresh_database(dsn: str, dbname: str) -> Iterator[str]:
    """A new empty database on the server of ``dsn``, dropped on exit; yields its DSN."""
    _drop_database(dsn, dbname)
    _admin(dsn, f'CREATE DATABASE "{dbname}"')
    try:
        yield _with_dbname(dsn, dbname)
    finally:
        _drop_database(dsn, dbname)


def _query(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            rows = cur.fetchall()
        conn.rollback()
        return rows
    finally:
        conn.close()


# --------------------------------------------------------------------------- processes


def _app_command(module: str, *args: str) -> list[str]:
    """Run a peer app by module name (not as __main__), from benchmarks/peer_apps."""
    code = f"import sys; sys.path.insert(0, {str(PEER_APPS)!r}); import {module}; {module}.main()"
    return [sys.executable, "-c", code, *args]


def _tail(path: Path, limit: int = 800) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-limit:].strip()


class _Workers:
    """Worker subprocesses with their output in files; every one is killed by ``stop``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, command: list[str], env: dict[str, str], name: str) -> None:
        log = self.workdir / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.procs.append((proc, log))

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for _, log in self.procs:
            while "ready" not in _tail(log, 1_000_000).splitlines():
                self.check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"worker not ready after {timeout:.0f} s: {_tail(log)}")
                time.sleep(0.02)

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc, _ in self.procs]

    def check_alive(self) -> None:
        for proc, log in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with code {proc.returncode}: {_tail(log)}")

    def stop(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        for proc, _ in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5.0)
        self.procs.clear()


def _run_setup(command: list[str], env: dict[str, str], timeout: float) -> None:
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0 or "enqueued" not in done.stdout:
        raise RuntimeError(f"enqueue failed ({done.returncode}): {(done.stdout + done.stderr)[-800:]}")


def _drain_timeout(n_tasks: int) -> float:
    # Generous: 20 steps/s would already be 25x below the slowest figure seen here.
    return 60.0 + STEPS_PER_TASK * n_tasks / 20.0


# --------------------------------------------------------------------------- one run


class _Peer:
    system = ""
    dbname = ""
    db = ""  # the fresh database of the current run

    def enqueue_command(self, shape: str, n_tasks: int, how: _Enqueue | None = None) -> list[str]:
        raise NotImplementedError

    def worker_command(self, index: int, go_file: Path | None) -> list[str]:
        raise NotImplementedError

    def env(self, db: str) -> dict[str, str]:
        return dict(os.environ)

    def progress(self, cur: Any) -> tuple[int, int]:
        """(tasks whose final step is recorded, tasks or jobs that failed), read with ``cur``."""
        raise NotImplementedError

    def timings(self, db: str, shape: str) -> dict[Any, dict[str, tuple[float, float]]]:
        raise NotImplementedError

    def served(self, cur: Any) -> int:
        """How many worker processes ran a task or job so far, read with ``cur``."""
        raise NotImplementedError

    def verify(self, db: str, shape: str, expected: int) -> None:
        """Raise unless ``expected`` checked tasks all ended with the right result."""
        raise NotImplementedError


@dataclass(frozen=True)
class _Enqueue:
    """How the user-faithful harness enqueues: the checked tasks, numbered from ``first``."""

    first: int = 0
    setup: bool = False  # the schema is there already
    one_by_one: bool = True  # one call (and commit) per task, as one caller would
    window_file: Path | None = None


class _Dbos(_Peer):
    system = "dbos"
    dbname = "bench_dbos"

    def enqueue_command(self, shape: str, n_tasks: int, how: _Enqueue | None = None) -> list[str]:
        # DBOS creates its schema when needed and registers the queue (idempotently) each time;
        # it enqueues one workflow per call in either mode.
        command = _app_command(
            "dbos_app", "enqueue", "--db", self.db, "--shape", shape, "--tasks", str(n_tasks),
            "--worker-concurrency", str(DBOS_SETTINGS["worker_concurrency"]),
            "--polling-interval", str(DBOS_SETTINGS["polling_interval_sec"]),
        )  # fmt: skip
        if how is not None:
            command += ["--checked", "--first", str(how.first)]
            if how.window_file:
                command += ["--window-file", str(how.window_file)]
        return command

    def worker_command(self, index: int, go_file: Path | None) -> list[str]:
        command = _app_command(
            "dbos_app", "worker", "--db", self.db, "--executor-id", f"peer-worker-{index}",
            "--threads", str(DBOS_SETTINGS["threads"]),
        )  # fmt: skip
        return command + (["--go-file", str(go_file)] if go_file else [])

    def served(self, cur: Any) -> int:
        cur.execute(
            "SELECT count(DISTINCT executor_id) FROM dbos.workflow_status"
            " WHERE queue_name = 'peer_bench' AND status = 'SUCCESS'"
        )
        return int(cur.fetchone()[0])

    def verify(self, db: str, shape: str, expected: int) -> None:
        counts = dict(
            _query(db, "SELECT status, count(*) FROM dbos.workflow_status WHERE queue_name = 'peer_bench'"
                   " GROUP BY status")
        )  # fmt: skip
        if counts != {"SUCCESS": expected}:
            raise RuntimeError(f"expected {expected} workflows in SUCCESS, found {counts}")

    def progress(self, cur: Any) -> tuple[int, int]:
        cur.execute(
            "SELECT count(*) FILTER (WHERE status = 'SUCCESS'),"
            " count(*) FILTER (WHERE status NOT IN ('SUCCESS', 'ENQUEUED', 'PENDING'))"
            " FROM dbos.workflow_status WHERE queue_name = 'peer_bench'"
        )
        done, failed = cur.fetchone()
        return int(done), int(failed)

    def timings(self, db: str, shape: str) -> dict[Any, dict[str, tuple[float, float]]]:
        rows = _query(
            db,
            "SELECT o.workflow_uuid, o.function_name, o.output, o.serialization"
            " FROM dbos.operation_outputs o JOIN dbos.workflow_status s USING (workflow_uuid)"
            " WHERE s.queue_name = 'peer_bench' AND s.status = 'SUCCESS'",
        )
        out: dict[Any, dict[str, tuple[float, float]]] = {}
        for wf, name, output, serialization in rows:
            step = name.rsplit("_", 1)[-1]  # chain_a -> a
            out.setdefault(wf, {})[step] = _decode_dbos(output, serialization)
        return {wf: steps for wf, steps in out.items() if len(steps) == STEPS_PER_TASK}


def _decode_dbos(output: str, serialization: str | None) -> tuple[float, float]:
    """A step result as DBOS stored it: base64 pickle by default (written by our own worker)."""
    if serialization in (None, "py_pickle"):
        value = pickle.loads(base64.b64decode(output))
    else:
        value = json.loads(output)
    return float(value[0]), float(value[1])


class _Procrastinate(_Peer):
    system = "procrastinate"
    dbname = "bench_procrastinate"

    def env(self, db: str) -> dict[str, str]:
        return {
            **os.environ,
            "PEER_BENCH_DB": db,
            "PEER_BENCH_POOL": str(PROCRASTINATE_SETTINGS["concurrency"] + 4),
        }

    def enqueue_command(self, shape: str, n_tasks: int, how: _Enqueue | None = None) -> list[str]:
        command = _app_command("procrastinate_app", "enqueue", "--shape", shape, "--tasks", str(n_tasks))
        if how is not None:
            command += ["--checked", "--first", str(how.first)]
            command += [] if how.setup else ["--skip-setup"]
            command += ["--one-by-one"] if how.one_by_one else []
            command += ["--window-file", str(how.window_file)] if how.window_file else []
        return command

    def worker_command(self, index: int, go_file: Path | None) -> list[str]:
        command = _app_command(
            "procrastinate_app", "worker", "--concurrency", str(PROCRASTINATE_SETTINGS["concurrency"]),
            "--polling-interval", str(PROCRASTINATE_SETTINGS["fetch_job_polling_interval"]),
        )  # fmt: skip
        return command + (["--go-file", str(go_file)] if go_file else [])

    def served(self, cur: Any) -> int:
        cur.execute("SELECT count(DISTINCT worker_id) FROM procrastinate_jobs WHERE status = 'succeeded'")
        return int(cur.fetchone()[0])

    def verify(self, db: str, shape: str, expected: int) -> None:
        bad = _query(db, "SELECT count(*) FROM procrastinate_jobs WHERE status <> 'succeeded'")[0][0]
        results = _query(db, "SELECT task, (timings->>'d')::int FROM peer_results")
        # the checked tasks' final result: chain n + 3, diamond (n + 1) + (n + 2)
        wrong = [t for t, d in results if d != (t + 3 if shape == "chain" else 2 * t + 3)]
        if bad or wrong or len(results) != expected:
            raise RuntimeError(
                f"expected {expected} results: {len(results)} found, {len(wrong)} wrong, {bad} jobs not succeeded"
            )

    def progress(self, cur: Any) -> tuple[int, int]:
        cur.execute(
            "SELECT (SELECT count(*) FROM peer_results),"
            " (SELECT count(*) FROM procrastinate_jobs WHERE status IN ('failed', 'aborted'))"
        )
        done, failed = cur.fetchone()
        return int(done), int(failed)

    def timings(self, db: str, shape: str) -> dict[Any, dict[str, tuple[float, float]]]:
        rows = _query(db, "SELECT task, timings FROM peer_results")
        return {task: {step: (float(t[0]), float(t[1])) for step, t in steps.items()} for task, steps in rows}


def _run_one(peer: _Peer, shape: str, workers: int, n_tasks: int, pg_dsn: str) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"peers-{peer.system}-"))
    try:
        with _fresh_database(pg_dsn, peer.dbname) as db:
            peer.db = db
            env = peer.env(db)
            _run_setup(peer.enqueue_command(shape, n_tasks), env, timeout=START_TIMEOUT_S)
            pool = _Workers(workdir)
            try:
                go_file = workdir / "go"
                for index in range(workers):
                    pool.start(peer.worker_command(index, go_file), env, f"worker-{index}")
                pool.wait_ready(START_TIMEOUT_S)
                go_file.touch()
                _wait_drained(peer, db, pool, n_tasks)
            finally:
                pool.stop()  # before the database is dropped under them
            return summarize(peer.system, shape, workers, n_tasks, peer.timings(db, shape))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_drained(peer: _Peer, db: str, pool: _Workers, n_tasks: int) -> None:
    """Poll (one connection, autocommit) until every task's final step is recorded."""
    deadline = time.monotonic() + _drain_timeout(n_tasks)
    conn = psycopg2.connect(db)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            while True:
                done, failed = peer.progress(cur)
                if failed:
                    raise RuntimeError(f"{failed} tasks or jobs failed")
                if done >= n_tasks:
                    return
                pool.check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"timed out with {done} of {n_tasks} tasks done")
                time.sleep(POLL_S)
    finally:
        conn.close()


# --------------------------------------------------------------------------- the user-faithful harness

WARM_FIRST = 1_000_000  # warm-up tasks are numbered from here, the measured ones from 0
WARM_ROUNDS = 10


def _peer(system: str) -> _Peer:
    return {"dbos": _Dbos, "procrastinate": _Procrastinate}[system]()


def run_user(
    system: str,
    shape: str,
    workers: int,
    n_tasks: int,
    pg_dsn: str = DEFAULT_DSN,
    poll_s: float = 0.005,
    settle_s: float = STATS_SETTLE_S,
    ceiling: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One run as a user would see it: workers started and warm, the enqueue inside the window.

    1. a fresh database, the peer's schema and the queue (an enqueue of 0 tasks);
    2. the worker processes, started and launched (each prints ``ready`` once it is);
    3. warm-up rounds of one checked task per worker, until every worker ran one (DBOS: the
       ``executor_id`` of the finished workflows; Procrastinate: the jobs' ``worker_id``), at
       most ``WARM_ROUNDS``, each waited for until done;
    4. a separate enqueuer process, started now (after the workers are warm): it imports and
       connects, then enqueues the N checked tasks, one call per task (one caller), and writes
       the ``time.time()`` of its first call and of its last return. The window opens at that
       first call; the bench waits for the file (checking only that it exists) and then polls the
       database every ``poll_s`` until every task's final step is recorded, which closes it;
    5. every task must have ended right (``_Peer.verify``), or the run raises.

    CPU and WAL fsyncs are read as for teamflow (``measure.py``): ``settle_s`` after the
    warm-up, and the fsyncs again once the workers and the enqueuer have exited. ``ceiling``
    (the commit ceilings, measured during that wait) goes into the result as ``ceilings``.
    """
    peer = _peer(system)
    workdir = Path(tempfile.mkdtemp(prefix=f"peers-user-{system}-"))
    try:
        with _fresh_database(pg_dsn, peer.dbname) as db:
            peer.db = db
            env = peer.env(db)
            _run_setup(peer.enqueue_command(shape, 0, _Enqueue(setup=True)), env, timeout=START_TIMEOUT_S)
            pool = _Workers(workdir)
            with contextlib.closing(Probe([], pg_dsn)) as probe:
                try:
                    for index in range(workers):
                        pool.start(peer.worker_command(index, None), env, f"worker-{index}")
                    pool.wait_ready(START_TIMEOUT_S)
                    warm_tasks, warm = _warm_up(peer, db, pool, shape, workers, env)
                    probe.pids = pool.pids
                    started = time.perf_counter()
                    limits = ceiling() if ceiling is not None else {}
                    # the warm-up's (and the ceilings') WAL statistics published (measure.py)
                    time.sleep(max(0.0, settle_s - (time.perf_counter() - started)))
                    before = probe.read()
                    first, created, end = _timed_enqueue(
                        peer, db, pool, shape, n_tasks, warm_tasks, env, workdir, poll_s
                    )
                    after = probe.read()
                finally:
                    pool.stop()  # before the database is dropped under them
                after.wal_sync = probe.wal_sync_after_exit()
            peer.verify(db, shape, warm_tasks + n_tasks)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    window = end - first
    return {
        "steps_per_s": STEPS_PER_TASK * n_tasks / window,
        "create_per_s": n_tasks / (created - first),
        "window_s": window,
        **usage(before, after, n_tasks),
        "warm": warm,
        "ceilings": limits,
    }


def _wait_done(peer: _Peer, cur: Any, pool: _Workers, expected: int, poll_s: float) -> float:
    """Poll until ``expected`` tasks finished; the ``time.time()`` of the poll that saw it."""
    deadline = time.monotonic() + _drain_timeout(expected)
    while True:
        done, failed = peer.progress(cur)
        if failed:
            raise RuntimeError(f"{failed} tasks or jobs failed")
        if done >= expected:
            return time.time()
        pool.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out with {done} of {expected} tasks done")
        time.sleep(poll_s)


def _warm_up(
    peer: _Peer, db: str, pool: _Workers, shape: str, workers: int, env: dict[str, str]
) -> tuple[int, str]:
    """Rounds of one checked task per worker until every worker ran one; (tasks, summary)."""
    tasks = served = rounds = 0
    conn = psycopg2.connect(db)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            while rounds < WARM_ROUNDS and served < workers:
                rounds += 1
                how = _Enqueue(first=WARM_FIRST + tasks)
                _run_setup(peer.enqueue_command(shape, workers, how), env, timeout=START_TIMEOUT_S)
                tasks += workers
                _wait_done(peer, cur, pool, tasks, POLL_S)
                served = peer.served(cur)
    finally:
        conn.close()
    return tasks, f"{served}/{workers} in {rounds}"


def _timed_enqueue(
    peer: _Peer, db: str, pool: _Workers, shape: str, n_tasks: int, warm_tasks: int,
    env: dict[str, str], workdir: Path, poll_s: float,
) -> tuple[float, float, float]:  # fmt: skip
    """(first enqueue call, last enqueue return, last task done), all ``time.time()``."""
    window_file = workdir / "window.json"
    log = workdir / "enqueuer.log"
    command = peer.enqueue_command(shape, n_tasks, _Enqueue(first=0, window_file=window_file))
    conn = psycopg2.connect(db)
    with open(log, "wb") as out:
        enqueuer = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S + _drain_timeout(n_tasks)
        while not window_file.exists():
            if enqueuer.poll() is not None and not window_file.exists():
                raise RuntimeError(f"enqueuer exited with {enqueuer.returncode}: {_tail(log)}")
            pool.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the enqueuer did not finish: {_tail(log)}")
            time.sleep(poll_s)
        window = json.loads(window_file.read_text())
        conn.autocommit = True
        with conn.cursor() as cur:
            end = _wait_done(peer, cur, pool, warm_tasks + n_tasks, poll_s)
        return float(window["first"]), float(window["last"]), end
    finally:
        conn.close()
        if enqueuer.poll() is None:
            try:
                enqueuer.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(enqueuer.pid, signal.SIGKILL)
                enqueuer.wait(timeout=10)


def _installed(module: str) -> str | None:
    """None when the peer's package imports in this interpreter, else why not."""
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode == 0:
        return None
    last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
    return f"{module} cannot be imported here: {last}"


def run_peers(n_tasks: int = 500, pg_dsn: str = DEFAULT_DSN, repeats: int = 3) -> list[dict[str, Any]]:
    """Rows for each peer x shape x worker count; a peer that cannot run gets rows with ``error``.

    Every configuration runs ``repeats`` times (round-robin, so a burst of outside load hits
    different configurations rather than all runs of one) and its row is the run with the median
    steps/s among those that succeeded; the error of the last failed run when none did.
    """
    peers: list[tuple[_Peer, str]] = [(_Dbos(), "dbos"), (_Procrastinate(), "procrastinate")]
    missing = {peer.system: _installed(module) for peer, module in peers}
    runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for _ in range(max(1, repeats)):
        for peer, _module in peers:
            for shape in SHAPES:
                for workers in WORKER_COUNTS:
                    key = (peer.system, shape, workers)
                    why = missing[peer.system]
                    if why:
                        runs.setdefault(key, []).append(_error_row(peer.system, shape, workers, n_tasks, why))
                        continue
                    try:
                        row = _run_one(peer, shape, workers, n_tasks, pg_dsn)
                    except Exception as exc:
                        row = _error_row(peer.system, shape, workers, n_tasks, f"{type(exc).__name__}: {exc}")
                    runs.setdefault(key, []).append(row)
    return [_median_run(rows) for rows in runs.values()]


def _median_run(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ok = sorted((r for r in rows if r["error"] is None), key=lambda r: r["steps_per_s"])
    if not ok:
        return rows[-1]
    return ok[(len(ok) - 1) // 2]


# --------------------------------------------------------------------------- ceilings


def _pgbench() -> str | None:
    found = shutil.which("pgbench")
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"), reverse=True)
    return str(candidates[0]) if candidates else None


def _pgbench_commits_per_s(pg_dsn: str, seconds: float) -> float:
    binary = _pgbench()
    if binary is None:
        raise RuntimeError("pgbench not found (Debian: postgresql-client / postgresql-contrib)")
    with tempfile.TemporaryDirectory(prefix="pgbench-") as tmp:
        script = Path(tmp) / "insert.sql"
        script.write_text("INSERT INTO bench_ceiling(v) VALUES (1);\n")
        done = subprocess.run(
            [binary, "-n", "-c", "1", "-T", str(max(1, round(seconds))), "-f", str(script), pg_dsn],
            capture_output=True, text=True, timeout=seconds + 60, check=False,
        )  # fmt: skip
    match = re.search(r"tps = ([0-9.]+)", done.stdout)
    if done.returncode != 0 or not match:
        raise RuntimeError(f"pgbench failed ({done.returncode}): {(done.stdout + done.stderr)[-500:]}")
    return float(match.group(1))


def _psycopg2_commits_per_s(pg_dsn: str, seconds: float) -> float:
    conn = psycopg2.connect(pg_dsn)
    try:
        conn.autocommit = False
        commits = 0
        with conn.cursor() as cur:
            start = time.perf_counter()
            end = start + seconds
            while True:
                cur.execute("INSERT INTO bench_ceiling(v) VALUES (1)")
                conn.commit()
                commits += 1
                if commits % 64 == 0 and time.perf_counter() >= end:
                    break
            elapsed = time.perf_counter() - start
        return commits / elapsed
    finally:
        conn.close()


def ceilings(pg_dsn: str = DEFAULT_DSN, seconds: float = 5.0) -> dict[str, Any]:
    """Single-row INSERT + COMMIT per second from one connection: pgbench, then psycopg2."""
    _admin(
        pg_dsn,
        "DROP TABLE IF EXISTS bench_ceiling",
        "CREATE TABLE bench_ceiling (v integer)",
    )
    try:
        result: dict[str, Any] = {}
        try:
            result["pgbench_commits_per_s"] = round(_pgbench_commits_per_s(pg_dsn, seconds), 1)
        except Exception as exc:
            result["pgbench_commits_per_s"] = None
            result["pgbench_error"] = f"{type(exc).__name__}: {exc}"
        result["psycopg2_commits_per_s"] = round(_psycopg2_commits_per_s(pg_dsn, seconds), 1)
        return result
    finally:
        _admin(pg_dsn, "DROP TABLE IF EXISTS bench_ceiling")


# --------------------------------------------------------------------------- CLI


def format_table(rows: list[dict[str, Any]]) -> str:
    head = (
        "system",
        "shape",
        "workers",
        "tasks",
        "seconds",
        "tasks/s",
        "steps/s",
        "p50 ms",
        "p99 ms",
        "error",
    )
    keys = ("system", "shape", "workers", "tasks", "seconds", "tasks_per_s", "steps_per_s",
            "p50_step_ms", "p99_step_ms", "error")  # fmt: skip
    body = [tuple("" if row[k] is None else str(row[k]) for k in keys) for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in body]
    return "\n".join(line.rstrip() for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration; the median is kept")
    parser.add_argument("--ceiling-seconds", type=float, default=5.0)
    parser.add_argument("--json", action="store_true", help="print the rows and ceilings as JSON instead")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the try/finally blocks stop the workers and drop the databases.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    rows = run_peers(args.tasks, args.dsn, args.repeats)
    limits = ceilings(args.dsn, args.ceiling_seconds)
    if args.json:
        print(json.dumps({"rows": rows, "ceilings": limits}, indent=2))
        return
    print(format_table(rows))
    print()
    for key, value in limits.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
