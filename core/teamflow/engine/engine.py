"""The engine: turns requests into durable tasks, reads them back, carries out operator actions.

It validates a request before anything is stored (the version resolves, the context
satisfies the schema, the namespace's approval policy holds), creates the task and its
steps, and reads a task into its public shape. It holds no runner: running steps is the
runner's job, and where a task should join a runner's group commit the caller passes the
runner in (``TaskSink``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

import attrs
from loguru import logger

from teamflow.engine.events import Events
from teamflow.errors import (
    ContextInvalid,
    IdempotencyConflict,
    InvalidVersion,
    NamespaceNotFound,
    NotApproved,
    StepNotFound,
    TaskNotFound,
    TaskStateError,
    TooLarge,
    WorkflowNotFound,
)
from teamflow.limits import MAX_KEY, MAX_RESULT_BYTES, Unstorable, check_key, context_json, encode
from teamflow.models import TERMINAL, NamespacePolicy, StepResult, TaskRequest, TaskResult
from teamflow.registry import Registry, StepRow, WorkflowEntry
from teamflow.registry.published import PublishedEntry, published_policy, resolve_published
from teamflow.registry.rollout import chosen
from teamflow.serialization import canonical_json
from teamflow.store import DuplicateKey, Store
from teamflow.store.records import (
    IDEMPOTENCY_KEY,
    AuditEntry,
    ChildRecord,
    Claimed,
    ExistingTask,
    NewTask,
    RolloutRecord,
    TaskRow,
    TaskSnapshot,
    TransitionRecord,
)
from teamflow.versions import parse_constraint, parse_version

Runnable = WorkflowEntry | PublishedEntry


ROLLOUT_CACHE_S = 2.0  # how old the rollouts a host follows may be


def _exact(version: str) -> bool:
    try:
        parse_version(version.strip().removeprefix("=").strip())
    except InvalidVersion:
        return False
    return True


# Random bits for task ids, read from the OS 256 ids at a time: os.urandom releases the
# GIL, and a caller thread that gives it up per id waits for it behind the other threads.
# ``list.pop`` is atomic under the GIL; a forked child starts with none of its parent's.
_RANDOM: list[int] = []
_RANDOM_BATCH = 256
os.register_at_fork(after_in_child=_RANDOM.clear)


def _random80() -> int:
    try:
        return _RANDOM.pop()
    except IndexError:
        data = os.urandom(10 * _RANDOM_BATCH)
        _RANDOM.extend(int.from_bytes(data[i : i + 10], "big") for i in range(0, len(data), 10))
        return _RANDOM.pop()


def new_task_id() -> str:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits.

    Task ids sort by creation time, so a new task's rows land at the end of every index
    keyed by task id instead of at a random page.
    """
    ms = time.time_ns() // 1_000_000
    rand = _random80()  # 80 random bits: 12 for rand_a, 62 for rand_b
    value = (ms & (2**48 - 1)) << 80 | 0x7 << 76 | (rand >> 68) << 64 | 0b10 << 62 | rand & (2**62 - 1)
    h = f"{value:032x}"  # what str(uuid.UUID(int=value)) gives, without building the UUID
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def request_hash(request: TaskRequest) -> str:
    body = [request.namespace, request.name, request.version, request.context]
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()[:32]


class TaskSink(Protocol):
    """Stores a new task and leases its roots to the caller, sharing a commit with others."""

    def create(self, task: NewTask, steps: Sequence[StepRow]) -> list[Claimed]: ...


@attrs.frozen
class ParentCall:
    """The step that starts a child task: the child is keyed by (step, call ordinal)."""

    task_id: str
    step: str
    attempt: int
    ordinal: int


@attrs.frozen
class Prepared:
    """A checked request: the version it resolved to, its namespace's policy, its context as stored."""

    entry: Runnable
    policy: NamespacePolicy
    context: str  # JSON text
    task_id: str  # the new task's id, drawn before resolving (a rollout's key)
    rollout: str | None  # why a rollout chose this version, for the task's history


@attrs.frozen
class Created:
    """A task ``create`` stored (or found: ``existing``) and the root steps it leased."""

    id: str
    claimed: list[Claimed]
    existing: bool = False


