"""Fakes for testing the customer_success handlers without a teamflow host or other plugins."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import attrs
import pytest
from loguru import logger

from teamflow import RetryableError, StepResult, TaskRequest, TaskResult, Workflow


def completed_refund(request: TaskRequest) -> TaskResult:
    """What a finished payments/process_refund@2.1.0 child looks like to its caller."""
    refund = {
        "refund_id": "re_0123456789abcdef",
        "payment_id": request.context["payment_id"],
        "amount": request.context["amount"],
        "processed_at": "2024-05-01T12:00:00+00:00",
        "gateway": "simgateway",
    }
    return TaskResult(
        id="task_child",
        namespace=request.namespace,
        name=request.name,
        version=request.version or "",
        status="completed",
        steps=(StepResult("process_gateway_refund", "completed", attempts=1, result=refund),),
        parent_id="task_1",
    )


@attrs.define
class FakeContext:
    """The parts of teamflow's step context a handler uses; ``child`` answers run_workflow."""

    context: dict[str, Any]
    step: str
    results: dict[str, Any] = attrs.field(factory=dict)
    attempt: int = 1
    task: Any = attrs.field(
        factory=lambda: SimpleNamespace(
            id="task_1", namespace="customer_success", name="test", version="0.0.0"
        )
    )
    idempotency_key: str = attrs.field()
    log: Any = logger
    child: Callable[[TaskRequest], TaskResult] = completed_refund
    requests: list[TaskRequest] = attrs.field(factory=list)

    @idempotency_key.default
    def _key(self) -> str:
        return f"{self.task.id}:{self.step}"

    def run_workflow(self, request: TaskRequest) -> TaskResult:
        self.requests.append(request)
        return self.child(request)


@pytest.fixture
def make_ctx() -> Callable[..., FakeContext]:
    return FakeContext


def _run(workflow: Workflow, context: dict[str, Any], **fake: Any) -> dict[str, Any]:
    """Run a workflow's steps in dependency order in-process, retrying RetryableError like the host.

    Every result must survive a JSON round trip, as it does in the store.
    """
    task = SimpleNamespace(
        id="task_1", namespace=workflow.namespace, name=workflow.name, version=workflow.version
    )
    results: dict[str, Any] = {}
    pending = list(workflow.steps)
    while pending:
        step = next(s for s in pending if all(d in results for d in s.depends_on))
        pending.remove(step)
        for attempt in range(1, step.retry_limit + 2):
            ctx = FakeContext(context, step.name, dict(results), attempt, task, **fake)
            try:
                result = step.handler(ctx)
                break
            except RetryableError:
                if attempt > step.retry_limit:
                    raise
        results[step.name] = json.loads(json.dumps(result))
    return results


@pytest.fixture
def run_workflow() -> Callable[..., dict[str, Any]]:
    return _run
