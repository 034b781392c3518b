"""Counts and durations, for ``/metrics``, readiness and the admin pages."""

from __future__ import annotations

import functools
from collections.abc import Sequence

from teamflow.store.base import StoreBase
from teamflow.store.records import ActiveVersion, DurationHistogram, StatusCount

ACTIVE_VERSIONS = (
    "SELECT namespace, name, version, fingerprint, COUNT(*) FROM tf_task "
    "WHERE status IN ('pending', 'in_progress') GROUP BY namespace, name, version, fingerprint"
)
# A workflow's versions being drained: unfinished tasks and the oldest of them, per version;
# and which versions of other workflows started child tasks of it lately.
UNFINISHED = (
    "SELECT version, COUNT(*), MIN(created_at) FROM tf_task WHERE namespace = ? AND name = ? "
    "AND status IN ('pending', 'in_progress') GROUP BY version"
)
CHILD_CALLERS = (
    "SELECT c.version, p.namespace, p.name, p.version, COUNT(*) FROM tf_task c JOIN tf_task p ON p.id = c.parent_id "
    "WHERE c.namespace = ? AND c.name = ? AND c.parent_id IS NOT NULL AND c.created_at > {now} - ? "
    "GROUP BY c.version, p.namespace, p.name, p.version ORDER BY COUNT(*) DESC"
)
TASK_COUNTS = "SELECT namespace, name, version, status, COUNT(*) FROM tf_task GROUP BY namespace, name, version, status"
STEP_COUNTS = (
    "SELECT t.namespace, t.name, t.version, s.status, COUNT(*) FROM tf_step s "
    "JOIN tf_task t ON t.id = s.task_id GROUP BY t.namespace, t.name, t.version, s.status"
)


@functools.lru_cache(maxsize=8)
def step_durations(buckets: tuple[float, ...]) -> str:
    cases = ", ".join(
        f"SUM(CASE WHEN s.finished_at - s.started_at <= {float(b)!r} THEN 1 ELSE 0 END)" for b in buckets
    )
    return (
        f"SELECT t.namespace, t.name, t.version, {cases}, COUNT(*), SUM(s.finished_at - s.started_at) "
        "FROM tf_step s JOIN tf_task t ON t.id = s.task_id WHERE s.status = 'completed' "
        "AND s.started_at IS NOT NULL GROUP BY t.namespace, t.name, t.version"
    )


class Stats(StoreBase):
    def unfinished(self, namespace: str, name: str) -> dict[str, tuple[int, float]]:
        """version -> (unfinished tasks, when the oldest of them was created)."""
        return {r[0]: (int(r[1]), float(r[2])) for r in self.execute(UNFINISHED, (namespace, name)).fetchall()}

    def child_callers(self, namespace: str, name: str, within_s: float) -> list[tuple[str, str, int]]:
        """(version called, caller reference, child tasks) started within ``within_s`` seconds."""
        return [
            (r[0], f"{r[1]}/{r[2]}@{r[3]}", int(r[4]))
            for r in self.execute(CHILD_CALLERS, (namespace, name, within_s)).fetchall()
        ]

    def active_versions(self) -> list[ActiveVersion]:
        """Unfinished tasks by version and fingerprint."""
        return [ActiveVersion(*r) for r in self.execute(ACTIVE_VERSIONS).fetchall()]

    def task_counts(self) -> list[StatusCount]:
        return [StatusCount(*r) for r in self.execute(TASK_COUNTS).fetchall()]

    def step_counts(self) -> list[StatusCount]:
        return [StatusCount(*r) for r in self.execute(STEP_COUNTS).fetchall()]

    def step_durations(self, buckets: Sequence[float]) -> list[DurationHistogram]:
        """Per workflow version: cumulative counts of completed steps' run times at or below
        each bucket, their count and their sum (a Prometheus histogram)."""
        n = len(buckets)
        return [
            DurationHistogram(r[0], r[1], r[2], tuple(int(c or 0) for c in r[3 : 3 + n]), int(r[-2]), float(r[-1] or 0))
            for r in self.execute(step_durations(tuple(buckets))).fetchall()
        ]
