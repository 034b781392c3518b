"""The throughput users feel (issue 13): workers started and warm first, creation inside the window.

One measured run of teamflow (``run_user``):

1. a fresh database: a SQLite file (``synchronous=FULL``, the default; the workers share the
   file) or a PostgreSQL schema of its own; the bench process holds a ``Host`` on it with the
   bench plugin (``discover=False``), which creates the schema;
2. ``W`` worker processes, ``python -m teamflow.cli worker --concurrency C``, with
   ``TEAMFLOW_DATABASE_URL`` and the bench plugin installed as a distribution; nothing else
   is configured (the default poll interval, log level and lease), as a user would start them;
3. warm-up, in rounds: one task per worker, waited for until completed; another round while
   some worker has not yet completed a step (read from the step transitions' actor, which
   names the worker's pid), at most ``WARM_ROUNDS`` rounds. The ``warm`` column says how
   many workers ran a warm-up step and in how many rounds;
4. the commit ceiling of the database, measured now (``ceilings``: SQLite FULL single-row
   commits; PostgreSQL psycopg2 BEGIN/INSERT/COMMIT and pgbench, 1 client), and on PostgreSQL
   the rest of ``settle_s`` (11 s) waited, so the WAL statistics of the warm-up and of the
   ceilings are published before the first reading (``measure.py``);
5. the window: it opens when the first ``execute_async`` (or ``execute_many``) is called and
   closes when the bench, polling the task count every ``poll_s`` (5 ms) through
   ``host.store``, sees the last task ended. The polling starts once the last creation
   returned (the last task cannot end before it exists), so it does not compete with it;
6. the workers stopped (and on PostgreSQL the bench's connections closed, so every backend
   publishes its WAL statistics); every task must be ``completed`` (each step checks the result it receives, see
   ``benchplugin.py``): otherwise ``BenchFailure`` stops the benchmark.

Creation modes: ``one`` (one caller, ``execute_async`` in a loop), ``threads8`` (8 caller
threads, each ``execute_async`` in a loop over its share), ``many`` (``Host.execute_many`` of
1,000 requests at a time, when this checkout's host has it).

A row's figures: ``steps_per_s`` = 4 x N / window; ``create_per_s`` = N / (first creation call
to last creation return); ``cpu_ms_per_task``, ``wal_syncs_per_task`` and ``idle_pct`` over the
window (``measure.py``).

``run_create`` is the creation-only micro-bench: no workers, N tasks created the same three
ways on a fresh database, after one warm-up creation and the ceilings measured just before.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import benchplugin
from common import (
    PG_URL,
    PY,
    Processes,
    env_with,
    median,
    one_line,
    pg_schema,
    progress,
    sqlite_ceiling,
    table,
)
from measure import Probe, usage

STEPS_PER_TASK = 4
WORKFLOW = {"chain": "checked_chain", "diamond": "checked_diamond"}
MODES = {"one": "1 caller", "threads8": "8 caller threads", "many": "execute_many x 1,000"}
CALLER_THREADS = 8
BATCH = 1000
WARM_ROUNDS = 10
TERMINAL = ("completed", "failed", "cancelled")
PEER_WORKERS = (1, 2)


class BenchFailure(RuntimeError):
    """A task did not complete, or a worker died: the figures would mean nothing."""


# -- one database, one host ------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(db: str, tmp: Path) -> Iterator[str]:
    """A new empty database for one run; its teamflow URL."""
    if db == "sqlite":
        path = tmp / f"user-{uuid.uuid4().hex[:8]}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
    else:
        url, cleanup = pg_schema()
        try:
            yield url
        finally:
            cleanup()


@contextlib.contextmanager
def bench_host(url: str) -> Iterator[Any]:
    from teamflow import Host
    from teamflow.config import HostConfig

    host = Host(
        config=HostConfig(database_url=url),
        plugins=[("teamflow-bench", benchplugin)],
        discover=False,
        migrate=True,
    )
    try:
        yield host
    finally:
        host.close()
        _close_connections(host)  # caller threads' connections went back to the pool: close them


def requests(shape: str, n: int, first: int = 0) -> list[Any]:
    from teamflow import TaskRequest

    return [TaskRequest(namespace="bench", name=WORKFLOW[shape], context={"n": first + i}) for i in range(n)]


# -- creating tasks ------------------------------------------------------------------------------------


def create(host: Any, batch: Sequence[Any], mode: str) -> tuple[float, float]:
    """Create ``batch`` the way ``mode`` says; (first call, last return), ``perf_counter`` seconds."""
    if mode == "one":
        t0 = time.perf_counter()
        for request in batch:
            host.execute_async(request)
        return t0, time.perf_counter()
    if mode == "many":
        t0 = time.perf_counter()
        for start in range(0, len(batch), BATCH):
            part = batch[start : start + BATCH]
            ids = host.execute_many(part)
            if len(ids) != len(part):
                raise BenchFailure(f"execute_many returned {len(ids)} ids for {len(part)} requests")
        return t0, time.perf_counter()
    if mode == "threads8":
        return _create_threaded(host, batch)
    raise ValueError(f"unknown creation mode {mode!r}; known: {', '.join(MODES)}")


def _create_threaded(host: Any, batch: Sequence[Any]) -> tuple[float, float]:
    shares = [batch[i::CALLER_THREADS] for i in range(CALLER_THREADS)]
    starts: list[float] = []
    ends: list[float] = []
    errors: list[BaseException] = []
    gate = threading.Barrier(CALLER_THREADS)

    def caller(share: Sequence[Any]) -> None:
        try:
            gate.wait()
            starts.append(time.perf_counter())
            for request in share:
                host.execute_async(request)
            ends.append(time.perf_counter())
        except BaseException as exc:
            errors.append(exc)
        finally:
            host.store.reset()  # drop this thread's connection (SQLite: one per thread)

    threads = [threading.Thread(target=caller, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return min(starts), max(ends)


# -- waiting for the tasks -------------------------------------------------------------------------------


def ended(host: Any) -> int:
    placeholders = ", ".join(f"'{s}'" for s in TERMINAL)
    return int(
        host.store.execute(f"SELECT COUNT(*) FROM tf_task WHERE status IN ({placeholders})").fetchone()[0]
    )


def wait_ended(host: Any, expected: int, workers: Processes, poll_s: float, timeout_s: float) -> float:
    """Poll until ``expected`` tasks ended; the ``perf_counter`` of the poll that saw it."""
    deadline = time.perf_counter() + timeout_s
    polls = 0
    while True:
        if ended(host) >= expected:
            return time.perf_counter()
        polls += 1
        if polls % 100 == 0:
            try:
                workers.check_alive()
            except RuntimeError as exc:
                raise BenchFailure(str(exc)) from None
            if time.perf_counter() > deadline:
                raise BenchFailure(f"{ended(host)} of {expected} tasks ended after {timeout_s:.0f} s")
        time.sleep(poll_s)


def verify(host: Any, expected: int) -> None:
    """Every task ``completed``: each step checked what it received, so nothing else is right."""
    counts = dict(host.store.execute("SELECT status, COUNT(*) FROM tf_task GROUP BY status").fetchall())
    if counts == {"completed": expected}:
        return
    examples = host.store.execute(
        "SELECT id, status, error_summary FROM tf_task WHERE status <> 'completed' LIMIT 3"
    ).fetchall()
    raise BenchFailure(f"expected {expected} completed tasks, found {counts}; e.g. {examples}")


def _workers_seen(host: Any) -> set[int]:
    """Pids of the workers that completed a step (a worker id is ``host:pid:suffix``)."""
    rows = host.store.execute(
        "SELECT DISTINCT actor FROM tf_transition WHERE step IS NOT NULL AND to_status = 'completed'"
    ).fetchall()
    pids = set()
    for (actor,) in rows:
        parts = str(actor).split(":")
        if len(parts) >= 3 and parts[-2].isdigit():
            pids.add(int(parts[-2]))
    return pids


def warm_up(host: Any, workers: Processes, shape: str, poll_s: float) -> tuple[int, str]:
    """Rounds of one task per worker until every worker completed a step; (tasks, summary)."""
    pids = set(workers.pids)
    tasks = 0
    seen: set[int] = set()
    rounds = 0
    while rounds < WARM_ROUNDS and seen != pids:
        rounds += 1
        for request in requests(shape, len(pids), first=-(tasks + len(pids))):
            host.execute_async(request)
        tasks += len(pids)
        wait_ended(host, tasks, workers, poll_s, timeout_s=120.0)
        verify(host, tasks)
        seen = _workers_seen(host) & pids
    return tasks, f"{len(seen)}/{len(pids)} in {rounds}"


# -- one measured run ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    db: str  # "sqlite" | "pg"
    shape: str
    tasks: int
    workers: int
    concurrency: int
    mode: str

    def label(self) -> str:
        return (
            f"teamflow {self.db} {self.shape} N={self.tasks} workers={self.workers} "
            f"C={self.concurrency} {self.mode}"
        )


def ceilings(db: str, tmp: Path, seconds: float) -> dict[str, float | None]:
    """The commit ceilings of ``db`` now: what one connection commits, one row at a time."""
    import peers_pg

    if db == "sqlite":
        return {"sqlite_full_commits_per_s": sqlite_ceiling(tmp, "FULL")}
    limits = peers_pg.ceilings(PG_URL, seconds)
    return {k: v for k, v in limits.items() if not k.endswith("_error")}


def settle(db: str, tmp: Path, ceiling_s: float, settle_s: float) -> dict[str, float | None]:
    """Between the warm-up and the window: the ceilings measured, and on PostgreSQL the rest of
    ``settle_s`` waited (the warm-up's and the ceilings' WAL statistics published, measure.py)."""
    started = time.perf_counter()
    limits = ceilings(db, tmp, ceiling_s)
    if db == "pg":
        time.sleep(max(0.0, settle_s - (time.perf_counter() - started)))
    return limits


def run_user(
    cfg: Config, tmp: Path, site: Path, poll_s: float, ceiling_s: float, settle_s: float
) -> dict[str, Any]:
    with fresh_database(cfg.db, tmp) as url, bench_host(url) as host:
        if cfg.mode == "many" and not hasattr(host, "execute_many"):
            return {"skipped": "Host.execute_many is not in this checkout"}
        env = env_with(site, TEAMFLOW_DATABASE_URL=url)
        workers = Processes(tmp)
        with contextlib.closing(Probe([], PG_URL if cfg.db == "pg" else None)) as probe:
            try:
                for i in range(cfg.workers):
                    workers.start(
                        [PY, "-m", "teamflow.cli", "worker", "--concurrency", str(cfg.concurrency)],
                        env, tmp, f"worker-{i}",
                    )  # fmt: skip
                warm_tasks, warm = warm_up(host, workers, cfg.shape, poll_s)
                probe.pids = workers.pids
                batch = requests(cfg.shape, cfg.tasks)
                limits = settle(cfg.db, tmp, ceiling_s, settle_s)
                before = probe.read()
                t0, created = create(host, batch, cfg.mode)
                t_end = wait_ended(host, warm_tasks + cfg.tasks, workers, poll_s, _timeout(cfg.tasks))
                after = probe.read()
            finally:
                workers.stop()
            if probe.pg:
                _close_connections(host)
                after.wal_sync = probe.wal_sync_after_exit()
        verify(host, warm_tasks + cfg.tasks)
    window = t_end - t0
    return {
        "steps_per_s": STEPS_PER_TASK * cfg.tasks / window,
        "create_per_s": cfg.tasks / (created - t0),
        "window_s": window,
        **usage(before, after, cfg.tasks),
        "warm": warm,
        "ceilings": limits,
    }


def _close_connections(host: Any) -> None:
    """Close every pooled connection of the bench host (the next statement reconnects)."""
    host.store.disconnect()


def _timeout(tasks: int) -> float:
    return 60.0 + STEPS_PER_TASK * tasks / 20.0


def run_create(db: str, mode: str, n: int, tmp: Path, ceiling_s: float) -> dict[str, Any]:
    """Creation only: N tasks into a fresh database with no worker; tasks per second."""
    with fresh_database(db, tmp) as url, bench_host(url) as host:
        if mode == "many" and not hasattr(host, "execute_many"):
            return {"skipped": "Host.execute_many is not in this checkout"}
        host.execute_async(requests("chain", 1, first=-1)[0])  # connections, statements, caches
        limits = ceilings(db, tmp, ceiling_s)
        t0, t1 = create(host, requests("chain", n), mode)
        count = int(host.store.execute("SELECT COUNT(*) FROM tf_task").fetchone()[0])
        if count != n + 1:
            raise BenchFailure(f"created {n} tasks, the database holds {count - 1}")
    return {"tasks_per_s": n / (t1 - t0), "ceilings": limits}


# -- the section: round-robin over every configuration, medians, ratios ----------------------------------------


@dataclass(frozen=True)
class PeerConfig:
    system: str
    shape: str
    tasks: int
    workers: int

    def label(self) -> str:
        return f"{self.system} pg {self.shape} N={self.tasks} workers={self.workers} one"


def bench_user(
    tmp: Path,
    site: Path,
    *,
    dbs: Sequence[str],
    shapes: Sequence[str],
    sizes: Sequence[int],
    worker_counts: Sequence[int],
    concurrencies: Sequence[int],
    modes: Sequence[str],
    repeat: int,
    poll_s: float,
    create_tasks: int,
    ceiling_s: float,
    settle_s: float,
    with_peers: bool,
    with_teamflow: bool = True,
) -> None:
    """Every configuration once per round (round-robin), ``repeat`` rounds, then the tables.

    ``with_teamflow=False`` runs only the peers (the ``peers`` section without ``user``).
    """
    import peers_pg

    runs = [
        Config(db, shape, n, w, c, mode)
        for db in dbs for shape in shapes for n in sizes for mode in modes
        for c in concurrencies for w in worker_counts
    ] if with_teamflow else []  # fmt: skip
    peer_runs = []
    if with_peers and "pg" in dbs:
        peer_runs = [
            PeerConfig(system, shape, n, w)
            for system in peers_pg.SYSTEMS for shape in shapes for n in sizes for w in PEER_WORKERS
        ]  # fmt: skip
    creates = [(db, mode) for db in dbs for mode in modes] if with_teamflow else []
    progress(
        f"user: {len(runs)} teamflow, {len(peer_runs)} peer and {len(creates)} creation-only runs per round, "
        f"{repeat} round(s)"
    )
    results: dict[Any, list[dict[str, Any]]] = {}
    for round_ in range(repeat):
        for key in [*runs, *peer_runs]:
            if isinstance(key, Config):
                row = run_user(key, tmp, site, poll_s, ceiling_s, settle_s)
            else:
                try:
                    row = peers_pg.run_user(
                        key.system, key.shape, key.workers, key.tasks, PG_URL, poll_s, settle_s,
                        ceiling=lambda: ceilings("pg", tmp, ceiling_s),
                    )  # fmt: skip
                except Exception as exc:
                    row = {"error": f"{type(exc).__name__}: {exc}"}
            results.setdefault(key, []).append({**row, "round": round_})
            progress(f"[round {round_ + 1}/{repeat}] {key.label()}: {_brief(row)}")
        for db, mode in creates:
            row = run_create(db, mode, create_tasks, tmp, ceiling_s)
            results.setdefault((db, mode), []).append({**row, "round": round_})
            progress(f"[round {round_ + 1}/{repeat}] creation only {db} {mode}: {_brief(row)}")
    _print_user(runs, peer_runs, results, worker_counts, with_peers)
    _print_create(creates, results, create_tasks)
    _print_ceilings(results)


def _brief(row: dict[str, Any]) -> str:
    if "skipped" in row or "error" in row:
        return one_line(row.get("skipped") or row["error"])
    limits = ", ".join(
        f"{k.removesuffix('_commits_per_s')} {v:,.0f}" for k, v in row["ceilings"].items() if v
    )
    if "steps_per_s" in row:
        return f"{row['steps_per_s']:,.0f} steps/s, created {row['create_per_s']:,.0f}/s (ceilings: {limits})"
    return f"{row['tasks_per_s']:,.0f} tasks/s (ceilings: {limits})"


CEILING = {"sqlite": "sqlite_full_commits_per_s", "pg": "psycopg2_commits_per_s"}


def _per_round(rows: list[dict[str, Any]], key: str) -> dict[int, float]:
    return {r["round"]: r[key] for r in rows if r.get(key) is not None}


def _ratio(num: dict[int, float], den: dict[int, float]) -> float | None:
    """The median over rounds of num/den, each ratio within one round."""
    values = [num[r] / den[r] for r in num if den.get(r)]
    return median(values) if values else None


def _x_ceiling(rows: list[dict[str, Any]], key: str, ceiling: str) -> float | None:
    """The median over runs of each run's figure over the ceiling measured in that run."""
    values = [
        r[key] / r["ceilings"][ceiling] for r in rows if r.get(key) and r.get("ceilings", {}).get(ceiling)
    ]
    return median(values) if values else None


