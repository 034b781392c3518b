"""Lifecycle events: ``teamflow_task_event`` fired after each committed change, in order."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from teamflow.events import TaskEvent
from teamflow.plugins import Plugins
from teamflow.store import Store
from teamflow.store.records import Applied

_STEP_EVENT = {"complete": "step.completed", "retry": "step.retrying", "fail": "step.failed", "park": "step.waiting"}


class Events:
    """Turns what a commit changed into events for the plugins that subscribe.

    ``enabled`` is False when no plugin implements the hook: the engine then skips the
    reads and the ordering that events need.
    """

    def __init__(self, plugins: Plugins, store: Store) -> None:
        self._plugins = plugins
        self._store = store
        self.enabled = plugins.has_event_subscribers()

    def fire(self, kind: str, task_id: str, task: Any, **fields: Any) -> None:
        """One event about ``task`` (a workflow entry or a stored task row: its identity)."""
        version = task.version if isinstance(task.version, str) else task.version.text
        self._plugins.fire(
            TaskEvent(
                kind=kind, task_id=task_id, namespace=task.namespace, name=task.name, version=version,
                at=time.time(), **fields,
            )
        )

    def announce(self, applied: Applied, started: Sequence[str] = ()) -> None:
        """Fire the events of a committed batch, in the order the changes happened."""
        if not self.enabled:
            return
        rows = self._store.task_rows(
            sorted(
                {o.claim.task_id for o in applied.accepted}
                | {c.task_id for c in applied.claimed}
                | {f.task_id for f in applied.finished_tasks}
                | set(started)
            )
        )
        for task_id in started:
            self.fire("task.started", task_id, rows[task_id])
        for out in applied.accepted:
            row = rows[out.claim.task_id]
            self.fire(_STEP_EVENT[out.kind], row.id, row, step=out.claim.name, attempt=out.claim.attempt,
                      error=out.error)
        for c in applied.claimed:
            self.fire("step.started", c.task_id, rows[c.task_id], step=c.name, attempt=c.attempt)
        for finished in applied.finished_tasks:
            self.fire(f"task.{finished.status}", finished.task_id, rows[finished.task_id], status=finished.status)
