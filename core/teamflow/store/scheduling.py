"""Scheduling: claiming ready steps under leases, applying outcomes, and operator actions.

Methods are transaction scripts: each is a short transaction that the engine calls with
decisions already made (which steps succeed, which retry, which successors become
ready). Every change to a claimed step is fenced by its lease owner and attempt, so a
stalled worker cannot write over the worker that took its step back.
"""

from __future__ import annotations

import functools
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

from teamflow.models import TERMINAL
from teamflow.store.records import (
    DONE_STEP,
    Applied,
    AuditEntry,
    Claimed,
    Claims,
    ExpiredLease,
    FinishedTask,
    NewTask,
    Outcome,
    Resolved,
    StepPlan,
    Take,
)
from teamflow.store.tasks import Tasks, Transition

# An in-flight step that goes back to the queue (a retry, a lost lease, a release) goes
# back only while its task runs; a step of a task that failed or was cancelled meanwhile
# is cancelled, so that nothing claims and runs it again. (On PostgreSQL ``{share}``
# waits for a concurrent cancel or failure of the task to commit, and then sees it.)
_TASK_RUNS = (
    "EXISTS (SELECT 1 FROM tf_task t WHERE t.id = tf_step.task_id AND t.status IN ('pending', 'in_progress'){share})"
)
REQUEUE = (
    f"status = CASE WHEN {_TASK_RUNS} THEN 'pending' ELSE 'cancelled' END, "
    f"finished_at = CASE WHEN {_TASK_RUNS} THEN NULL ELSE {{now}} END, lease_owner = NULL, lease_expires_at = NULL"
)
COMPLETE = (
    "status = 'completed', result = ?, error = NULL, error_type = NULL, lease_owner = NULL, "
    "lease_expires_at = NULL, finished_at = {now}"
)
# A parked re-run is not a new attempt: the claim's increment is given back.
PARK = "status = 'waiting', attempts = attempts - 1, waiting_on = ?, lease_owner = NULL, lease_expires_at = NULL"
FAIL = "status = 'failed', error = ?, error_type = ?, lease_owner = NULL, lease_expires_at = NULL, finished_at = {now}"
RETRY = "error = ?, error_type = ?, next_attempt_at = {now} + ?"
RELEASE = "attempts = attempts - 1, next_attempt_at = {now} + ?"

