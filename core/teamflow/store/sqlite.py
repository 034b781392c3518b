"""SQLite, the embedded default: WAL, ``BEGIN IMMEDIATE``, one writer, local disks only.

Every way SQLite differs from PostgreSQL is here: the connection's pragmas, the writer
lock that lets threads of one process queue for the single writer in Python instead of in
SQLite's busy handler (which sleeps in milliseconds), the history's clustered layout and
numbering, the claim (no ``SKIP LOCKED``: there is one writer), the check that completes a
task, the one-statement read of a task, and the background WAL checkpointer.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import peewee as pw
from loguru import logger

from teamflow.errors import StoreError
from teamflow.store.base import DuplicateKey
from teamflow.store.checkpoint import Checkpointer
from teamflow.store.records import (
    Applied,
    ChildRecord,
    Claimed,
    Claims,
    StepRecord,
    TaskRecord,
    TaskSnapshot,
    TransitionRecord,
)
from teamflow.store.scheduling import READY
from teamflow.store.store import Store, Wake
from teamflow.store.tasks import CHILD_COLUMNS, STEP_COLUMNS, TASK_COLUMNS

# The task, its steps, its children (and its history) in one statement, hence one snapshot.
# Every arm has the same columns: a kind, 14 values and a sort key (column 16).
SNAPSHOT = (
    f"SELECT 0, {TASK_COLUMNS}, 0 FROM tf_task WHERE id = ?1 "
    f"UNION ALL SELECT 1, {STEP_COLUMNS}, id FROM tf_step WHERE task_id = ?1 "
    f"UNION ALL SELECT 2, {CHILD_COLUMNS}, {', '.join(['NULL'] * 7)}, created_at FROM tf_task WHERE parent_id = ?1"
)
HISTORY_ARM = (
    " UNION ALL SELECT 3, step, from_status, to_status, attempt, actor, detail, at, "
    f"{', '.join(['NULL'] * 7)}, id FROM tf_transition WHERE task_id = ?1"
)
SNAPSHOT_ONLY = SNAPSHOT + " ORDER BY 1, 16"
SNAPSHOT_WITH_HISTORY = SNAPSHOT + HISTORY_ARM + " ORDER BY 1, 16"
# Only a task whose every step is done completes; asked only when the step that finished
# had no successor left to run, so most step commits leave the task row alone.
COMPLETE_TASK = (
    "UPDATE tf_task SET status = 'completed', finished_at = {now}, updated_at = {now} "
    "WHERE id = ?1 AND status = 'in_progress' AND NOT EXISTS (SELECT 1 FROM tf_step "
    "WHERE task_id = ?1 AND status NOT IN ('completed', 'resolved')) RETURNING parent_id, parent_step"
)


@functools.lru_cache(maxsize=64)
def claim_ready(where: str) -> str:
    return (
        "UPDATE tf_step SET status = 'in_progress', attempts = attempts + 1, lease_owner = ?, "
        f"lease_expires_at = {{now}} + ?, started_at = {{now}} WHERE id IN (SELECT id FROM tf_step WHERE {where} "
        "ORDER BY next_attempt_at LIMIT ?) RETURNING id, task_id, name, attempts"
    )


@functools.lru_cache(maxsize=32)
def insert_history(rows: int) -> str:
    """The history insert for this many rows (its text is built once per count)."""
    return (
        "INSERT INTO tf_transition (task_id, step, from_status, to_status, attempt, actor, detail, id, at) VALUES "
        + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, {now})"] * rows)
    )


def _cluster_history(db: pw.Database) -> None:
    """Schema v2 on SQLite: the history is clustered by task (one B-tree, not a table and an
    index), so recording a transition writes one page. ``id`` orders a task's rows (the
    store writes nanosecond timestamps, unique per process; v1's ids are smaller)."""
    db.execute_sql(
        "CREATE TABLE tf_transition_v2 (task_id VARCHAR(36) NOT NULL, id INTEGER NOT NULL, "
        "step VARCHAR(255), from_status VARCHAR(255), to_status VARCHAR(255) NOT NULL, attempt INTEGER, "
        "at REAL NOT NULL, actor VARCHAR(255), detail TEXT, PRIMARY KEY (task_id, id)) WITHOUT ROWID"
    )
    db.execute_sql(
        "INSERT INTO tf_transition_v2 (task_id, id, step, from_status, to_status, attempt, at, actor, detail) "
        "SELECT task_id, id, step, from_status, to_status, attempt, at, actor, detail FROM tf_transition"
    )
    db.execute_sql("DROP TABLE tf_transition")
    db.execute_sql("ALTER TABLE tf_transition_v2 RENAME TO tf_transition")


