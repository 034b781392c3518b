"""The typed views every surface shows: the HTTP API returns them (and its OpenAPI document
is generated from them), the CLI prints them with ``--json`` and as tables, and the admin
pages render them. Each view is declared once, here, and built once, by the function
beside it, from the registry, the load report or what the host read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import attrs

from teamflow.engine.engine import TaskDetail
from teamflow.models import TaskResult
from teamflow.plugins import LoadReport, PluginRecord
from teamflow.refs import parse_ref
from teamflow.registry import CallFinding, ConflictOutcome, Drift, Refusal, Registry, WorkflowEntry
from teamflow.registry.calls import declared_calls
from teamflow.registry.compat import compare
from teamflow.registry.export import RegistryExport
from teamflow.registry.release import Judged, ReleaseFinding, ReleaseOutcome
from teamflow.store.records import (
    ActiveVersion,
    ApprovalRecord,
    AuditRecord,
    ChildRecord,
    DurationHistogram,
    StatusCount,
    TaskListing,
    TokenRecord,
    TransitionRecord,
)
from teamflow.versions import parse_constraint

TaskStatus = Literal["pending", "in_progress", "completed", "failed", "cancelled"]
TASK_STATUSES: tuple[str, ...] = get_args(TaskStatus)


def instant(value: float | datetime) -> datetime:
    """An instant as every surface shows it: timezone-aware UTC, so the JSON of a view holds
    ISO 8601 with its zone (``2026-12-02T06:23:19.123456Z``). The store keeps epoch
    seconds; the views convert once, here."""
    return value if isinstance(value, datetime) else datetime.fromtimestamp(value, tz=UTC)


def maybe_instant(value: float | datetime | None) -> datetime | None:
    return None if value is None else instant(value)


def shown_time(value: datetime | None) -> str:
    """An instant as the CLI and the admin pages print it: the same zone (UTC) everywhere."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "-"


def links(task_id: str) -> dict[str, str]:
    return {"self": f"/tasks/{task_id}", "cancel": f"/tasks/{task_id}/cancel", "admin": f"/admin/tasks/{task_id}"}


# -- tasks -----------------------------------------------------------------------------------


@attrs.frozen
class StepView:
    name: str
    status: str
    attempts: int
    result: Any
    error: str | None
    error_type: str | None
    depends_on: list[str]
    started_at: datetime | None = attrs.field(converter=maybe_instant)
    finished_at: datetime | None = attrs.field(converter=maybe_instant)
    children: list[str]
    resolved_by: str | None


@attrs.frozen
class ChildView:
    """A child task; ``hidden`` (name, version and status left out) when the caller does not
    reach its namespace: a link it may not follow."""

    id: str
    parent_step: str | None
    call_ordinal: int | None
    namespace: str
    name: str | None
    version: str | None
    status: str | None
    hidden: bool = False


@attrs.frozen
class TransitionView:
    step: str | None
    from_status: str | None
    to_status: str
    attempt: int | None
    actor: str | None
    detail: str | None
    at: datetime = attrs.field(converter=instant)


@attrs.frozen
class TaskView:
    """A task: its steps, its child tasks and its history (one shape wherever a task is returned)."""

    id: str
    namespace: str
    name: str
    version: str
    reference: str
    status: str
    steps: list[StepView]
    error_summary: str | None
    parent_id: str | None
    parent_step: str | None
    context: dict[str, Any]
    fingerprint: str
    idempotency_key: str | None
    created_at: datetime | None = attrs.field(converter=maybe_instant)
    finished_at: datetime | None = attrs.field(converter=maybe_instant)
    links: dict[str, str] = attrs.field()
    children: list[ChildView]
    transitions: list[TransitionView]
    # the token (``token:NAME``), the CLI (``cli:user@host``) or the parent task (``task:ID``)
    # that created it; None when no caller was named (the Python API, access control off)
    created_by: str | None = None


