"""DBOS Transact side of ``benchmarks/peers_pg.py``: the workflows, the enqueuer and the worker.

Run as a script by ``peers_pg`` (never imported by it: DBOS is a process-wide singleton):

    python dbos_app.py enqueue --db URL --shape chain --tasks 500 --workers 2 --worker-concurrency 24
    python dbos_app.py worker  --db URL --executor-id w1 --go-file /tmp/x/go

Both commands import this same file, so the application version DBOS derives from the workflow
source is the same in the enqueuer and in every worker.

Each step is a ``@DBOS.step()`` that records ``time.time()`` at its start and end and returns
``(start, end)``: DBOS checkpoints that return value in ``dbos.operation_outputs`` (one row per
step), which is where ``peers_pg`` reads the timings from afterwards.

* chain: a synchronous ``@DBOS.workflow()`` calling four synchronous steps in order (the style
  DBOS documents first; sync workflows run on DBOS's executor thread pool).
* diamond: an ``async`` ``@DBOS.workflow()``: step a, then b and c started in a fixed order with
  ``asyncio.create_task`` and awaited with ``asyncio.gather`` (DBOS's documented way to run steps
  of one workflow in parallel), then d.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

from dbos import DBOS, DBOSConfig
from lifeline import exit_with_parent

APP_NAME = "teamflow-peer-bench"
QUEUE_NAME = "peer_bench"


@DBOS.step()
def chain_a() -> tuple[float, float]:
    t0 = time.time()
    return (t0, time.time())


@DBOS.step()
def chain_b() -> tuple[float, float]:
    t0 = time.time()
    return (t0, time.time())


@DBOS.step()
def chain_c() -> tuple[float, float]:
    t0 = time.time()
    return (t0, time.time())


@DBOS.step()
def chain_d() -> tuple[float, float]:
    t0 = time.time()
    return (t0, time.time())


@DBOS.workflow()
def chain_workflow(task: int) -> int:
    chain_a()
    chain_b()
    chain_c()
    chain_d()
    return task


@DBOS.step()
async def diamond_a() -> tuple[float, float]:
    t0 = time.time()
    return (t0, time.time())


@DBOS.step()
async def diamond_b() -> tuple[float, float]:
    t0 = time.time()
    return (t0, time.time())


@DBOS.step()
async def diamond_c() -> tuple[float, float]:
    t0 = time.time()
    return (t0, time.time())


@DBOS.step()
async def diamond_d() -> tuple[float, float]:
    t0 = time.time()
    return (t0, time.time())


@DBOS.workflow()
async def diamond_workflow(task: int) -> int:
    await diamond_a()
    # Started in a fixed order so DBOS assigns the same step ids on a replay.
    b = asyncio.create_task(diamond_b())
    c = asyncio.create_task(diamond_c())
    await asyncio.gather(b, c)
    await diamond_d()
    return task


WORKFLOWS = {"chain": chain_workflow, "diamond": diamond_workflow}


def _config(db: str, executor_id: str, threads: int) -> DBOSConfig:
    return {
        "name": APP_NAME,
        "system_database_url": db,
        "executor_id": executor_id,
        "max_executor_threads": threads,
        "sys_db_pool_size": threads + 2,
        "log_level": "WARNING",
        "console_log_level": "WARNING",
        "enable_otlp": False,
    }


def enqueue(args: argparse.Namespace) -> None:
    """Create the schema, register the queue and enqueue every task, dequeuing nothing itself."""
    DBOS(config=_config(args.db, "enqueuer", 4))
    DBOS.listen_queues([])  # this process only enqueues
    DBOS.launch()
    try:
        DBOS.register_queue(
            QUEUE_NAME,
            worker_concurrency=args.worker_concurrency,
            polling_interval_sec=args.polling_interval,
            on_conflict="always_update",
        )
        workflow = WORKFLOWS[args.shape]
        for task in range(args.tasks):
            DBOS.enqueue_workflow(QUEUE_NAME, workflow, task)
    finally:
        DBOS.destroy()
    print("enqueued", flush=True)


def worker(args: argparse.Namespace) -> None:
    """Launch DBOS listening to the bench queue once the go file exists; run until terminated."""
    DBOS(config=_config(args.db, args.executor_id, args.threads))
    DBOS.listen_queues([QUEUE_NAME])
    print("ready", flush=True)
    deadline = time.monotonic() + 120
    while not os.path.exists(args.go_file):
        if time.monotonic() > deadline:
            sys.exit("no go signal")
        time.sleep(0.005)
    DBOS.launch()
    try:
        while True:
            time.sleep(3600)
    finally:
        DBOS.destroy()


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p_enq = sub.add_parser("enqueue")
    p_enq.add_argument("--db", required=True)
    p_enq.add_argument("--shape", choices=sorted(WORKFLOWS), required=True)
    p_enq.add_argument("--tasks", type=int, required=True)
    p_enq.add_argument("--worker-concurrency", type=int, required=True)
    p_enq.add_argument("--polling-interval", type=float, required=True)
    p_work = sub.add_parser("worker")
    p_work.add_argument("--db", required=True)
    p_work.add_argument("--executor-id", required=True)
    p_work.add_argument("--go-file", required=True)
    p_work.add_argument("--threads", type=int, required=True)
    args = parser.parse_args()
    exit_with_parent()
    if args.command == "enqueue":
        enqueue(args)
    else:
        worker(args)


if __name__ == "__main__":
    main()
