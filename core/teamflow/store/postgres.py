"""PostgreSQL, shared by many worker machines: every way it differs from SQLite.

The hot path is one statement (one round trip, one transaction) per batch: data-modifying
CTEs carry a batch of completions with the successors they make ready (claimed by the
same worker), the task counters, the wake-up of parents whose child finished, the history
and the NOTIFY; likewise a claim with ``FOR UPDATE SKIP LOCKED`` and the task-started
bookkeeping, alone or inside a batch of completions (``COMPLETE_TAKE``). All are PREPAREd
per connection, and again as the tables grow (``Prepared``).
Tasks keep a counter of steps left, which the completion statement uses. Workers wake on
LISTEN (``watch``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import itertools
import json
import re
import select
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs, urlparse

import attrs
import peewee as pw
from loguru import logger

from teamflow.errors import InvalidText, StoreError
from teamflow.store.base import DuplicateKey
from teamflow.store.records import (
    Applied,
    ChildRecord,
    Claimed,
    Claims,
    FinishedTask,
    NewTask,
    Outcome,
    StepPlan,
    StepRecord,
    Take,
    TaskRecord,
    TaskRow,
    TaskSnapshot,
    TransitionRecord,
)
from teamflow.store.scheduling import READY
from teamflow.store.store import Store, Wake
from teamflow.store.tasks import CHILD_COLUMNS, STEP_COLUMNS, TASK_COLUMNS

NOW = "extract(epoch from clock_timestamp())"  # the database's clock, for leases
CHANNEL = "teamflow"
POOL_SIZE = 16  # connections per process, shared by its threads
CREATE_CHUNK = 250  # new tasks per statement (a longer batch sends its statements as it makes them)
YIELD_EVERY = 8  # items made between two chances for the sender's thread to take the GIL
NOTIFY = f"SELECT pg_notify('{CHANNEL}', '')"
# New work is announced on CHANNEL, which only the workers that act on it LISTEN to (a
# group's leader, a worker with a backlog): PostgreSQL signals every listening backend for
# every NOTIFY, and each listener's process wakes to read it. CHANNEL_ALL asks workers
# other than a group's leader to claim (``overflow``): those its payload names (worker
# ids, comma-separated), or every worker when it names none; every worker listens.
CHANNEL_ALL = "teamflow_all"
NOTIFY_OVERFLOW = f"SELECT pg_notify('{CHANNEL_ALL}', ?)"
MAX_PAYLOAD = 7000  # NOTIFY's payload holds less than 8,000 bytes: more helpers are asked as "everyone"
LISTEN_CHECK_S = 1.0  # how often a quiet LISTEN connection asks whether to hear CHANNEL

# A batch of completions: the steps, the successors they make ready (claimed by the same
# worker when ``claim``), the task counters, the wake-up of parents whose child finished.
COMPLETE_CTES = """
v AS (SELECT * FROM unnest(?::bigint[], ?::int[], ?::text[]) AS v(id, attempt, result)),
sx AS (SELECT * FROM unnest(?::bigint[], ?::text[]) AS sx(step_id, name)),
done AS (
    UPDATE tf_step s SET status = 'completed', result = v.result, error = NULL, error_type = NULL,
        lease_owner = NULL, lease_expires_at = NULL, finished_at = {now}
    FROM v, p
    WHERE s.id = v.id AND s.lease_owner = p.owner AND s.attempts = v.attempt AND s.status = 'in_progress'
    RETURNING s.id, s.task_id, s.name, s.attempts
),
rel AS (
    SELECT d.task_id, sx.name, count(*)::int AS n FROM done d JOIN sx ON sx.step_id = d.id
    GROUP BY d.task_id, sx.name
),
succ AS (
    UPDATE tf_step s SET deps_left = s.deps_left - rel.n,
        ready_at = CASE WHEN s.deps_left = rel.n THEN {now} ELSE s.ready_at END,
        status = CASE WHEN s.deps_left = rel.n AND p.claim THEN 'in_progress' ELSE s.status END,
        attempts = CASE WHEN s.deps_left = rel.n AND p.claim THEN s.attempts + 1 ELSE s.attempts END,
        lease_owner = CASE WHEN s.deps_left = rel.n AND p.claim THEN p.owner ELSE s.lease_owner END,
        lease_expires_at = CASE WHEN s.deps_left = rel.n AND p.claim THEN {now} + p.lease
                           ELSE s.lease_expires_at END,
        started_at = CASE WHEN s.deps_left = rel.n AND p.claim THEN {now} ELSE s.started_at END
    FROM rel, p
    WHERE s.task_id = rel.task_id AND s.name = rel.name AND s.status = 'pending'
    RETURNING s.id, s.task_id, s.name, s.attempts, s.status, s.deps_left
),
cnt AS (SELECT task_id, count(*)::int AS n FROM done GROUP BY task_id),
tk AS (
    UPDATE tf_task t SET steps_left = t.steps_left - cnt.n, updated_at = {now},
        status = CASE WHEN t.steps_left = cnt.n AND t.status = 'in_progress' THEN 'completed' ELSE t.status END,
        finished_at = CASE WHEN t.steps_left = cnt.n AND t.status = 'in_progress' THEN {now}
                      ELSE t.finished_at END
    FROM cnt WHERE t.id = cnt.task_id
    RETURNING t.id, t.status, t.steps_left, t.parent_id, t.parent_step
),
finished AS (SELECT * FROM tk WHERE steps_left = 0 AND status = 'completed'),
wake AS (
    UPDATE tf_step w SET status = 'pending', next_attempt_at = {now}, ready_at = {now}
    FROM finished f
    WHERE f.parent_id IS NOT NULL AND w.task_id = f.parent_id AND w.name = f.parent_step AND w.status = 'waiting'
    RETURNING w.task_id, w.name
)"""
COMPLETE_HISTORY = """
    SELECT task_id, name, 'in_progress', 'completed', attempts, p.owner, NULL, {now} FROM done, p
    UNION ALL
    SELECT task_id, name, 'pending', 'in_progress', attempts, p.owner, NULL, {now}
    FROM succ, p WHERE status = 'in_progress'
    UNION ALL
    SELECT id, NULL, 'in_progress', 'completed', NULL, NULL, NULL, {now} FROM finished
    UNION ALL
    SELECT task_id, name, 'waiting', 'pending', NULL, NULL, 'child finished', {now} FROM wake"""
COMPLETE_NOTIFY = """
released AS (SELECT 1 FROM succ WHERE status = 'pending' AND deps_left = 0 UNION ALL SELECT 1 FROM wake),
notified AS (SELECT pg_notify('teamflow', '') FROM (SELECT 1 FROM released LIMIT 1) r)"""
# {pad}: the columns a claim's rows have beyond these (``COMPLETE_TAKE``).
COMPLETE_ROWS = """
SELECT 'done', id, task_id, name, attempts{pad} FROM done
UNION ALL SELECT 'claim', id, task_id, name, attempts{pad} FROM succ WHERE status = 'in_progress'
UNION ALL SELECT 'finished', NULL::bigint, id, NULL, NULL::int{pad} FROM finished
UNION ALL SELECT 'woken', NULL::bigint, task_id, name, NULL::int{pad} FROM wake
UNION ALL SELECT 'parent', NULL::bigint, parent_id, parent_step, NULL::int{pad} FROM finished WHERE parent_id IS NOT NULL
UNION ALL SELECT 'notify', NULL::bigint, NULL, NULL, NULL::int{pad} FROM notified"""
HISTORY_INTO = "history AS (INSERT INTO tf_transition (task_id, step, from_status, to_status, attempt, actor, detail, at)"
COMPLETE = f"""
WITH p AS (SELECT ?::text AS owner, ?::float8 AS lease, ?::boolean AS claim),{COMPLETE_CTES},
{HISTORY_INTO}{COMPLETE_HISTORY}
),{COMPLETE_NOTIFY}{COMPLETE_ROWS.replace("{pad}", "")}
"""

# A claim of ready steps, with the tasks it starts and their history ({where}: the routes
# or the tasks it may take).
CLAIM_CTES = """
c AS (
    UPDATE tf_step s SET status = 'in_progress', attempts = s.attempts + 1, lease_owner = p.owner,
        lease_expires_at = {now} + p.lease, started_at = {now}
    FROM p
    WHERE s.id IN (
        SELECT id FROM tf_step WHERE {ready} AND next_attempt_at <= {now} {where}
        ORDER BY next_attempt_at LIMIT ? FOR UPDATE SKIP LOCKED
    )
    RETURNING s.id, s.task_id, s.name, s.attempts
),
started AS (
    UPDATE tf_task t SET status = 'in_progress', updated_at = {now}
    WHERE t.id IN (SELECT task_id FROM c) AND t.status = 'pending'
    RETURNING t.id
)"""
CLAIM_HISTORY = """
    SELECT task_id, name, 'pending', 'in_progress', attempts, p.owner, NULL, {now} FROM c, p
    UNION ALL
    SELECT id, NULL, 'pending', 'in_progress', NULL, NULL, NULL, {now} FROM started"""
CLAIM_ROWS = """
SELECT 'take', c.id, c.task_id, c.name, c.attempts, t.namespace, t.name, t.version, t.fingerprint, t.context,
       t.parent_id, t.parent_step
