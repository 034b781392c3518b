"""Public value types: what plugin authors construct and what the host returns.

Constructing any of these never raises for a bad name, version or graph: the registry
validates, so one bad workflow version cannot take its siblings down.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

TERMINAL = ("completed", "failed", "cancelled")  # a task in one of these has ended


def _names(value: object) -> tuple[Any, ...]:
    """Accept one name or a sequence of them; never raise (the registry validates)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Iterable):
        return tuple(value)
    return (value,)


def _mapping(value: object) -> Any:
    return dict(value) if isinstance(value, Mapping) else value


@attrs.frozen
class NamespacePolicy:
    """Who owns a namespace and how others may use it."""

    name: str
    owner_team: str
    contact_email: str
    description: str = ""
    requires_approval: bool = False
    approvers: tuple[str, ...] = attrs.field(default=(), converter=_names)
    allowed_callers: tuple[str, ...] = attrs.field(default=("*",), converter=_names)
    # "backward": a new version of a workflow accepts every context the previous version of
    # its major accepted (checked by `teamflow check --against`); "none": not checked
    compatibility: str = "backward"

    def allows_caller(self, namespace: str) -> bool:
        return namespace == self.name or "*" in self.allowed_callers or namespace in self.allowed_callers


def _examples(value: object) -> tuple[Any, ...]:
    """Accept a sequence of contexts; never raise (the registry validates each one)."""
    if isinstance(value, Mapping):
        return (dict(value),)
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return tuple(_mapping(v) for v in value)
    return (value,)


@attrs.frozen
class Call:
    """A workflow a step invokes, with the contexts it sends (``examples``).

    ``ref`` is ``"namespace/name@version-or-constraint"``. At load time and in
    ``teamflow check`` the host resolves it and checks every example against the context
    schema of the version it resolves to, so a provider's release that would refuse what
    this step sends fails the provider's check, not this step in production.
    """

    ref: str
    examples: tuple[Mapping[str, Any], ...] = attrs.field(default=(), converter=_examples)

    def __str__(self) -> str:
        return self.ref


@attrs.frozen
class Step:
    """One node of a workflow's DAG.

    ``handler`` is a module-level callable or an import string ``"pkg.module:function"``;
    ``calls`` the workflows it invokes: a reference string, or a ``Call`` with examples.
    """

    name: str
    handler: Callable[..., Any] | str
    depends_on: tuple[str, ...] = attrs.field(default=(), converter=_names)
    description: str = ""
    retry_limit: int = 3
    retryable: bool = True
    timeout_s: float | None = None
    calls: tuple[str | Call, ...] = attrs.field(default=(), converter=_names)


@attrs.frozen
class Workflow:
    """One version of a workflow: ``namespace/name@version`` and its steps."""

    namespace: str
    name: str
    version: str
    steps: tuple[Step, ...] = attrs.field(converter=_names)
    description: str = ""
    context_schema: Mapping[str, Any] | None = attrs.field(default=None, converter=_mapping)
    deprecated: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}@{self.version}"


@attrs.frozen
class TaskRequest:
    """A request to run a workflow; ``version`` is exact, a constraint, or None."""

    name: str
    namespace: str
    version: str | None = None
    context: Mapping[str, Any] = attrs.field(factory=dict, converter=_mapping)
    idempotency_key: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}" + (f"@{self.version}" if self.version else "")


@attrs.frozen
class StepResult:
    """The state of one step of a task."""

    name: str
    status: str
    attempts: int = 0
    result: Any = None
    error: str | None = None
    error_type: str | None = None
    depends_on: tuple[str, ...] = ()
    started_at: float | None = None
    finished_at: float | None = None
    children: tuple[str, ...] = ()
    resolved_by: str | None = None


@attrs.frozen
class TaskResult:
    """A task's state: what ``execute_sync``, ``get_task`` and the API return."""

    id: str
    namespace: str
    name: str
    version: str
    status: str
    steps: tuple[StepResult, ...] = ()
    error_summary: str | None = None
    parent_id: str | None = None
    parent_step: str | None = None
    context: Mapping[str, Any] = attrs.field(factory=dict)
    fingerprint: str = ""
    idempotency_key: str | None = None
    created_at: float | None = None
    finished_at: float | None = None

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}@{self.version}"

    def step(self, name: str) -> StepResult:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(
            f"task {self.id} ({self.ref}) has no step {name!r}; steps: {[s.name for s in self.steps]}"
        )


@attrs.frozen
class Candidate:
    """One distribution's claim in a conflict."""

    distribution: str
    version: str
    registered: str  # what it registered: a namespace or a workflow reference


@attrs.frozen
class Conflict:
    """Two or more distributions claimed the same namespace or workflow version."""

    kind: str  # "namespace" or "workflow"
    key: str  # "payments" or "payments/process_refund@2.1.0"
    candidates: tuple[Candidate, ...] = attrs.field(converter=_names)


@attrs.frozen
class Resolution:
    """How a conflict was settled: the candidate kept (or None: all refused) and why."""

    kept: Candidate | None
    reason: str
    decided_by: str = ""
