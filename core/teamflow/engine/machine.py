"""The machine a worker runs on: its id names it, and whether it has a core to spare.

A worker is one Python process: its steps share one interpreter lock, so it keeps at most
about one core busy. Workers that outnumber a machine's cores cannot add speed there when
the machine is busy, only commits (each splits the steps over smaller claims): a leader
asks helpers on its own machine beyond its cores only while a core is idle
(``Housekeeping``).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path

STAT = Path("/proc/stat")
SAMPLE_S = 0.05  # the shortest window an idle share is measured over (/proc/stat counts 1/100 s)


def new_worker_id() -> str:
    """``host:pid:random``: unique, and it names the machine (``machine_of``)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def machine_of(worker_id: str) -> str:
    """The host part of a ``new_worker_id`` (an id of another shape is a machine of its own)."""
    return worker_id.rsplit(":", 2)[0] if worker_id.count(":") >= 2 else worker_id


def cores() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class IdleCpu:
    """How many cores of this machine were idle lately (from ``/proc/stat``; None where it
    cannot be read). Each answer covers the time since the one before, at least SAMPLE_S."""

    def __init__(self, stat: Path = STAT) -> None:
        self._stat = stat
        self._idle: float | None = None
        reading = self._read()
        self._last = None if reading is None else (time.monotonic(), *reading)  # (when, idle, all jiffies)

    def idle(self) -> float | None:
        """Idle cores (of the machine's CPUs, a float), or None until SAMPLE_S after the first reading."""
        now = time.monotonic()
        if self._last is not None and now - self._last[0] < SAMPLE_S:
            return self._idle
        reading = self._read()
        if reading is None:
            return None
        if self._last is not None and reading[1] > self._last[2]:
            idle, total = reading[0] - self._last[1], reading[1] - self._last[2]
            self._idle = (os.cpu_count() or 1) * idle / total  # /proc/stat adds up every CPU
        self._last = (now, *reading)
        return self._idle

    def _read(self) -> tuple[int, int] | None:
        try:
            values = [int(v) for v in self._stat.read_text().split("\n", 1)[0].split()[1:]]
            return values[3] + values[4], sum(values)  # idle + iowait, everything
        except (OSError, ValueError, IndexError):
            return None
