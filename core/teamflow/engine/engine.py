"""The engine: turns requests into durable tasks and reads them back.

It validates a request before anything is stored (the version resolves, the context
satisfies the schema, the namespace's approval and caller policies hold), creates the
task and its steps, links child tasks to the parent step that started them, and carries
out operator actions. Running steps is the runner's job.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from loguru import logger

from teamflow.engine.context import Park, StepContext
from teamflow.errors import (
    CallerNotAllowed,
    ContextInvalid,
    IdempotencyConflict,
    NotApproved,
    PermanentError,
    StoreError,
    TaskNotFound,
    TaskStateError,
    TeamflowError,
)
from teamflow.events import TaskEvent
from teamflow.models import NamespacePolicy, StepResult, TaskRequest, TaskResult
from teamflow.published import PublishedEntry, published_policy, resolve_published
from teamflow.registry import Registry, WorkflowEntry
from teamflow.serialization import canonical_json, to_json
from teamflow.store import Applied, Claimed, Store, TaskRow

if TYPE_CHECKING:
    from teamflow.engine.runner import Runner
    from teamflow.plugins import Plugins


Runnable = WorkflowEntry | PublishedEntry


def new_task_id() -> str:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits.

    Task ids sort by creation time, so a new task's rows land at the end of every index
    keyed by task id instead of at a random page.
    """
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")  # 80 random bits: 12 for rand_a, 62 for rand_b
    value = (ms & (2**48 - 1)) << 80 | 0x7 << 76 | (rand >> 68) << 64 | 0b10 << 62 | rand & (2**62 - 1)
    h = f"{value:032x}"  # what str(uuid.UUID(int=value)) gives, without building the UUID
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def request_hash(request: TaskRequest) -> str:
    body = [request.namespace, request.name, request.version, request.context]
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()[:32]


