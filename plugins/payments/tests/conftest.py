"""Fakes for testing the payments handlers without a teamflow host."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import attrs
import pytest
from loguru import logger

from teamflow import RetryableError, Workflow


@attrs.define
class FakeContext:
    """The parts of teamflow's step context a handler uses."""

    context: dict[str, Any]
    step: str
    results: dict[str, Any] = attrs.field(factory=dict)
    attempt: int = 1
    task: Any = attrs.field(
        factory=lambda: SimpleNamespace(id="task_1", namespace="payments", name="test", version="0.0.0")
    )
    idempotency_key: str = attrs.field()
    log: Any = logger

    @idempotency_key.default
    def _key(self) -> str:
        return f"{self.task.id}:{self.step}"


@pytest.fixture
def make_ctx() -> Callable[..., FakeContext]:
    return FakeContext


def _run(workflow: Workflow, context: dict[str, Any], task_id: str = "task_1") -> dict[str, Any]:
    """Run a workflow's steps in dependency order in-process, retrying RetryableError like the host.

    Every result must survive a JSON round trip, as it does in the store.
    """
    task = SimpleNamespace(
        id=task_id, namespace=workflow.namespace, name=workflow.name, version=workflow.version
    )
    results: dict[str, Any] = {}
    pending = list(workflow.steps)
    while pending:
        step = next(s for s in pending if all(d in results for d in s.depends_on))
        pending.remove(step)
        for attempt in range(1, step.retry_limit + 2):
            ctx = FakeContext(
                context=context, step=step.name, results=dict(results), attempt=attempt, task=task
            )
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