TASK_STATUS = "SELECT status FROM tf_task WHERE id = ?"
# A parking step reads its child's status locked: on PostgreSQL a child finishing in a
# transaction not yet committed (its WAKE found the step not parked yet) is waited for and
# then seen finished, so the step wakes itself instead of waiting forever.
CHILD_STATUS = "SELECT status FROM tf_task WHERE id = ?{share}"
PARENT_OF = "SELECT parent_id, parent_step FROM tf_task WHERE id = ?"
START_TASK = "UPDATE tf_task SET status = 'in_progress', updated_at = {now} WHERE id = ? AND status = 'pending'"
WAKE = (
    "UPDATE tf_step SET status = 'pending', next_attempt_at = {now}, ready_at = {now} "
    "WHERE task_id = ? AND name = ? AND status = 'waiting'"
)
FAIL_TASK = (
    "UPDATE tf_task SET status = 'failed', error_summary = ?, finished_at = {now}, updated_at = {now} "
    "WHERE id = ? AND status IN ('pending', 'in_progress')"
)
CANCEL_TASK = (
    "UPDATE tf_task SET status = 'cancelled', error_summary = ?, finished_at = {now}, updated_at = {now} "
    "WHERE id = ? AND status IN ('pending', 'in_progress')"
)
SKIP_UNRUN_STEPS = (
    "UPDATE tf_step SET status = 'cancelled', error = 'not run: the task failed', finished_at = {now} "
    "WHERE task_id = ? AND status IN ('pending', 'waiting')"
)
CANCEL_STEPS = (
    "UPDATE tf_step SET status = 'cancelled', finished_at = {now} WHERE task_id = ? AND status IN ('pending', 'waiting')"
)
RUNNING_CHILDREN = "SELECT id FROM tf_task WHERE parent_id = ? AND status IN ('pending', 'in_progress')"
EXPIRED = (
    "SELECT id, task_id, name, attempts, max_attempts, retryable, lease_owner FROM tf_step "
    "WHERE status = 'in_progress' AND lease_expires_at < {now} ORDER BY lease_expires_at LIMIT ?"
)
STEP_STATUSES = "SELECT name, status FROM tf_step WHERE task_id = ? ORDER BY id"
REOPEN_STEP = (
    "UPDATE tf_step SET status = 'pending', attempts = 0, deps_left = ?, next_attempt_at = {now}, "
    "lease_owner = NULL, lease_expires_at = NULL, finished_at = NULL, waiting_on = NULL, "
    "ready_at = CASE WHEN ? = 0 THEN {now} ELSE NULL END WHERE task_id = ? AND name = ?"
)
REOPEN_TASK = (
    "UPDATE tf_task SET status = 'in_progress', error_summary = NULL, finished_at = NULL, updated_at = {now} "
    "WHERE id = ?"
)
STEP_STATE = "SELECT status, attempts FROM tf_step WHERE task_id = ? AND name = ?"
RESOLVE_STEP = (
    "UPDATE tf_step SET status = 'resolved', result = ?, resolved_by = ?, lease_owner = NULL, "
    "lease_expires_at = NULL, error = NULL, finished_at = {now} WHERE task_id = ? AND name = ?"
)
RESUME_TASK = "UPDATE tf_task SET status = 'in_progress', error_summary = NULL, finished_at = NULL WHERE id = ?"
RESUME_STEPS = (
    "UPDATE tf_step SET status = 'pending', finished_at = NULL, error = NULL WHERE task_id = ? AND status = 'cancelled'"
)
READY = "status = 'pending' AND deps_left = 0"


@functools.lru_cache(maxsize=32)
def fenced(assignments: str) -> str:
    """An update of a claimed step that only its lease holder, at its attempt, may make."""
    return (
        f"UPDATE tf_step SET {assignments} WHERE id = ? AND lease_owner = ? AND attempts = ? "
        "AND status = 'in_progress'"
    )


@functools.lru_cache(maxsize=256)
def release_successors(successors: int, claim: bool) -> str:
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


@functools.lru_cache(maxsize=64)
def renew_leases(n: int) -> str:
    return (
        "UPDATE tf_step SET lease_expires_at = {now} + ? WHERE lease_owner = ? AND status = 'in_progress' "
        f"AND id IN ({','.join('?' * n)})"
    )


@functools.lru_cache(maxsize=64)
def detach_ended_children(n: int) -> str:
    # Attempts start again at 1 after a retry, so a child that ended (failed, cancelled)
    # in an earlier run must no longer pass for the current attempt's own child (see the
    # engine's children): it is detached from any attempt and gets replaced.
    return (
        "UPDATE tf_task SET parent_attempt = NULL WHERE parent_id = ? "
        f"AND parent_step IN ({','.join('?' * n)}) AND status IN ('failed', 'cancelled')"
    )


