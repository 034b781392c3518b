"""What the HTTP API takes: request bodies, how they are decoded, and the error shape.

What it answers are the views of ``teamflow.views``, declared once for every surface.

Request bodies go through teamflow's converter with two edge rules: strings are strict
(cattrs would otherwise turn ``5`` or ``null`` into ``"5"`` or ``"None"``) and unknown
keys are refused; every problem is reported as a readable path
(``expected str @ $.namespace``).
"""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any, ClassVar, TypeVar, cast

import attrs
import cattrs
from litestar.dto import AbstractDTO, DTOConfig, DTOFieldDefinition
from litestar.openapi.spec import OpenAPIType, Reference, Schema
from litestar.typing import FieldDefinition

from teamflow.serialization import converter, readable_errors

T = TypeVar("T")

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
class TaskSpec:
    """One task to create: the workflow version, its context, its idempotency key."""

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


@attrs.frozen
class ExecuteRequest(TaskSpec):
    """``POST /workflows/execute``: run a workflow version."""

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


@attrs.frozen
class ExecuteBatch:
    """``POST /workflows/execute/batch``: tasks for the workers, stored in one transaction."""

    requests: list[TaskSpec] = attrs.field(
        metadata=_doc("the tasks, each as in POST /workflows/execute without wait; one bad item refuses all")
    )


@attrs.frozen
class ResolveRequest:
    """``POST /tasks/{id}/steps/{step}/resolve``: mark a step done by hand, with its result."""

    result: Any = attrs.field(default=None, metadata=_doc("the step's result, as its dependants will read it"))


@attrs.frozen
class RolloutRequest:
    """``PUT /workflows/{namespace}/{name}/{version}/rollout``."""

    percent: float = attrs.field(metadata={**_doc("the share of requests, more than 0 and at most 100"), "minimum": 0})


@attrs.frozen
class TokenRequest:
    """``PUT /tokens/{name}``: a new token (an admin token only). The answer holds its secret, once."""

    namespaces: list[str] = attrs.field(metadata=_doc("the namespaces it reaches; ['*'] for every namespace"))
    scopes: list[str] = attrs.field(metadata=_doc("read, execute, operate, approve, metrics, admin"))
    identity: str | None = attrs.field(default=None, metadata=_doc("an approver's e-mail (scope approve)"))
    expires: str | None = attrs.field(default=None, metadata=_doc("a lifetime such as 90d or 12h; default: the host's"))


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
        text = raw.decode("utf-8")  # json.loads would also take UTF-16 and UTF-32
    except UnicodeDecodeError as exc:
        raise InvalidBody([f"the body is not UTF-8: {exc.reason} at byte {exc.start}"]) from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
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