FROM c JOIN tf_task t ON t.id = c.task_id
UNION ALL SELECT 'started', NULL::bigint, id, NULL, NULL::int, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM started"""
CLAIM = f"""
WITH p AS (SELECT ?::text AS owner, ?::float8 AS lease),{CLAIM_CTES},
{HISTORY_INTO}{CLAIM_HISTORY}
){CLAIM_ROWS}
"""
# Completions and a claim of more ready steps (the worker's housekeeping asked for them
# while a commit was in progress): one statement, one commit, instead of two (issue 13: a
# worker fed by one caller made 0.7 claims per task beside 0.5 completion statements).
# The two never touch one row: the claim takes ready steps (no dependency left before the
# statement), the completions take steps in progress and successors with one left.
COMPLETE_TAKE = f"""
WITH p AS (SELECT ?::text AS owner, ?::float8 AS lease, ?::boolean AS claim),{COMPLETE_CTES},{CLAIM_CTES},
{HISTORY_INTO}{COMPLETE_HISTORY}
    UNION ALL{CLAIM_HISTORY}
),{COMPLETE_NOTIFY}{COMPLETE_ROWS.replace("{pad}", ", NULL, NULL, NULL, NULL, NULL, NULL, NULL")}
UNION ALL{CLAIM_ROWS}
"""

# New tasks for the workers, their steps, their history and one NOTIFY: one statement.
# The batch travels as two JSON documents: its plans (a workflow version's identity and
# its steps, once per version in the batch) and its tasks (id, plan, context and the
# links that most tasks lack, left out when empty). psycopg2 quotes one string much
# faster than it builds two dozen ARRAY literals; the server parses a document once to
# check it and once to read it, so a step row per task in it cost two thirds of the
# time it took to read (1,000 tasks of 4 steps: 676 kB, 21 us per task; now 80 kB, 3 us).
PLANS_JSON = """json_to_recordset(?::json) AS p(p int, namespace text, name text, version text, fingerprint text,
    route text, steps_left int, steps json)"""
TASKS_JSON = """ROWS FROM (json_to_recordset(?::json) AS (id text, p int, context text, parent_id text,
    parent_step text, parent_attempt int, call_ordinal int, idempotency_key text, request_hash text, actor text,
    detail text)) WITH ORDINALITY AS x(id, p, context, parent_id, parent_step, parent_attempt, call_ordinal,
    idempotency_key, request_hash, actor, detail, ord)"""
# Materialised: read once per statement, not once per task (a tenth of the statement).
PLAN_STEPS = """SELECT p.p, s.* FROM p, ROWS FROM (json_to_recordset(p.steps) AS (name text, deps int,
    max_attempts int, retryable boolean)) WITH ORDINALITY AS s(name, deps, max_attempts, retryable, ord)"""
CLOCK = "clock AS MATERIALIZED (SELECT {now}::float8 AS at)"
INSERT_TASKS = """INSERT INTO tf_task (id, namespace, name, version, fingerprint, context, status, steps_left, parent_id,
        parent_step, parent_attempt, call_ordinal, idempotency_key, request_hash, created_at, updated_at)
    SELECT x.id, p.namespace, p.name, p.version, p.fingerprint, x.context, 'pending', p.steps_left, x.parent_id,
        x.parent_step, x.parent_attempt, x.call_ordinal, x.idempotency_key, x.request_hash, {now}, {now}
    FROM x JOIN p ON p.p = x.p"""
# Ordered so that a task's steps are numbered in their workflow's order (a snapshot lists
# them by id). Steps and history rows read the clock once per statement ({at}: four calls
# of clock_timestamp() per task were a twentieth of the statement); each task row keeps its
# own reading, which orders a parent's children.
INSERT_STEPS = """INSERT INTO tf_step (task_id, name, namespace, route, status, deps_left, attempts, max_attempts, retryable,
        next_attempt_at, ready_at)
    SELECT x.id, ps.name, p.namespace, p.route, 'pending', ps.deps, 0, ps.max_attempts, ps.retryable, {at},
        CASE WHEN ps.deps = 0 THEN {at} END
    FROM x JOIN p ON p.p = x.p JOIN ps ON ps.p = x.p {where}
    ORDER BY x.ord, ps.ord"""
INSERT_CREATED = """INSERT INTO tf_transition (task_id, step, from_status, to_status, attempt, actor, detail, at)
    SELECT x.id, NULL, NULL, 'pending', NULL, x.actor, x.detail, {at} FROM x"""
# Tasks with an idempotency key: one whose key already names another task is left out,
# with its steps and its history. (The NOTIFY is selected: a CTE that nothing reads is
# never run; data-modifying ones always are.)
CREATE_KEYED = f"""
WITH {CLOCK},
p AS (SELECT * FROM {PLANS_JSON}),
ps AS MATERIALIZED ({PLAN_STEPS}),
x AS (SELECT * FROM {TASKS_JSON}),
t AS ({INSERT_TASKS} ON CONFLICT DO NOTHING RETURNING id),
s AS ({INSERT_STEPS.replace("{where}", "WHERE x.id IN (SELECT id FROM t)")}),
h AS ({INSERT_CREATED} WHERE x.id IN (SELECT id FROM t)),
n AS (SELECT pg_notify('{CHANNEL}', '') FROM (SELECT 1 FROM t LIMIT 1) q)
SELECT id FROM t
UNION ALL SELECT NULL FROM n
"""
# Tasks without one cannot collide (their ids are new): every row goes in, with no
# conflict check (a tenth of a call's time on PostgreSQL).
CREATE_PLAIN = f"""
WITH {CLOCK},
p AS (SELECT * FROM {PLANS_JSON}),
ps AS MATERIALIZED ({PLAN_STEPS}),
x AS (SELECT * FROM {TASKS_JSON}),
t AS ({INSERT_TASKS}),
s AS ({INSERT_STEPS.replace("{where}", "")}),
h AS ({INSERT_CREATED})
SELECT pg_notify('{CHANNEL}', '')
"""

# A task, its steps, its children (and its history) in one statement: one snapshot.
SNAPSHOT = f"""
SELECT (SELECT row_to_json(t) FROM (SELECT {TASK_COLUMNS} FROM tf_task WHERE id = ?) t),
       (SELECT coalesce(json_agg(s ORDER BY s.id), '[]') FROM (SELECT {STEP_COLUMNS} FROM tf_step WHERE task_id = ?) s),
       (SELECT coalesce(json_agg(c ORDER BY c.created_at), '[]')
        FROM (SELECT {CHILD_COLUMNS}, created_at FROM tf_task WHERE parent_id = ?) c),
       CASE WHEN ? THEN (SELECT coalesce(json_agg(h ORDER BY h.id), '[]') FROM (SELECT id, step, from_status,
           to_status, attempt, actor, detail, at FROM tf_transition WHERE task_id = ?) h) END
