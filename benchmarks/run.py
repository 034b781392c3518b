"""teamflow benchmarks: `nox -s bench [-- SECTION ...] [--tasks N] [--repeat R]`.

Sections (default: all but the long peer comparison, which `peers` adds):
  startup  host start-up with the three team plugins + 200 generated plugin
           distributions holding 2,000 workflow versions; RSS
  resolve  Registry.resolve() latency on a registry of 10,000 versions
  sqlite   N tasks (4-step chain and diamond, no-op steps) through execute_sync in one
           process (FULL and NORMAL; 1, 8 and 32 caller threads; median of R runs, each also
           as a share of the commit ceiling measured just before it), and execute_async
           drained by 1 and 2 worker processes
  pg       the same drain on PostgreSQL (TEAMFLOW_BENCH_POSTGRES_URL, default local test db)
           (workers run `--concurrency 32`, TEAMFLOW_BENCH_CONCURRENCY: no-op steps wait on
           the database, not the CPU, so more steps in flight means bigger group commits)
  peers    DBOS and Procrastinate on the same PostgreSQL, plus commit ceilings
  http     POST /workflows/execute and GET /tasks/{id} under 50 concurrent clients

Every figure comes from this run on this machine; ratios are computed within the run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
PY = sys.executable
PG_URL = os.environ.get("TEAMFLOW_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def table(title: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    print(f"\n== {title}")
    cols = list(dict.fromkeys(c for r in rows for c in r))  # every row's columns, first seen first
    fmt = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, fmt, strict=True)))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(w) for c, w in zip(cols, fmt, strict=True)))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.3f}"
    return "" if v is None else str(v)


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


# -- start-up ----------------------------------------------------------------------------------

GEN_MODULE = """
from teamflow import NamespacePolicy, Step, Workflow, hookimpl

def step_a(ctx):
    return 1

def step_b(ctx):
    return 2

@hookimpl
def teamflow_namespaces():
    return [NamespacePolicy("{ns}", "{ns}", "{ns}@example.test")]

@hookimpl
def teamflow_workflows():
    return [
        Workflow("{ns}", f"wf{{i}}", f"1.{{j}}.0",
                 [Step("a", step_a), Step("b", step_b, depends_on="a"), Step("c", step_b, depends_on="a"),
                  Step("d", step_a, depends_on=["b", "c"])],
                 context_schema={{"type": "object", "properties": {{"n": {{"type": "integer"}}}}}})
        for i in range({workflows}) for j in range({versions})
    ]