def task_view(detail: TaskDetail, sees: Callable[[str], bool] | None = None) -> TaskView:
    """``sees``: whether the viewer reaches a namespace (None: every namespace)."""
    task = detail.task
    created = next((t for t in detail.transitions if t.step is None and t.from_status is None), None)
    return TaskView(
        id=task.id,
        namespace=task.namespace,
        name=task.name,
        version=task.version,
        reference=task.ref,
        status=task.status,
        steps=[
            StepView(
                s.name, s.status, s.attempts, s.result, s.error, s.error_type, list(s.depends_on), s.started_at,
                s.finished_at, list(s.children), s.resolved_by,
            )
            for s in task.steps
        ],
        error_summary=task.error_summary,
        parent_id=task.parent_id,
        parent_step=task.parent_step,
        context=dict(task.context),
        fingerprint=task.fingerprint,
        idempotency_key=task.idempotency_key,
        created_at=task.created_at,
        finished_at=task.finished_at,
        links=links(task.id),
        children=[child_view(c, sees) for c in detail.children],
        transitions=[transition_view(t) for t in detail.transitions],
        created_by=created.actor if created is not None else None,
    )


def child_view(c: ChildRecord, sees: Callable[[str], bool] | None = None) -> ChildView:
    if sees is not None and not sees(c.namespace):
        return ChildView(c.id, c.parent_step, c.call_ordinal, c.namespace, None, None, None, hidden=True)
    return ChildView(c.id, c.parent_step, c.call_ordinal, c.namespace, c.name, c.version, c.status)


def transition_view(t: TransitionRecord) -> TransitionView:
    return TransitionView(t.step, t.from_status, t.to_status, t.attempt, t.actor, t.detail, t.at)


@attrs.frozen
class Deprecation:
    """The version a request ran is deprecated: why, since when (epoch seconds: when it was
    published so), and the day it stops being served if the host configures one."""

    reference: str
    message: str
    since: datetime | None = attrs.field(converter=maybe_instant)
    sunset: str | None = None


@attrs.frozen
class Accepted:
    """A task stored for the workers (or still running when ``wait`` ran out): poll ``links.self``."""

    id: str
    namespace: str
    name: str
    version: str
    status: str
    links: dict[str, str]
    deprecation: Deprecation | None = None  # the version it runs is deprecated


def accepted(task: TaskResult | TaskView) -> Accepted:
    return Accepted(task.id, task.namespace, task.name, task.version, task.status, links(task.id))


@attrs.frozen
class Batch:
    """Tasks stored for the workers, in the order they were asked for."""

    tasks: list[Accepted]


@attrs.frozen
class TaskSummary:
    """One row of a task list."""

    id: str
    namespace: str
    name: str
    version: str
    status: str
    parent_id: str | None
    created_at: datetime = attrs.field(converter=instant)
    finished_at: datetime | None = attrs.field(converter=maybe_instant)
    error_summary: str | None = attrs.field()


def task_summary(row: TaskListing) -> TaskSummary:
    return TaskSummary(
        row.id, row.namespace, row.name, row.version, row.status, row.parent_id, row.created_at, row.finished_at,
        row.error_summary,
    )


@attrs.frozen
class TaskPage:
    """A page of tasks, newest first; pass ``next_cursor`` as ``cursor`` for the next one."""

    tasks: list[TaskSummary]
    next_cursor: str | None


# -- the registry ------------------------------------------------------------------------------


@attrs.frozen
class NamespaceView:
    name: str
    owner_distribution: str
    owner_distribution_version: str
    contributors: list[str]
    owner_team: str
    contact_email: str
    description: str
    requires_approval: bool
    approvers: list[str]
    allowed_callers: list[str]
    workflows: list[str]


