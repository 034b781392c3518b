"""Procrastinate side of ``benchmarks/peers_pg.py``: the tasks, the enqueuer and the worker.

Run as a script by ``peers_pg``:

    PEER_BENCH_DB=URL python procrastinate_app.py enqueue --shape chain --tasks 500 \
        [--skip-setup --checked --first 0 --one-by-one --window-file F]
    PEER_BENCH_DB=URL PEER_BENCH_POOL=20 python procrastinate_app.py worker --concurrency 16 [--go-file F]

Procrastinate is a task queue, not a workflow engine, so a workflow is built from jobs:

* every step is an ``async`` task that records ``time.time()`` at its start and end; a step's
  result ``(start, end)`` is durably recorded in the arguments of the job(s) it defers (each
  ``defer`` is its own committed INSERT into ``procrastinate_jobs``), and procrastinate records
  the step's own completion (status ``succeeded``) when the task returns;
* chain: a defers b, b defers c, c defers d, each passing the timings gathered so far;
* diamond: a defers b and c; b and c each run one atomic upsert on a small join row
  (``INSERT .. ON CONFLICT DO UPDATE SET arrived = arrived + 1, timings = timings || ..
  RETURNING``); the one that sees ``arrived = 2`` defers d with a's, b's and c's timings;
* d, the final step, has no successor to carry its result, so it INSERTs the task's result (all
  four steps' timings) into ``peer_results``; ``peers_pg`` counts and reads those rows;
* a later step has a higher job priority (chain a..d: 0..3; diamond a: 0, b and c: 1, d: 2), so
  a worker finishes the tasks it started before it starts new ones, as a workflow engine would.
  With procrastinate's default FIFO (all priorities 0) a successor waits behind every first step
  enqueued before it: the same steps/s here, but step latencies of about 1 to 2 s at N = 500;
* ``fetch_job_polling_interval`` is 0.1 s instead of 5 s: the worker is woken by LISTEN/NOTIFY,
  but a notification that arrives while it is between "no job found" and waiting is missed, and
  with 5 s such a miss near the end of a run added a 5 s stall to a 4 s drain.

The ``checked_`` tasks (the user-faithful harness, ``peers_pg.run_user``) have the same shapes
and priorities, but a step's job carries its predecessors' results (not timings): each step
checks them against the task number and defers its successor with the next number (as
``benchmarks/benchplugin.py``'s checked workflows do); d records the final result in
``peer_results``. A mismatch raises, and the job fails. ``enqueue --one-by-one`` defers one job
per call (one caller, one commit per task); ``--window-file`` writes the ``time.time()`` of the
first defer call and of the last return.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

from lifeline import exit_with_parent
from procrastinate import App, PsycopgConnector
from window import write_window

QUEUE_NAME = "peer_bench"

SIDE_TABLES = """
CREATE TABLE IF NOT EXISTS peer_join (
    task integer PRIMARY KEY,
    arrived integer NOT NULL,
    timings jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS peer_results (
    task integer PRIMARY KEY,
    timings jsonb NOT NULL
);
"""

JOIN_SQL = """
INSERT INTO peer_join (task, arrived, timings) VALUES (%(task)s, 1, %(timings)s)
ON CONFLICT (task) DO UPDATE
    SET arrived = peer_join.arrived + 1, timings = peer_join.timings || EXCLUDED.timings
RETURNING arrived, timings
"""

RESULT_SQL = "INSERT INTO peer_results (task, timings) VALUES (%(task)s, %(timings)s)"


# The database and the pool size come from the environment: the tasks are registered on this app
# at import time. A worker's pool holds one connection per concurrent job plus the LISTEN one.
_POOL_SIZE = int(os.environ.get("PEER_BENCH_POOL", "4"))
app = App(
    connector=PsycopgConnector(
        conninfo=os.environ.get("PEER_BENCH_DB", ""), min_size=_POOL_SIZE, max_size=_POOL_SIZE
    )
)


def _timed() -> list[float]:
    t0 = time.time()
    return [t0, time.time()]


@app.task(name="chain_a", queue=QUEUE_NAME, priority=0)
async def chain_a(task: int, timings: dict[str, Any]) -> None:
    timings = {**timings, "a": _timed()}
    await chain_b.defer_async(task=task, timings=timings)


@app.task(name="chain_b", queue=QUEUE_NAME, priority=1)
async def chain_b(task: int, timings: dict[str, Any]) -> None:
    timings = {**timings, "b": _timed()}
    await chain_c.defer_async(task=task, timings=timings)


@app.task(name="chain_c", queue=QUEUE_NAME, priority=2)
async def chain_c(task: int, timings: dict[str, Any]) -> None:
    timings = {**timings, "c": _timed()}
    await chain_d.defer_async(task=task, timings=timings)


@app.task(name="chain_d", queue=QUEUE_NAME, priority=3)
async def chain_d(task: int, timings: dict[str, Any]) -> None:
    timings = {**timings, "d": _timed()}
    await app.connector.execute_query_async(RESULT_SQL, task=task, timings=timings)


@app.task(name="diamond_a", queue=QUEUE_NAME, priority=0)
async def diamond_a(task: int, timings: dict[str, Any]) -> None:
    timings = {**timings, "a": _timed()}
    await diamond_b.defer_async(task=task, timings=timings)
    await diamond_c.defer_async(task=task, timings=timings)


async def _join(task: int, timings: dict[str, Any]) -> None:
    row = await app.connector.execute_query_one_async(JOIN_SQL, task=task, timings=timings)
    if row["arrived"] == 2:
        await diamond_d.defer_async(task=task, timings=row["timings"])


@app.task(name="diamond_b", queue=QUEUE_NAME, priority=1)
async def diamond_b(task: int, timings: dict[str, Any]) -> None:
    await _join(task, {**timings, "b": _timed()})


@app.task(name="diamond_c", queue=QUEUE_NAME, priority=1)
async def diamond_c(task: int, timings: dict[str, Any]) -> None:
    await _join(task, {**timings, "c": _timed()})


@app.task(name="diamond_d", queue=QUEUE_NAME, priority=2)
async def diamond_d(task: int, timings: dict[str, Any]) -> None:
    timings = {**timings, "d": _timed()}
    await app.connector.execute_query_async(RESULT_SQL, task=task, timings=timings)


FIRST_STEP = {"chain": chain_a, "diamond": diamond_a}


def _check(step: str, received: Any, expected: int) -> None:
    if received != expected:
        raise ValueError(f"step {step}: received {received!r}, expected {expected!r}")


@app.task(name="checked_chain_a", queue=QUEUE_NAME, priority=0)
async def checked_chain_a(task: int) -> None:
    await checked_chain_b.defer_async(task=task, a=task)


@app.task(name="checked_chain_b", queue=QUEUE_NAME, priority=1)
async def checked_chain_b(task: int, a: int) -> None:
    _check("b", a, task)
    await checked_chain_c.defer_async(task=task, b=a + 1)


@app.task(name="checked_chain_c", queue=QUEUE_NAME, priority=2)
async def checked_chain_c(task: int, b: int) -> None:
    _check("c", b, task + 1)
    await checked_chain_d.defer_async(task=task, c=b + 1)


@app.task(name="checked_chain_d", queue=QUEUE_NAME, priority=3)
async def checked_chain_d(task: int, c: int) -> None:
    _check("d", c, task + 2)
    await app.connector.execute_query_async(RESULT_SQL, task=task, timings={"d": c + 1})


@app.task(name="checked_diamond_a", queue=QUEUE_NAME, priority=0)
async def checked_diamond_a(task: int) -> None:
    await checked_diamond_b.defer_async(task=task, a=task)
    await checked_diamond_c.defer_async(task=task, a=task)


async def _checked_join(task: int, result: dict[str, int]) -> None:
    # peer_join's timings column carries the results of b and c here
    row = await app.connector.execute_query_one_async(JOIN_SQL, task=task, timings=result)
    if row["arrived"] == 2:
        await checked_diamond_d.defer_async(task=task, b=row["timings"]["b"], c=row["timings"]["c"])


@app.task(name="checked_diamond_b", queue=QUEUE_NAME, priority=1)
async def checked_diamond_b(task: int, a: int) -> None:
    _check("b", a, task)
    await _checked_join(task, {"b": a + 1})


@app.task(name="checked_diamond_c", queue=QUEUE_NAME, priority=1)
async def checked_diamond_c(task: int, a: int) -> None:
    _check("c", a, task)
    await _checked_join(task, {"c": a + 2})


@app.task(name="checked_diamond_d", queue=QUEUE_NAME, priority=2)
async def checked_diamond_d(task: int, b: int, c: int) -> None:
    _check("d", b, task + 1)
    _check("d", c, task + 2)
    await app.connector.execute_query_async(RESULT_SQL, task=task, timings={"d": b + c})


CHECKED_FIRST_STEP = {"chain": checked_chain_a, "diamond": checked_diamond_a}


async def enqueue(args: argparse.Namespace) -> None:
    """Apply procrastinate's schema and the side tables (unless ``--skip-setup``), then defer
    every task's first step: in batches of 100, or one job per call with ``--one-by-one``."""
    async with app.open_async():
        if not args.skip_setup:
            await app.schema_manager.apply_schema_async()
            await app.connector.execute_query_async(SIDE_TABLES)
        first = (CHECKED_FIRST_STEP if args.checked else FIRST_STEP)[args.shape]
        tasks = range(args.first, args.first + args.tasks)
        started = time.time()
        if args.one_by_one:
            for task in tasks:
                await first.defer_async(**_first_args(task, args.checked))
        else:
            batch = 100
            for start in range(0, len(tasks), batch):
                await first.batch_defer_async(
                    *(_first_args(task, args.checked) for task in tasks[start : start + batch])
                )
        if args.window_file:
            write_window(args.window_file, started, time.time(), args.tasks)
    print("enqueued", flush=True)


def _first_args(task: int, checked: bool) -> dict[str, Any]:
    return {"task": task} if checked else {"task": task, "timings": {}}


async def worker(args: argparse.Namespace) -> None:
    """Open the pool, wait for the go file (with ``--go-file``), then run one worker until terminated."""
    async with app.open_async():
        print("ready", flush=True)
        deadline = time.monotonic() + 120
        while args.go_file and not os.path.exists(args.go_file):
            if time.monotonic() > deadline:
                sys.exit("no go signal")
            await asyncio.sleep(0.005)
        await app.run_worker_async(
            queues=[QUEUE_NAME],
            concurrency=args.concurrency,
            wait=True,
            listen_notify=True,
            fetch_job_polling_interval=args.polling_interval,
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p_enq = sub.add_parser("enqueue")
    p_enq.add_argument("--shape", choices=sorted(FIRST_STEP), required=True)
    p_enq.add_argument("--tasks", type=int, required=True)
    p_enq.add_argument("--skip-setup", action="store_true", help="the schema is there already")
    p_enq.add_argument("--checked", action="store_true", help="the checked_ tasks")
    p_enq.add_argument("--first", type=int, default=0, help="number of the first task")
    p_enq.add_argument("--one-by-one", action="store_true", help="one defer call per task")
    p_enq.add_argument("--window-file", help="write the enqueue window here")
    p_work = sub.add_parser("worker")
    p_work.add_argument("--concurrency", type=int, required=True)
    p_work.add_argument("--go-file", help="wait for this file before working")
    p_work.add_argument("--polling-interval", type=float, default=5.0)
    args = parser.parse_args()
    exit_with_parent()
    if args.command == "enqueue":
        asyncio.run(enqueue(args))
    else:
        asyncio.run(worker(args))


if __name__ == "__main__":
    main()
