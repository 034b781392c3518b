"""Request and response types of the HTTP API, and how request bodies are decoded.

The response types mirror the dictionaries of ``teamflow.views`` (the CLI's ``--json``
shows the same data); handlers structure a view into its type, so the OpenAPI document
and the bytes on the wire cannot drift apart: a view that gains a key the type does not
declare fails loudly in the tests instead of going undocumented.

Request bodies go through teamflow's converter with two edge rules: strings are strict
(cattrs would otherwise turn ``5`` or ``null`` into ``"5"`` or ``"None"``) and unknown
keys are refused; every problem is reported as a readable path
(``expected str @ $.namespace``).
"""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any, ClassVar, Literal, TypeVar, cast, get_args

import attrs
import cattrs
from litestar.dto import AbstractDTO, DTOConfig, DTOFieldDefinition
from litestar.openapi.spec import OpenAPIType, Reference, Schema
from litestar.typing import FieldDefinition

from teamflow.plugins import PluginRecord
from teamflow.registry import ConflictOutcome, Drift
from teamflow.serialization import converter, readable_errors

T = TypeVar("T")

TaskStatus = Literal["pending", "in_progress", "completed", "failed", "cancelled"]
TASK_STATUSES: tuple[str, ...] = get_args(TaskStatus)


# -- errors ------------------------------------------------------------------------------


@attrs.frozen
class ErrorBody:
    """Every failure: a stable machine-readable ``error`` code, a ``detail`` that says what to
    do, and the facts of the error (``namespaces``, ``versions``, ``errors``, ...)."""

    error: str
    detail: str


class InvalidBody(Exception):
    """A request body that is not the JSON object the endpoint takes."""

    code = "invalid_request"
    status = 400

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors

    def to_dict(self) -> dict[str, Any]:
        detail = f"invalid request body: {'; '.join(self.errors)}"
        return {"error": self.code, "detail": detail, "errors": self.errors}


# -- requests ----------------------------------------------------------------------------


def _doc(text: str) -> dict[str, str]:
    """attrs metadata: the field's description in the OpenAPI document."""
    return {"description": text}


@attrs.frozen
class ExecuteRequest:
    """``POST /workflows/execute``: run a workflow version."""

    namespace: str = attrs.field(metadata=_doc("the team's namespace"))
    name: str = attrs.field(metadata=_doc("the workflow's name within the namespace"))
    version: str | None = attrs.field(
        default=None,
        metadata=_doc("exact ('2.1.0'), a constraint ('^2.0', '~2.1', '2.x'), or null for the default"),
    )
    context: dict[str, Any] = attrs.field(
        factory=dict,
        metadata=_doc("the task's context, a JSON object; it must satisfy the version's context schema"),
    )
    idempotency_key: str | None = attrs.field(
        default=None,
        metadata=_doc(
            "the same key and request return the existing task (keys are scoped to namespace/name)"
        ),
    )
    wait: bool | float = attrs.field(
        default=False,
        metadata={
            **_doc(
                "false or 0 (default): store the task for the workers and answer 202; true: run it now and "
                "answer with the finished task; a number: run it now and wait at most that many seconds"
            ),
            "minimum": 0,
        },
    )


def _strict_str(value: Any, _: type) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return value


def _make_request_converter() -> cattrs.Converter:
    strict = converter.copy()
    strict.register_structure_hook(str, _strict_str)
    return strict


_requests = _make_request_converter()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _tidy(line: str) -> str:
    return line.replace("invalid value for type, expected", "expected")


def decode_body(raw: bytes, cls: type[T]) -> T:
    """Parse ``raw`` as a JSON object and structure it into ``cls``; raise InvalidBody naming each problem."""
    if not raw.strip():
        raise InvalidBody(["the body is empty: send a JSON object with Content-Type: application/json"])
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InvalidBody([f"not valid JSON: {exc}"]) from None
    if not isinstance(data, dict):
        raise InvalidBody([f"expected a JSON object, got {type(data).__name__} @ $"])
    try:
        return _requests.structure(data, cls)
    except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
        raise InvalidBody([_tidy(line) for line in readable_errors(exc)]) from None


