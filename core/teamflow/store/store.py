"""Every SQL statement teamflow runs, and the only place SQLite and PostgreSQL differ.

Methods are transaction scripts: each one is a short transaction that the engine calls
with decisions already made (which steps succeed, which retry, which successors become
ready). Hot-path statements are plain SQL on the driver's cursor; peewee builds the
schema and runs the cold queries.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import parse_qs, urlparse

import attrs
import peewee as pw
from playhouse.pool import PooledPostgresqlDatabase

from teamflow.errors import StoreError
from teamflow.store import pgsql, schema
from teamflow.store.checkpoint import Checkpointer


# Python's sqlite3 binds int, float and str directly, but looks for an adapter for every
# None and bool first, and that failed lookup raises and discards an AttributeError (in
# 3.11). These two adapters bind them exactly as before (NULL, 0/1), without the detour.
def _null(value: None) -> None:
    return None


sqlite3.register_adapter(type(None), _null)
sqlite3.register_adapter(bool, int)

TERMINAL = ("completed", "failed", "cancelled")
CHANNEL = "teamflow"
DONE_STEP = ("completed", "resolved")


@attrs.define(slots=True)
class TaskRow:
    id: str
    namespace: str
    name: str
    version: str
    fingerprint: str
    context: dict[str, Any]
    status: str
    parent_id: str | None
    parent_step: str | None


StepRow = tuple[str, int, int, bool]  # a new step: (name, dependencies, max attempts, retryable)


@attrs.define(slots=True)
class Claimed:
    """A step this worker now holds a lease on."""

    step_id: int
    task_id: str
    name: str
    attempt: int
    task: TaskRow | None = attrs.field(default=None, eq=False, repr=False)  # when the claim read it too


DECODE: Any = object()  # Outcome.value when only the JSON text is at hand


@attrs.define(slots=True)
class Outcome:
    """What happened to one claimed step; the store applies a batch of them in one transaction."""

    kind: str  # "complete" | "retry" | "fail" | "park"
    claim: Claimed
    result: str | None = None  # JSON text
    error: str | None = None
    error_type: str | None = None
    delay: float = 0.0
    successors: tuple[str, ...] = ()
    child_id: str | None = None
    value: Any = attrs.field(default=DECODE, eq=False, repr=False)  # ``result`` decoded, or DECODE: not yet


@attrs.define(slots=True)
class Applied:
    """What a batch changed, for the engine to dispatch and announce after commit."""

    claimed: list[Claimed] = attrs.field(factory=list)
    accepted: list[Outcome] = attrs.field(factory=list)
    dropped: list[Outcome] = attrs.field(factory=list)
    finished_tasks: list[tuple[str, str]] = attrs.field(factory=list)  # (task id, status)
    woken_parents: list[str] = attrs.field(factory=list)  # parent task ids with a step made ready
    started_tasks: list[str] = attrs.field(factory=list)
    created: dict[str, list[Claimed]] = attrs.field(factory=dict)  # new task id -> its claimed roots


TASK_KEYS = (
    "id", "namespace", "name", "version", "fingerprint", "context", "status", "parent_id", "parent_step",
    "idempotency_key", "error_summary", "created_at", "finished_at", "request_hash",
)
STEP_KEYS = (
    "id", "name", "status", "attempts", "max_attempts", "result", "error", "error_type", "started_at",
    "finished_at", "resolved_by", "waiting_on", "deps_left", "next_attempt_at",
)
CHILD_KEYS = ("id", "parent_step", "call_ordinal", "namespace", "name", "version", "status")
# SQLite: the task, its steps and its children in one statement (hence one snapshot).
# Every arm has the same columns: a kind, 14 values and a sort key.
_TASK_VIEW = (
    f"SELECT 0, {', '.join(TASK_KEYS)}, 0 FROM tf_task WHERE id = ?1 "
    f"UNION ALL SELECT 1, {', '.join(STEP_KEYS)}, id FROM tf_step WHERE task_id = ?1 "
    f"UNION ALL SELECT 2, {', '.join(CHILD_KEYS)}, {', '.join(['NULL'] * (len(STEP_KEYS) - len(CHILD_KEYS)))}, "
    "created_at FROM tf_task WHERE parent_id = ?1 ORDER BY 1, 16"
)
assert len(TASK_KEYS) == len(STEP_KEYS)


_STEP_VALUES = {
    "leased": "(?, ?, ?, ?, 'in_progress', 0, 1, ?, ?, {now}, {now}, ?, {now} + ?, {now})",
    "ready": "(?, ?, ?, ?, 'pending', ?, 0, ?, ?, {now}, {now}, NULL, NULL, NULL)",
    "pending": "(?, ?, ?, ?, 'pending', ?, 0, ?, ?, {now}, NULL, NULL, NULL, NULL)",
}


@functools.lru_cache(maxsize=1024)
def _steps_insert(kinds: tuple[str, ...]) -> str:
    """The insert of a new task's steps, one row per kind: leased (a root the creator runs),
    ready (a root left to workers) or pending (waits for its dependencies)."""
    return (
        "INSERT INTO tf_step (task_id, name, namespace, route, status, deps_left, attempts, max_attempts, "
        "retryable, next_attempt_at, ready_at, lease_owner, lease_expires_at, started_at) VALUES "
        + ", ".join(_STEP_VALUES[k] for k in kinds)
        + " RETURNING id, name, status"
    )


# An in-flight step that goes back to the queue (a retry, a lost lease, a release) goes
# back only while its task runs; a step of a task that failed or was cancelled meanwhile
# is cancelled, so that nothing claims and runs it again. (On PostgreSQL ``{share}``
# waits for a concurrent cancel or failure of the task to commit, and then sees it.)
_TASK_RUNS = (
    "EXISTS (SELECT 1 FROM tf_task t WHERE t.id = tf_step.task_id AND t.status IN ('pending', 'in_progress'){share})"
)
_REQUEUE = (
    f"status = CASE WHEN {_TASK_RUNS} THEN 'pending' ELSE 'cancelled' END, "
    f"finished_at = CASE WHEN {_TASK_RUNS} THEN NULL ELSE {{now}} END, lease_owner = NULL, lease_expires_at = NULL"
)


@functools.lru_cache(maxsize=32)
def _fenced_sql(assignments: str) -> str:
    """An update of a claimed step that only its lease holder, at its attempt, may make."""
    return (
        f"UPDATE tf_step SET {assignments} WHERE id = ? AND lease_owner = ? AND attempts = ? "
        "AND status = 'in_progress'"
    )


@functools.lru_cache(maxsize=256)
def _release_sql(successors: int, claim: bool) -> str:
    """Count a finished dependency on ``successors`` pending steps (by name); with ``claim``,
    the step that makes a successor ready also leases it, in the same statement."""
    marks = ",".join("?" * successors)
    if not claim:
        return (
            "UPDATE tf_step SET deps_left = deps_left - 1, ready_at = CASE WHEN deps_left = 1 THEN {now} "
            f"ELSE ready_at END WHERE task_id = ? AND name IN ({marks}) AND status = 'pending'"
        )
    return (
        "UPDATE tf_step SET deps_left = deps_left - 1, "
        "ready_at = CASE WHEN deps_left = 1 THEN {now} ELSE ready_at END, "
        "status = CASE WHEN deps_left = 1 THEN 'in_progress' ELSE status END, "
        "attempts = CASE WHEN deps_left = 1 THEN attempts + 1 ELSE attempts END, "
        "lease_owner = CASE WHEN deps_left = 1 THEN ? ELSE lease_owner END, "
        "lease_expires_at = CASE WHEN deps_left = 1 THEN {now} + ? ELSE lease_expires_at END, "
        "started_at = CASE WHEN deps_left = 1 THEN {now} ELSE started_at END "
        f"WHERE task_id = ? AND name IN ({marks}) AND status = 'pending' "
        "RETURNING id, task_id, name, attempts, status"
    )


@functools.lru_cache(maxsize=128)
def _history_insert(rows: int) -> str:
    """SQLite's history insert for this many rows (the statement text is built once per count)."""
    return "INSERT INTO tf_transition (task_id, step, from_status, to_status, attempt, actor, detail, id, at) " \
        "VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, {now})"] * rows)