def _print_user(
    runs: list[Config],
    peer_runs: list[PeerConfig],
    results: dict[Any, list[dict[str, Any]]],
    worker_counts: Sequence[int],
    with_peers: bool,
) -> None:
    counts = sorted(worker_counts)
    out = []
    for cfg in runs:
        rows = results[cfg]
        if any("skipped" in r for r in rows):
            out.append(_row("teamflow", cfg.db, cfg.shape, cfg.tasks, cfg.workers, cfg.concurrency, cfg.mode,
                            rows, note=rows[0]["skipped"]))  # fmt: skip
            continue
        steps = _per_round(rows, "steps_per_s")
        row = _row("teamflow", cfg.db, cfg.shape, cfg.tasks, cfg.workers, cfg.concurrency, cfg.mode, rows)
        best: dict[int, float] = {}
        for peer in peer_runs:
            if (peer.shape, peer.tasks, peer.workers) == (
                cfg.shape,
                cfg.tasks,
                cfg.workers,
            ) and cfg.mode == "one":
                for r, v in _per_round(results[peer], "steps_per_s").items():
                    best[r] = max(best.get(r, 0.0), v)
        row["x_best_peer"] = _ratio(steps, best) if best else None
        fewer = [w for w in counts if w < cfg.workers]
        if fewer:
            prev = Config(cfg.db, cfg.shape, cfg.tasks, fewer[-1], cfg.concurrency, cfg.mode)
            row["x_prev_workers"] = _ratio(steps, _per_round(results[prev], "steps_per_s"))
        row["x_ceiling"] = _x_ceiling(rows, "steps_per_s", CEILING[cfg.db])
        out.append(row)
    for peer in peer_runs:
        rows = results[peer]
        errors = [r["error"] for r in rows if "error" in r]
        row = _row(peer.system, "pg", peer.shape, peer.tasks, peer.workers, _peer_setting(peer.system), "one",
                   rows, note=errors[-1] if errors else None)  # fmt: skip
        fewer_peer = PeerConfig(peer.system, peer.shape, peer.tasks, peer.workers - 1)
        if fewer_peer in results:
            row["x_prev_workers"] = _ratio(
                _per_round(rows, "steps_per_s"), _per_round(results[fewer_peer], "steps_per_s")
            )
        row["x_ceiling"] = _x_ceiling(rows, "steps_per_s", CEILING["pg"])
        out.append(row)
    out.sort(key=lambda r: (r["db"], r["shape"], r["tasks"], r["system"] != "teamflow", r["system"],
                            list(MODES).index(r["creation"]), str(r["conc"]), r["workers"]))  # fmt: skip
    for r in out:
        r["creation"] = MODES[r["creation"]]
    notes = [
        "window: from the first execute_async (peers: the first enqueue) to the poll that saw the last task "
        "completed; workers started and warm (warm: workers that ran a warm-up step / rounds) before it opens",
        "steps_per_s = 4 x tasks / window (median of the runs, their range beside it); create_per_s = tasks "
        "/ (first creation call .. last creation return)",
        "x_best_peer: over the better of DBOS and Procrastinate with the same shape, tasks and workers, same "
        "round (one caller only)"
        + ("" if with_peers else " -- add the `peers` section to run them in the same rounds"),
        "x_prev_workers: over the row with the next fewer workers (2 vs 1, 4 vs 2), same round; both ratios "
        "are medians of per-round ratios",
        "x_ceiling: steps/s over the commit ceiling measured in the same run, just before its window "
        "(PostgreSQL: psycopg2, one connection, BEGIN/INSERT/COMMIT; SQLite: FULL single-row commits); median",
        "cpu_ms_per_task: workers + every PostgreSQL server process (for SQLite: workers only); "
        "wal_syncs_per_task: pg_stat_wal.wal_sync delta (server-wide); idle_pct: the machine's idle share",
        "drain only (tasks stored before the workers start, timed first step start .. last step end): "
        "sections `pg` / `sqlite`",
    ]
    table("user-faithful throughput: workers warm first, creation inside the window, steps check their input",
          out, notes)  # fmt: skip


