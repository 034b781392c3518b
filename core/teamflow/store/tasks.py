"""Tasks: creating them with their steps, reading them back, listing them, their history."""

from __future__ import annotations

import functools
import json
from abc import abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from teamflow.store.base import StoreBase
from teamflow.store.records import (
    ChildLink,
    ChildRecord,
    Claimed,
    ExistingTask,
    NewTask,
    StepPlan,
    TaskFilter,
    TaskListing,
    TaskRecord,
    TaskRow,
    TaskSnapshot,
    TransitionRecord,
)

TASK_COLUMNS = (
    "id, namespace, name, version, fingerprint, context, status, parent_id, parent_step, idempotency_key, "
    "error_summary, created_at, finished_at, request_hash"
)
STEP_COLUMNS = (
    "id, name, status, attempts, max_attempts, result, error, error_type, started_at, finished_at, resolved_by, "
    "waiting_on, deps_left, next_attempt_at"
)
CHILD_COLUMNS = "id, parent_step, call_ordinal, namespace, name, version, status"
LISTING_COLUMNS = "id, namespace, name, version, status, parent_id, created_at, finished_at, error_summary"

TASK = f"SELECT {TASK_COLUMNS} FROM tf_task WHERE id = ?"
STEPS = f"SELECT {STEP_COLUMNS} FROM tf_step WHERE task_id = ? ORDER BY id"
CHILDREN = f"SELECT {CHILD_COLUMNS} FROM tf_task WHERE parent_id = ? ORDER BY created_at"
TRANSITIONS = (
    "SELECT step, from_status, to_status, attempt, actor, detail, at FROM tf_transition WHERE task_id = ? ORDER BY id"
)
RESULTS = "SELECT name, result FROM tf_step WHERE task_id = ? AND status IN ('completed', 'resolved')"
IDEMPOTENT = "SELECT id, request_hash FROM tf_task WHERE namespace = ? AND name = ? AND idempotency_key = ?"
CHILD_AT = (
    "SELECT id, status, request_hash, parent_attempt FROM tf_task WHERE parent_id = ? AND parent_step = ? "
    "AND call_ordinal = ? ORDER BY created_at DESC LIMIT 1"
)
TASK_NAMESPACE = "SELECT namespace FROM tf_task WHERE id = ?"
INSERT_TASK = (
    "INSERT INTO tf_task (id, namespace, name, version, fingerprint, context, status, steps_left, "
    "parent_id, parent_step, parent_attempt, call_ordinal, idempotency_key, request_hash, "
    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {now}, {now})"
)

# A new task for the workers; an idempotency key that already names a task leaves it out.
_PENDING_TASK = (
    "INSERT INTO tf_task (id, namespace, name, version, fingerprint, context, status, steps_left, "
    "parent_id, parent_step, parent_attempt, call_ordinal, idempotency_key, request_hash, "
    "created_at, updated_at) VALUES "
)
_PENDING_TASK_ROW = "(?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, {now}, {now})"
_PENDING_STEP = (
    "INSERT INTO tf_step (task_id, name, namespace, route, status, deps_left, attempts, max_attempts, "
    "retryable, next_attempt_at, ready_at) VALUES "
)
_PENDING_STEP_ROW = "(?, ?, ?, ?, 'pending', ?, 0, ?, ?, {now}, CASE WHEN ? = 0 THEN {now} END)"
# Rows per statement of ``create_tasks``: one statement (one trip through the driver, and one
# release of the GIL) per chunk instead of one per row; each count is a statement of its
# own in every connection's statement cache, hence the bound.
ROWS_PER_INSERT = 32


@functools.lru_cache(maxsize=2 * ROWS_PER_INSERT)
def insert_pending_tasks(rows: int) -> str:
    """New tasks for the workers, ``rows`` of them (a key already taken leaves its row out)."""
    return _PENDING_TASK + ", ".join([_PENDING_TASK_ROW] * rows) + " ON CONFLICT DO NOTHING"


@functools.lru_cache(maxsize=2 * ROWS_PER_INSERT)
def insert_pending_steps(rows: int) -> str:
    """The steps of new tasks for the workers, ``rows`` of them."""
    return _PENDING_STEP + ", ".join([_PENDING_STEP_ROW] * rows)


# One row per new step, by kind: leased (a root the creating worker runs at once), ready
# (a root left to the workers) or pending (it waits for its dependencies).
_STEP_VALUES = {
    "leased": "(?, ?, ?, ?, 'in_progress', 0, 1, ?, ?, {now}, {now}, ?, {now} + ?, {now})",
    "ready": "(?, ?, ?, ?, 'pending', ?, 0, ?, ?, {now}, {now}, NULL, NULL, NULL)",
    "pending": "(?, ?, ?, ?, 'pending', ?, 0, ?, ?, {now}, NULL, NULL, NULL, NULL)",
}