class _NoLock:
    """The writer lock of a database that takes concurrent writers (PostgreSQL): no lock."""

    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        pass


class _Tx:
    """``Store.tx()``: a class, not a generator, as it wraps every commit on the hot path."""

    __slots__ = ("cur", "store")

    def __init__(self, store: Store) -> None:
        self.store = store

    def __enter__(self) -> None:
        store = self.store
        store._writer.acquire()
        local = store._local
        local.notify = False
        try:
            self.cur = cur = store._cursor()
            cur.execute(store._begin)
        except BaseException as exc:
            store._writer.release()
            failed = self._failed(exc, begun=False)
            if failed is exc:
                raise
            raise failed from exc
        local.in_tx = True
        local.txcur = cur
        if store.dialect == "sqlite":
            local.history = []  # see Store._transition

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        store = self.store
        local = store._local
        try:
            if exc is None:
                try:
                    history = local.__dict__.get("history")  # cleared below, whatever happens
                    if history:
                        store._insert_history(history)
                    if local.notify and store.dialect == "postgres":
                        self.cur.execute(f"SELECT pg_notify('{CHANNEL}', '')")
                    self.cur.execute("COMMIT")
                except BaseException as commit_exc:
                    failed = self._failed(commit_exc, begun=True)
                    if failed is commit_exc:
                        raise
                    raise failed from commit_exc
                if store._checkpointer is not None:
                    store._checkpointer.committed()
                return
            failed = self._failed(exc, begun=True)
            if failed is not exc:
                raise failed from exc
        finally:
            local.in_tx = False
            local.txcur = None
            local.history = None
            store._writer.release()

    def _failed(self, exc: BaseException, *, begun: bool) -> BaseException:
        """Roll back; the exception to raise (a lost connection becomes StoreError)."""
        store = self.store
        if begun:
            try:
                self.cur.execute("ROLLBACK")
            except Exception:
                store.reset()  # the connection is gone; the server rolled back
        if isinstance(exc, store._lost):
            store.reset()
            return store._db_error(exc)
        return exc


def _sqlite_path(url: str) -> str:
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///") :] or ":memory:"
    if url in ("sqlite://", "sqlite:"):
        return ":memory:"
    raise StoreError(f"unsupported database URL {url!r}: use sqlite:///path.db or postgresql://user@host/db")