"""

# The counter of steps left completes the task with the step that brings it to zero.
STEP_DONE = (
    "UPDATE tf_task SET steps_left = steps_left - 1, updated_at = {now}, "
    "status = CASE WHEN steps_left = 1 AND status = 'in_progress' THEN 'completed' ELSE status END, "
    "finished_at = CASE WHEN steps_left = 1 AND status = 'in_progress' THEN {now} ELSE finished_at END "
    "WHERE id = ? RETURNING steps_left, status, parent_id, parent_step"
)
INSERT_HISTORY = (
    "INSERT INTO tf_transition (task_id, step, from_status, to_status, attempt, actor, detail, at) VALUES %s"
)
HISTORY_ROW = "(%s, %s, %s, %s, %s, %s, %s, {now})"


# A prepared statement's generic plan is made for the tables as they were when it was
# made. One made while they were small (a new database, a worker's first minutes) scans
# tf_step in full on every completion for as long as the connection lives: a completion
# of 32 steps took 8 ms instead of under 1. So a statement is PREPAREd again at its 16th,
# 32nd, 64th... execution on a connection (the tables grow with the executions), and
# after REPLAN_S. Planning every execution instead (plan_cache_mode=force_custom_plan)
# cost 0.8 ms of CPU per task.
FIRST_REPLAN = 16
LAST_REPLAN = 2**20
REPLAN_S = 300.0


@attrs.define(slots=True)
class _Plan:
    executions: int = 0
    replan_at: int = FIRST_REPLAN
    made: float = attrs.field(factory=time.monotonic)


class Prepared:
    """A statement PREPAREd per connection, so PostgreSQL plans it once, not per call, and
    again as the tables grow (``FIRST_REPLAN``)."""

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        count = 0

        def number(_: re.Match[str]) -> str:
            nonlocal count
            count += 1
            return f"${count}"

        self.text = re.sub(r"\?", number, text)
        self.call = f"EXECUTE {name} ({', '.join(['%s'] * count)})"
        self._plans: weakref.WeakKeyDictionary[Any, _Plan] = weakref.WeakKeyDictionary()

    def execute(self, conn: Any, cur: Any, params: Sequence[Any]) -> None:
        plan = self._plans.get(conn)
        if plan is None:
            cur.execute(f"PREPARE {self.name} AS {self.text}")
            plan = self._plans[conn] = _Plan()
        elif plan.executions >= plan.replan_at or time.monotonic() - plan.made > REPLAN_S:
            cur.execute(f"DEALLOCATE {self.name}; PREPARE {self.name} AS {self.text}")
            plan.replan_at = plan.replan_at * 2 if plan.replan_at < LAST_REPLAN else plan.executions + LAST_REPLAN
            plan.made = time.monotonic()
        plan.executions += 1
        cur.execute(self.call, params)


def _now(text: str) -> str:
    return text.replace("{at}", "(SELECT at FROM clock)").replace("{now}", NOW)


COMPLETE_STMT = Prepared("tf_complete", _now(COMPLETE))
CREATE_KEYED_STMT = Prepared("tf_create_keyed", _now(CREATE_KEYED))
CREATE_PLAIN_STMT = Prepared("tf_create", _now(CREATE_PLAIN))
CLAIM_STMTS = {
    (routes, tasks): Prepared(
        f"tf_claim_{int(routes)}{int(tasks)}",
        _now(
            CLAIM.replace("{ready}", READY).replace(
                "{where}", (" AND route = ANY(?)" if routes else "") + (" AND task_id = ANY(?)" if tasks else "")
            )
        ),
    )
    for routes in (False, True)
    for tasks in (False, True)
}
COMPLETE_TAKE_STMT = Prepared(
    "tf_complete_take", _now(COMPLETE_TAKE.replace("{ready}", READY).replace("{where}", " AND route = ANY(?)"))
)


class PostgresStore(Store):
    dialect = "postgres"
    now_sql = NOW
    share_sql = " FOR SHARE"
    begin_sql = "BEGIN"
    single_writer = False
    migrates_itself = False

    def __init__(self, url: str, *, pool_size: int = POOL_SIZE) -> None:
        import psycopg2
        from psycopg2.extras import execute_values

        self._lost = (psycopg2.OperationalError, psycopg2.InterfaceError)
        self._integrity = (psycopg2.IntegrityError,)
        self._execute_values = execute_values
        self._writer = _NoLock()  # writers run side by side
        super().__init__(url)
        # Connections are borrowed for one statement or one transaction, never held by a
        # thread: a worker's 32 step threads and an API's request threads share a few
        # connections (a connection per thread ran the server out of them).
        cursor = _checked_cursor()
        self._pool = _Pool(pool_size, lambda: psycopg2.connect(**self.connect_params(), cursor_factory=cursor))

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

    def _open(self) -> pw.Database:
        """The schema's own connection (migrations); statements use the pool."""
        params = self.connect_params()
        return pw.PostgresqlDatabase(params.pop("dbname"), **params)

    def _borrow(self) -> Any:
        try:
            return self._pool.get()
        except self._unreachable as exc:
            raise StoreError(f"cannot reach the database at {self.safe_url}: {str(exc).strip()}") from exc

    def _give_back(self, conn: Any, *, broken: bool) -> None:
        self._pool.put(conn, broken=broken)

    def _alone(self, text: str, params: Any, *, many: bool) -> Rows:
        """Outside a transaction: borrow, run, read every row, give the connection back."""
        conn = self._borrow()
        broken = False
        try:
            with conn.cursor() as cur:
                if many:
                    cur.executemany(self._statements.get(text) or self.sql(text), params)
                else:
                    cur.execute(self._statements.get(text) or self.sql(text), params)
                return Rows(cur.fetchall() if cur.description else [], cur.rowcount)
        except self._lost as exc:
            broken = True
            raise self._db_error(exc) from exc
        except self._integrity as exc:
            raise self._duplicate(exc) from exc
        finally:
            self._give_back(conn, broken=broken)

    def connect(self) -> None:
        self._give_back(self._borrow(), broken=False)

    def reset(self) -> None:
        """Nothing to drop: a connection lost under a statement is closed when given back."""

    def disconnect(self) -> None:
        """Close the idle connections; the next statement opens a new one."""
        self._pool.close_idle()

    def close(self) -> None:
        self._pool.close_idle()
        super().close()

    def _compile(self, text: str) -> str:
        return text.replace("%", "%%").replace("?", "%s")

    def _duplicate(self, exc: BaseException) -> DuplicateKey:
        diag = getattr(exc, "diag", None)
        return DuplicateKey(getattr(diag, "constraint_name", None) or "", str(exc).strip())

    def _before_commit(self, cur: Any, notify: bool) -> None:
        if notify:  # at most one NOTIFY per transaction
            cur.execute(NOTIFY)

    def _insert_history(self, rows: Sequence[tuple[Any, ...]]) -> None:
        cur = self._local.__dict__.get("txcur")
        if cur is None:  # history goes out with the transaction that records it
            with self.tx():
                self._insert_history(rows)
            return
        try:
            self._execute_values(cur, INSERT_HISTORY, rows, template=_now(HISTORY_ROW), page_size=500)
        except self._lost as exc:
            raise self._db_error(exc) from exc

    def _prepared(self, statement: Prepared, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        txcur = self._local.__dict__.get("txcur")
        if txcur is not None:
            try:
                statement.execute(txcur.connection, txcur, params)
                return list(txcur.fetchall())
            except self._lost as exc:
                raise self._db_error(exc) from exc
        conn = self._borrow()
        broken = False
        try:
            with conn.cursor() as cur:
                statement.execute(conn, cur, params)
                return list(cur.fetchall())
        except self._lost as exc:
            broken = True
            raise self._db_error(exc) from exc
        finally:
            self._give_back(conn, broken=broken)

    # -- tasks --------------------------------------------------------------------------

    def create_tasks(self, items: Iterable[tuple[NewTask, Sequence[StepPlan]]]) -> set[str]:
        """One statement (one transaction) for a batch of up to CREATE_CHUNK tasks. A longer
        one is one transaction of CREATE_CHUNK-task statements, each sent from a sender
        thread while ``items`` makes the next chunk (a batch's requests are checked and
        its tasks built meanwhile: the two cores work at once). If ``items`` raises, the
        statements sent are rolled back and nothing is stored."""
        it = iter(items)
        first = list(itertools.islice(it, CREATE_CHUNK))
        more = list(itertools.islice(it, 1))
        stored: set[str] = set()
        if not more:
            if first:
                self._create_chunk(None, first, stored)
            return stored
        with self.tx(), concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="teamflow-create") as sender:
            conn = self._local.txcur.connection
            sent = sender.submit(self._create_chunk, conn, first, stored)
            chunk = more
            for item in it:  # the next chunk is made while the last one is stored
                chunk.append(item)
                if len(chunk) % YIELD_EVERY == 0 and not sent.done():
                    time.sleep(0)  # the sender's thread gets the GIL as soon as its statement is back
                if len(chunk) == CREATE_CHUNK:
                    sent.result()
                    sent = sender.submit(self._create_chunk, conn, chunk, stored)
                    chunk = []
            sent.result()
            if chunk:
                self._create_chunk(conn, chunk, stored)
        return stored

    def _create_chunk(
        self, conn: Any, chunk: Sequence[tuple[NewTask, Sequence[StepPlan]]], stored: set[str]
    ) -> None:
        """One statement storing ``chunk``: on ``conn``, in its open transaction (a cursor of
        its own: the caller's thread may read on the connection meanwhile), or alone."""
        plans, tasks = _batch_documents(chunk)
        keyed = any(t.idempotency_key is not None for t, _ in chunk)
        statement = CREATE_KEYED_STMT if keyed else CREATE_PLAIN_STMT
        if conn is None:
            rows = self._prepared(statement, [plans, tasks])
        else:
            with conn.cursor() as cur:
                statement.execute(conn, cur, [plans, tasks])
                rows = cur.fetchall()
        if keyed:
            stored.update(r[0] for r in rows if r[0] is not None)
        else:
            stored.update(t.id for t, _ in chunk)

    def overflow(self, helpers: Sequence[str] = ()) -> None:
        payload = ",".join(helpers)
        self.execute(NOTIFY_OVERFLOW, (payload if len(payload) <= MAX_PAYLOAD else "",))

    def writable(self) -> str | None:
        """A standby or a read-only server says so; asking costs no write."""
        try:
            standby, read_only = self.execute(
                "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only') = 'on'"
            ).fetchone()
        except StoreError as exc:
            return exc.detail
        if standby:
            return "the server is a standby (in recovery)"
        return "default_transaction_read_only is on" if read_only else None

    def snapshot(self, task_id: str, *, history: bool = False) -> TaskSnapshot | None:
        task, steps, children, transitions = self.execute(
            SNAPSHOT, (task_id, task_id, task_id, history, task_id)
        ).fetchone()
        if task is None:
            return None
        children_fields = [f.name for f in attrs.fields(ChildRecord)]
        return TaskSnapshot(
            TaskRecord(**task),
            [StepRecord(**s) for s in steps],
            [ChildRecord(**{k: c[k] for k in children_fields}) for c in children],
            [TransitionRecord(**{k: v for k, v in h.items() if k != "id"}) for h in transitions or ()],
        )

    # -- scheduling ---------------------------------------------------------------------

    def _routes_clause(self, routes: Sequence[str]) -> tuple[str, list[Any]]:
        return " AND route = ANY(?)", [list(routes)]

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
        params: list[Any] = [worker, lease_s]
        if routes is not None:
            params.append(list(routes))
        if task_ids is not None:
            params.append(list(task_ids))
        params.append(limit)
        return _claims(self._prepared(CLAIM_STMTS[(routes is not None, task_ids is not None)], params))

    def _claim_in_tx(self, worker: str, lease_s: float, limit: int, routes: Sequence[str] | None) -> Claims:
        return self.claim(worker, lease_s, limit, routes=routes)  # on the transaction's cursor

    def apply(
        self,
        outcomes: Sequence[Outcome],
        worker: str,
        lease_s: float,
        *,
        claim_successors: bool,
        creates: Sequence[tuple[NewTask, Sequence[StepPlan]]] = (),
        take: Take | None = None,
    ) -> Applied:
        if not creates and all(o.kind == "complete" for o in outcomes):
            applied = Applied()  # the common case: one statement is one transaction
            self._complete(outcomes, worker, lease_s, claim_successors, applied, take)
            return applied
        return super().apply(outcomes, worker, lease_s, claim_successors=claim_successors, creates=creates, take=take)

    def _apply_outcomes(
        self, outcomes: Sequence[Outcome], worker: str, lease_s: float, claim: bool, applied: Applied
    ) -> None:
        completions = [o for o in outcomes if o.kind == "complete"]
        super()._apply_outcomes([o for o in outcomes if o.kind != "complete"], worker, lease_s, claim, applied)
        if completions:
            self._complete(completions, worker, lease_s, claim, applied)

    def _complete(
        self,
        outs: Sequence[Outcome],
        worker: str,
        lease_s: float,
        claim: bool,
        applied: Applied,
        take: Take | None = None,
    ) -> None:
        """Completions in one statement; with ``take``, and a claim of more ready steps."""
        succ_ids, succ_names = [], []
        for out in outs:
            for name in out.successors:
                succ_ids.append(out.claim.step_id)
                succ_names.append(name)
        params = [
            worker,
            lease_s,
            claim,
            [o.claim.step_id for o in outs],
            [o.claim.attempt for o in outs],
            [o.result for o in outs],
            succ_ids,
            succ_names,
        ]
        if take is None or take.limit <= 0 or not take.routes:
            rows = self._prepared(COMPLETE_STMT, params)
        else:
            rows = self._prepared(COMPLETE_TAKE_STMT, [*params, list(take.routes), take.limit])
            applied.taken = _claims([r for r in rows if r[0] in ("take", "started")])
        done = set()
        parents, woken = set(), set()
        for kind, step_id, task_id, name, attempt, *_ in rows:
            if kind == "parent":
                parents.add((task_id, name))
            elif kind == "done":
                done.add(step_id)
            elif kind == "claim":
                applied.claimed.append(Claimed(step_id, task_id, name, attempt))
            elif kind == "finished":
                applied.finished_tasks.append(FinishedTask(task_id, "completed"))
            elif kind == "woken":
                applied.woken_parents.append(task_id)
                woken.add((task_id, name))
        # A parent whose step was not parked in this statement's snapshot may have parked
        # since (its park waited on the child's row, which this statement held): a statement
        # of its own sees that park, and wakes it.
        for parent_id, parent_step in sorted(parents - woken):
            self._wake(parent_id, parent_step, applied)
        for out in outs:
            (applied.accepted if out.claim.step_id in done else applied.dropped).append(out)

    def _step_done(self, task_id: str, applied: Applied, last: bool = True) -> None:
        row = self.execute(STEP_DONE, (task_id,)).fetchone()
        if row is not None and row[0] == 0 and row[1] == "completed":
            self._finished(task_id, row[2], row[3], applied)

    # -- waking workers -----------------------------------------------------------------

    def watch(
        self,
        wake: Wake,
        hungry: Callable[[], bool] | None = None,
        listening: Callable[[], bool] | None = None,
        worker_id: str | None = None,
    ) -> Callable[[], None]:
        """LISTEN on a dedicated autocommit connection (a pooled one would miss notifications);
        after a reconnect, LISTEN again and wake once, so a notification lost while
        disconnected costs one poll, not a stuck task. (A notification costs nothing until it
        comes: ``hungry`` is not needed here.) CHANNEL (new work) is heard only while
        ``listening()`` says so, asked at least every LISTEN_CHECK_S; CHANNEL_ALL always, but
        an overflow that names other workers (not ``worker_id``) is not this one's wake-up."""
        stopped = threading.Event()
        thread = threading.Thread(
            target=self._listen, args=(wake, listening or (lambda: True), worker_id, stopped), name="teamflow-listen",
            daemon=True,
        )
        thread.start()
        return stopped.set

    def _listen(
        self, wake: Wake, listening: Callable[[], bool], worker_id: str | None, stopped: threading.Event
    ) -> None:
        import psycopg2
        import psycopg2.extensions

        delay = 0.5
        while not stopped.is_set():
            conn = None
            try:
                conn = psycopg2.connect(**self.connect_params())
                conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
                with conn.cursor() as cur:
                    cur.execute(f"LISTEN {CHANNEL_ALL}")
                hearing = False
                delay = 0.5
                wake(True)  # anything that became ready while we were not listening
                while not stopped.is_set():
                    if listening() != hearing:
                        hearing = not hearing
                        with conn.cursor() as cur:
                            cur.execute(f"{'LISTEN' if hearing else 'UNLISTEN'} {CHANNEL}")
                        if hearing:  # now leading: what was announced to the one before
                            wake(False)
                    if select.select([conn], [], [], LISTEN_CHECK_S) == ([], [], []):
                        continue
                    conn.poll()
                    if conn.notifies:
                        urgent = any(n.channel == CHANNEL_ALL and _asks(n.payload, worker_id) for n in conn.notifies)
                        new_work = any(n.channel == CHANNEL for n in conn.notifies)
                        conn.notifies.clear()
                        if urgent or new_work:
                            wake(urgent)
            except Exception as exc:
                logger.warning("LISTEN connection lost ({}); reconnecting in {:.1f}s", str(exc).strip(), delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()


def _asks(payload: str, worker_id: str | None) -> bool:
    """Is an overflow (its payload: the helpers asked) this worker's wake-up?"""
    return not payload or worker_id is None or worker_id in payload.split(",")


def _batch_documents(chunk: Sequence[tuple[NewTask, Sequence[StepPlan]]]) -> tuple[str, str]:
    """The two JSON documents of ``CREATE_PLAIN``/``CREATE_KEYED``: plans, and tasks naming theirs."""
    plans: dict[tuple[str, str, str, str, str, int], dict[str, Any]] = {}
    tasks = []
    for t, plan in chunk:
        # A version's step plan is one object (``WorkflowEntry.step_rows``): it keys its plan.
        key = (t.namespace, t.name, t.version, t.fingerprint, t.route, id(plan))
        found = plans.get(key)
        if found is None:
            found = plans[key] = {
                "p": len(plans), "namespace": t.namespace, "name": t.name, "version": t.version,
                "fingerprint": t.fingerprint, "route": t.route, "steps_left": len(plan),
                "steps": [
                    {"name": s.name, "deps": s.deps, "max_attempts": s.max_attempts, "retryable": s.retryable}
                    for s in plan
                ],
            }  # fmt: skip
        row: dict[str, Any] = {"id": t.id, "p": found["p"], "context": t.context}
        if t.parent_id is not None:
            row.update(parent_id=t.parent_id, parent_step=t.parent_step, parent_attempt=t.parent_attempt,
                       call_ordinal=t.call_ordinal)  # fmt: skip
        if t.idempotency_key is not None:
            row["idempotency_key"] = t.idempotency_key
        if t.request_hash is not None:
            row["request_hash"] = t.request_hash
        if t.actor is not None:
            row["actor"] = t.actor
        if t.detail is not None:
            row["detail"] = t.detail
        tasks.append(row)
    return json.dumps(list(plans.values())), json.dumps(tasks)


def _refused(exc: ValueError) -> InvalidText | ValueError:
    """What psycopg2 raises for text PostgreSQL cannot hold, as the 422 it is (else ``exc``)."""
    if isinstance(exc, UnicodeEncodeError):
        return InvalidText(
            f"a value holds text that is not valid Unicode ({exc.reason}), which PostgreSQL cannot store; "
            "use printable text"
        )
    if "NUL (0x00)" in str(exc):
        return InvalidText("a value holds a NUL character (U+0000), which PostgreSQL cannot store; use printable text")
    return exc


@functools.cache
def _checked_cursor() -> type:
    """The cursor of every pooled connection: text PostgreSQL cannot hold (a NUL, a lone
    surrogate) is refused as ``invalid_text`` wherever it comes from, not a raw ValueError.
    psycopg2 finds it while quoting the parameters, before anything is sent."""
    import psycopg2.extensions

    class Cursor(psycopg2.extensions.cursor):
        def execute(self, query: Any, vars: Any = None) -> Any:
            try:
                return super().execute(query, vars)
            except ValueError as exc:
                raise _refused(exc) from None

        def executemany(self, query: Any, vars_list: Any) -> Any:
            try:
                return super().executemany(query, vars_list)
            except ValueError as exc:
                raise _refused(exc) from None

        def mogrify(self, query: Any, vars: Any = None) -> Any:  # execute_values builds with it
            try:
                return super().mogrify(query, vars)
            except ValueError as exc:
                raise _refused(exc) from None

    return Cursor


def _claims(rows: Sequence[tuple[Any, ...]]) -> Claims:
    """A claim's rows (``CLAIM_ROWS``): the leased steps with their tasks, the tasks started."""
    claimed = [
        Claimed(r[1], r[2], r[3], r[4], TaskRow(r[2], r[5], r[6], r[7], r[8], json.loads(r[9]), "in_progress",
                                                 r[10], r[11]))
        for r in rows
        if r[0] == "take"
    ]
    return Claims(claimed, [r[2] for r in rows if r[0] == "started"])


class _Pool:
    """At most ``size`` connections, opened when first needed and kept while they work.

    A thread that finds them all borrowed waits for one to come back.
    """

    def __init__(self, size: int, connect: Callable[[], Any]) -> None:
        self._connect = connect
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[Any] = []
        self._lock = threading.Lock()

    def get(self) -> Any:
        self._slots.acquire()
        with self._lock:
            if self._idle:
                return self._idle.pop()
        try:
            conn = self._connect()
            conn.autocommit = True  # a statement outside ``tx`` is a transaction of its own
        except BaseException:
            self._slots.release()
            raise
        return conn

    def put(self, conn: Any, *, broken: bool) -> None:
        try:
            if broken or conn.closed:
                with contextlib.suppress(Exception):
                    conn.close()
            else:
                with self._lock:
                    self._idle.append(conn)
        finally:
            self._slots.release()

    def close_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                conn.close()


class Rows:
    """What a statement outside a transaction returned, read before its connection went back."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self._rows)


class _NoLock:
    """The writer lock of a database that takes concurrent writers: no lock."""

    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        pass