def namespaces(registry: Registry) -> list[NamespaceView]:
    return [
        NamespaceView(
            name=name,
            owner_distribution=ns.owner,
            owner_distribution_version=ns.owner_version,
            contributors=list(ns.contributors),
            owner_team=ns.policy.owner_team,
            contact_email=ns.policy.contact_email,
            description=ns.policy.description,
            requires_approval=ns.policy.requires_approval,
            approvers=list(ns.policy.approvers),
            allowed_callers=list(ns.policy.allowed_callers),
            workflows=registry.workflow_names(name),
        )
        for name, ns in sorted(registry.namespaces.items())
    ]


def namespace_view(registry: Registry, name: str) -> NamespaceView:
    """One namespace (NamespaceNotFound naming those that exist, or why it is blocked)."""
    registry.require_namespace(name)
    return next(ns for ns in namespaces(registry) if ns.name == name)


@attrs.frozen
class VersionSummary:
    namespace: str
    name: str
    version: str
    reference: str
    prerelease: bool
    deprecated: str | None
    description: str
    fingerprint: str
    distribution: str
    distribution_version: str
    steps: int


def version_summary(entry: WorkflowEntry) -> VersionSummary:
    return VersionSummary(
        namespace=entry.namespace,
        name=entry.name,
        version=entry.version.text,
        reference=entry.ref,
        prerelease=entry.version.is_prerelease,
        deprecated=entry.deprecated,
        description=entry.workflow.description,
        fingerprint=entry.fingerprint,
        distribution=entry.source.distribution,
        distribution_version=entry.source.version,
        steps=len(entry.steps),
    )


@attrs.frozen
class WorkflowView:
    """One workflow, newest version first; ``latest`` is what a request without a version gets."""

    namespace: str
    name: str
    versions: list[VersionSummary]
    latest: str | None
    drain: list[Drain] | None = None  # per version, newest first, where the store was asked


@attrs.frozen
class ChildCaller:
    """A workflow version whose tasks started child tasks of this version lately."""

    caller: str
    tasks: int


@attrs.frozen
class Drain:
    """How far a version is from being drained: its unfinished tasks (and the oldest), who
    still calls it (declared calls that resolve to it, child tasks started within
    ``window_days``), and the share of requests a rollout sends to it (none yet: 0)."""

    version: str
    unfinished: int
    oldest_unfinished_at: datetime | None = attrs.field(converter=maybe_instant)
    declared_callers: list[Caller] = attrs.field()
    child_callers: list[ChildCaller] = attrs.field()
    window_days: float = attrs.field()
    rollout_percent: float = 0.0


def workflows(registry: Registry, namespace: str | None = None) -> list[WorkflowView]:
    """One view per workflow, newest version first."""
    grouped: dict[tuple[str, str], list[WorkflowEntry]] = {}
    for entry in registry.entries(namespace):
        grouped.setdefault((entry.namespace, entry.name), []).append(entry)
    out = []
    for (ns, name), entries in grouped.items():
        try:
            latest: str | None = registry.resolve(ns, name).version.text
        except Exception:  # every version deprecated or a pre-release: no default
            latest = None
        out.append(WorkflowView(ns, name, [version_summary(e) for e in entries], latest))
    return out


def workflow(registry: Registry, namespace: str, name: str) -> WorkflowView:
    registry.versions(namespace, name)  # raises a NotFound naming what exists
    return next(w for w in workflows(registry, namespace) if w.name == name)


@attrs.frozen
class RegistryView:
    """``GET /workflows``."""

    namespaces: list[NamespaceView]
    workflows: list[WorkflowView]


def registry_view(
    registry: Registry, namespace: str | None = None, visible: Sequence[str] | None = None
) -> RegistryView:
    """Every namespace (or one, or only those ``visible``) with its workflows."""
    if namespace is not None:
        return RegistryView([namespace_view(registry, namespace)], workflows(registry, namespace))
    if visible is not None:
        return RegistryView(
            [n for n in namespaces(registry) if n.name in visible],
            [w for w in workflows(registry) if w.namespace in visible],
        )
    return RegistryView(namespaces(registry), workflows(registry))