class Scheduling(Tasks):
    # -- what each database does its own way ----------------------------------------------

    @abstractmethod
    def claim(
        self,
        worker: str,
        lease_s: float,
        limit: int,
        *,
        routes: Sequence[str] | None = None,
        task_ids: Sequence[str] | None = None,
    ) -> Claims:
        """Lease up to ``limit`` ready steps (of these routes or tasks); mark their tasks started."""

    @abstractmethod
    def _claim_in_tx(self, worker: str, lease_s: float, limit: int, routes: Sequence[str] | None) -> Claims:
        """``claim`` inside the transaction in progress."""

    @abstractmethod
    def _step_done(self, task_id: str, applied: Applied, last: bool = True) -> None:
        """A step of ``task_id`` completed (or was resolved): complete the task if it was the
        last. ``last`` is False when the step still had a successor to run."""

    @abstractmethod
    def _routes_clause(self, routes: Sequence[str]) -> tuple[str, list[Any]]:
        """`` AND route ...`` limiting steps to the versions (and fingerprints) a worker holds."""

    # -- applying outcomes --------------------------------------------------------------

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
        """Apply a batch of step outcomes in one transaction, fenced by lease owner and attempt.

        ``creates`` are new tasks (see ``insert_task``) stored in the same transaction with
        their roots leased to ``worker``: tasks without an idempotency key or a parent,
        which cannot collide with another. ``take`` claims more ready steps in it too
        (``Applied.taken``).
        """
        applied = Applied()
        with self.tx():
            for task, steps in creates:
                applied.created[task.id] = self.insert_task(task, steps, claim_for=worker, lease_s=lease_s)
            self._apply_outcomes(outcomes, worker, lease_s, claim_successors, applied)
            if take is not None:
                applied.taken = self._claim_in_tx(worker, lease_s, take.limit, take.routes)
        return applied

    def _apply_outcomes(
        self, outcomes: Sequence[Outcome], worker: str, lease_s: float, claim: bool, applied: Applied
    ) -> None:
        for out in outcomes:
            (applied.accepted if self._apply_one(out, worker, lease_s, claim, applied) else applied.dropped).append(out)

    def _fence(self, assignments: str, out: Outcome, worker: str, params: Sequence[Any] = ()) -> bool:
        cur = self.execute(fenced(assignments), (*params, out.claim.step_id, worker, out.claim.attempt))
        return bool(cur.rowcount)

    def _apply_one(self, out: Outcome, worker: str, lease_s: float, claim: bool, applied: Applied) -> bool:
        c = out.claim
        if out.kind == "complete":
            if not self._fence(COMPLETE, out, worker, (out.result,)):
                return False
            transitions: list[Transition] = [(c.task_id, c.name, "in_progress", "completed", c.attempt, worker, None)]
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
            to = self._requeue(c, worker, RETRY, (out.error, out.error_type, out.delay))
            if to is not None:
                self._transition([(c.task_id, c.name, "in_progress", "retrying" if to == "pending" else to,
                                   c.attempt, worker, out.error)])
            return to is not None
        if out.kind == "park":
            # The child's row first, then the step's: the order a finishing child takes them
            # (its own row, then its parent's step), so the two never wait on each other.
            row = self.execute(CHILD_STATUS, (out.child_id,)).fetchone()
            if not self._fence(PARK, out, worker, (out.child_id,)):
                return False
            self._transition([(c.task_id, c.name, "in_progress", "waiting", c.attempt, worker, out.child_id)])
            if row is not None and row[0] in TERMINAL:  # the child finished before we parked
                self._wake(c.task_id, c.name, applied)
            return True
        if out.kind == "fail":
            if not self._fence(FAIL, out, worker, (out.error, out.error_type)):
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
        transitions: list[Transition],
    ) -> tuple[list[Claimed], int]:
        """Count a finished dependency on each pending successor. Returns (claims, successors updated)."""
        if worker is None:
            cur = self.execute(release_successors(len(successors), False), (task_id, *successors))
            self.notify()
            return [], int(cur.rowcount or 0)
        rows = self.execute(
            release_successors(len(successors), True), (worker, lease_s, task_id, *successors)
        ).fetchall()
        claimed = [Claimed(r[0], r[1], r[2], r[3]) for r in rows if r[4] == "in_progress"]
        transitions.extend((c.task_id, c.name, "pending", "in_progress", c.attempt, worker, None) for c in claimed)
        return claimed, len(rows)

    def _finished(self, task_id: str, parent_id: str | None, parent_step: str | None, applied: Applied) -> None:
        """The last step of ``task_id`` completed it: record that, and wake a parked parent."""
        applied.finished_tasks.append(FinishedTask(task_id, "completed"))
        self._transition([(task_id, None, "in_progress", "completed", None, None, None)])
        if parent_id is not None and parent_step is not None:
            self._wake(parent_id, parent_step, applied)

    def _wake(self, parent_id: str, parent_step: str, applied: Applied) -> None:
        if self.execute(WAKE, (parent_id, parent_step)).rowcount:
            applied.woken_parents.append(parent_id)
            self._transition([(parent_id, parent_step, "waiting", "pending", None, None, "child finished")])
            self.notify()

    def _fail_task(self, task_id: str, summary: str, applied: Applied) -> None:
        if not self.execute(FAIL_TASK, (summary, task_id)).rowcount:
            return
        applied.finished_tasks.append(FinishedTask(task_id, "failed"))
        self.execute(SKIP_UNRUN_STEPS, (task_id,))
        self._transition([(task_id, None, "in_progress", "failed", None, None, summary)])
        self._wake_parent(task_id, applied)
        self._cancel_children(task_id, "parent task failed", applied)

    def _wake_parent(self, task_id: str, applied: Applied) -> None:
        """A child task ended (failed, cancelled): its parent's step parked on it runs again."""
        row = self.execute(PARENT_OF, (task_id,)).fetchone()
        if row and row[0]:
            self._wake(row[0], row[1], applied)

    def _mark_started(self, task_ids: Sequence[str]) -> list[str]:
        started = []
        for task_id in task_ids:
            if self.execute(START_TASK, (task_id,)).rowcount:
                started.append(task_id)
                self._transition([(task_id, None, "pending", "in_progress", None, None, None)])
        return started

    # -- leases -------------------------------------------------------------------------

    def release(self, claims: Sequence[Claimed], worker: str, delay: float, reason: str) -> None:
        """Give steps back without counting the attempt (shutdown, or a version this worker cannot serve)."""
        if not claims:
            return
        with self.tx():
            for c in claims:
                to = self._requeue(c, worker, RELEASE, (delay,))
                if to is not None:
                    self._transition([(c.task_id, c.name, "in_progress", to, c.attempt, worker,
                                       reason if to == "pending" else f"not run again, the task ended ({reason})")])

    def _requeue(self, claim: Claimed, owner: str, assignments: str, params: Sequence[Any]) -> str | None:
        """Put a step in flight back in the queue, fenced by lease owner and attempt.

        Returns its new status: ``pending``, or ``cancelled`` when its task has ended (see
        ``_TASK_RUNS``); None when the fence kept the update out.
        """
        row = self.execute(
            fenced(f"{REQUEUE}, {assignments}") + " RETURNING status", (*params, claim.step_id, owner, claim.attempt)
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
            cur = self.execute(renew_leases(len(step_ids)), (lease_s, worker, *step_ids))
            renewed = int(cur.rowcount or 0)  # read before COMMIT, which runs on the same cursor
        return renewed

    def expired(self, limit: int = 100) -> list[ExpiredLease]:
        """Steps whose lease ran out, the oldest first."""
        return [
            ExpiredLease(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6])
            for r in self.execute(EXPIRED, (limit,)).fetchall()
        ]

    def next_due(self, routes: Sequence[str] | None) -> float | None:
        """Seconds until the earliest pending retry becomes due (None when nothing waits)."""
        if routes is not None and not routes:
            return None
        where, params = READY, list[Any]()
        if routes is not None:
            clause, params = self._routes_clause(routes)
            where += clause
        row = self.execute(f"SELECT MIN(next_attempt_at) - {{now}} FROM tf_step WHERE {where}", params).fetchone()
        return None if row is None or row[0] is None else max(0.0, float(row[0]))

    def reap_expired(self, limit: int = 100) -> Applied:
        """Take back steps whose worker lost its lease; the lost lease counts as an attempt."""
        applied = Applied()
        with self.tx():
            for lease in self.expired(limit):
                claim = Claimed(lease.step_id, lease.task_id, lease.name, lease.attempts)
                why = f"lease of worker {lease.owner} expired during attempt {lease.attempts}"
                if lease.retryable and lease.attempts < lease.max_attempts:
                    out = Outcome("retry", claim, error=why, error_type="LeaseExpired")
                    to = self._requeue(claim, lease.owner or "", RETRY, (why, "LeaseExpired", 0.0))
                    if to is not None:
                        self._transition([(lease.task_id, lease.name, "in_progress", to, lease.attempts, lease.owner,
                                           why)])
                        applied.accepted.append(out)
                else:
                    if not lease.retryable:
                        why += "; the step is retryable=False and may have run, so it fails"
                    out = Outcome("fail", claim, error=why, error_type="LeaseExpired")
                    if self._apply_one(out, lease.owner or "", 0.0, False, applied):
                        applied.accepted.append(out)
        return applied

    # -- operator actions ---------------------------------------------------------------

    def cancel(self, task_id: str, actor: str, audit: AuditEntry | None = None) -> Applied:
        applied = Applied()
        with self.tx():
            if self._cancel(task_id, actor, "cancelled", applied) and audit is not None:
                self.audit_in(audit)
        return applied

    def _cancel(self, task_id: str, actor: str, why: str, applied: Applied) -> bool:
        if not self.execute(CANCEL_TASK, (why, task_id)).rowcount:
            return False
        self.execute(CANCEL_STEPS, (task_id,))
        self._transition([(task_id, None, None, "cancelled", None, actor, why)])
        applied.finished_tasks.append(FinishedTask(task_id, "cancelled"))
        self._wake_parent(task_id, applied)  # a no-op when the parent's cancelling cascaded here
        self._cancel_children(task_id, "parent task cancelled", applied)
        return True

    def _cancel_children(self, task_id: str, why: str, applied: Applied) -> None:
        for (child_id,) in self.execute(RUNNING_CHILDREN, (task_id,)).fetchall():
            self._cancel(child_id, "teamflow", why, applied)

    def reopen(
        self, task_id: str, steps: dict[str, tuple[str, ...]], actor: str, audit: AuditEntry | None = None
    ) -> list[str]:
        """Re-open a failed task: failed and cancelled steps go back to pending, attempts reset."""
        with self.tx():
            status = dict(self.execute(STEP_STATUSES, (task_id,)).fetchall())
            reopened = [name for name, s in status.items() if s in ("failed", "cancelled")]
            for name in reopened:
                deps_left = sum(1 for dep in steps[name] if status.get(dep) not in DONE_STEP)
                self.execute(REOPEN_STEP, (deps_left, deps_left, task_id, name))
            if reopened:
                self.execute(detach_ended_children(len(reopened)), (task_id, *reopened))
            self.execute(REOPEN_TASK, (task_id,))
            self._transition(
                [(task_id, None, "failed", "in_progress", None, actor, "retry")]
                + [(task_id, name, status[name], "pending", 0, actor, "retry") for name in reopened]
            )
            if audit is not None:
                self.audit_in(audit)
            self.notify()
        return reopened

    def resolve_step(
        self,
        task_id: str,
        step: str,
        result: str,
        actor: str,
        successors: Sequence[str],
        audit: AuditEntry | None = None,
    ) -> Resolved:
        """Mark a step resolved by hand; its dependants treat it as completed."""
        applied = Applied()
        with self.tx():
            row = self.execute(STEP_STATE, (task_id, step)).fetchone()
            if row is None:
                return Resolved("missing", applied)
            previous = row[0]
            if previous in DONE_STEP:
                return Resolved(previous, applied)
            self.execute(RESOLVE_STEP, (result, actor, task_id, step))
            transitions: list[Transition] = [(task_id, step, previous, "resolved", row[1], actor, "resolved by hand")]
            task_status = self.execute(TASK_STATUS, (task_id,)).fetchone()[0]
            if task_status in ("failed", "cancelled"):
                self.execute(RESUME_TASK, (task_id,))
                self.execute(RESUME_STEPS, (task_id,))
                transitions.append((task_id, None, task_status, "in_progress", None, actor, "step resolved"))
            if successors:
                self._release_successors(task_id, successors, None, 0.0, transitions)
            self._transition(transitions)
            self._step_done(task_id, applied)
            if audit is not None:
                self.audit_in(audit)
            self.notify()
        return Resolved(previous, applied)