def _peer_setting(system: str) -> str:
    import peers_pg

    if system == "dbos":
        return f"{peers_pg.DBOS_SETTINGS['worker_concurrency']} (queue)"
    return str(peers_pg.PROCRASTINATE_SETTINGS["concurrency"])


def _row(
    system: str, db: str, shape: str, tasks: int, workers: int, conc: Any, mode: str,
    rows: list[dict[str, Any]], note: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    ok = [r for r in rows if "steps_per_s" in r]
    steps = [r["steps_per_s"] for r in ok]

    def med(key: str) -> float | None:
        values = [r[key] for r in ok if r.get(key) is not None]
        return median(values) if values else None

    return {
        "system": system,
        "db": db,
        "shape": shape,
        "tasks": tasks,
        "workers": workers,
        "conc": conc,
        "creation": mode,
        "runs": len(ok),
        "steps_per_s": med("steps_per_s"),
        "range": f"{min(steps):,.0f}-{max(steps):,.0f}" if len(steps) > 1 else None,
        "create_per_s": med("create_per_s"),
        "window_s": med("window_s"),
        "x_best_peer": None,
        "x_prev_workers": None,
        "x_ceiling": None,
        "cpu_ms_per_task": med("cpu_ms_per_task"),
        "wal_syncs_per_task": med("wal_syncs_per_task"),
        "idle_pct": med("idle_pct"),
        "warm": ok[-1].get("warm") if ok else None,
        "note": note,
    }


def _print_create(creates: list[tuple[str, str]], results: dict[Any, list[dict[str, Any]]], n: int) -> None:
    out = []
    for db, mode in creates:
        rows = results[(db, mode)]
        if any("skipped" in r for r in rows):
            out.append({"db": db, "creation": MODES[mode], "tasks": n, "note": rows[0]["skipped"]})
            continue
        rate = _per_round(rows, "tasks_per_s")
        one = _per_round(results[(db, "one")], "tasks_per_s") if (db, "one") in results else {}
        row: dict[str, Any] = {
            "db": db,
            "creation": MODES[mode],
            "tasks": n,
            "runs": len(rate),
            "tasks_per_s": median(list(rate.values())),
            "x_ceiling": _x_ceiling(rows, "tasks_per_s", CEILING[db]),
        }
        if db == "pg":
            row["x_pgbench"] = _x_ceiling(rows, "tasks_per_s", "pgbench_commits_per_s")
        row["x_one_caller"] = _ratio(rate, one) if mode != "one" and one else None
        out.append(row)
    table(
        "creation only (no workers): tasks created per second, against the commit ceiling measured in the same run",
        out,
        [
            "x_ceiling: PostgreSQL psycopg2 one-connection BEGIN/INSERT/COMMIT, SQLite FULL single-row commits; "
            "x_pgbench: pgbench, 1 client; x_one_caller: over one caller, same round; goals: one caller >= 0.5x "
            "(pg) / 0.3x (sqlite) the ceiling, 8 callers >= 1.5x one caller, execute_many >= 10x one caller",
        ],
    )


def _print_ceilings(results: dict[Any, list[dict[str, Any]]]) -> None:
    """Every ceiling measured in this section's runs: median, min and max."""
    seen: dict[str, list[float]] = {}
    for rows in results.values():
        for r in rows:
            for k, v in r.get("ceilings", {}).items():
                if v:
                    seen.setdefault(k, []).append(v)
    out = [
        {"ceiling": k, "measured": len(v), "median": median(v), "min": min(v), "max": max(v)}
        for k, v in sorted(seen.items())
    ]
    table(
        "commit ceilings of this run (one connection, single-row INSERT + COMMIT), one before each run's window",
        out,
    )