@attrs.frozen
class NamespaceWorkflows:
    """``GET /workflows/{namespace}``."""

    namespace: NamespaceView
    workflows: list[WorkflowView]


@attrs.frozen
class StepDefinition:
    name: str
    description: str
    depends_on: list[str]
    handler: str
    retry_limit: int
    retryable: bool
    timeout_s: float | None
    calls: list[str]


@attrs.frozen
class Caller:
    caller: str
    step: str
    call: str


def callers(registry: Registry, entry: WorkflowEntry) -> list[Caller]:
    """Steps of other workflow versions that declare a call matching this version."""
    found = []
    for other in registry.entries():
        for step in other.steps.values():
            for call in declared_calls(step):
                ref = parse_ref(call.ref)
                if (ref.namespace, ref.name) != (entry.namespace, entry.name):
                    continue
                if ref.version is None or parse_constraint(ref.version).matches(entry.version):
                    found.append(Caller(other.ref, step.name, call.ref))
    return found


@attrs.frozen
class VersionDetail:
    """One workflow version: steps, owner, fingerprint, schema, callers."""

    namespace: str
    name: str
    version: str
    reference: str
    prerelease: bool
    deprecated: str | None
    description: str
    fingerprint: str
    distribution: str
    distribution_version: str
    owner_team: str
    contact_email: str
    owner_distribution: str
    requires_approval: bool
    context_schema: dict[str, Any] | None
    order: list[str]
    steps: list[StepDefinition]
    called_by: list[Caller]
    approval: ApprovalState | None = None  # None where the store was not asked (a pure view)
    compatibility: Compatibility | None = None  # with the version before it (same major)


@attrs.frozen
class Compatibility:
    """This version against ``previous``, the highest lower version of the same major loaded
    here: the changes that would break its callers (context schema, under the namespace's
    ``compatibility`` mode; removed steps), empty when it is compatible."""

    previous: str | None
    breaking: list[str]

    @property
    def compatible(self) -> bool:
        return not self.breaking


def compatibility(registry: Registry, entry: WorkflowEntry) -> Compatibility:
    same_major = [
        e for e in registry.entries(entry.namespace)
        if e.name == entry.name and e.version.major == entry.version.major and e.version.key < entry.version.key
    ]
    if not same_major:
        return Compatibility(None, [])
    previous = max(same_major, key=lambda e: e.version.key)
    mode = registry.namespaces[entry.namespace].policy.compatibility
    old = dict(previous.workflow.context_schema) if previous.workflow.context_schema is not None else None
    new = dict(entry.workflow.context_schema) if entry.workflow.context_schema is not None else None
    breaking = [f"{c.path}: {c.message}" for c in compare(old, new, mode) if c.breaking]
    breaking += [f"step {name!r} removed or renamed" for name in previous.order if name not in entry.steps]
    return Compatibility(previous.version.text, breaking)


@attrs.frozen
class ApprovalView:
    """One approval: who approved which fingerprint when, and through what (``cli:user@host``
    or ``token:NAME``). ``verified``: the approver was checked against the namespace's
    approvers by this teamflow (approvals recorded before that check was not)."""

    reference: str
    approver: str
    fingerprint: str
    at: datetime = attrs.field(converter=instant)
    verified: bool = attrs.field()
    via: str | None = attrs.field()
    current: bool = attrs.field()  # of the fingerprint loaded now (a changed definition needs a new approval)


@attrs.frozen
class ApprovalState:
    """``approved``, ``waiting`` (for one of ``approvers``) or ``not_required``."""

    status: Literal["approved", "waiting", "not_required"]
    approvers: list[str]
    approvals: list[ApprovalView]


