"""What a timed window costs the machine (Linux ``/proc`` and PostgreSQL's ``pg_stat_wal``).

``Probe(pids, pg_dsn)`` is read once before a window and once after it; ``usage(before, after,
tasks)`` gives, per task:

* ``cpu_ms_per_task``: user + system CPU of the given processes (the workers) plus every
  process of the PostgreSQL server (its backends and background processes: the children of
  the postmaster whose command line starts with ``postgres:``), from ``/proc/<pid>/stat``.
  A process that ends inside the window loses its share; one that starts inside it counts
  from zero. The server is shared: other clients' backends count too (a quiet machine is
  assumed, as for every figure here);
* ``wal_syncs_per_task``: the increase of ``pg_stat_wal.wal_sync`` (PostgreSQL 14+), which
  is server-wide too. A backend publishes its statistics lazily: when it goes idle at most
  once a second, else 10 s later (``PGSTAT_IDLE_INTERVAL``), and when it exits. So the
  harnesses wait ``STATS_SETTLE_S`` after the warm-up before the first reading (the warm-up's
  fsyncs are published by then), and take the second one only after the workers stopped and
  the bench closed its connections (``Probe.wal_sync_after_exit``): every backend that worked
  in the window has exited and published by then;
* ``idle_pct``: the machine's idle (+ iowait) share of the window, from ``/proc/stat``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
STATS_SETTLE_S = 11.0  # PGSTAT_IDLE_INTERVAL (10 s) + 1


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` in seconds (None when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state is fields[0]
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def server_processes(postmaster: int) -> list[int]:
    """The PostgreSQL server's processes: children of ``postmaster`` titled ``postgres: ...``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if not (entry / "cmdline").read_bytes().startswith(b"postgres:"):
                continue
        except OSError:
            continue
        if _parent(pid) == postmaster:
            found.append(pid)
    return found


def _machine() -> tuple[int, int]:
    """(idle + iowait, total) jiffies of all CPUs since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return values[3] + values[4], sum(values)


@dataclass
class Reading:
    cpu: dict[int, float] = field(default_factory=dict)
    idle: int = 0
    total: int = 0
    wal_sync: int | None = None


class Probe:
    """Reads the CPU of ``pids`` (+ the PostgreSQL server's processes) and the WAL fsyncs."""

    def __init__(self, pids: list[int], pg_dsn: str | None = None) -> None:
        self.pids = list(pids)
        self.pg = bool(pg_dsn)
        self.conn: Any = None
        self.postmaster: int | None = None
        if pg_dsn:
            import psycopg2

            self.conn = psycopg2.connect(pg_dsn)
            self.conn.autocommit = True
            with self.conn.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                self.postmaster = _parent(cur.fetchone()[0])

    def wal_sync(self) -> int | None:
        if self.conn is None:
            return None
        with self.conn.cursor() as cur:
            cur.execute("SELECT wal_sync FROM pg_stat_wal")
            return int(cur.fetchone()[0])

    def wal_sync_after_exit(self) -> int | None:
        """``wal_sync`` once the backends that worked are gone (the caller ended their clients)."""
        if self.conn is None:
            return None
        time.sleep(0.5)  # a backend exits, publishing its statistics, once it sees its client gone
        return self.wal_sync()

    def read(self) -> Reading:
        reading = Reading(wal_sync=self.wal_sync())
        pids = self.pids + (server_processes(self.postmaster) if self.postmaster else [])
        for pid in pids:
            seconds = cpu_seconds(pid)
            if seconds is not None:
                reading.cpu[pid] = seconds
        reading.idle, reading.total = _machine()
        return reading

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def usage(before: Reading, after: Reading, tasks: int) -> dict[str, float | None]:
    cpu = sum(s - before.cpu.get(pid, 0.0) for pid, s in after.cpu.items())
    total = after.total - before.total
    wal = (
        (after.wal_sync - before.wal_sync) / tasks
        if after.wal_sync is not None and before.wal_sync is not None
        else None
    )
    return {
        "cpu_ms_per_task": cpu * 1000 / tasks,
        "wal_syncs_per_task": wal,
        "idle_pct": 100.0 * (after.idle - before.idle) / total if total else None,
    }