"""

STARTUP_PROBE = """
import json, resource, sys, time
t0 = time.perf_counter()
from teamflow import Host
t1 = time.perf_counter()
host = Host(database_url=sys.argv[1])
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "host_s": t2 - t1, "plugins": len(host.plugins.plugins),
                  "versions": len(host.registry), "problems": host.plugins.problems,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def bench_startup(tmp: Path) -> list[dict[str, Any]]:
    site = tmp / "gen-site"
    for n in range(200):
        ns = f"gen{n:03d}"
        pkg = site / f"tfgen_{ns}"
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text(GEN_MODULE.format(ns=ns, workflows=5, versions=2))
        install_dist(site, f"tfgen-{ns}", f"{ns} = tfgen_{ns}")
    rows = []
    db = tmp / "startup.db"
    for label in ("first start (records owners, publishes 2,000 versions)", "second start"):
        out = subprocess.run(
            [PY, "-c", STARTUP_PROBE, f"sqlite:///{db}"],
            env=env_with(site),
            cwd=tmp,
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(out.stdout)
        rows.append(
            {
                "run": label,
                "plugins": r["plugins"],
                "versions": r["versions"],
                "problems": r["problems"],
                "import_s": r["import_s"],
                "Host()_s": r["host_s"],
                "peak_rss_mb": r["rss_mb"],
                "goal": "Host() < 1 s, RSS < 150 MB",
            }
        )
    table("start-up: 3 team plugins + 200 generated distributions", rows)
    return rows


# -- resolve -------------------------------------------------------------------------------------


def bench_resolve() -> list[dict[str, Any]]:
    from teamflow import NamespacePolicy, Step, Workflow
    from teamflow.registry import Contribution, Source, build_registry

    def noop(ctx: Any) -> int:
        return 1

    noop.__qualname__ = "noop"
    noop.__module__ = __name__
    globals()["noop"] = noop
    contributions = []
    for n in range(100):
        ns = f"ns{n}"
        flows = [
            Workflow(
                ns,
                f"wf{i}",
                f"{major}.{minor}.0",
                [Step("a", noop)],
                deprecated="old" if (major, minor) == (2, 4) else None,
            )
            for i in range(10)
            for major in (1, 2)
            for minor in range(5)
        ]
        contributions.append(
            Contribution(Source(f"dist-{n}", "1.0.0"), (NamespacePolicy(ns, ns, "x@y"),), tuple(flows))
        )
    t0 = time.perf_counter()
    registry = build_registry(contributions)
    build_s = time.perf_counter() - t0
    rows = []
    for label, spec in (
        ("exact 2.1.0", "2.1.0"),
        ("caret ^1.2", "^1.2"),
        ("range >=1.0.0,<2.0.0", ">=1.0.0,<2.0.0"),
        ("none (newest release)", None),
        ("tilde ~2.4 (deprecated fallback)", "~2.4"),
    ):
        n = 50_000
        t0 = time.perf_counter()
        for _i in range(n):
            registry.resolve("ns42", "wf7", spec)
        per = (time.perf_counter() - t0) / n * 1e6
        rows.append({"request": label, "versions": len(registry), "resolve_us": per, "goal_us": 20.0})
    table(f"resolve() on {len(registry):,} versions (registry built in {build_s:.2f} s)", rows)
    return rows


# -- engine ---------------------------------------------------------------------------------------


def step_latencies(store: Any) -> tuple[float, float, float, float]:
    """p50/p99 (ms) of ready -> completed for every step, and for successors only.

    A root step is ready when its task is created, so with a backlog of N queued tasks
    its latency includes the queue wait; a successor's latency is the hand-off cost
    (the bench workflows' root step is ``a``). Each run has a database of its own.
    """
    all_ms = sorted(
        r[0] * 1000
        for r in store.execute(
            "SELECT finished_at - ready_at FROM tf_step WHERE status = 'completed' AND ready_at IS NOT NULL"
        ).fetchall()
    )
    succ = sorted(
        r[0] * 1000
        for r in store.execute(
            "SELECT finished_at - ready_at FROM tf_step WHERE status = 'completed' AND name <> 'a'"
        ).fetchall()
    )

    def pct(xs: list[float], p: float) -> float:
        return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")

    return pct(all_ms, 0.5), pct(all_ms, 0.99), pct(succ, 0.5), pct(succ, 0.99)


def _sync_run(url: str, shape: str, n: int, threads: int, synchronous: str, site: Path) -> dict[str, Any]:
    code = f"""
import json, sys, threading, time
sys.path.insert(0, {str(HERE)!r})
import benchplugin
from teamflow import Host, TaskRequest
from teamflow.config import HostConfig
host = Host(config=HostConfig(database_url={url!r}, sqlite_synchronous={synchronous!r}),
            plugins=[("teamflow-bench", benchplugin)], discover=False)
host.execute_sync(TaskRequest(namespace="bench", name={shape!r}))  # warm up
per_thread = {n} // {threads}
ids, bad = [], []
def work():
    for _ in range(per_thread):
        r = host.execute_sync(TaskRequest(namespace="bench", name={shape!r}))
        ids.append(r.id)
        if r.status != "completed":
            bad.append(r.status)
workers = [threading.Thread(target=work) for _ in range({threads})]
t0 = time.perf_counter()
for w in workers: w.start()
for w in workers: w.join()
elapsed = time.perf_counter() - t0
print(json.dumps({{"elapsed": elapsed, "tasks": len(ids), "bad": len(bad)}}))
host.close()
"""
    out = subprocess.run([PY, "-c", code], env=env_with(site), capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _drain(url: str, shape: str, n: int, workers: int, site: Path, tmp: Path) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    import benchplugin

    from teamflow import Host, TaskRequest
    from teamflow.config import HostConfig

    host = Host(
        config=HostConfig(database_url=url),
        plugins=[("teamflow-bench", benchplugin)],
        discover=False,
        migrate=True,
    )
    for _ in range(n):
        host.execute_async(TaskRequest(namespace="bench", name=shape))
    env = env_with(site, TEAMFLOW_DATABASE_URL=url, TEAMFLOW_POLL_INTERVAL_S="0.2")
    procs = [
        subprocess.Popen(
            [PY, "-m", "teamflow.cli", "worker", "--concurrency", os.environ.get("TEAMFLOW_BENCH_CONCURRENCY", "32")],
            env=env,
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    t0 = time.perf_counter()
    try:
        while True:
            row = host.store.execute("SELECT COUNT(*) FROM tf_task WHERE status <> 'completed'").fetchone()
            if row[0] == 0:
                break
            if time.perf_counter() - t0 > 600:
                raise RuntimeError("drain did not finish in 10 minutes")
            time.sleep(0.05)
        # Like the peers (benchmarks/peers_pg.py): from the first step's start to the last
        # step's end, so worker start-up is not counted; the wall time is reported too.
        wall = time.perf_counter() - t0
        first, last = host.store.execute("SELECT MIN(started_at), MAX(finished_at) FROM tf_step").fetchone()
        elapsed = last - first
        rss = max(_rss_mb(p.pid) for p in procs)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    p50, p99, sp50, sp99 = step_latencies(host.store)
    host.close()
    return {
        "elapsed": elapsed,
        "wall": wall,
        "tasks": n,
        "p50": p50,
        "p99": p99,
        "succ_p50": sp50,
        "succ_p99": sp99,
        "rss": rss,
    }


def sqlite_ceiling(tmp: Path, synchronous: str) -> float:
    """Single-row INSERT+COMMIT transactions per second on this disk, WAL, with ``synchronous``.

    The engine's goals are stated against these (a step costs at least one commit unless
    commits are shared), so the sqlite table prints steps/s as a share of the ceiling
    measured just before each run: this machine's speed drifts within minutes.
    """
    import sqlite3

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
    return ceiling


def _median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def bench_engine(tmp: Path, n: int, backend: str, repeat: int = 3) -> list[dict[str, Any]]:
    site = tmp / "bench-site"
    install_dist(site, "teamflow-bench", "bench = benchplugin")
    rows = []
    if backend == "sqlite":
        for synchronous in ("FULL", "NORMAL"):
            for threads in (1, 8, 32):
                for shape in ("chain", "diamond"):
                    runs, shares, ceilings, bad = [], [], [], 0
                    for _ in range(repeat):
                        ceiling = sqlite_ceiling(tmp, synchronous)
                        url = f"sqlite:///{tmp}/sync-{uuid.uuid4().hex[:6]}.db"
                        r = _sync_run(url, shape, n, threads, synchronous, site)
                        steps_per_s = 4 * r["tasks"] / r["elapsed"]
                        runs.append(steps_per_s)
                        shares.append(steps_per_s / ceiling)
                        ceilings.append(ceiling)
                        bad += r["bad"]
                    rows.append(
                        {
                            "mode": f"execute_sync x{threads} threads",
                            "sync": synchronous,
                            "shape": shape,
                            "tasks": n,
                            "runs": repeat,
                            "steps_per_s": _median(runs),
                            "min": min(runs),
                            "max": max(runs),
                            "ceiling_commits_per_s": _median(ceilings),
                            # each run against the ceiling measured just before it; the goals:
                            # FULL 4,000 of ~5,900 commits/s, NORMAL 8,000 of ~100,000
                            "steps_per_ceiling_commit": _median(shares),
                            "goal": 4000 / 5900 if synchronous == "FULL" else 8000 / 100000,
                            "failed": bad,
                        }
                    )
    for workers in (1, 2):
        for shape in ("chain", "diamond"):
            if backend == "sqlite":
                url = f"sqlite:///{tmp}/drain-{uuid.uuid4().hex[:6]}.db"
                r = _drain(url, shape, n, workers, site, tmp)
            else:
                url, cleanup = _pg_schema()
                try:
                    r = _drain(url, shape, n, workers, site, tmp)
                finally:
                    cleanup()
            rows.append(
                {
                    "mode": f"async, {workers} worker proc",
                    "sync": "FULL" if backend == "sqlite" else "pg",
                    "shape": shape,
                    "tasks": r["tasks"],
                    "tasks_per_s": r["tasks"] / r["elapsed"],
                    "steps_per_s": 4 * r["tasks"] / r["elapsed"],
                    "wall_s": r["wall"],
                    "p50_ms": r["p50"],
                    "p99_ms": r["p99"],
                    "succ_p50_ms": r["succ_p50"],
                    "succ_p99_ms": r["succ_p99"],
                    "worker_rss_mb": r["rss"],
                }
            )
    table(f"engine on {backend}: {n} tasks of 4 no-op steps", rows)
    return rows


def _pg_schema() -> tuple[str, Any]:
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


def bench_peers(n: int, ours: list[dict[str, Any]]) -> None:
    try:
        import peers_pg
    except ImportError as exc:
        print(f"\n== peers: not available ({exc})")
        return
    rows = peers_pg.run_peers(n_tasks=n, pg_dsn=PG_URL)
    ceilings = peers_pg.ceilings(pg_dsn=PG_URL)
    combined = [
        {
            "system": "teamflow",
            "shape": r["shape"],
            "workers": int(r["mode"].split(",")[1].split()[0]),
            "tasks_per_s": r["tasks_per_s"],
            "steps_per_s": r["steps_per_s"],
            # the peers' latency leaves each task's first step out (its wait is the backlog)
            "p50_step_ms": r.get("succ_p50_ms"),
            "p99_step_ms": r.get("succ_p99_ms"),
            "error": None,
        }
        for r in ours
    ] + rows
    for row in combined:
        peers = [
            p["steps_per_s"]
            for p in rows
            if p["shape"] == row["shape"] and p["workers"] == row["workers"] and not p.get("error")
        ]
        best = max(peers) if peers else None
        row["x_best_peer"] = row["steps_per_s"] / best if best and row.get("steps_per_s") else None
        row["x_pgbench"] = (
            row["steps_per_s"] / ceilings["pgbench_commits_per_s"]
            if row.get("steps_per_s") and ceilings.get("pgbench_commits_per_s")
            else None
        )
    table(
        "PostgreSQL: teamflow vs peers (steps/s as a ratio to the best peer and to pgbench)",
        [
            {
                k: r.get(k)
                for k in (
                    "system",
                    "shape",
                    "workers",
                    "tasks_per_s",
                    "steps_per_s",
                    "p50_step_ms",
                    "p99_step_ms",
                    "x_best_peer",
                    "x_pgbench",
                    "error",
                )
            }
            for r in combined
        ],
    )
    table("commit ceilings (one connection, single-row INSERT+COMMIT)", [ceilings])


def bench_http() -> None:
    try:
        import http_bench
    except ImportError as exc:
        print(f"\n== http: not available ({exc})")
        return
    result = http_bench.run(seconds=20, clients=50)
    rows = result if isinstance(result, list) else [result]
    table("HTTP: 50 concurrent clients for 20 s", rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sections", nargs="*", default=["startup", "resolve", "sqlite", "pg", "http"])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--peer-tasks", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each in-process SQLite case (median)")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    tmp = Path(tempfile.mkdtemp(prefix="teamflow-bench-"))
    print(f"teamflow bench: {os.cpu_count()} cpus, python {sys.version.split()[0]}, tmp {tmp}")
    try:
        if "startup" in args.sections:
            bench_startup(tmp)
        if "resolve" in args.sections:
            bench_resolve()
        if "sqlite" in args.sections:
            bench_engine(tmp, args.tasks, "sqlite", max(1, args.repeat))
        pg_rows: list[dict[str, Any]] = []
        if "pg" in args.sections or "peers" in args.sections:
            pg_rows = bench_engine(tmp, args.tasks if "pg" in args.sections else args.peer_tasks, "pg")
        if "peers" in args.sections:
            bench_peers(args.peer_tasks, [r for r in pg_rows if r["mode"].startswith("async")])
        if "http" in args.sections:
            bench_http()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