def approval_state(registry: Registry, entry: WorkflowEntry, records: Sequence[ApprovalRecord]) -> ApprovalState:
    policy = registry.namespaces[entry.namespace].policy
    shown = [
        ApprovalView(entry.ref, r.approver, r.fingerprint, r.at, r.verified, r.via, r.fingerprint == entry.fingerprint)
        for r in records
    ]
    if not policy.requires_approval:
        return ApprovalState("not_required", list(policy.approvers), shown)
    ok = any(a.current and a.approver in policy.approvers for a in shown)
    return ApprovalState("approved" if ok else "waiting", list(policy.approvers), shown)


@attrs.frozen
class WaitingApproval:
    """A loaded version of a namespace that requires approval, not approved yet: it cannot run."""

    reference: str
    fingerprint: str
    approvers: list[str]
    fix: str


def version_detail(
    registry: Registry, entry: WorkflowEntry, approval: ApprovalState | None = None
) -> VersionDetail:
    ns = registry.namespaces[entry.namespace]
    summary = version_summary(entry)
    return VersionDetail(
        **{f.name: getattr(summary, f.name) for f in attrs.fields(VersionSummary) if f.name != "steps"},
        owner_team=ns.policy.owner_team,
        contact_email=ns.policy.contact_email,
        owner_distribution=ns.owner,
        requires_approval=ns.policy.requires_approval,
        context_schema=dict(entry.workflow.context_schema) if entry.workflow.context_schema is not None else None,
        order=list(entry.order),
        steps=[
            StepDefinition(
                name=name,
                description=entry.steps[name].description,
                depends_on=list(entry.steps[name].depends_on),
                handler=entry.handler_refs[name],
                retry_limit=entry.steps[name].retry_limit,
                retryable=entry.steps[name].retryable,
                timeout_s=entry.steps[name].timeout_s,
                calls=[call.ref for call in declared_calls(entry.steps[name])],
            )
            for name in entry.order
        ],
        called_by=callers(registry, entry),
        approval=approval,
    )


# -- the load report, readiness, stats ---------------------------------------------------------


@attrs.frozen
class Unservable:
    """Unfinished tasks of a version this host cannot run, and what to do about them."""

    reference: str
    fingerprint: str
    tasks: int
    reason: str
    message: str
    fix: str


def unservable(active: ActiveVersion, *, loaded: str | None) -> Unservable:
    """``loaded``: the fingerprint this host holds for the version, None when it holds none."""
    ref = f"{active.namespace}/{active.name}@{active.version}"
    reason = (
        "version not loaded (removed, blocked or refused)"
        if loaded is None
        else f"definition drifted: tasks need {active.fingerprint[:12]}, loaded {loaded[:12]}"
    )
    return Unservable(
        reference=ref,
        fingerprint=active.fingerprint,
        tasks=active.tasks,
        reason=reason,
        message=f"{active.tasks} unfinished task(s) of {ref} cannot be served here: {reason}",
        fix="install the plugin version that shipped it, or cancel the tasks",
    )


@attrs.frozen
class LoadReportView:
    """The load report: plugins, refusals, conflicts, drift, tasks no worker here can serve,
    and declared calls that do not hold (``calls``: problems and warnings)."""

    plugins: list[PluginRecord]
    refusals: list[Refusal]
    conflicts: list[ConflictOutcome]
    drift: list[Drift]
    ok: bool
    problems: int
    unservable_tasks: list[Unservable]
    waiting_approval: list[WaitingApproval] = attrs.field(factory=list)
    calls: list[CallFinding] = attrs.field(factory=list)


def load_report(
    report: LoadReport, unservable_tasks: Sequence[Unservable], waiting: Sequence[WaitingApproval] = ()
) -> LoadReportView:
    return LoadReportView(
        plugins=list(report.plugins),
        refusals=list(report.refusals),
        conflicts=list(report.conflicts),
        drift=list(report.drift),
        ok=report.ok,
        problems=report.problems,
        unservable_tasks=list(unservable_tasks),
        waiting_approval=list(waiting),
        calls=list(report.calls),
    )