def sqlite_path(url: str) -> str:
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///") :] or ":memory:"
    if url in ("sqlite://", "sqlite:"):
        return ":memory:"
    raise StoreError(f"unsupported database URL {url!r}: use sqlite:///path.db or postgresql://user@host/db")


WATCH_BUSY_S = 0.001  # data_version read this soon after a change
WATCH_IDLE_S = 0.02  # and at least this often while nothing changes
_UNIQUE_FAILED = re.compile(r"UNIQUE constraint failed: (.+)")


class SqliteStore(Store):
    dialect = "sqlite"
    reads_locally = True  # WAL: a reader never waits for the writer
    now_sql = "((julianday('now') - 2440587.5) * 86400.0)"
    share_sql = ""  # one writer at a time: what a write reads cannot change under it
    begin_sql = "BEGIN IMMEDIATE"
    single_writer = True
    migrates_itself = True
    extra_migrations = {2: _cluster_history}
    _lost = (sqlite3.OperationalError, sqlite3.InterfaceError)
    _integrity = (sqlite3.IntegrityError,)

    def __init__(self, url: str, *, synchronous: str = "FULL", wal_autocheckpoint: int = 10_000) -> None:
        self.path = sqlite_path(url)
        if self.path == ":memory:" or self.path.startswith("file::memory:"):
            # Every connection would get a database of its own: the workers would see no task.
            raise StoreError(
                f"{url!r} is an in-memory database, which each connection sees empty: "
                "use a file, e.g. sqlite:///teamflow.db"
            )
        self.synchronous = synchronous
        self.wal_autocheckpoint = wal_autocheckpoint
        self._checkpointer = Checkpointer(self.path)
        self._writer = threading.RLock()
        self._seq_lock = threading.Lock()
        self._last_seq = 0
        super().__init__(url)

    def _open(self) -> pw.Database:
        return pw.SqliteDatabase(
            self.path,
            pragmas={
                "journal_mode": "wal",
                "synchronous": self.synchronous,
                "wal_autocheckpoint": self.wal_autocheckpoint,
                # A WAL that outgrew twice the autocheckpoint (4 KiB pages) while a reader
                # held checkpoints back is cut back to that when it next restarts; else the
                # file keeps its largest size for good.
                "journal_size_limit": 2 * self.wal_autocheckpoint * 4096,
                "busy_timeout": 60_000,
                "foreign_keys": 0,
            },
            lock_type="IMMEDIATE",
            check_same_thread=False,
        )

    def connect(self) -> None:
        try:
            super().connect()
            tables = set(self.db.get_tables())
        except (sqlite3.DatabaseError, pw.DatabaseError) as exc:  # "file is not a database", a truncated file...
            raise StoreError(
                f"{self.path} is not a SQLite database ({exc}): point database_url at a teamflow database "
                "or at a new file"
            ) from None
        if tables and "tf_meta" not in tables:
            raise StoreError(
                f"{self.path} is a SQLite database of something else (tables: {', '.join(sorted(tables)[:8])}): "
                "point database_url at a teamflow database or at a new file"
            )

    def _compile(self, text: str) -> str:
        return text  # our statements are written in sqlite3's own ``?`` style

    def _duplicate(self, exc: BaseException) -> DuplicateKey:
        """SQLite names the columns, not the index: find the unique index on them."""
        found = _UNIQUE_FAILED.search(str(exc))
        if found is None:
            return DuplicateKey("", str(exc))
        columns = [c.strip().split(".", 1) for c in found.group(1).split(",")]
        table, wanted = columns[0][0], [c[-1] for c in columns]
        for index in self.db.get_indexes(table):
            if index.unique and list(index.columns) == wanted:
                return DuplicateKey(index.name, str(exc))
        return DuplicateKey(f"{table}({', '.join(wanted)})", str(exc))

    def _insert_history(self, rows: Sequence[tuple[Any, ...]]) -> None:
        # The history is keyed by (task, id): the id is the time in nanoseconds, made
        # unique and increasing within this process, so rows need no lookup to be
        # numbered. (Writers to one SQLite file share a machine, hence a clock.)
        with self._seq_lock:
            first = max(self._last_seq + 1, time.time_ns())
            self._last_seq = first + len(rows) - 1
        # Chunks of at most 16 rows: each row count is a statement of its own in every
        # connection's statement cache, and a big one costs memory (a worker has many).
        for start in range(0, len(rows), 16):
            chunk = rows[start : start + 16] if len(rows) > 16 else rows
            params: list[Any] = []
            for i, row in enumerate(chunk, start=first + start):
                params.extend(row)
                params.append(i)
            self.execute(insert_history(len(chunk)), params)

    def _committed(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.committed()

    def watch(
        self,
        wake: Wake,
        hungry: Callable[[], bool] | None = None,
        listening: Callable[[], bool] | None = None,
        worker_id: str | None = None,
    ) -> Callable[[], None]:
        """Wake the workers within milliseconds of another connection's commit.

        ``PRAGMA data_version`` changes when any other connection (of this process or
        another) commits; reading it costs a look at the WAL index in shared memory, no
        disk I/O. The watcher reads it every millisecond after a change, backing off to
        every ``WATCH_IDLE_S`` while nothing changes, so an idle worker costs next to no CPU.
        While its worker is not ``hungry`` (enough claims queued) it rests: this process's
        own commits change the version too, and a wake for each would cost the busy worker
        a look at its queue every millisecond (its step threads ask when the queue runs low).
        (A commit says nothing about who should act on it: ``listening`` is not needed here.)
        """
        stopped = threading.Event()
        thread = threading.Thread(target=self._watch, args=(wake, hungry, stopped), name="teamflow-watch", daemon=True)
        thread.start()
        return stopped.set

    def _watch(self, wake: Wake, hungry: Callable[[], bool] | None, stopped: threading.Event) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            version = conn.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error as exc:
            logger.warning("watching {} for new work is off ({}); workers poll instead", self.path, exc)
            return
        pause = WATCH_BUSY_S
        try:
            while not stopped.wait(pause):
                if hungry is not None and not hungry():
                    pause = WATCH_IDLE_S
                    continue
                try:
                    now = conn.execute("PRAGMA data_version").fetchone()[0]
                except sqlite3.Error:  # busy or gone for a moment: the poll still runs
                    now = version
                if now != version:
                    version, pause = now, WATCH_BUSY_S
                    wake(True)  # no word on what changed: every worker of the file looks
                else:
                    pause = min(pause * 2, WATCH_IDLE_S)
        finally:
            conn.close()

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        super().close()

    # -- scheduling ---------------------------------------------------------------------

    def _routes_clause(self, routes: Sequence[str]) -> tuple[str, list[Any]]:
        return f" AND route IN ({self.placeholders(len(routes))})", list(routes)

    def claim(
        self,
        worker: str,
        lease_s: float,
        limit: int,
        *,
        routes: Sequence[str] | None = None,
        task_ids: Sequence[str] | None = None,
    ) -> Claims:
        if limit <= 0 or (routes is not None and not routes):
            return Claims([], [])
        with self.tx():
            return self._claim_in_tx(worker, lease_s, limit, routes, task_ids)

    def _claim_in_tx(
        self,
        worker: str,
        lease_s: float,
        limit: int,
        routes: Sequence[str] | None,
        task_ids: Sequence[str] | None = None,
    ) -> Claims:
        if limit <= 0 or (routes is not None and not routes):
            return Claims([], [])
        where = f"{READY} AND next_attempt_at <= {{now}}"
        params: list[Any] = []
        if routes is not None:
            clause, values = self._routes_clause(routes)
            where += clause
            params.extend(values)
        if task_ids is not None:
            where += f" AND task_id IN ({self.placeholders(len(task_ids))})"
            params.extend(task_ids)
        rows = self.execute(claim_ready(where), (worker, lease_s, *params, limit)).fetchall()
        claimed = [Claimed(*row) for row in rows]
        started: list[str] = []
        if claimed:
            started = self._mark_started(sorted({c.task_id for c in claimed}))
            self._transition([(c.task_id, c.name, "pending", "in_progress", c.attempt, worker, None) for c in claimed])
        return Claims(claimed, started)

    def _step_done(self, task_id: str, applied: Applied, last: bool = True) -> None:
        if not last:
            return
        row = self.execute(COMPLETE_TASK, (task_id,)).fetchone()
        if row is not None:
            self._finished(task_id, row[0], row[1], applied)

    # -- reading ------------------------------------------------------------------------

    def snapshot(self, task_id: str, *, history: bool = False) -> TaskSnapshot | None:
        rows = self.execute(SNAPSHOT_WITH_HISTORY if history else SNAPSHOT_ONLY, (task_id,)).fetchall()
        if not rows or rows[0][0] != 0:
            return None
        return TaskSnapshot(
            TaskRecord(*rows[0][1:15]),
            [StepRecord(*r[1:15]) for r in rows if r[0] == 1],
            [ChildRecord(*r[1:8]) for r in rows if r[0] == 2],
            [TransitionRecord(*r[1:8]) for r in rows if r[0] == 3],
        )
