"""teamflow: a workflow host for organisations where many teams ship workflows."""

from teamflow.engine.context import StepContext
from teamflow.errors import PermanentError, RetryableError
from teamflow.events import TaskEvent
from teamflow.hookspecs import hookimpl
from teamflow.host import Host
from teamflow.models import (
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
