"""Workers: each records a heartbeat with the versions it serves, and leaves on a clean stop.

The heartbeats say which routes some live worker serves (a task no live worker can serve
is reported, not silently stuck), and which worker of a group (the workers serving the
same routes) answers wake-ups first and which it asks first for help (``live_workers``,
the longest-running first: a group's first leads).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from teamflow.store.base import StoreBase
from teamflow.store.records import WorkerRecord

UPSERT = (
    "INSERT INTO tf_worker (id, grp, routes, concurrency, started_at, seen_at) VALUES (?, ?, ?, ?, {now}, {now}) "
    "ON CONFLICT (id) DO UPDATE SET seen_at = {now}, routes = excluded.routes, grp = excluded.grp"
)
FORGET = "DELETE FROM tf_worker WHERE id = ?"
LIVE = (
    "SELECT id, grp, routes, concurrency, started_at, seen_at FROM tf_worker WHERE seen_at > {now} - ? "
    "ORDER BY started_at, id"
)
FORGET_GONE = "DELETE FROM tf_worker WHERE seen_at < {now} - ?"


class Workers(StoreBase):
    def heartbeat(self, worker_id: str, group: str, routes: Sequence[str], concurrency: int) -> None:
        """Say that ``worker_id`` is alive and serves ``routes``."""
        with self.tx():  # SQLite: every write inside BEGIN IMMEDIATE, under the writer lock
            self.execute(UPSERT, (worker_id, group, json.dumps(sorted(routes)), concurrency))

    def forget_worker(self, worker_id: str, *, gone_after_s: float = 86400.0) -> None:
        """A worker stopped; heartbeats older than ``gone_after_s`` go too."""
        with self.tx():
            self.execute(FORGET, (worker_id,))
            self.execute(FORGET_GONE, (gone_after_s,))

    def live_workers(self, within_s: float) -> list[WorkerRecord]:
        """Workers seen within ``within_s`` seconds, the longest-running first."""
        return [
            WorkerRecord(r[0], r[1], tuple(json.loads(r[2])), r[3], r[4], r[5])
            for r in self.execute(LIVE, (within_s,)).fetchall()
        ]

    def overflow(self, helpers: Sequence[str] = ()) -> None:
        """Ask ``helpers`` (workers, by id; none named: every worker) to claim ready work
        that their group's leader cannot take now (a database with no broadcast wake-up
        does nothing here)."""
        return
