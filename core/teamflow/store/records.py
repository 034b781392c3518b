"""The typed records that cross the store's boundary, in and out.

Rows go out of the store as these records (never as positional tuples or loose dicts),
so a caller reads ``claim.attempt`` or ``lease.owner`` and a column added to a query
cannot shift another one. JSON columns (contexts, results) stay JSON text here: the store
does not decode what it does not need, and the engine decodes once.
"""

from __future__ import annotations

from typing import Any, Protocol

import attrs

DONE_STEP = ("completed", "resolved")
IDEMPOTENCY_KEY = "tf_task_idempotency"  # the unique index that settles idempotency races


# -- creating tasks ---------------------------------------------------------------------


class StepPlan(Protocol):
    """One step of a new task, as the registry plans it (``WorkflowEntry.step_rows``)."""

    @property
    def name(self) -> str: ...
    @property
    def deps(self) -> int: ...  # distinct dependencies: 0 for a root
    @property
    def max_attempts(self) -> int: ...
    @property
    def retryable(self) -> bool: ...


@attrs.frozen(slots=True)
class NewTask:
    """A task to store: its identity, its version's route and fingerprint, and its links."""

    id: str
    namespace: str
    name: str
    version: str
    fingerprint: str
    route: str
    context: str  # JSON text
    idempotency_key: str | None = None
    request_hash: str | None = None
    parent_id: str | None = None
    parent_step: str | None = None
    parent_attempt: int | None = None
    call_ordinal: int | None = None
    actor: str | None = None
    detail: str | None = None  # of its first transition: why this version (a rollout chose it)


@attrs.frozen(slots=True)
class ExistingTask:
    """The task an idempotency key already names, and the digest of its request."""

    id: str
    request_hash: str | None


@attrs.frozen(slots=True)
class ChildLink:
    """The newest child task started at one (parent step, call ordinal)."""

    id: str
    status: str
    request_hash: str | None
    parent_attempt: int | None


# -- running steps ----------------------------------------------------------------------


@attrs.define(slots=True)
class TaskRow:
    """What a worker needs of a task to run its steps."""

    id: str
    namespace: str
    name: str
    version: str
    fingerprint: str
    context: dict[str, Any]
    status: str
    parent_id: str | None
    parent_step: str | None


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


@attrs.frozen(slots=True)
class FinishedTask:
    task_id: str
    status: str  # completed, failed or cancelled


@attrs.define(slots=True)
class Applied:
    """What a batch changed, for the engine to dispatch and announce after commit."""

    claimed: list[Claimed] = attrs.field(factory=list)
    accepted: list[Outcome] = attrs.field(factory=list)
    dropped: list[Outcome] = attrs.field(factory=list)
    finished_tasks: list[FinishedTask] = attrs.field(factory=list)
    woken_parents: list[str] = attrs.field(factory=list)  # parent task ids with a step made ready
    created: dict[str, list[Claimed]] = attrs.field(factory=dict)  # new task id -> its claimed roots
    taken: Claims | None = None  # what the batch's ``Take`` claimed (None: it asked for none)


@attrs.frozen(slots=True)
class Take:
    """A claim that goes out with a batch of outcomes (``Store.apply``): up to ``limit`` more
    ready steps of these routes, leased in the batch's transaction."""

    limit: int
    routes: tuple[str, ...]


@attrs.frozen(slots=True)
class Claims:
    """What one claim took: the leased steps, and the tasks it started."""

    claimed: list[Claimed]
    started: list[str]


@attrs.frozen(slots=True)
class Resolved:
    """A step resolved by hand: its status before (``missing``: no such step), and what changed."""

    previous: str
    applied: Applied


@attrs.frozen(slots=True)
class ExpiredLease:
    """A leased step whose lease ran out (its worker stalled or died)."""

    step_id: int
    task_id: str
    name: str
    attempts: int
    max_attempts: int
    retryable: bool
    owner: str | None


# -- reading tasks ----------------------------------------------------------------------


@attrs.frozen(slots=True)
class TaskRecord:
    id: str
    namespace: str
    name: str
    version: str
    fingerprint: str
    context: str  # JSON text
    status: str
    parent_id: str | None
    parent_step: str | None
    idempotency_key: str | None
    error_summary: str | None
    created_at: float
    finished_at: float | None
    request_hash: str | None


@attrs.frozen(slots=True)
class StepRecord:
    id: int
    name: str
    status: str
    attempts: int
    max_attempts: int
    result: str | None  # JSON text
    error: str | None
    error_type: str | None
    started_at: float | None
    finished_at: float | None
    resolved_by: str | None
    waiting_on: str | None
    deps_left: int
    next_attempt_at: float | None