class Engine:
    def __init__(
        self, store: Store, registry: Registry, plugins: Plugins, *, lease_s: float, worker_id: str
    ) -> None:
        self.store = store
        self.registry = registry
        self.plugins = plugins
        self.lease_s = lease_s
        self.worker_id = worker_id
        self.runner: Runner | None = None
        self.has_events = plugins.has_event_subscribers()  # any teamflow_task_event implementation

    # -- requests ---------------------------------------------------------------------

    def lookup(self, request: TaskRequest) -> tuple[Runnable, NamespacePolicy]:
        """Resolve through this host's registry, else through what other hosts published."""
        if request.namespace in self.registry.namespaces or request.namespace in self.registry.blocked:
            entry = self.registry.resolve(request.namespace, request.name, request.version)
            return entry, self.registry.namespaces[entry.namespace].policy
        policy = published_policy(self.store, request.namespace)
        default = self.registry.default_constraint(request.namespace, request.name)
        return resolve_published(self.store, request.namespace, request.name, request.version, default), policy

    def prepare(self, request: TaskRequest) -> Runnable:
        """Resolve and check a request; raise a TeamflowError and store nothing if it is bad."""
        if not isinstance(request.context, dict):
            raise ContextInvalid("context must be a JSON object", field="$")
        entry, policy = self.lookup(request)
        try:
            to_json(request.context)
        except (TypeError, ValueError) as exc:
            raise ContextInvalid(f"context is not JSON: {exc}") from None
        errors = entry.context_errors(request.context)
        if errors:
            raise ContextInvalid(
                f"{entry.ref}: context does not match the workflow's schema: {'; '.join(errors)}",
                reference=entry.ref,
                errors=errors,
            )
        if policy.requires_approval:
            approvers = set(
                self.store.approvals(entry.namespace, entry.name, entry.version.text, entry.fingerprint)
            )
            if not approvers & set(policy.approvers):
                raise NotApproved(
                    f"{entry.ref} is in namespace {entry.namespace!r}, which requires approval of each version; "
                    f"none of {', '.join(policy.approvers) or '(no approvers configured)'} approved fingerprint "
                    f"{entry.fingerprint[:12]}: run `teamflow approve {entry.ref} --approver EMAIL`",
                    reference=entry.ref,
                    fingerprint=entry.fingerprint,
                )
        return entry

    def create(
        self,
        request: TaskRequest,
        *,
        claim: bool,
        parent: StepContext | None = None,
        ordinal: int | None = None,
        entry: Runnable | None = None,
    ) -> tuple[str, list[Claimed], bool]:
        """Store a task for ``request``. Returns (task id, claimed roots, whether it already existed)."""
        entry = entry or self.prepare(request)
        # The request's digest is compared only when its idempotency key or its (parent step,
        # call ordinal) comes back: a plain task does not need one.
        digest = request_hash(request) if request.idempotency_key is not None or parent is not None else None
        if request.idempotency_key is not None:
            existing = self.store.find_idempotent(entry.namespace, entry.name, request.idempotency_key)
            if existing is not None:
                return self._same_request(existing, request, digest), [], True
        task_id = new_task_id()
        task: dict[str, Any] = {
            "id": task_id,
            "namespace": entry.namespace,
            "name": entry.name,
            "version": entry.version.text,
            "fingerprint": entry.fingerprint,
            "route": entry.route,
            "context": json.dumps(request.context),
            "idempotency_key": request.idempotency_key,
            "request_hash": digest,
        }
        if parent is not None:
            task.update(
                parent_id=parent.task.id,
                parent_step=parent.step,
                parent_attempt=parent.attempt,
                call_ordinal=ordinal,
            )
        try:
            plain = parent is None and request.idempotency_key is None  # cannot collide with another task
            if claim and plain and self.runner is not None and self.store.single_writer:
                claimed = self.runner.create(task, entry.step_rows)  # joins the runner's next group commit
            else:
                claimed = self.store.create_task(
                    task, entry.step_rows, claim_for=self.worker_id if claim else None, lease_s=self.lease_s
                )
        except StoreError as exc:
            if request.idempotency_key is not None and str(exc).startswith("duplicate"):
                existing = self.store.find_idempotent(entry.namespace, entry.name, request.idempotency_key)
                if existing is not None:
                    return self._same_request(existing, request, digest), [], True
            raise
        if claimed:  # the runner needs the task's row: it is the one just stored
            row = TaskRow(task_id, entry.namespace, entry.name, task["version"], entry.fingerprint,
                          json.loads(task["context"]), "in_progress", task.get("parent_id"), task.get("parent_step"))
            for c in claimed:
                c.task = row
        if self.has_events:
            self.fire("task.created", task_id, entry)
            if claimed:
                self.fire("task.started", task_id, entry)
                for c in claimed:
                    self.fire("step.started", task_id, entry, step=c.name, attempt=c.attempt)
        return task_id, claimed, False

    def _same_request(self, existing: tuple[str, str], request: TaskRequest, digest: str | None) -> str:
        task_id, stored = existing
        if stored != digest:
            raise IdempotencyConflict(
                f"idempotency key {request.idempotency_key!r} was used for task {task_id} with a different "
                f"request to {request.namespace}/{request.name}; use a new key for a new request",
                task_id=task_id,
                idempotency_key=request.idempotency_key,
            )
        return task_id

    # -- child workflows ----------------------------------------------------------------

    def run_child(self, ctx: StepContext, request: TaskRequest, ordinal: int) -> TaskResult:
        """Re-attach to or start the child at (step, ordinal); park the step until it ends."""
        if not isinstance(request, TaskRequest):
            raise PermanentError(f"run_workflow takes a teamflow.TaskRequest, got {type(request).__name__}")
        digest = request_hash(request)
        existing = self.store.find_child(ctx.task.id, ctx.step, ordinal)
        if existing is not None:
            child_id, status, stored, parent_attempt = existing
            if stored != digest:
                raise PermanentError(
                    f"{ctx.task.ref} step {ctx.step!r}: call #{ordinal + 1} asks for {request.ref} with a different "
                    f"request than the child {child_id} it started before; a step must make the same calls in "
                    "the same order on every run"
                )
            if status == "completed" or (status in ("failed", "cancelled") and parent_attempt == ctx.attempt):
                return self.get_task(child_id)
            if status in ("pending", "in_progress"):
                raise Park(child_id)
            # failed or cancelled during an earlier attempt (or before a retry, which
            # detaches it: parent_attempt NULL): start a fresh child below
        try:
            entry, policy = self.lookup(request)
        except TeamflowError as exc:
            raise PermanentError(
                f"{ctx.task.ref} step {ctx.step!r} cannot call {request.ref}: {exc.detail}"
            ) from None
        if not policy.allows_caller(ctx.task.namespace):
            raise PermanentError(
                str(
                    CallerNotAllowed(
                        f"namespace {ctx.task.namespace!r} may not call {entry.ref}: namespace {entry.namespace!r} "
                        f"allows callers {', '.join(policy.allowed_callers) or '(none)'}; ask {policy.contact_email}"
                    )
                )
            )
        try:
            runnable = self.prepare(request)
        except TeamflowError as exc:
            raise PermanentError(
                f"{ctx.task.ref} step {ctx.step!r} cannot call {request.ref}: {exc.detail}"
            ) from None
        runner = self.runner
        serves = runner is not None and isinstance(runnable, WorkflowEntry) and runner.serves(runnable.namespace)
        child_id, claimed, _ = self.create(request, claim=serves, parent=ctx, ordinal=ordinal, entry=runnable)
        if claimed and runner is not None:
            runner.adopt(child_id, claimed)
        raise Park(child_id)

    # -- reading ------------------------------------------------------------------------

    def get_task(self, task_id: str) -> TaskResult:
        row, steps, children = self.store.task_view(task_id)
        if row is None:
            raise TaskNotFound(f"task {task_id} does not exist", task_id=task_id)
        entry = self.registry.get(row["namespace"], row["name"], row["version"])
        deps = entry.dependencies if entry else {}
        kids: dict[str, list[str]] = {}
        for child in children:
            kids.setdefault(child["parent_step"], []).append(child["id"])
        return TaskResult(
            id=row["id"],
            namespace=row["namespace"],
            name=row["name"],
            version=row["version"],
            status=row["status"],
            steps=tuple(
                StepResult(
                    name=s["name"],
                    status=s["status"],
                    attempts=s["attempts"],
                    result=json.loads(s["result"]) if s["result"] is not None else None,
                    error=s["error"],
                    error_type=s["error_type"],
                    depends_on=deps.get(s["name"], ()),
                    started_at=s["started_at"],
                    finished_at=s["finished_at"],
                    children=tuple(kids.get(s["name"], ())),
                    resolved_by=s["resolved_by"],
                )
                for s in steps
            ),
            error_summary=row["error_summary"],
            parent_id=row["parent_id"],
            parent_step=row["parent_step"],
            context=json.loads(row["context"]),
            fingerprint=row["fingerprint"],
            idempotency_key=row["idempotency_key"],
            created_at=row["created_at"],
            finished_at=row["finished_at"],
        )

    # -- operator actions -----------------------------------------------------------------

    def cancel(self, task_id: str, actor: str = "api") -> TaskResult:
        current = self.get_task(task_id)
        if current.status in ("completed", "failed", "cancelled"):
            raise TaskStateError(
                f"task {task_id} ({current.ref}) is already {current.status}; only pending or running tasks "
                "can be cancelled",
                task_id=task_id,
                status=current.status,
            )
        applied = self.store.cancel(task_id, actor)
        self.announce(applied)
        return self.get_task(task_id)

    def retry(self, task_id: str, actor: str = "cli") -> list[str]:
        current = self.get_task(task_id)
        if current.status != "failed":
            raise TaskStateError(
                f"task {task_id} ({current.ref}) is {current.status}; only failed tasks can be retried",
                task_id=task_id,
                status=current.status,
            )
        entry = self._entry_for(current)
        reopened = self.store.reopen(task_id, {n: tuple(s.depends_on) for n, s in entry.steps.items()}, actor)
        if self.runner is not None:
            self.runner.track(task_id)
        return reopened

    def resolve_step(self, task_id: str, step: str, result: Any, actor: str) -> TaskResult:
        current = self.get_task(task_id)
        entry = self._entry_for(current)
        if step not in entry.steps:
            raise TaskStateError(
                f"task {task_id} ({current.ref}) has no step {step!r}; steps: {', '.join(entry.order)}"
            )
        if current.status == "cancelled":
            raise TaskStateError(f"task {task_id} ({current.ref}) was cancelled; it cannot be resumed")
        try:
            text = json.dumps(result)
        except (TypeError, ValueError) as exc:
            raise ContextInvalid(f"the result must be JSON: {exc}") from None
        previous, applied = self.store.resolve_step(task_id, step, text, actor, entry.successors[step])
        if previous in ("completed", "resolved"):
            raise TaskStateError(f"step {step!r} of task {task_id} is already {previous}")
        if previous == "in_progress":
            logger.warning(
                "step {} of task {} was resolved by {} while a worker held it", step, task_id, actor
            )
        self.announce(applied)
        if self.runner is not None:
            self.runner.track(task_id)
        return self.get_task(task_id)

    def _entry_for(self, task: TaskResult) -> WorkflowEntry:
        entry = self.registry.get(task.namespace, task.name, task.version)
        if entry is None or entry.fingerprint != task.fingerprint:
            raise TaskStateError(
                f"task {task.id} runs {task.ref} with fingerprint {task.fingerprint[:12]}, which this host does not "
                "hold (removed or changed without a version bump); install the plugin version that shipped it"
            )
        return entry

    # -- events ---------------------------------------------------------------------------

    def fire(self, kind: str, task_id: str, entry: Any, **fields: Any) -> None:
        self.plugins.fire(
            TaskEvent(
                kind=kind,
                task_id=task_id,
                namespace=entry.namespace,
                name=entry.name,
                version=entry.version if isinstance(entry.version, str) else entry.version.text,
                at=time.time(),
                **fields,
            )
        )

    def announce(self, applied: Applied, started: Sequence[str] = ()) -> None:
        """Fire the events of a committed batch, in the order the changes happened."""
        if not self.has_events:
            return
        rows = self.store.task_rows(
            sorted(
                {o.claim.task_id for o in applied.accepted}
                | {c.task_id for c in applied.claimed}
                | {t for t, _ in applied.finished_tasks}
                | set(started)
            )
        )
        for task_id in started:
            self.fire("task.started", task_id, rows[task_id])
        for out in applied.accepted:
            row = rows[out.claim.task_id]
            kind = {
                "complete": "step.completed",
                "retry": "step.retrying",
                "fail": "step.failed",
                "park": "step.waiting",
            }[out.kind]
            self.fire(kind, row.id, row, step=out.claim.name, attempt=out.claim.attempt, error=out.error)
        for c in applied.claimed:
            self.fire("step.started", c.task_id, rows[c.task_id], step=c.name, attempt=c.attempt)
        for task_id, status in applied.finished_tasks:
            self.fire(f"task.{status}", task_id, rows[task_id], status=status)


def policy_dict(policy: NamespacePolicy) -> dict[str, Any]:
    return {
        "owner_team": policy.owner_team,
        "contact_email": policy.contact_email,
        "description": policy.description,
        "requires_approval": policy.requires_approval,
        "approvers": list(policy.approvers),
        "allowed_callers": list(policy.allowed_callers),
    }
