"""What a step handler receives: ``StepContext``, and nothing of the engine behind it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs
from loguru import logger

from teamflow.models import TaskRequest, TaskResult


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


# How ``run_workflow`` reaches the engine: (the calling step's context, the request, the
# call's ordinal within this run of the handler) -> the child's final state.
RunChild = Callable[["StepContext", TaskRequest, int], TaskResult]


class StepContext:
    """The handler's view of its task: context, earlier results, and child workflows."""

    __slots__ = (
        "_log",
        "_ordinal",
        "_run_child",
        "attempt",
        "context",
        "idempotency_key",
        "results",
        "step",
        "task",
    )

    def __init__(
        self,
        task: TaskInfo,
        step: str,
        attempt: int,
        context: Mapping[str, Any],
        results: Mapping[str, Any],
        run_child: RunChild,
        log: Any = None,
    ) -> None:
        self._run_child = run_child
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
        return self._run_child(self, request, ordinal)

    async def run_workflow_async(self, request: TaskRequest) -> TaskResult:
        """``run_workflow`` for ``async def`` handlers."""
        return self.run_workflow(request)