class Store:
    """A connection pool to one database and the queries teamflow runs on it."""

    def __init__(self, url: str, *, synchronous: str = "FULL", wal_autocheckpoint: int = 10_000) -> None:
        self.url = url
        scheme = urlparse(url).scheme
        self._local = threading.local()
        self._checkpointer: Checkpointer | None = None
        if scheme.startswith("sqlite"):
            self.dialect = "sqlite"
            path = _sqlite_path(url)
            if path != ":memory:":
                self._checkpointer = Checkpointer(path)
            self.db: pw.Database = pw.SqliteDatabase(
                path,
                pragmas={
                    "journal_mode": "wal",
                    "synchronous": synchronous,
                    "wal_autocheckpoint": wal_autocheckpoint,
                    # A WAL that outgrew twice the autocheckpoint (4 KiB pages) while a
                    # reader held checkpoints back is cut back to that when it next
                    # restarts; else the file keeps its largest size for good.
                    "journal_size_limit": 2 * wal_autocheckpoint * 4096,
                    "busy_timeout": 60_000,
                    "foreign_keys": 0,
                },
                lock_type="IMMEDIATE",
                check_same_thread=False,
            )
            self.now_sql = "((julianday('now') - 2440587.5) * 86400.0)"
        elif scheme in ("postgres", "postgresql", "postgresql+psycopg2"):
            self.dialect = "postgres"
            params = self.connect_params()
            # One pool per process; peewee keeps each thread's connection until it is closed.
            self.db = PooledPostgresqlDatabase(
                params.pop("dbname"), max_connections=64, stale_timeout=300, **params
            )
            self.now_sql = "extract(epoch from clock_timestamp())"
        else:
            raise StoreError(
                f"unsupported database URL {url!r}: use sqlite:///path.db or postgresql://user@host/db"
            )
        self._sql_cache: dict[str, str] = {}
        self._seq_lock = threading.Lock()
        self._last_seq = 0
        self._begin = "BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN"
        # Driver errors that mean the connection or the server is gone (retry later), and
        # unique-key violations (idempotency races).
        if self.dialect == "sqlite":
            self._lost: tuple[type[BaseException], ...] = (sqlite3.OperationalError, sqlite3.InterfaceError)
            self.integrity: tuple[type[BaseException], ...] = (sqlite3.IntegrityError, pw.IntegrityError)
        else:
            import psycopg2

            self._lost = (psycopg2.OperationalError, psycopg2.InterfaceError)
            self.integrity = (psycopg2.IntegrityError, pw.IntegrityError)
        self._unreachable: tuple[type[BaseException], ...] = (pw.OperationalError, pw.InterfaceError, *self._lost)
        # SQLite has one writer: threads of this process queue here instead of in SQLite's
        # busy handler, which sleeps in milliseconds. PostgreSQL writers run concurrently.
        self._writer: Any = threading.RLock() if self.dialect == "sqlite" else _NoLock()
        schema.proxy.initialize(self.db)
        self._bind()

    def connect_params(self) -> dict[str, Any]:
        """psycopg2 keyword arguments from a ``postgresql://user:pw@host:port/db?schema=x`` URL."""
        parsed = urlparse(self.url)
        query = parse_qs(parsed.query)
        params: dict[str, Any] = {
            "dbname": (parsed.path or "/postgres").lstrip("/") or "postgres",
            "user": parsed.username,
            "password": parsed.password,
            "host": parsed.hostname,
            "port": parsed.port or 5432,
            "connect_timeout": int(query.get("connect_timeout", ["5"])[0]),
        }
        if "schema" in query:
            params["options"] = f"-c search_path={query['schema'][0]}"
        return {k: v for k, v in params.items() if v is not None}

    def _bind(self) -> None:
        for model in schema.MODELS:
            model._meta.set_database(self.db)

    # -- plumbing ---------------------------------------------------------------------

    def sql(self, text: str) -> str:
        """Our statements use ``?`` and ``{now}``; adapt them to this dialect once."""
        cached = self._sql_cache.get(text)
        if cached is None:
            cached = text.replace("{now}", self.now_sql)
            if self.dialect == "postgres":
                cached = cached.replace("?", "%s").replace("{share}", " FOR SHARE")
            else:
                cached = cached.replace("{share}", "")
            self._sql_cache[text] = cached
        return cached

    def _cursor(self) -> Any:
        try:
            return self.db.connection().cursor()
        except self._unreachable as exc:
            self.reset()
            raise StoreError(f"cannot reach the database at {self.safe_url}: {str(exc).strip()}") from exc

    def execute(self, text: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement on this thread's connection (the driver's cursor, no ORM on the hot path).

        Inside ``tx`` every statement reuses the transaction's cursor: read what a
        statement returned before running the next one.
        """
        cur = self._local.__dict__.get("txcur") or self._cursor()
        try:
            cur.execute(self._sql_cache.get(text) or self.sql(text), params)
        except self._lost as exc:
            if not getattr(self._local, "in_tx", False):
                self.reset()
            raise self._db_error(exc) from exc
        return cur

    def executemany(self, text: str, rows: Sequence[Sequence[Any]]) -> None:
        """Insert many rows: one multi-row statement on PostgreSQL (``execute_values``)."""
        cur = self._cursor()
        try:
            if self.dialect == "postgres":
                from psycopg2.extras import execute_values

                head, _, values = self.sql(text).partition(" VALUES ")
                execute_values(cur, f"{head} VALUES %s", rows, template=values, page_size=500)
            else:
                cur.executemany(self.sql(text), rows)
        except self._lost as exc:
            raise self._db_error(exc) from exc

    def _db_error(self, exc: BaseException) -> StoreError:
        """The error a lost connection or a failed statement becomes, naming the database."""
        return StoreError(f"database error on {self.safe_url}: {str(exc).strip()}")

    def reset(self) -> None:
        """Drop this thread's connection (after the server went away); the next query reconnects."""
        try:
            self.db.close()
        except Exception:
            self.db._state.reset()  # type: ignore[attr-defined]

    @property
    def single_writer(self) -> bool:
        """SQLite: one writer at a time, so writers of this process should share commits."""
        return self.dialect == "sqlite"

    @property
    def safe_url(self) -> str:
        parsed = urlparse(self.url)
        if parsed.password:
            return self.url.replace(f":{parsed.password}@", ":***@")
        return self.url

    def tx(self) -> _Tx:
        """One short write transaction (``BEGIN IMMEDIATE`` on SQLite); NOTIFY at most once, at commit."""
        return _Tx(self)

    def notify(self) -> None:
        """Ask for one NOTIFY when the current transaction commits (PostgreSQL only)."""
        self._local.notify = True

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        if not self.db.is_closed():
            self.db.close()

    @staticmethod
    def placeholders(n: int) -> str:
        return ",".join("?" * n)

    # -- schema -----------------------------------------------------------------------

    def schema_version(self) -> int | None:
        try:
            if not self.db.table_exists("tf_meta"):
                return None
            row = schema.Meta.get_or_none(schema.Meta.key == "schema_version")
        except pw.OperationalError as exc:
            raise StoreError(f"cannot reach the database at {self.safe_url}: {exc}") from exc
        return int(row.value) if row else None

    def upgrade(self) -> list[int]:
        """Apply missing migrations; idempotent. Returns the versions applied."""
        applied = []
        with self.db.atomic():
            current = self.schema_version() or 0
            for version in sorted(schema.MIGRATIONS):
                if version > current:
                    schema.MIGRATIONS[version](self.db)
                    applied.append(version)
            if applied:
                schema.Meta.insert(key="schema_version", value=str(max(applied))).on_conflict(
                    conflict_target=[schema.Meta.key], update={schema.Meta.value: str(max(applied))}
                ).execute()
        return applied

    def connect(self) -> None:
        try:
            self.db.connect(reuse_if_open=True)
        except pw.OperationalError as exc:
            raise StoreError(f"cannot reach the database at {self.safe_url}: {str(exc).strip()}") from exc

    def ensure_schema(self, auto: bool) -> None:
        """SQLite migrates itself; PostgreSQL must be current or we refuse with the fix."""
        self.connect()
        current = self.schema_version()
        if current == schema.SCHEMA_VERSION:
            return
        if current is not None and current > schema.SCHEMA_VERSION:
            raise StoreError(
                f"database schema version {current} is newer than this teamflow ({schema.SCHEMA_VERSION}): "
                "upgrade teamflow"
            )
        if auto:
            self.upgrade()
            return
        raise StoreError(
            f"database schema at {self.safe_url} is at version {current or 0}, this teamflow needs "
            f"{schema.SCHEMA_VERSION}: run `teamflow db upgrade`"
        )

    # -- registry memory --------------------------------------------------------------

    def recorded_owners(self) -> dict[str, str]:
        return {row.name: row.distribution for row in schema.NamespaceOwner.select()}

    def recorded_fingerprints(self) -> dict[tuple[str, str, str], str]:
        return {
            (row.namespace, row.name, row.version): row.first_fingerprint
            for row in schema.PublishedVersion.select(
                schema.PublishedVersion.namespace,
                schema.PublishedVersion.name,
                schema.PublishedVersion.version,
                schema.PublishedVersion.first_fingerprint,
            )
        }

    def publish(self, namespaces: Iterable[dict[str, Any]], versions: Iterable[dict[str, Any]]) -> None:
        """Record namespace owners (first owner stays unless pinned) and what this host loaded."""
        now = time.time()
        with self.tx():
            existing = {row.name: row for row in schema.NamespaceOwner.select()}
            for ns in namespaces:
                row = existing.get(ns["name"])
                if row is None:
                    schema.NamespaceOwner.insert(
                        name=ns["name"],
                        distribution=ns["owner"],
                        policy=json.dumps(ns["policy"]),
                        recorded_at=now,
                        updated_at=now,
                    ).on_conflict_ignore().execute()
                elif row.distribution != ns["owner"] or row.policy != json.dumps(ns["policy"]):
                    schema.NamespaceOwner.update(
                        distribution=ns["owner"], policy=json.dumps(ns["policy"]), updated_at=now
                    ).where(schema.NamespaceOwner.name == ns["name"]).execute()
            known = {
                (r.namespace, r.name, r.version): r
                for r in schema.PublishedVersion.select(
                    schema.PublishedVersion.namespace,
                    schema.PublishedVersion.name,
                    schema.PublishedVersion.version,
                    schema.PublishedVersion.fingerprint,
                    schema.PublishedVersion.distribution_version,
                )
            }
            fresh = []
            for v in versions:
                key = (v["namespace"], v["name"], v["version"])
                published = known.get(key)
                if published is None:
                    fresh.append(dict(v, first_fingerprint=v["fingerprint"], published_at=now))
                elif (
                    published.fingerprint != v["fingerprint"]
                    or published.distribution_version != v["distribution_version"]
                ):
                    schema.PublishedVersion.update(
                        fingerprint=v["fingerprint"],
                        distribution=v["distribution"],
                        distribution_version=v["distribution_version"],
                        deprecated=v["deprecated"],
                        definition=v["definition"],
                        published_at=now,
                    ).where(
                        (schema.PublishedVersion.namespace == key[0])
                        & (schema.PublishedVersion.name == key[1])
                        & (schema.PublishedVersion.version == key[2])
                    ).execute()
            for chunk in pw.chunked(fresh, 200):
                schema.PublishedVersion.insert_many(chunk).on_conflict_ignore().execute()

    def published_policy(self, namespace: str) -> dict[str, Any] | None:
        row = schema.NamespaceOwner.get_or_none(schema.NamespaceOwner.name == namespace)
        return None if row is None else dict(json.loads(row.policy), owner=row.distribution)

    def published_versions(self, namespace: str, name: str) -> list[dict[str, Any]]:
        query = schema.PublishedVersion.select().where(
            (schema.PublishedVersion.namespace == namespace) & (schema.PublishedVersion.name == name)
        )
        return [
            {
                "version": r.version,
                "fingerprint": r.fingerprint,
                "deprecated": r.deprecated,
                "definition": json.loads(r.definition),
                "distribution": r.distribution,
            }
            for r in query
        ]

    # -- approvals --------------------------------------------------------------------

    def approve(self, namespace: str, name: str, version: str, fingerprint: str, approver: str) -> None:
        with self.tx():
            schema.Approval.insert(
                namespace=namespace,
                name=name,
                version=version,
                fingerprint=fingerprint,
                approver=approver,
                at=time.time(),
            ).execute()

    def approvals(self, namespace: str, name: str, version: str, fingerprint: str) -> list[str]:
        query = schema.Approval.select(schema.Approval.approver).where(
            (schema.Approval.namespace == namespace)
            & (schema.Approval.name == name)
            & (schema.Approval.version == version)
            & (schema.Approval.fingerprint == fingerprint)
        )
        return [row.approver for row in query]

    # -- creating tasks ---------------------------------------------------------------

    def find_idempotent(self, namespace: str, name: str, key: str) -> tuple[str, str] | None:
        row = self.execute(
            "SELECT id, request_hash FROM tf_task WHERE namespace = ? AND name = ? AND idempotency_key = ?",
            (namespace, name, key),
        ).fetchone()
        return None if row is None else (row[0], row[1])

    def find_child(self, parent_id: str, parent_step: str, ordinal: int) -> tuple[str, str, str, int] | None:
        """The newest child at (parent step, call ordinal): (id, status, request hash, parent attempt)."""
        row = self.execute(
            "SELECT id, status, request_hash, parent_attempt FROM tf_task WHERE parent_id = ? AND parent_step = ? "
            "AND call_ordinal = ? ORDER BY created_at DESC LIMIT 1",
            (parent_id, parent_step, ordinal),
        ).fetchone()
        return None if row is None else (row[0], row[1], row[2], row[3])

    def create_task(
        self,
        task: dict[str, Any],
        steps: Sequence[StepRow],
        *,
        claim_for: str | None,
        lease_s: float,
    ) -> list[Claimed]:
        """Insert a task and its steps ``(name, deps, max_attempts, retryable)``; optionally claim roots.

        Idempotency races are settled by the unique index: the loser gets StoreError
        ``duplicate`` and re-reads the winner.
        """
        try:
            with self.tx():
                return self.insert_task(task, steps, claim_for=claim_for, lease_s=lease_s)
        except self.integrity as exc:
            raise StoreError(f"duplicate: {exc}") from exc

    def insert_task(
        self,
        task: dict[str, Any],
        steps: Sequence[StepRow],
        *,
        claim_for: str | None,
        lease_s: float,
    ) -> list[Claimed]:
        """The statements of ``create_task``, inside the caller's transaction.

        With ``claim_for`` the task starts at once: it is stored in progress, and its root
        steps are stored already leased to that worker (three statements in all).
        """
        claim = claim_for is not None
        task_id, ns, route = task["id"], task["namespace"], task["route"]
        self.execute(
            "INSERT INTO tf_task (id, namespace, name, version, fingerprint, context, status, steps_left, "
            "parent_id, parent_step, parent_attempt, call_ordinal, idempotency_key, request_hash, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {now}, {now})",
            (
                task_id,
                ns,
                task["name"],
                task["version"],
                task["fingerprint"],
                task["context"],
                "in_progress" if claim else "pending",
                len(steps),
                task.get("parent_id"),
                task.get("parent_step"),
                task.get("parent_attempt"),
                task.get("call_ordinal"),
                task.get("idempotency_key"),
                task.get("request_hash"),
            ),
        )
        kinds: list[str] = []
        params: list[Any] = []
        for name, deps, max_attempts, retryable in steps:
            if claim and deps == 0:  # a root, leased to the worker that starts the task
                kinds.append("leased")
                params += (task_id, name, ns, route, max_attempts, retryable, claim_for, lease_s)
            else:
                kinds.append("ready" if deps == 0 else "pending")
                params += (task_id, name, ns, route, deps, max_attempts, retryable)
        inserted = self.execute(_steps_insert(tuple(kinds)), params).fetchall()
        order = {name: i for i, (name, *_rest) in enumerate(steps)}
        claimed = sorted(
            (Claimed(r[0], task_id, r[1], 1) for r in inserted if r[2] == "in_progress"), key=lambda c: order[c.name]
        )
        transitions: list[tuple[Any, ...]] = [(task_id, None, None, "pending", None, task.get("actor"), None)]
        if claim:
            transitions.append((task_id, None, "pending", "in_progress", None, None, None))
            transitions += [(task_id, c.name, "pending", "in_progress", 1, claim_for, None) for c in claimed]
        else:
            self.notify()
        self._transition(transitions)
        return claimed

    def _mark_started(self, task_ids: Sequence[str]) -> list[str]:
        started = []
        for task_id in task_ids:
            cur = self.execute(
                "UPDATE tf_task SET status = 'in_progress', updated_at = {now} WHERE id = ? AND status = 'pending'",
                (task_id,),
            )
            if cur.rowcount:
                started.append(task_id)
                self._transition([(task_id, None, "pending", "in_progress", None, None, None)])
        return started

    def _transition(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Append to the history: rows of (task, step, from, to, attempt, actor, detail).

        Inside a SQLite transaction the rows wait, in order, for its commit: one insert
        then carries a whole batch's history.
        """
        pending = self._local.__dict__.get("history")
        if pending is not None:
            pending.extend(rows)
            return
        self._insert_history(rows)

    def _insert_history(self, rows: Sequence[tuple[Any, ...]]) -> None:
        if self.dialect == "postgres":
            self.executemany(
                "INSERT INTO tf_transition (task_id, step, from_status, to_status, attempt, actor, detail, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, {now})",
                rows,
            )
            return
        # SQLite's history is keyed by (task, id): the id is the time in nanoseconds, made
        # unique and increasing within this process, so rows need no lookup to be numbered.
        # (Writers to one SQLite file share a machine, hence a clock.)
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
            self.execute(_history_insert(len(chunk)), params)

    # -- claiming ---------------------------------------------------------------------

    def claim(
        self,
        worker: str,
        lease_s: float,
        limit: int,
        *,
        routes: Sequence[str] | None = None,
        task_ids: Sequence[str] | None = None,
    ) -> tuple[list[Claimed], list[str]]:
        """Lease up to ``limit`` ready steps (of these routes or tasks). Returns claims and started tasks."""
        if limit <= 0 or (routes is not None and not routes):
            return [], []
        where = "status = 'pending' AND deps_left = 0 AND next_attempt_at <= {now}"
        params: list[Any] = []
        if routes is not None:
            clause, values = self._routes(routes)
            where += clause
            params.extend(values)
        if task_ids is not None:
            where += f" AND task_id IN ({self.placeholders(len(task_ids))})"
            params.extend(task_ids)
        if self.dialect == "postgres":
            return self._claim_pg(worker, lease_s, limit, routes, task_ids)
        lock = ""
        with self.tx():
            rows = self.execute(
                "UPDATE tf_step SET status = 'in_progress', attempts = attempts + 1, lease_owner = ?, "
                "lease_expires_at = {now} + ?, started_at = {now} WHERE id IN ("
                f"SELECT id FROM tf_step WHERE {where} ORDER BY next_attempt_at LIMIT ?{lock}) "
                "RETURNING id, task_id, name, attempts",
                (worker, lease_s, *params, limit),
            ).fetchall()
            claimed = [Claimed(*row) for row in rows]
            started: list[str] = []
            if claimed:
                started = self._mark_started(sorted({c.task_id for c in claimed}))
                self._transition(
                    [(c.task_id, c.name, "pending", "in_progress", c.attempt, worker, None) for c in claimed]
                )
        return claimed, started

    def _claim_pg(
        self, worker: str, lease_s: float, limit: int, routes: Sequence[str] | None, task_ids: Sequence[str] | None
    ) -> tuple[list[Claimed], list[str]]:
        params: dict[str, Any] = {"owner": worker, "lease": lease_s, "limit": limit}
        if routes is not None:
            params["routes"] = list(routes)
        if task_ids is not None:
            params["task_ids"] = list(task_ids)
        statement = pgsql.CLAIM_STMTS[(routes is not None, task_ids is not None)]
        cur = self._cursor()
        try:
            statement.execute(self.db.connection(), cur, params)
            rows = cur.fetchall()
        except self._lost as exc:
            self.reset()
            raise self._db_error(exc) from exc
        claimed = [
            Claimed(r[1], r[2], r[3], r[4], TaskRow(r[2], r[5], r[6], r[7], r[8], json.loads(r[9]), "in_progress",
                                                     r[10], r[11]))
            for r in rows
            if r[0] == "claim"
        ]
        return claimed, [r[2] for r in rows if r[0] == "started"]

    def release(self, claims: Sequence[Claimed], worker: str, delay: float, reason: str) -> None:
        """Give steps back without counting the attempt (shutdown, or a version this worker cannot serve)."""
        if not claims:
            return
        with self.tx():
            for c in claims:
                to = self._requeue(c, worker, "attempts = attempts - 1, next_attempt_at = {now} + ?", (delay,))
                if to is not None:
                    self._transition([(c.task_id, c.name, "in_progress", to, c.attempt, worker,
                                       reason if to == "pending" else f"not run again, the task ended ({reason})")])

    def _requeue(self, claim: Claimed, owner: str, assignments: str, params: Sequence[Any]) -> str | None:
        """Put a step in flight back in the queue, fenced by lease owner and attempt.

        Returns its new status: ``pending``, or ``cancelled`` when its task has ended (see
        ``_TASK_RUNS``); None when the fence kept the update out.
        """
        row = self.execute(
            _fenced_sql(f"{_REQUEUE}, {assignments}") + " RETURNING status",
            (*params, claim.step_id, owner, claim.attempt),
        ).fetchone()
        if row is None:
            return None
        if row[0] == "pending":
            self.notify()
        return str(row[0])

    def renew(self, worker: str, lease_s: float, step_ids: Sequence[int]) -> int:
        """Extend the leases of the steps this worker still holds (and only those)."""
        if not step_ids:
            return 0
        with self.tx():
            cur = self.execute(
                "UPDATE tf_step SET lease_expires_at = {now} + ? WHERE lease_owner = ? AND status = 'in_progress' "
                f"AND id IN ({self.placeholders(len(step_ids))})",
                (lease_s, worker, *step_ids),
            )
            renewed = int(cur.rowcount or 0)  # read before COMMIT, which runs on the same cursor
        return renewed

    def expired(self, limit: int = 100) -> list[tuple[int, str, str, int, int, bool, str | None]]:
        """Steps whose lease ran out: (id, task, name, attempts, max_attempts, retryable, owner)."""
        return [
            (r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6])
            for r in self.execute(
                "SELECT id, task_id, name, attempts, max_attempts, retryable, lease_owner FROM tf_step "
                "WHERE status = 'in_progress' AND lease_expires_at < {now} ORDER BY lease_expires_at LIMIT ?",
                (limit,),
            ).fetchall()
        ]

    def next_due(self, routes: Sequence[str] | None) -> float | None:
        """Seconds until the earliest pending retry becomes due (None when nothing waits)."""
        if routes is not None and not routes:
            return None
        where = "status = 'pending' AND deps_left = 0"
        params: list[Any] = []
        if routes is not None:
            clause, values = self._routes(routes)
            where += clause
            params.extend(values)
        row = self.execute(
            f"SELECT MIN(next_attempt_at) - {{now}} FROM tf_step WHERE {where}", params
        ).fetchone()
        return None if row is None or row[0] is None else max(0.0, float(row[0]))

    def _routes(self, routes: Sequence[str]) -> tuple[str, list[Any]]:
        """Only steps of versions (and fingerprints) the caller holds."""
        if self.dialect == "postgres":
            return " AND route = ANY(?)", [list(routes)]
        return f" AND route IN ({self.placeholders(len(routes))})", list(routes)

    # -- reading ----------------------------------------------------------------------

    def task_rows(self, task_ids: Sequence[str]) -> dict[str, TaskRow]:
        if not task_ids:
            return {}
        rows = self.execute(
            "SELECT id, namespace, name, version, fingerprint, context, status, parent_id, parent_step FROM tf_task "
            f"WHERE id IN ({self.placeholders(len(task_ids))})",
            list(task_ids),
        ).fetchall()
        return {r[0]: TaskRow(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7], r[8]) for r in rows}

    def results(self, task_id: str) -> dict[str, Any]:
        rows = self.execute(
            "SELECT name, result FROM tf_step WHERE task_id = ? AND status IN ('completed', 'resolved')",
            (task_id,),
        ).fetchall()
        return {name: (json.loads(result) if result is not None else None) for name, result in rows}

    def task(self, task_id: str) -> dict[str, Any] | None:
        row = self.execute(f"SELECT {', '.join(TASK_KEYS)} FROM tf_task WHERE id = ?", (task_id,)).fetchone()
        return None if row is None else dict(zip(TASK_KEYS, row, strict=True))

    def steps(self, task_id: str) -> list[dict[str, Any]]:
        rows = self.execute(f"SELECT {', '.join(STEP_KEYS)} FROM tf_step WHERE task_id = ? ORDER BY id", (task_id,))
        return [dict(zip(STEP_KEYS, row, strict=True)) for row in rows.fetchall()]

    def children(self, task_id: str) -> list[dict[str, Any]]:
        rows = self.execute(
            f"SELECT {', '.join(CHILD_KEYS)} FROM tf_task WHERE parent_id = ? ORDER BY created_at", (task_id,)
        ).fetchall()
        return [dict(zip(CHILD_KEYS, r, strict=True)) for r in rows]

    def task_view(self, task_id: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]], list[dict[str, Any]]]:
        """A task, its steps in order, and its children: (None, [], []) when there is no such task.

        On SQLite one statement reads all three, which makes it one consistent snapshot.
        """
        if self.dialect != "sqlite":
            return self.task(task_id), self.steps(task_id), self.children(task_id)
        rows = self.execute(_TASK_VIEW, (task_id,)).fetchall()
        if not rows or rows[0][0] != 0:
            return None, [], []
        width = len(STEP_KEYS) + 1
        return (
            dict(zip(TASK_KEYS, rows[0][1 : len(TASK_KEYS) + 1], strict=True)),
            [dict(zip(STEP_KEYS, r[1:width], strict=True)) for r in rows if r[0] == 1],
            [dict(zip(CHILD_KEYS, r[1 : len(CHILD_KEYS) + 1], strict=True)) for r in rows if r[0] == 2],
        )

    def transitions(self, task_id: str) -> list[dict[str, Any]]:
        keys = ("step", "from_status", "to_status", "attempt", "actor", "detail", "at")
        rows = self.execute(
            f"SELECT {', '.join(keys)} FROM tf_transition WHERE task_id = ? ORDER BY id", (task_id,)
        ).fetchall()
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def list_tasks(
        self, *, filters: dict[str, str | None], limit: int, before: tuple[float, str] | None = None
    ) -> list[dict[str, Any]]:
        """Newest first; ``before`` is the (created_at, id) cursor of the last row of the previous page."""
        clauses: list[str] = []
        params: list[Any] = []
        for column in ("namespace", "name", "version", "status", "parent_id"):
            value = filters.get(column)
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if before is not None:
            clauses.append("(created_at < ? OR (created_at = ? AND id < ?))")
            params.extend([before[0], before[0], before[1]])
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        keys = (
            "id",
            "namespace",
            "name",
            "version",
            "status",
            "parent_id",
            "created_at",
            "finished_at",
            "error_summary",
        )
        rows = self.execute(
            f"SELECT {', '.join(keys)} FROM tf_task {where} ORDER BY created_at DESC, id DESC LIMIT ?",
            (*params, limit),
        ).fetchall()
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def active_keys(self) -> list[tuple[str, str, str, str, int]]:
        """(namespace, name, version, fingerprint, count) of tasks not yet finished."""
        return [
            tuple(r)
            for r in self.execute(
                "SELECT namespace, name, version, fingerprint, COUNT(*) FROM tf_task "
                "WHERE status IN ('pending', 'in_progress') GROUP BY namespace, name, version, fingerprint"
            ).fetchall()
        ]

    def counts(self) -> list[tuple[str, str, str, str, int]]:
        return [
            tuple(r)
            for r in self.execute(
                "SELECT namespace, name, version, status, COUNT(*) FROM tf_task "
                "GROUP BY namespace, name, version, status"
            ).fetchall()
        ]

    def step_counts(self) -> list[tuple[str, str, str, str, int]]:
        """(namespace, workflow, version, step status, count) over every stored step."""
        return [
            tuple(r)
            for r in self.execute(
                "SELECT t.namespace, t.name, t.version, s.status, COUNT(*) FROM tf_step s "
                "JOIN tf_task t ON t.id = s.task_id GROUP BY t.namespace, t.name, t.version, s.status"
            ).fetchall()
        ]

    def step_durations(self, buckets: Sequence[float]) -> list[tuple[Any, ...]]:
        """Per workflow version: cumulative counts of completed steps' run times at or below
        each bucket, then the count and the sum of all (a Prometheus histogram)."""
        cases = ", ".join(
            f"SUM(CASE WHEN s.finished_at - s.started_at <= {float(b)!r} THEN 1 ELSE 0 END)" for b in buckets
        )
        return [
            tuple(r)
            for r in self.execute(
                f"SELECT t.namespace, t.name, t.version, {cases}, COUNT(*), SUM(s.finished_at - s.started_at) "
                "FROM tf_step s JOIN tf_task t ON t.id = s.task_id WHERE s.status = 'completed' "
                "AND s.started_at IS NOT NULL GROUP BY t.namespace, t.name, t.version"
            ).fetchall()
        ]

    # -- applying outcomes ------------------------------------------------------------

    def apply(
        self,
        outcomes: Sequence[Outcome],
        worker: str,
        lease_s: float,
        *,
        claim_successors: bool,
        creates: Sequence[tuple[dict[str, Any], Sequence[StepRow]]] = (),
    ) -> Applied:
        """Apply a batch of step outcomes in one transaction, fenced by lease owner and attempt.

        ``creates`` are new tasks (see ``insert_task``) stored in the same transaction with
        their roots leased to ``worker``: tasks without an idempotency key or a parent,
        which cannot collide with another.
        """
        applied = Applied()
        if self.dialect == "postgres":
            completions = [o for o in outcomes if o.kind == "complete"]
            others = [o for o in outcomes if o.kind != "complete"]
            if not others and not creates:  # the common case: one statement is one transaction
                self._complete_pg(completions, worker, lease_s, claim_successors, applied)
                return applied
        else:
            completions, others = [], list(outcomes)
        with self.tx():
            for task, steps in creates:
                applied.created[task["id"]] = self.insert_task(task, steps, claim_for=worker, lease_s=lease_s)
            for out in others:
                if self._apply_one(out, worker, lease_s, claim_successors, applied):
                    applied.accepted.append(out)
                else:
                    applied.dropped.append(out)
            if completions:
                self._complete_pg(completions, worker, lease_s, claim_successors, applied)
        return applied

    def _complete_pg(
        self, outs: Sequence[Outcome], worker: str, lease_s: float, claim: bool, applied: Applied
    ) -> None:
        succ_ids, succ_names = [], []
        for out in outs:
            for name in out.successors:
                succ_ids.append(out.claim.step_id)
                succ_names.append(name)
        params = {
            "ids": [o.claim.step_id for o in outs],
            "attempts": [o.claim.attempt for o in outs],
            "results": [o.result for o in outs],
            "succ_ids": succ_ids,
            "succ_names": succ_names,
            "owner": worker,
            "lease": lease_s,
            "claim": claim,
        }
        cur = self._cursor()
        try:
            pgsql.COMPLETE_STMT.execute(self.db.connection(), cur, params)
            rows = cur.fetchall()
        except self._lost as exc:
            self.reset()
            raise self._db_error(exc) from exc
        done = set()
        for kind, step_id, task_id, name, attempt in rows:
            if kind == "done":
                done.add(step_id)
            elif kind == "claim":
                applied.claimed.append(Claimed(step_id, task_id, name, attempt))
            elif kind == "finished":
                applied.finished_tasks.append((task_id, "completed"))
            elif kind == "woken":
                applied.woken_parents.append(task_id)
        for out in outs:
            (applied.accepted if out.claim.step_id in done else applied.dropped).append(out)

    def _fence(self, assignments: str, out: Outcome, worker: str, params: Sequence[Any] = ()) -> bool:
        cur = self.execute(_fenced_sql(assignments), (*params, out.claim.step_id, worker, out.claim.attempt))
        return bool(cur.rowcount)

    def _apply_one(self, out: Outcome, worker: str, lease_s: float, claim: bool, applied: Applied) -> bool:
        c = out.claim
        if out.kind == "complete":
            if not self._fence(
                "status = 'completed', result = ?, error = NULL, error_type = NULL, lease_owner = NULL, "
                "lease_expires_at = NULL, finished_at = {now}",
                out,
                worker,
                (out.result,),
            ):
                return False
            transitions: list[tuple[Any, ...]] = [
                (c.task_id, c.name, "in_progress", "completed", c.attempt, worker, None)
            ]
            released = len(out.successors)
            if out.successors:
                claimed, released = self._release_successors(
                    c.task_id, out.successors, worker if claim else None, lease_s, transitions
                )
                applied.claimed.extend(claimed)
            self._transition(transitions)
            # Only a step with a successor left to run cannot have finished its task.
            self._step_done(c.task_id, applied, last=released < len(out.successors) or not out.successors)
            return True
        if out.kind == "retry":
            to = self._requeue(c, worker, "error = ?, error_type = ?, next_attempt_at = {now} + ?",
                               (out.error, out.error_type, out.delay))
            if to is not None:
                self._transition([(c.task_id, c.name, "in_progress", "retrying" if to == "pending" else to,
                                   c.attempt, worker, out.error)])
            return to is not None
        if out.kind == "park":
            # A parked re-run is not a new attempt: give the claim's increment back.
            if not self._fence(
                "status = 'waiting', attempts = attempts - 1, waiting_on = ?, lease_owner = NULL, "
                "lease_expires_at = NULL",
                out,
                worker,
                (out.child_id,),
            ):
                return False
            self._transition([(c.task_id, c.name, "in_progress", "waiting", c.attempt, worker, out.child_id)])
            row = self.execute("SELECT status FROM tf_task WHERE id = ?", (out.child_id,)).fetchone()
            if row is not None and row[0] in TERMINAL:  # the child finished before we parked
                self._wake(c.task_id, c.name, applied)
            return True
        if out.kind == "fail":
            if not self._fence(
                "status = 'failed', error = ?, error_type = ?, lease_owner = NULL, lease_expires_at = NULL, "
                "finished_at = {now}",
                out,
                worker,
                (out.error, out.error_type),
            ):
                return False
            self._transition([(c.task_id, c.name, "in_progress", "failed", c.attempt, worker, out.error)])
            self._fail_task(c.task_id, out.error or "", applied)
            return True
        raise ValueError(f"unknown outcome {out.kind!r}")

    def _release_successors(
        self,
        task_id: str,
        successors: Sequence[str],
        worker: str | None,
        lease_s: float,
        transitions: list[tuple[Any, ...]],
    ) -> tuple[list[Claimed], int]:
        """Count a finished dependency on each pending successor. Returns (claims, successors updated)."""
        if worker is None:
            cur = self.execute(_release_sql(len(successors), False), (task_id, *successors))
            self.notify()
            return [], int(cur.rowcount or 0)
        # The step that makes a successor ready claims it in the same statement.
        rows = self.execute(_release_sql(len(successors), True), (worker, lease_s, task_id, *successors)).fetchall()
        claimed = [Claimed(r[0], r[1], r[2], r[3]) for r in rows if r[4] == "in_progress"]
        transitions.extend(
            (c.task_id, c.name, "pending", "in_progress", c.attempt, worker, None) for c in claimed
        )
        return claimed, len(rows)

    def _step_done(self, task_id: str, applied: Applied, last: bool = True) -> None:
        """A step completed (or was resolved): complete the task when it was the last one.

        SQLite asks the task's steps, and only when ``last`` says the step may have been the
        last (it has no successor left to run), so a step's commit leaves the task row alone.
        PostgreSQL keeps a counter on the task, which its one-statement completion uses.
        """
        if self.dialect == "sqlite":
            if not last:
                return
            row = self.execute(
                "UPDATE tf_task SET status = 'completed', finished_at = {now}, updated_at = {now} "
                "WHERE id = ?1 AND status = 'in_progress' AND NOT EXISTS (SELECT 1 FROM tf_step "
                "WHERE task_id = ?1 AND status NOT IN ('completed', 'resolved')) "
                "RETURNING 0, status, parent_id, parent_step",
                (task_id,),
            ).fetchone()
        else:
            row = self.execute(
                "UPDATE tf_task SET steps_left = steps_left - 1, updated_at = {now}, "
                "status = CASE WHEN steps_left = 1 AND status = 'in_progress' THEN 'completed' ELSE status END, "
                "finished_at = CASE WHEN steps_left = 1 AND status = 'in_progress' THEN {now} ELSE finished_at END "
                "WHERE id = ? RETURNING steps_left, status, parent_id, parent_step",
                (task_id,),
            ).fetchone()
        if row is not None and row[0] == 0 and row[1] == "completed":
            applied.finished_tasks.append((task_id, "completed"))
            self._transition([(task_id, None, "in_progress", "completed", None, None, None)])
            if row[2] is not None:
                self._wake(row[2], row[3], applied)

    def _wake(self, parent_id: str, parent_step: str, applied: Applied) -> None:
        cur = self.execute(
            "UPDATE tf_step SET status = 'pending', next_attempt_at = {now}, ready_at = {now} "
            "WHERE task_id = ? AND name = ? AND status = 'waiting'",
            (parent_id, parent_step),
        )
        if cur.rowcount:
            applied.woken_parents.append(parent_id)
            self._transition([(parent_id, parent_step, "waiting", "pending", None, None, "child finished")])
            self.notify()

    def _fail_task(self, task_id: str, summary: str, applied: Applied) -> None:
        cur = self.execute(
            "UPDATE tf_task SET status = 'failed', error_summary = ?, finished_at = {now}, updated_at = {now} "
            "WHERE id = ? AND status IN ('pending', 'in_progress')",
            (summary, task_id),
        )
        if not cur.rowcount:
            return
        applied.finished_tasks.append((task_id, "failed"))
        self.execute(
            "UPDATE tf_step SET status = 'cancelled', error = 'not run: the task failed', finished_at = {now} "
            "WHERE task_id = ? AND status IN ('pending', 'waiting')",
            (task_id,),
        )
        self._transition([(task_id, None, "in_progress", "failed", None, None, summary)])
        self._wake_parent(task_id, applied)
        self._cancel_children(task_id, "parent task failed", applied)

    def _wake_parent(self, task_id: str, applied: Applied) -> None:
        """A child task ended (failed, cancelled): its parent's step parked on it runs again."""
        row = self.execute("SELECT parent_id, parent_step FROM tf_task WHERE id = ?", (task_id,)).fetchone()
        if row and row[0]:
            self._wake(row[0], row[1], applied)

    def reap_expired(self, limit: int = 100) -> Applied:
        """Take back steps whose worker lost its lease; the lost lease counts as an attempt."""
        applied = Applied()
        with self.tx():
            for step_id, task_id, name, attempts, max_attempts, retryable, owner in self.expired(limit):
                claim = Claimed(step_id, task_id, name, attempts)
                why = f"lease of worker {owner} expired during attempt {attempts}"
                if retryable and attempts < max_attempts:
                    out = Outcome("retry", claim, error=why, error_type="LeaseExpired")
                    to = self._requeue(claim, owner or "", "error = ?, error_type = ?, next_attempt_at = {now}",
                                       (why, "LeaseExpired"))
                    if to is not None:
                        self._transition([(task_id, name, "in_progress", to, attempts, owner, why)])
                        applied.accepted.append(out)
                else:
                    if not retryable:
                        why += "; the step is retryable=False and may have run, so it fails"
                    out = Outcome("fail", claim, error=why, error_type="LeaseExpired")
                    if self._apply_one(out, owner or "", 0.0, False, applied):
                        applied.accepted.append(out)
        return applied

    # -- operator actions -------------------------------------------------------------

    def cancel(self, task_id: str, actor: str) -> Applied:
        applied = Applied()
        with self.tx():
            self._cancel(task_id, actor, "cancelled", applied)
        return applied

    def _cancel(self, task_id: str, actor: str, why: str, applied: Applied) -> bool:
        cur = self.execute(
            "UPDATE tf_task SET status = 'cancelled', error_summary = ?, finished_at = {now}, updated_at = {now} "
            "WHERE id = ? AND status IN ('pending', 'in_progress')",
            (why, task_id),
        )
        if not cur.rowcount:
            return False
        self.execute(
            "UPDATE tf_step SET status = 'cancelled', finished_at = {now} WHERE task_id = ? "
            "AND status IN ('pending', 'waiting')",
            (task_id,),
        )
        self._transition([(task_id, None, None, "cancelled", None, actor, why)])
        applied.finished_tasks.append((task_id, "cancelled"))
        self._wake_parent(task_id, applied)  # a no-op when the parent's cancelling cascaded here
        self._cancel_children(task_id, "parent task cancelled", applied)
        return True

    def _cancel_children(self, task_id: str, why: str, applied: Applied) -> None:
        for (child_id,) in self.execute(
            "SELECT id FROM tf_task WHERE parent_id = ? AND status IN ('pending', 'in_progress')", (task_id,)
        ).fetchall():
            self._cancel(child_id, "teamflow", why, applied)

    def reopen(self, task_id: str, steps: dict[str, tuple[str, ...]], actor: str) -> list[str]:
        """Re-open a failed task: failed and cancelled steps go back to pending, attempts reset."""
        with self.tx():
            rows = self.execute(
                "SELECT name, status FROM tf_step WHERE task_id = ? ORDER BY id", (task_id,)
            ).fetchall()
            status = dict(rows)
            reopened = [name for name, s in status.items() if s in ("failed", "cancelled")]
            for name in reopened:
                deps_left = sum(1 for dep in steps[name] if status.get(dep) not in DONE_STEP)
                self.execute(
                    "UPDATE tf_step SET status = 'pending', attempts = 0, deps_left = ?, next_attempt_at = {now}, "
                    "lease_owner = NULL, lease_expires_at = NULL, finished_at = NULL, waiting_on = NULL, "
                    "ready_at = CASE WHEN ? = 0 THEN {now} ELSE NULL END WHERE task_id = ? AND name = ?",
                    (deps_left, deps_left, task_id, name),
                )
            if reopened:
                # Attempts start again at 1, so a child that ended (failed, cancelled) in
                # an earlier run must no longer pass for the current attempt's own child
                # (see Engine.run_child): it is detached from any attempt and gets replaced.
                self.execute(
                    "UPDATE tf_task SET parent_attempt = NULL WHERE parent_id = ? "
                    f"AND parent_step IN ({self.placeholders(len(reopened))}) AND status IN ('failed', 'cancelled')",
                    (task_id, *reopened),
                )
            self.execute(
                "UPDATE tf_task SET status = 'in_progress', error_summary = NULL, finished_at = NULL, "
                "updated_at = {now} WHERE id = ?",
                (task_id,),
            )
            self._transition(
                [(task_id, None, "failed", "in_progress", None, actor, "retry")]
                + [(task_id, name, status[name], "pending", 0, actor, "retry") for name in reopened]
            )
            self.notify()
        return reopened

    def resolve_step(
        self, task_id: str, step: str, result: str, actor: str, successors: Sequence[str]
    ) -> tuple[str, Applied]:
        """Mark a step resolved by hand; its dependants treat it as completed."""
        applied = Applied()
        with self.tx():
            row = self.execute(
                "SELECT status, attempts FROM tf_step WHERE task_id = ? AND name = ?", (task_id, step)
            ).fetchone()
            if row is None:
                return "missing", applied
            previous = row[0]
            if previous in ("completed", "resolved"):
                return previous, applied
            self.execute(
                "UPDATE tf_step SET status = 'resolved', result = ?, resolved_by = ?, lease_owner = NULL, "
                "lease_expires_at = NULL, error = NULL, finished_at = {now} WHERE task_id = ? AND name = ?",
                (result, actor, task_id, step),
            )
            transitions: list[tuple[Any, ...]] = [
                (task_id, step, previous, "resolved", row[1], actor, "resolved by hand")
            ]
            task_status = self.execute("SELECT status FROM tf_task WHERE id = ?", (task_id,)).fetchone()[0]
            if task_status in ("failed", "cancelled"):
                self.execute(
                    "UPDATE tf_task SET status = 'in_progress', error_summary = NULL, finished_at = NULL WHERE id = ?",
                    (task_id,),
                )
                self.execute(
                    "UPDATE tf_step SET status = 'pending', finished_at = NULL, error = NULL WHERE task_id = ? "
                    "AND status = 'cancelled'",
                    (task_id,),
                )
                transitions.append((task_id, None, task_status, "in_progress", None, actor, "step resolved"))
            if successors:
                self._release_successors(task_id, successors, None, 0.0, transitions)
            self._transition(transitions)
            self._step_done(task_id, applied)
            self.notify()
        return previous, applied