class CattrsDTO(AbstractDTO[T]):
    """Litestar's hook into body decoding: teamflow's converter does it, not msgspec.

    Litestar's own decoding of attrs classes (msgspec) silently drops unknown keys, so a
    misspelt ``contxt`` would run the workflow with an empty context; this decoder refuses
    them and reports every problem as a path, while Litestar still documents the body (as
    a component schema that refuses extra keys, as the decoder does).
    """

    config: ClassVar[DTOConfig] = DTOConfig()

    @classmethod
    def generate_field_definitions(cls, model_type: type[Any]) -> Generator[DTOFieldDefinition, None, None]:
        yield from ()  # no DTO backend: decode_bytes does the work

    @classmethod
    def detect_nested_field(cls, field_definition: FieldDefinition) -> bool:
        return False

    @classmethod
    def create_for_field_definition(
        cls, field_definition: FieldDefinition, handler_id: str, backend_cls: Any = None
    ) -> None:
        return None

    def decode_bytes(self, value: bytes) -> T:
        return decode_body(value, self.model_type)

    def decode_builtins(self, value: dict[str, Any]) -> T:
        return decode_body(json.dumps(value).encode(), self.model_type)

    @classmethod
    def create_openapi_schema(
        cls, field_definition: FieldDefinition, handler_id: str, schema_creator: Any
    ) -> Reference | Schema:
        model = FieldDefinition.from_annotation(cls.model_type)
        result: Reference | Schema = schema_creator.for_field_definition(model)
        schema: Schema = schema_creator.schema_registry.get_schema_for_field_definition(model)
        schema.additional_properties = False
        for field in attrs.fields(cast("type[attrs.AttrsInstance]", cls.model_type)):
            prop = (schema.properties or {}).get(field.name)
            if not isinstance(prop, Schema):
                continue
            prop.description = field.metadata.get("description")
            if "minimum" in field.metadata:  # on the number (the bool branch of a union takes no bound)
                for branch in [prop, *(prop.one_of or ())]:
                    if isinstance(branch, Schema) and branch.type in (
                        OpenAPIType.NUMBER,
                        OpenAPIType.INTEGER,
                    ):
                        branch.minimum = field.metadata["minimum"]
        return result


# -- responses: tasks ----------------------------------------------------------------------


@attrs.frozen
class Accepted:
    """A task stored for the workers (or still running when ``wait`` ran out): poll ``links.self``."""

    id: str
    namespace: str
    name: str
    version: str
    status: str
    links: dict[str, str]


@attrs.frozen
class StepView:
    name: str
    status: str
    attempts: int
    result: Any
    error: str | None
    error_type: str | None
    depends_on: list[str]
    started_at: float | None
    finished_at: float | None
    children: list[str]
    resolved_by: str | None


@attrs.frozen
class TaskView:
    """A task and its steps (``views.task``)."""

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
    created_at: float | None
    finished_at: float | None
    links: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen
class ChildView:
    id: str
    parent_step: str | None
    call_ordinal: int | None
    namespace: str
    name: str
    version: str
    status: str


@attrs.frozen
class TransitionView:
    step: str | None
    from_status: str | None
    to_status: str
    attempt: int | None
    actor: str | None
    detail: str | None
    at: float


@attrs.frozen
class TaskDetail:
    """``GET /tasks/{id}``: the task, its child tasks and its audit trail."""

    task: TaskView
    children: list[ChildView]
    transitions: list[TransitionView]


@attrs.frozen
class TaskRow:
    id: str
    namespace: str
    name: str
    version: str
    status: str
    parent_id: str | None
    created_at: float
    finished_at: float | None
    error_summary: str | None


@attrs.frozen
class TaskPage:
    """A page of tasks, newest first; pass ``next_cursor`` as ``cursor`` for the next one."""

    tasks: list[TaskRow]
    next_cursor: str | None


# -- responses: the registry ---------------------------------------------------------------


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


@attrs.frozen
class WorkflowView:
    """One workflow, newest version first; ``latest`` is what a request without a version gets."""

    namespace: str
    name: str
    versions: list[VersionSummary]
    latest: str | None


@attrs.frozen
class RegistryView:
    """``GET /workflows``."""

    namespaces: list[NamespaceView]
    workflows: list[WorkflowView]


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


@attrs.frozen
class VersionDetail:
    """``GET /workflows/{namespace}/{name}/{version}`` (``views.version_detail``)."""

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


# -- responses: plugins and health ---------------------------------------------------------


@attrs.frozen
class RefusalView:
    kind: str
    distribution: str
    distribution_version: str
    subject: str
    reason: str
    fix: str
    step: str | None
    message: str


@attrs.frozen
class Unservable:
    reference: str
    fingerprint: str
    tasks: int
    reason: str


@attrs.frozen
class PluginsReport:
    """``GET /plugins``: the load report (``views.load_report``) and tasks no worker here can serve."""

    plugins: list[PluginRecord]
    refusals: list[RefusalView]
    conflicts: list[ConflictOutcome]
    drift: list[Drift]
    ok: bool
    problems: int
    unservable_tasks: list[Unservable]


@attrs.frozen
class Health:
    """``status`` is ``ok`` or ``unavailable``; ``reasons`` says why when unavailable."""

    status: str
    reasons: list[str] = attrs.field(factory=list)
    schema_version: int | None = None


def respond(view: Any, cls: type[T]) -> T:
    """Structure a view dictionary into its response type (extra keys are an error: see the module doc)."""
    return converter.structure(view, cls)