@functools.lru_cache(maxsize=1024)
def insert_steps(kinds: tuple[str, ...]) -> str:
    """The insert of a new task's steps, one row per kind (see ``_STEP_VALUES``)."""
    return (
        "INSERT INTO tf_step (task_id, name, namespace, route, status, deps_left, attempts, max_attempts, "
        "retryable, next_attempt_at, ready_at, lease_owner, lease_expires_at, started_at) VALUES "
        + ", ".join(_STEP_VALUES[k] for k in kinds)
        + " RETURNING id, name, status"
    )


def _task_row(task: NewTask, steps: int) -> tuple[Any, ...]:
    return (
        task.id, task.namespace, task.name, task.version, task.fingerprint, task.context, steps, task.parent_id,
        task.parent_step, task.parent_attempt, task.call_ordinal, task.idempotency_key, task.request_hash,
    )


@functools.lru_cache(maxsize=64)
def task_ids_in(n: int) -> str:
    return f"SELECT id FROM tf_task WHERE id IN ({','.join('?' * n)})"


@functools.lru_cache(maxsize=64)
def task_rows_of(n: int) -> str:
    return (
        "SELECT id, namespace, name, version, fingerprint, context, status, parent_id, parent_step FROM tf_task "
        f"WHERE id IN ({','.join('?' * n)})"
    )


Transition = tuple[Any, ...]  # (task, step, from, to, attempt, actor, detail): the store's own rows


