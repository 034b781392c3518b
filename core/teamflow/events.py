"""The event value passed to ``teamflow_task_event``."""

from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen
class TaskEvent:
    """One committed lifecycle change of a task or one of its steps."""

    kind: str
    task_id: str
    namespace: str
    name: str
    version: str
    step: str | None = None
    attempt: int | None = None
    status: str | None = None
    error: str | None = None
    at: float = 0.0
    data: dict[str, Any] = attrs.field(factory=dict)
