"""teamflow benchmarks: `nox -s bench [-- SECTION ...] [OPTIONS]` (or `python benchmarks/run.py ...`).

Sections (default: startup resolve sqlite pg user http; `peers` and `http-python` on request):
  startup  host start-up with the three team plugins + 200 generated plugin
           distributions holding 2,000 workflow versions; RSS
  resolve  Registry.resolve() latency on a registry of 10,000 versions
  sqlite   N tasks (4-step chain and diamond, no-op steps) through execute_sync in one
           process (FULL and NORMAL; 1, 8 and 32 caller threads; median of R runs, each also
           as a share of the commit ceiling measured just before it), and the drain only
           figure: N tasks stored first, then drained by 1 and 2 worker processes, timed from
           the first step's start to the last step's end
  pg       the same drain on PostgreSQL (TEAMFLOW_BENCH_POSTGRES_URL, default local test db)
           (workers run `--concurrency 32`, TEAMFLOW_BENCH_CONCURRENCY: no-op steps wait on
           the database, not the CPU, so more steps in flight means bigger group commits)
  user     what users feel (benchmarks/user_bench.py): worker processes
           (`python -m teamflow.cli worker --concurrency C`) started and warm first, then the
           clock runs from the first execute_async to the poll that sees the last task
           completed, so creating the tasks is inside the window; steps check the result they
           receive; creation by one caller, 8 caller threads, or Host.execute_many batches of
           1,000; N tasks x shapes x workers x concurrency x creation modes, on the databases
           named among the sections (`user pg`, `user sqlite`; both when neither is named:
           SQLite FULL with the workers sharing the file, PostgreSQL with a schema per run),
           every configuration once per round, R rounds interleaved, medians and per-round
           ratios (x best peer, x fewer workers, x commit ceiling), CPU and WAL fsyncs per
           task; plus a creation-only micro-bench (no workers) against the commit ceilings
           (psycopg2 BEGIN/INSERT/COMMIT and pgbench 1 client; SQLite FULL single-row
           commits), which are measured each round and printed beside the figures
  peers    DBOS 3.4.0 and Procrastinate 3.10.0 on the same PostgreSQL (benchmarks/peers_pg.py):
           the drain only comparison (--peer-tasks, beside teamflow's pg drain), and the same
           harness as `user` (workers warm first, a separate one-caller enqueuer process
           started after them, its enqueue inside the window, checked steps, 1 and 2 workers,
           each peer's tuned settings); with `user` they run in the same rounds and give the
           x_best_peer column
  http     `teamflow serve` on SQLite FULL driven by wrk (benchmarks/http_wrk.py): --workers 0
           (API only) then --workers 2; GET /health/live (the floor), POST /workflows/execute
           (async), GET /tasks/{id}, GET /tasks, one at a time; req/s, p50/p99, errors and the
           ratios to the floor; with embedded workers, the backlog drain after the POST load
  http-python  the former http section: a Python client (httpx) on the same cores

Options:
  --tasks N[,N...]    tasks per run (default 2000; user and its peers: 500,5000)
  --repeat R          rounds of user/peers (and runs of each in-process sqlite case), default 3
  --peer-tasks N      tasks of the drain only peer runs (500)
  user: --workers 1,2,4  --concurrency 4 (e.g. 4,32)  --shapes chain,diamond
        --modes one,threads8,many  --poll-ms 5 (task-count polling)  --create-tasks 2000
        (creation-only runs)  --ceiling-seconds 3 (each PostgreSQL ceiling)  --wal-settle-s 11
  http: --seconds 15  --connections 50  --threads 2

Every figure comes from this run on this machine; ratios are computed within the run (within
each round for `user`). A run that cannot happen says why in its row.
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

import http_wrk
import user_bench
from common import (
    HERE,
    PG_URL,
    PY,
    env_with,
    install_dist,
    ints,
    median,
    pg_schema,
    sqlite_ceiling,
    table,
    words,
)
from measure import STATS_SETTLE_S

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
            [
                PY,
                "-m",
                "teamflow.cli",
                "worker",
                "--concurrency",
                os.environ.get("TEAMFLOW_BENCH_CONCURRENCY", "32"),
            ],
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
                            "steps_per_s": median(runs),
                            "min": min(runs),
                            "max": max(runs),
                            "ceiling_commits_per_s": median(ceilings),
                            # each run against the ceiling measured just before it; the goals:
                            # FULL 4,000 of ~5,900 commits/s, NORMAL 8,000 of ~100,000
                            "steps_per_ceiling_commit": median(shares),
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
                url, cleanup = pg_schema()
                try:
                    r = _drain(url, shape, n, workers, site, tmp)
                finally:
                    cleanup()
            rows.append(
                {
                    "mode": f"drain only, {workers} worker proc",
                    "workers": workers,
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
    table(
        f"engine on {backend}: {n} tasks of 4 no-op steps",
        rows,
        [
            "drain only: tasks stored before the workers start, timed from the first step's start to the last "
            "step's end (worker start-up and creation are not in it; the user section measures those)",
        ],
    )
    return rows


def bench_peers(n: int, ours: list[dict[str, Any]], repeat: int) -> None:
    try:
        import peers_pg
    except ImportError as exc:
        print(f"\n== peers: not available ({exc})")
        return
    rows = peers_pg.run_peers(n_tasks=n, pg_dsn=PG_URL, repeats=max(1, repeat))
    ceilings = peers_pg.ceilings(pg_dsn=PG_URL)
    combined = [
        {
            "system": "teamflow",
            "shape": r["shape"],
            "workers": r["workers"],
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
        "drain only: tasks stored before the workers start -- PostgreSQL, teamflow vs peers "
        "(steps/s as a ratio to the best peer and to pgbench)",
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


def bench_http_python() -> None:
    try:
        import http_bench
    except ImportError as exc:
        print(f"\n== http-python: not available ({exc})")
        return
    result = http_bench.run(seconds=20, clients=50)
    rows = result if isinstance(result, list) else [result]
    table(
        "HTTP with a Python client (httpx, 50 clients for 20 s, on the server's own cores: a floor, "
        "not what the server serves; the `http` section uses wrk)",
        rows,
    )


DEFAULT_SECTIONS = ["startup", "resolve", "sqlite", "pg", "user", "http"]
SECTIONS = [*DEFAULT_SECTIONS, "peers", "http-python"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sections", nargs="*", default=DEFAULT_SECTIONS, choices=SECTIONS, metavar="SECTION")
    parser.add_argument("--tasks", type=ints, help="N[,N...] tasks per run (default 2000; user: 500,5000)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (user, peers) / runs (sqlite); medians")
    parser.add_argument("--peer-tasks", type=int, default=500, help="tasks of the drain-only peer runs")
    user = parser.add_argument_group("user (and the peers' user-faithful runs)")
    user.add_argument("--workers", type=ints, default=[1, 2, 4], help="worker processes (default 1,2,4)")
    user.add_argument("--concurrency", type=ints, default=[4], help="each worker's --concurrency (default 4)")
    user.add_argument("--shapes", type=words, default=["chain", "diamond"], help="chain,diamond")
    user.add_argument("--modes", type=words, default=["one", "threads8", "many"], help="one,threads8,many")
    user.add_argument("--poll-ms", type=float, default=5.0, help="task-count polling interval (default 5)")
    user.add_argument("--create-tasks", type=int, default=2000, help="tasks per creation-only run (2000)")
    user.add_argument("--ceiling-seconds", type=float, default=3.0, help="per PostgreSQL ceiling (3)")
    user.add_argument(
        "--wal-settle-s",
        type=float,
        default=STATS_SETTLE_S,
        help="PostgreSQL: wait after the warm-up so its WAL statistics are published (11; 0 skips, and "
        "wal_syncs_per_task then may hold up to 10 s of the warm-up's)",
    )
    http = parser.add_argument_group("http (wrk)")
    http.add_argument("--seconds", type=float, default=15.0, help="wrk duration per route (default 15)")
    http.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    http.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    args = parser.parse_args()
    unknown = [m for m in args.modes if m not in user_bench.MODES]
    if unknown:
        parser.error(f"unknown creation mode(s) {', '.join(unknown)}; known: {', '.join(user_bench.MODES)}")
    sections = set(args.sections)
    # SIGTERM unwinds like Ctrl-C, so the try/finally blocks stop every worker and server.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    tmp = Path(tempfile.mkdtemp(prefix="teamflow-bench-"))
    print(f"teamflow bench: {os.cpu_count()} cpus, python {sys.version.split()[0]}, tmp {tmp}")
    site = tmp / "bench-site"
    install_dist(site, "teamflow-bench", "bench = benchplugin")
    try:
        if "startup" in sections:
            bench_startup(tmp)
        if "resolve" in sections:
            bench_resolve()
        for n in args.tasks or [2000]:
            if "sqlite" in sections:
                bench_engine(tmp, n, "sqlite", max(1, args.repeat))
        pg_rows: dict[int, list[dict[str, Any]]] = {}
        if "pg" in sections:
            for n in args.tasks or [2000]:
                pg_rows[n] = bench_engine(tmp, n, "pg")
        if "peers" in sections:  # the drain only comparison: teamflow's pg drain of the same N
            ours = pg_rows.get(args.peer_tasks) or bench_engine(tmp, args.peer_tasks, "pg")
            bench_peers(args.peer_tasks, [r for r in ours if r["mode"].startswith("drain only")], args.repeat)
        if "user" in sections or "peers" in sections:
            dbs = [db for db in ("sqlite", "pg") if db in sections] or ["sqlite", "pg"]
            user_bench.bench_user(
                tmp,
                site,
                dbs=dbs if "user" in sections else ["pg"],
                shapes=args.shapes,
                sizes=args.tasks or [500, 5000],
                worker_counts=args.workers,
                concurrencies=args.concurrency,
                modes=args.modes,
                repeat=max(1, args.repeat),
                poll_s=args.poll_ms / 1000,
                create_tasks=args.create_tasks,
                ceiling_s=args.ceiling_seconds,
                settle_s=args.wal_settle_s,
                with_peers="peers" in sections,
                with_teamflow="user" in sections,
            )
        if "http" in sections:
            http_wrk.bench_http(tmp, args.seconds, args.connections, args.threads)
        if "http-python" in sections:
            bench_http_python()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