@attrs.frozen(slots=True)
class ChildRecord:
    id: str
    parent_step: str | None
    call_ordinal: int | None
    namespace: str
    name: str
    version: str
    status: str


@attrs.frozen(slots=True)
class TransitionRecord:
    step: str | None
    from_status: str | None
    to_status: str
    attempt: int | None
    actor: str | None
    detail: str | None
    at: float


@attrs.frozen(slots=True)
class TaskSnapshot:
    """A task, its steps in order, its child tasks and (when asked for) its history, read together."""

    task: TaskRecord
    steps: list[StepRecord]
    children: list[ChildRecord]
    transitions: list[TransitionRecord] = attrs.field(factory=list)


@attrs.frozen(slots=True)
class TaskListing:
    """One row of a task list."""

    id: str
    namespace: str
    name: str
    version: str
    status: str
    parent_id: str | None
    created_at: float
    finished_at: float | None
    error_summary: str | None


@attrs.frozen(slots=True)
class TaskFilter:
    """Which tasks a list holds (None: any) and where the page starts."""

    namespace: str | None = None
    name: str | None = None
    version: str | None = None
    status: str | None = None
    parent_id: str | None = None
    before: tuple[float, str] | None = None  # (created_at, id) of the previous page's last row
    namespaces: tuple[str, ...] | None = None  # only these namespaces (a token's reach)


# -- the catalog ------------------------------------------------------------------------


@attrs.frozen(slots=True)
class NamespaceRecord:
    """A namespace's recorded owner (a distribution) and the policy it published."""

    name: str
    owner: str
    policy: dict[str, Any]


@attrs.frozen(slots=True)
class VersionRecord:
    """A workflow version a host published: enough for any host to resolve and check it."""

    namespace: str
    name: str
    version: str
    fingerprint: str
    distribution: str
    distribution_version: str
    deprecated: str | None
    definition: dict[str, Any]
    published_at: float = 0.0  # when a host last wrote it (read back; publishing sets it)


# -- workers ----------------------------------------------------------------------------


@attrs.frozen(slots=True)
class WorkerRecord:
    """A worker's last heartbeat."""

    id: str
    group: str  # a digest of the routes it serves: the workers that can run the same steps
    routes: tuple[str, ...]
    concurrency: int
    started_at: float
    seen_at: float


# -- stats ------------------------------------------------------------------------------


@attrs.frozen(slots=True)
class ActiveVersion:
    """Unfinished tasks of one version and fingerprint."""

    namespace: str
    name: str
    version: str
    fingerprint: str
    tasks: int


@attrs.frozen(slots=True)
class StatusCount:
    """Tasks (or steps) of one workflow version in one status."""

    namespace: str
    name: str
    version: str
    status: str
    count: int


@attrs.frozen(slots=True)
class DurationHistogram:
    """Completed steps' run times of one workflow version: cumulative counts per bucket."""

    namespace: str
    name: str
    version: str
    buckets: tuple[int, ...]  # steps at or below each bucket bound
    count: int
    total_s: float


# -- access ------------------------------------------------------------------------------


@attrs.frozen(slots=True)
class TokenRecord:
    """A token as stored (never its secret)."""

    name: str
    namespaces: tuple[str, ...]
    scopes: tuple[str, ...]
    identity: str | None
    created_at: float
    created_by: str
    expires_at: float | None
    revoked_at: float | None
    last_used_at: float | None


@attrs.frozen(slots=True)
class AuditEntry:
    """One action to record, in the action's own transaction."""

    action: str
    actor: str
    namespace: str | None = None
    target: str | None = None
    address: str | None = None
    detail: str | None = None


@attrs.frozen(slots=True)
class AuditRecord:
    id: int
    at: float
    action: str
    actor: str
    namespace: str | None
    target: str | None
    address: str | None
    detail: str | None
    count: int


@attrs.frozen(slots=True)
class SessionRecord:
    """A signed-in admin page's session: its token, the secret it signed in with, its CSRF value."""

    token: str
    secret_hash: str
    csrf: str
    created_at: float
    seen_at: float


@attrs.frozen(slots=True)
class ApprovalRecord:
    approver: str
    fingerprint: str
    at: float
    verified: bool
    via: str | None


@attrs.frozen(slots=True)
class RolloutRecord:
    """A share of a workflow's requests (that do not name an exact version) sent to ``version``."""

    namespace: str
    name: str
    version: str
    percent: float
    set_at: float
    set_by: str
