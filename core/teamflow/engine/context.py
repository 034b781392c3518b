"""What a step handler receives: ``StepContext``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
from loguru import logger

from teamflow.models import TaskRequest, TaskResult

if TYPE_CHECKING:
    from teamflow.engine.engine import Engine


class Park(BaseException):
    """Raised inside ``run_workflow`` to park the calling step until its child finishes.

    A ``BaseException`` so that a handler's ``except Exception`` cannot swallow it.
    """

    def __init__(self, child_id: str) -> None:
        super().__init__(child_id)
        self.child_id = child_id


@attrs.frozen
class TaskInfo:
    """The task a step belongs to."""

    id: str
    namespace: str
    name: str
    version: str

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}@{self.version}"


def task_fields(task: Any) -> dict[str, str]:
    """The task's part of every log line of its steps (``task``: a TaskInfo or a stored TaskRow)."""
    return {"namespace": task.namespace, "workflow": task.name, "version": task.version, "task_id": task.id}


class StepContext:
    """The handler's view of its task: context, earlier results, and child workflows."""

    __slots__ = (
        "_engine",
        "_log",
        "_ordinal",
        "attempt",
        "context",
        "idempotency_key",
        "results",
        "step",
        "task",
    )

    def __init__(
        self,
        engine: Engine,
        task: TaskInfo,
        step: str,
        attempt: int,
        context: Mapping[str, Any],
        results: Mapping[str, Any],
        log: Any = None,
    ) -> None:
        self._engine = engine
        self._ordinal = 0
        self.task = task
        self.step = step
        self.attempt = attempt
        self.context = context
        self.results = results
        self.idempotency_key = f"{task.id}:{step}"
        self._log = log

    @property
    def log(self) -> Any:
        """A loguru logger bound to the namespace, workflow, version, task, step and attempt."""
        if self._log is None:  # bound on first use: most steps never log
            self._log = logger.bind(**task_fields(self.task), step=self.step, attempt=self.attempt)
        return self._log

    def run_workflow(self, request: TaskRequest) -> TaskResult:
        """Run another workflow to the end as a child task and return its result.

        The child is keyed by this step and the call's ordinal within the handler: when
        the step is re-run, the same call re-attaches to the same child.
        """
        ordinal = self._ordinal
        self._ordinal += 1
        return self._engine.run_child(self, request, ordinal)

    async def run_workflow_async(self, request: TaskRequest) -> TaskResult:
        """``run_workflow`` for ``async def`` handlers."""
        return self.run_workflow(request)