class Tasks(StoreBase):
    # -- creating -----------------------------------------------------------------------

    def find_idempotent(self, namespace: str, name: str, key: str) -> ExistingTask | None:
        row = self.execute(IDEMPOTENT, (namespace, name, key)).fetchone()
        return None if row is None else ExistingTask(row[0], row[1])

    def find_child(self, parent_id: str, parent_step: str, ordinal: int) -> ChildLink | None:
        """The newest child at (parent step, call ordinal)."""
        row = self.execute(CHILD_AT, (parent_id, parent_step, ordinal)).fetchone()
        return None if row is None else ChildLink(row[0], row[1], row[2], row[3])

    def create_task(
        self, task: NewTask, steps: Sequence[StepPlan], *, claim_for: str | None, lease_s: float
    ) -> list[Claimed]:
        """Store a task and its steps in a transaction of its own; see ``insert_task``.

        Idempotency races are settled by the unique index: the loser gets DuplicateKey
        (``IDEMPOTENCY_KEY``) and re-reads the winner.
        """
        with self.tx():
            return self.insert_task(task, steps, claim_for=claim_for, lease_s=lease_s)

    def create_tasks(self, items: Iterable[tuple[NewTask, Sequence[StepPlan]]]) -> set[str]:
        """Store tasks for the workers in one transaction; returns the ids stored.

        A task whose idempotency key already names another task is left out (it is not
        among the ids returned: its caller re-reads the one that holds the key). ``items``
        may be made as they are read; if making them raises, nothing is stored.
        """
        items = list(items)
        if not items:
            return set()
        with self.tx():
            self._insert_rows(insert_pending_tasks, [_task_row(task, len(steps)) for task, steps in items])
            keyed = [task.id for task, _ in items if task.idempotency_key is not None]
            stored = {task.id for task, _ in items if task.idempotency_key is None}
            for start in range(0, len(keyed), 500):
                chunk = keyed[start : start + 500]
                stored.update(r[0] for r in self.execute(task_ids_in(len(chunk)), chunk).fetchall())
            self._insert_rows(
                insert_pending_steps,
                [
                    (task.id, step.name, task.namespace, task.route, step.deps, step.max_attempts, step.retryable,
                     step.deps)
                    for task, steps in items
                    if task.id in stored
                    for step in steps
                ],
            )
            self._transition([(task.id, None, None, "pending", None, task.actor, task.detail)
                              for task, _ in items if task.id in stored])
            if stored:
                self.notify()
        return stored

    def _insert_rows(self, statement: Callable[[int], str], rows: Sequence[tuple[Any, ...]]) -> None:
        """``rows`` by ``statement(count)``, ROWS_PER_INSERT rows a statement."""
        for start in range(0, len(rows), ROWS_PER_INSERT):
            chunk = rows[start : start + ROWS_PER_INSERT]
            self.execute(statement(len(chunk)), [value for row in chunk for value in row])

    def insert_task(
        self, task: NewTask, steps: Sequence[StepPlan], *, claim_for: str | None, lease_s: float
    ) -> list[Claimed]:
        """The statements of ``create_task``, inside the caller's transaction.

        With ``claim_for`` the task starts at once: it is stored in progress, and its root
        steps are stored already leased to that worker (three statements in all).
        """
        claim = claim_for is not None
        task_id, ns, route = task.id, task.namespace, task.route
        self.execute(
            INSERT_TASK,
            (
                task_id,
                ns,
                task.name,
                task.version,
                task.fingerprint,
                task.context,
                "in_progress" if claim else "pending",
                len(steps),
                task.parent_id,
                task.parent_step,
                task.parent_attempt,
                task.call_ordinal,
                task.idempotency_key,
                task.request_hash,
            ),
        )
        kinds: list[str] = []
        params: list[Any] = []
        for step in steps:
            if claim and step.deps == 0:  # a root, leased to the worker that starts the task
                kinds.append("leased")
                params += (task_id, step.name, ns, route, step.max_attempts, step.retryable, claim_for, lease_s)
            else:
                kinds.append("ready" if step.deps == 0 else "pending")
                params += (task_id, step.name, ns, route, step.deps, step.max_attempts, step.retryable)
        inserted = self.execute(insert_steps(tuple(kinds)), params).fetchall()
        order = {step.name: i for i, step in enumerate(steps)}
        claimed = sorted(
            (Claimed(r[0], task_id, r[1], 1) for r in inserted if r[2] == "in_progress"), key=lambda c: order[c.name]
        )
        transitions: list[Transition] = [(task_id, None, None, "pending", None, task.actor, task.detail)]
        if claim:
            transitions.append((task_id, None, "pending", "in_progress", None, None, None))
            transitions += [(task_id, c.name, "pending", "in_progress", 1, claim_for, None) for c in claimed]
        else:
            self.notify()
        self._transition(transitions)
        return claimed

    # -- history ------------------------------------------------------------------------

    def _transition(self, rows: Sequence[Transition]) -> None:
        """Append rows of (task, step, from, to, attempt, actor, detail) to the history.

        Inside a transaction the rows wait, in order, for its commit: one insert then
        carries a whole batch's history.
        """
        pending = self._local.__dict__.get("history")
        if pending is not None:
            pending.extend(rows)
            return
        self._insert_history(rows)

    def transitions(self, task_id: str) -> list[TransitionRecord]:
        return [TransitionRecord(*r) for r in self.execute(TRANSITIONS, (task_id,)).fetchall()]

    # -- reading ------------------------------------------------------------------------

    def task_rows(self, task_ids: Sequence[str]) -> dict[str, TaskRow]:
        if not task_ids:
            return {}
        rows = self.execute(task_rows_of(len(task_ids)), list(task_ids)).fetchall()
        return {r[0]: TaskRow(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7], r[8]) for r in rows}

    def results(self, task_id: str) -> dict[str, Any]:
        """The decoded results of a task's finished steps, by step name."""
        rows = self.execute(RESULTS, (task_id,)).fetchall()
        return {name: (json.loads(result) if result is not None else None) for name, result in rows}

    def task(self, task_id: str) -> TaskRecord | None:
        row = self.execute(TASK, (task_id,)).fetchone()
        return None if row is None else TaskRecord(*row)

    @abstractmethod
    def snapshot(self, task_id: str, *, history: bool = False) -> TaskSnapshot | None:
        """A task with its steps, its children and, with ``history``, its transitions (None
        when there is no such task), read in one statement: one consistent snapshot."""

    def children(self, task_id: str) -> list[ChildRecord]:
        return [ChildRecord(*r) for r in self.execute(CHILDREN, (task_id,)).fetchall()]

    def task_namespace(self, task_id: str) -> str | None:
        """The namespace of a task (None: no such task)."""
        row = self.execute(TASK_NAMESPACE, (task_id,)).fetchone()
        return None if row is None else str(row[0])

    def list_tasks(self, where: TaskFilter, limit: int) -> list[TaskListing]:
        """Newest first, from ``where.before`` (the previous page's last row) on."""
        clauses: list[str] = []
        params: list[Any] = []
        for column in ("namespace", "name", "version", "status", "parent_id"):
            value = getattr(where, column)
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if where.namespaces is not None:
            if not where.namespaces:
                return []
            clauses.append(f"namespace IN ({self.placeholders(len(where.namespaces))})")
            params.extend(where.namespaces)
        if where.before is not None:
            clauses.append("(created_at < ? OR (created_at = ? AND id < ?))")
            params.extend([where.before[0], where.before[0], where.before[1]])
        condition = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.execute(
            f"SELECT {LISTING_COLUMNS} FROM tf_task {condition} ORDER BY created_at DESC, id DESC LIMIT ?",
            (*params, limit),
        ).fetchall()
        return [TaskListing(*r) for r in rows]
