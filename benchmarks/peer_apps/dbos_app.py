"""DBOS Transact side of ``benchmarks/peers_pg.py``: the workflows, the enqueuer and the worker.

Run as a script by ``peers_pg`` (never imported by it: DBOS is a process-wide singleton):

    python dbos_app.py enqueue --db URL --shape chain --tasks 500 --worker-concurrency 16 \
        --polling-interval 0.01 [--checked --first 0 --window-file F]
    python dbos_app.py worker  --db URL --executor-id w1 --threads 16 [--go-file /tmp/x/go]

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

The ``checked_`` workflows (the user-faithful harness, ``peers_pg.run_user``) have the same
shapes, but each step receives its predecessors' results as arguments, checks them against the
task number and returns the next number (as ``benchmarks/benchplugin.py``'s checked workflows
do); a mismatch raises, and DBOS records the workflow as ``ERROR``. ``enqueue --window-file``
writes the ``time.time()`` of its first ``enqueue_workflow`` call and of its last return.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

from dbos import DBOS, DBOSConfig
from lifeline import exit_with_parent
from window import write_window

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


def _check(step: str, received: Any, expected: int) -> None:
    if received != expected:
        raise ValueError(f"step {step}: received {received!r}, expected {expected!r}")


@DBOS.step()
def checked_chain_a(n: int) -> int:
    return n


@DBOS.step()
def checked_chain_b(n: int, a: int) -> int:
    _check("b", a, n)
    return a + 1


@DBOS.step()
def checked_chain_c(n: int, b: int) -> int:
    _check("c", b, n + 1)
    return b + 1


@DBOS.step()
def checked_chain_d(n: int, c: int) -> int:
    _check("d", c, n + 2)
    return c + 1


@DBOS.workflow()
def checked_chain_workflow(n: int) -> int:
    a = checked_chain_a(n)
    b = checked_chain_b(n, a)
    c = checked_chain_c(n, b)
    return checked_chain_d(n, c)


@DBOS.step()
async def checked_diamond_a(n: int) -> int:
    return n


@DBOS.step()
async def checked_diamond_b(n: int, a: int) -> int:
    _check("b", a, n)
    return a + 1


@DBOS.step()
async def checked_diamond_c(n: int, a: int) -> int:
    _check("c", a, n)
    return a + 2


@DBOS.step()
async def checked_diamond_d(n: int, b: int, c: int) -> int:
    _check("d", b, n + 1)
    _check("d", c, n + 2)
    return b + c


@DBOS.workflow()
async def checked_diamond_workflow(n: int) -> int:
    a = await checked_diamond_a(n)
    # Started in a fixed order so DBOS assigns the same step ids on a replay.
    b = asyncio.create_task(checked_diamond_b(n, a))
    c = asyncio.create_task(checked_diamond_c(n, a))
    b_out, c_out = await asyncio.gather(b, c)
    return await checked_diamond_d(n, b_out, c_out)


CHECKED = {"chain": checked_chain_workflow, "diamond": checked_diamond_workflow}


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
    """Create the schema (once), register the queue and enqueue every task, one call each,
    dequeuing nothing itself."""
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
        workflow = (CHECKED if args.checked else WORKFLOWS)[args.shape]
        first = time.time()
        for task in range(args.first, args.first + args.tasks):
            DBOS.enqueue_workflow(QUEUE_NAME, workflow, task)
        if args.window_file:
            write_window(args.window_file, first, time.time(), args.tasks)
    finally:
        DBOS.destroy()
    print("enqueued", flush=True)


def worker(args: argparse.Namespace) -> None:
    """Launch DBOS listening to the bench queue (once the go file exists, with ``--go-file``:
    ``ready`` then means loaded; without, it means launched); run until terminated."""
    DBOS(config=_config(args.db, args.executor_id, args.threads))
    DBOS.listen_queues([QUEUE_NAME])
    if args.go_file:
        print("ready", flush=True)
        deadline = time.monotonic() + 120
        while not os.path.exists(args.go_file):
            if time.monotonic() > deadline:
                sys.exit("no go signal")
            time.sleep(0.005)
    DBOS.launch()
    if not args.go_file:
        print("ready", flush=True)
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
    p_enq.add_argument("--checked", action="store_true", help="the checked_ workflows")
    p_enq.add_argument("--first", type=int, default=0, help="number of the first task")
    p_enq.add_argument("--window-file", help="write the enqueue window here")
    p_work = sub.add_parser("worker")
    p_work.add_argument("--db", required=True)
    p_work.add_argument("--executor-id", required=True)
    p_work.add_argument("--go-file", help="wait for this file before launching")
    p_work.add_argument("--threads", type=int, required=True)
    args = parser.parse_args()
    exit_with_parent()
    if args.command == "enqueue":
        enqueue(args)
    else:
        worker(args)


if __name__ == "__main__":
    main()
