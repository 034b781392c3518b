"""teamflow: a workflow host for organisations where many teams ship workflows."""

from typing import TYPE_CHECKING, Any

from teamflow.engine.context import StepContext
from teamflow.errors import PermanentError, RetryableError
from teamflow.events import TaskEvent
from teamflow.hookspecs import hookimpl
from teamflow.models import (
    Call,
    Candidate,
    Conflict,
    NamespacePolicy,
    Resolution,
    Step,
    StepResult,
    TaskRequest,
    TaskResult,
    Workflow,
)

__all__ = [
    "Call",
    "Candidate",
    "Conflict",
    "Host",
    "NamespacePolicy",
    "PermanentError",
    "Resolution",
    "RetryableError",
    "Step",
    "StepContext",
    "StepResult",
    "TaskEvent",
    "TaskRequest",
    "TaskResult",
    "Workflow",
    "hookimpl",
]

if TYPE_CHECKING:
    from teamflow.host import Host


def __getattr__(name: str) -> Any:
    # The host (store, engine, registry) is imported when first asked for: a plugin module
    # that imports only the public types, and pytest loading teamflow.testing, stay quick.
    if name == "Host":
        from teamflow.host import Host

        return Host
    raise AttributeError(f"module 'teamflow' has no attribute {name!r}")
