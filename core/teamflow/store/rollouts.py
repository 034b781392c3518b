"""Rollouts: which version of a workflow gets what share of its requests, for every host.

One row per workflow; setting it again replaces it; clearing deletes it. The change and its
audit row share one transaction.
"""

from __future__ import annotations

from teamflow.store.base import StoreBase
from teamflow.store.records import AuditEntry, RolloutRecord

ROLLOUTS = "SELECT namespace, name, version, percent, set_at, set_by FROM tf_rollout ORDER BY namespace, name"
SET_ROLLOUT = (
    "INSERT INTO tf_rollout (namespace, name, version, percent, set_at, set_by) VALUES (?, ?, ?, ?, {now}, ?) "
    "ON CONFLICT (namespace, name) DO UPDATE SET version = excluded.version, percent = excluded.percent, "
    "set_at = excluded.set_at, set_by = excluded.set_by"
)
CLEAR_ROLLOUT = "DELETE FROM tf_rollout WHERE namespace = ? AND name = ?"


class Rollouts(StoreBase):
    def rollouts(self) -> list[RolloutRecord]:
        return [RolloutRecord(*r) for r in self.execute(ROLLOUTS).fetchall()]

    def set_rollout(self, namespace: str, name: str, version: str, percent: float, audit: AuditEntry) -> None:
        with self.tx():
            self.execute(SET_ROLLOUT, (namespace, name, version, percent, audit.actor))
            self.audit_in(audit)

    def clear_rollout(self, namespace: str, name: str, audit: AuditEntry) -> bool:
        """False when there was no rollout of that workflow."""
        with self.tx():
            if not self.execute(CLEAR_ROLLOUT, (namespace, name)).rowcount:
                return False
            self.audit_in(audit)
        return True