@attrs.frozen
class Staged:
    """A new task built for a request, not stored yet (``Engine.stage``)."""

    request: TaskRequest
    entry: Runnable
    task: NewTask
    digest: str | None


@attrs.frozen
class TaskDetail:
    """A task with its child tasks and its history."""

    task: TaskResult
    children: list[ChildRecord]
    transitions: list[TransitionRecord]


class Engine:
    def __init__(
        self, store: Store, registry: Registry, events: Events, *, lease_s: float, worker_id: str
    ) -> None:
        self.store = store
        self.registry = registry
        self.events = events
        self.lease_s = lease_s
        self.worker_id = worker_id
        self._rollouts: tuple[float, dict[tuple[str, str], RolloutRecord]] | None = None

    # -- requests ---------------------------------------------------------------------

    def lookup(self, request: TaskRequest) -> tuple[Runnable, NamespacePolicy]:
        """Resolve through this host's registry, else through what other hosts published."""
        if request.namespace in self.registry.namespaces or request.namespace in self.registry.blocked:
            entry = self.registry.resolve(request.namespace, request.name, request.version)
            return entry, self.registry.namespaces[entry.namespace].policy
        recorded = self.store.published_namespace(request.namespace)
        if recorded is None:
            known = sorted(self.store.recorded_owners())
            raise NamespaceNotFound(
                f"namespace {request.namespace!r} is neither loaded here nor published by any host; namespaces: "
                f"{', '.join(known) or 'none'}",
                namespace=request.namespace,
                namespaces=known,
            )
        published = resolve_published(
            request.namespace,
            request.name,
            self.store.published_versions(request.namespace, request.name),
            request.version,
            self.registry.default_constraint(request.namespace, request.name),
        )
        if published is None:
            raise WorkflowNotFound(
                f"{request.namespace}/{request.name} was not published by any host",
                namespace=request.namespace,
                name=request.name,
            )
        return published, published_policy(request.namespace, recorded.policy)

    def rollouts(self) -> dict[tuple[str, str], RolloutRecord]:
        """Every rollout, read from the store at most every ROLLOUT_CACHE_S (so every host
        follows a change within that time)."""
        now = time.monotonic()
        cached = self._rollouts
        if cached is None or now - cached[0] >= ROLLOUT_CACHE_S:
            cached = (now, {(r.namespace, r.name): r for r in self.store.rollouts()})
            self._rollouts = cached
        return cached[1]

    def _rolled_out(self, request: TaskRequest, entry: Runnable, key: str) -> tuple[Runnable, str | None]:
        """The version a rollout sends this request to (a request naming an exact version
        keeps it; one whose constraint the rolled-out version does not satisfy keeps its own)."""
        rollout = self.rollouts().get((entry.namespace, entry.name))
        if rollout is None or not isinstance(entry, WorkflowEntry):
            return entry, None
        if request.version is not None and _exact(request.version):
            return entry, None
        target = self.registry.get(entry.namespace, entry.name, rollout.version)
        if target is None:
            return entry, None
        if request.version is not None and not parse_constraint(request.version).matches(target.version):
            return entry, None
        if not chosen(rollout.percent, entry.namespace, entry.name, key):
            return entry, None
        return target, f"rollout: {rollout.percent:g}% to {rollout.version}"

    def prepare(self, request: TaskRequest, parent_key: str | None = None) -> Prepared:
        """Resolve and check a request; raise a TeamflowError and store nothing if it is bad.
        ``parent_key``: a child's (parent id, step, call ordinal), its rollout key."""
        if not isinstance(request.context, dict):
            raise ContextInvalid("context must be a JSON object", field="$")
        check_key(request.idempotency_key, "the idempotency key", MAX_KEY)
        entry, policy = self.lookup(request)
        task_id = new_task_id()
        entry, rollout = self._rolled_out(request, entry, request.idempotency_key or parent_key or task_id)
        # Before the schema: a context too deep for a JSON Schema validator is refused here.
        context = context_json(request.context, entry.ref)
        errors = entry.context_errors(request.context)
        if errors:
            raise ContextInvalid(
                f"{entry.ref}: context does not match the workflow's schema: {'; '.join(errors)}",
                reference=entry.ref,
                errors=errors,
            )
        if policy.requires_approval:
            approvers = set(self.store.approvals(entry.namespace, entry.name, entry.version.text, entry.fingerprint))
            if not approvers & set(policy.approvers):
                raise NotApproved(
                    f"{entry.ref} is in namespace {entry.namespace!r}, which requires approval of each version; "
                    f"none of {', '.join(policy.approvers) or '(no approvers configured)'} approved fingerprint "
                    f"{entry.fingerprint[:12]}: run `teamflow approve {entry.ref} --approver EMAIL`",
                    reference=entry.ref,
                    fingerprint=entry.fingerprint,
                )
        return Prepared(entry, policy, context, task_id, rollout)

    def create(
        self,
        request: TaskRequest,
        prepared: Prepared,
        *,
        claim: bool,
        parent: ParentCall | None = None,
        via: TaskSink | None = None,
        actor: str | None = None,
    ) -> Created:
        """Store a task for a prepared ``request``; with ``claim``, lease its roots to this worker.

        ``via`` stores it in that sink's next group commit instead of a transaction of its
        own (the caller knows which tasks its sink takes).
        """
        staged = self.stage(request, prepared, parent=parent, actor=actor)
        if isinstance(staged, Created):
            return staged
        try:
            if via is not None:
                claimed = via.create(staged.task, prepared.entry.step_rows)
            else:
                claimed = self.store.create_task(
                    staged.task, prepared.entry.step_rows, claim_for=self.worker_id if claim else None,
                    lease_s=self.lease_s,
                )
        except DuplicateKey as exc:
            if exc.constraint != IDEMPOTENCY_KEY:
                raise
            return self.taken(staged, exc)
        return self.stored(staged, claimed)

    def stage(
        self, request: TaskRequest, prepared: Prepared, *, parent: ParentCall | None = None, actor: str | None = None
    ) -> Created | Staged:
        """The task to store for a prepared request, or the one its idempotency key already
        names (``Created``, ``existing``). Store it, then ``stored`` (or ``taken`` when a
        concurrent caller's commit took its idempotency key first)."""
        entry = prepared.entry
        # The request's digest is compared only when its idempotency key or its (parent step,
        # call ordinal) comes back: a plain task does not need one.
        keyed = request.idempotency_key is not None
        digest = request_hash(request) if keyed or parent is not None else None
        if keyed:
            existing = self.store.find_idempotent(entry.namespace, entry.name, request.idempotency_key or "")
            if existing is not None:
                return Created(self._same_request(existing, request, digest), [], existing=True)
        return Staged(request, entry, self._new_task(prepared, request.idempotency_key, digest, parent, actor), digest)

    def taken(self, staged: Staged, error: DuplicateKey) -> Created:
        """A staged task whose idempotency key another caller's commit took first: that task
        (when it is the same request), or the DuplicateKey again (its commit rolled back)."""
        entry, request = staged.entry, staged.request
        existing = self.store.find_idempotent(entry.namespace, entry.name, request.idempotency_key or "")
        if existing is None:  # the winner's transaction rolled back after all
            raise error
        return Created(self._same_request(existing, request, staged.digest), [], existing=True)

    def stored(self, staged: Staged, claimed: list[Claimed]) -> Created:
        """A staged task, committed (with the root steps it leased here): its lifecycle events."""
        task, entry = staged.task, staged.entry
        if claimed:  # the runner needs the task's row: it is the one just stored
            row = TaskRow(task.id, task.namespace, task.name, task.version, task.fingerprint,
                          json.loads(task.context), "in_progress", task.parent_id, task.parent_step)
            for c in claimed:
                c.task = row
        if self.events.enabled:
            self.events.fire("task.created", task.id, entry)
            if claimed:
                self.events.fire("task.started", task.id, entry)
                for c in claimed:
                    self.events.fire("step.started", task.id, entry, step=c.name, attempt=c.attempt)
        return Created(task.id, claimed)

    def create_many(
        self, requests: Sequence[TaskRequest], prepared: Iterable[Prepared], actor: str | None = None
    ) -> list[Created]:
        """Store prepared requests for the workers, in one transaction; their task ids, in order.

        ``prepared`` may be made as it is read (``Host.accept_many`` checks each request
        then): the store sends the tasks of the first ones while the next are made, and
        stores nothing if making one raises.

        Idempotency keys hold per item: a key that already names a task (stored before, or
        earlier in the same batch) gives that task's id when the request is the same, and
        refuses the whole batch when it is not (nothing is stored: what was sent is rolled back).
        """
        ids = [""] * len(requests)
        existed = [True] * len(requests)
        firsts: dict[tuple[str, str, str], tuple[int, str]] = {}  # key -> (its first item, its digest)
        repeats: list[tuple[int, int]] = []  # (item, the earlier item with the same key)
        pending: list[tuple[int, NewTask]] = []

        def new_tasks() -> Iterator[tuple[NewTask, Sequence[StepRow]]]:
            for i, (request, ready) in enumerate(zip(requests, prepared, strict=True)):
                entry = ready.entry
                digest = None
                if request.idempotency_key is not None:
                    digest = request_hash(request)
                    scope = (entry.namespace, entry.name, request.idempotency_key)
                    seen = firsts.get(scope)
                    if seen is not None:
                        if seen[1] != digest:
                            raise IdempotencyConflict(
                                f"items {seen[0]} and {i} use idempotency key {request.idempotency_key!r} for "
                                f"different requests to {entry.namespace}/{entry.name}; use a new key for a new "
                                "request",
                                idempotency_key=request.idempotency_key,
                                index=i,
                            )
                        repeats.append((i, seen[0]))
                        continue
                    firsts[scope] = (i, digest)
                    existing = self.store.find_idempotent(*scope)
                    if existing is not None:
                        ids[i] = self._same_request(existing, request, digest)
                        continue
                task = self._new_task(ready, request.idempotency_key, digest, None, actor)
                ids[i], existed[i] = task.id, False
                pending.append((i, task))
                yield task, entry.step_rows

        stored = self.store.create_tasks(new_tasks())
        for i, task in pending:
            if task.id not in stored:  # another caller took the key meanwhile
                existing = self.store.find_idempotent(task.namespace, task.name, task.idempotency_key or "")
                if existing is None:
                    raise DuplicateKey(IDEMPOTENCY_KEY, f"item {i}: its idempotency key is taken")
                ids[i], existed[i] = self._same_request(existing, requests[i], task.request_hash), True
        for i, first in repeats:
            ids[i] = ids[first]
        if self.events.enabled:
            for _, task in pending:
                if task.id in stored:
                    self.events.fire("task.created", task.id, task)
        return [Created(task_id, [], existing=old) for task_id, old in zip(ids, existed, strict=True)]

    def _new_task(
        self, prepared: Prepared, key: str | None, digest: str | None, parent: ParentCall | None, actor: str | None
    ) -> NewTask:
        entry = prepared.entry
        return NewTask(
            id=prepared.task_id,
            namespace=entry.namespace,
            name=entry.name,
            version=entry.version.text,
            fingerprint=entry.fingerprint,
            route=entry.route,
            context=prepared.context,
            idempotency_key=key,
            request_hash=digest,
            parent_id=parent.task_id if parent else None,
            parent_step=parent.step if parent else None,
            parent_attempt=parent.attempt if parent else None,
            call_ordinal=parent.ordinal if parent else None,
            # who created it: a token, the CLI, a parent task (its first transition's actor)
            actor=actor or (f"task:{parent.task_id}" if parent else None),
            detail=prepared.rollout,
        )

    def _same_request(self, existing: ExistingTask, request: TaskRequest, digest: str | None) -> str:
        if existing.request_hash != digest:
            raise IdempotencyConflict(
                f"idempotency key {request.idempotency_key!r} was used for task {existing.id} with a different "
                f"request to {request.namespace}/{request.name}; use a new key for a new request",
                task_id=existing.id,
                idempotency_key=request.idempotency_key,
            )
        return existing.id

    # -- reading ------------------------------------------------------------------------

    def get_task(self, task_id: str) -> TaskResult:
        return self._result(self._snapshot(task_id))

    def task_detail(self, task_id: str) -> TaskDetail:
        """The task, its child tasks and its history."""
        snapshot = self._snapshot(task_id, history=True)
        return TaskDetail(self._result(snapshot), snapshot.children, snapshot.transitions)

    def _snapshot(self, task_id: str, history: bool = False) -> TaskSnapshot:
        snapshot = self.store.snapshot(task_id, history=history)
        if snapshot is None:
            raise TaskNotFound(f"task {task_id} does not exist", task_id=task_id)
        return snapshot

    def _result(self, snapshot: TaskSnapshot) -> TaskResult:
        row = snapshot.task
        entry = self.registry.get(row.namespace, row.name, row.version)
        deps = entry.dependencies if entry else {}
        kids: dict[str | None, list[str]] = {}
        for child in snapshot.children:
            kids.setdefault(child.parent_step, []).append(child.id)
        return TaskResult(
            id=row.id,
            namespace=row.namespace,
            name=row.name,
            version=row.version,
            status=row.status,
            steps=tuple(
                StepResult(
                    name=s.name,
                    status=s.status,
                    attempts=s.attempts,
                    result=json.loads(s.result) if s.result is not None else None,
                    error=s.error,
                    error_type=s.error_type,
                    depends_on=deps.get(s.name, ()),
                    started_at=s.started_at,
                    finished_at=s.finished_at,
                    children=tuple(kids.get(s.name, ())),
                    resolved_by=s.resolved_by,
                )
                for s in snapshot.steps
            ),
            error_summary=row.error_summary,
            parent_id=row.parent_id,
            parent_step=row.parent_step,
            context=json.loads(row.context),
            fingerprint=row.fingerprint,
            idempotency_key=row.idempotency_key,
            created_at=row.created_at,
            finished_at=row.finished_at,
        )

    # -- operator actions -----------------------------------------------------------------

    def cancel(self, task_id: str, actor: str, audit: AuditEntry | None = None) -> TaskResult:
        current = self.get_task(task_id)
        if current.status in TERMINAL:
            raise TaskStateError(
                f"task {task_id} ({current.ref}) is already {current.status}; only pending or running tasks "
                "can be cancelled",
                task_id=task_id,
                status=current.status,
            )
        self.events.announce(self.store.cancel(task_id, actor, audit))
        return self.get_task(task_id)

    def retry(self, task_id: str, actor: str, audit: AuditEntry | None = None) -> list[str]:
        """Re-open a failed task's failed steps; returns their names."""
        current = self.get_task(task_id)
        if current.status != "failed":
            raise TaskStateError(
                f"task {task_id} ({current.ref}) is {current.status}; only failed tasks can be retried",
                task_id=task_id,
                status=current.status,
            )
        entry = self._entry_for(current)
        return self.store.reopen(task_id, {n: tuple(s.depends_on) for n, s in entry.steps.items()}, actor, audit)

    def resolve_step(
        self, task_id: str, step: str, result: Any, actor: str, audit: AuditEntry | None = None
    ) -> TaskResult:
        current = self.get_task(task_id)
        entry = self._entry_for(current)
        if step not in entry.steps:
            raise StepNotFound(
                f"task {task_id} ({current.ref}) has no step {step!r}; its steps: {', '.join(entry.order)}",
                task_id=task_id,
                step=step,
                steps=list(entry.order),
            )
        if current.status == "cancelled":
            raise TaskStateError(f"task {task_id} ({current.ref}) was cancelled; it cannot be resumed")
        try:
            text = encode(result, max_bytes=MAX_RESULT_BYTES)
        except Unstorable as exc:
            error = TooLarge if exc.too_large else ContextInvalid
            raise error(f"the result of step {step!r} cannot be stored: it is {exc}", limit_bytes=MAX_RESULT_BYTES) from None
        resolved = self.store.resolve_step(task_id, step, text, actor, entry.successors[step], audit)
        if resolved.previous in ("completed", "resolved"):
            raise TaskStateError(f"step {step!r} of task {task_id} is already {resolved.previous}")
        if resolved.previous == "in_progress":
            logger.warning("step {} of task {} was resolved by {} while a worker held it", step, task_id, actor)
        self.events.announce(resolved.applied)
        return self.get_task(task_id)

    def _entry_for(self, task: TaskResult) -> WorkflowEntry:
        entry = self.registry.get(task.namespace, task.name, task.version)
        if entry is None or entry.fingerprint != task.fingerprint:
            raise TaskStateError(
                f"task {task.id} runs {task.ref} with fingerprint {task.fingerprint[:12]}, which this host does not "
                "hold (removed or changed without a version bump); install the plugin version that shipped it"
            )
        return entry