@attrs.frozen
class ReleaseReport:
    """``teamflow check --against FILE``: what the registry installed now breaks, compared with
    an export of the previous release (``registry.release``).

    ``judged``: the version pairs compared; ``findings``: each breaking change (``allowed``
    when a major version bump makes it legitimate); ``callers``: declared calls (of this
    host's namespaces, or into them from the export or the store) that do not hold;
    ``breaking``: how many make the check fail.
    """

    against: str
    judged: list[Judged]
    findings: list[ReleaseFinding]
    callers: list[CallFinding]
    breaking: int
    ok: bool


def release_report(previous: RegistryExport, outcome: ReleaseOutcome) -> ReleaseReport:
    against = f"registry export of {previous.exported_at} (teamflow {previous.teamflow_version})"
    if previous.namespace is not None:
        against += f", namespace {previous.namespace}"
    return ReleaseReport(
        against, outcome.judged, outcome.findings, outcome.callers, outcome.breaking, outcome.breaking == 0
    )


@attrs.frozen
class Health:
    """``status`` is ``ok`` or ``unavailable``; ``reasons`` says why when unavailable."""

    status: str
    reasons: list[str] = attrs.field(factory=list)
    schema_version: int | None = None


@attrs.frozen
class Stats:
    """What ``/metrics`` exports of the store and the registry."""

    tasks: list[StatusCount]
    steps: list[StatusCount]
    durations: list[DurationHistogram]
    buckets: tuple[float, ...]
    unservable: list[Unservable]
    versions: Mapping[str, int]  # loaded workflow versions by namespace


@attrs.frozen
class SchemaUpgrade:
    """What ``teamflow db upgrade`` did."""

    database: str
    schema_version: int
    applied: list[int]


# -- access ------------------------------------------------------------------------------


@attrs.frozen
class TokenView:
    """A token as listed: everything but its secret (which is never stored)."""

    name: str
    namespaces: list[str]
    scopes: list[str]
    identity: str | None
    created_at: datetime = attrs.field(converter=instant)
    created_by: str = attrs.field()
    expires_at: datetime | None = attrs.field(converter=maybe_instant)
    revoked_at: datetime | None = attrs.field(converter=maybe_instant)
    last_used_at: datetime | None = attrs.field(converter=maybe_instant)
    state: Literal["active", "revoked", "expired"]


def token_view(t: TokenRecord, now: float) -> TokenView:
    state: Literal["active", "revoked", "expired"] = (
        "revoked" if t.revoked_at is not None else "expired" if t.expires_at is not None and t.expires_at <= now
        else "active"
    )
    return TokenView(t.name, list(t.namespaces), list(t.scopes), t.identity, t.created_at, t.created_by,
                     t.expires_at, t.revoked_at, t.last_used_at, state)


@attrs.frozen
class IssuedToken:
    """A token just created or re-issued: the only time its ``secret`` is shown."""

    token: TokenView
    secret: str


@attrs.frozen
class Tokens:
    tokens: list[TokenView]


@attrs.frozen
class AuditView:
    """One audit row: who (``actor``) did what (``action``) to what (``target``), when, from
    where; refused requests are one row per minute, address, token, route and status, with
    their ``count``."""

    id: int
    at: datetime = attrs.field(converter=instant)
    action: str
    actor: str
    namespace: str | None
    target: str | None
    address: str | None
    detail: str | None
    count: int


def audit_view(r: AuditRecord) -> AuditView:
    return AuditView(r.id, r.at, r.action, r.actor, r.namespace, r.target, r.address, r.detail, r.count)


@attrs.frozen
class AuditPage:
    rows: list[AuditView]
    next_cursor: str | None


@attrs.frozen
class RolloutView:
    """``percent`` of a workflow's requests that name no exact version (and that ``version``
    satisfies) go to ``version``, on every host; ``None`` once cleared."""

    namespace: str
    name: str
    version: str | None
    percent: float
    set_by: str | None
