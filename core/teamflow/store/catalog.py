"""The catalog: who owns each namespace, what every host published, and approvals.

The registry takes recorded owners and first fingerprints as inputs (an owner keeps its
namespace; a released version that changes without a bump is drift), and a host without a
namespace's plugin resolves that namespace's requests through what others published.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from teamflow.store.base import StoreBase
from teamflow.store.records import ApprovalRecord, AuditEntry, NamespaceRecord, VersionRecord

OWNERS = "SELECT name, distribution FROM tf_namespace"
NAMESPACE = "SELECT name, distribution, policy FROM tf_namespace WHERE name = ?"
NAMESPACES = "SELECT name, distribution, policy FROM tf_namespace"
INSERT_NAMESPACE = (
    "INSERT INTO tf_namespace (name, distribution, policy, recorded_at, updated_at) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (name) DO NOTHING"
)
UPDATE_NAMESPACE = "UPDATE tf_namespace SET distribution = ?, policy = ?, updated_at = ? WHERE name = ?"

FIRST_FINGERPRINTS = "SELECT namespace, name, version, first_fingerprint FROM tf_workflow_version"
PUBLISHED_KEYS = "SELECT namespace, name, version, fingerprint, distribution_version FROM tf_workflow_version"
INSERT_VERSION = (
    "INSERT INTO tf_workflow_version (namespace, name, version, fingerprint, first_fingerprint, distribution, "
    "distribution_version, deprecated, definition, published_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (namespace, name, version) DO NOTHING"
)
UPDATE_VERSION = (
    "UPDATE tf_workflow_version SET fingerprint = ?, distribution = ?, distribution_version = ?, deprecated = ?, "
    "definition = ?, published_at = ? WHERE namespace = ? AND name = ? AND version = ?"
)
VERSIONS_OF = (
    "SELECT namespace, name, version, fingerprint, distribution, distribution_version, deprecated, definition, "
    "published_at FROM tf_workflow_version WHERE namespace = ? AND name = ?"
)
ALL_VERSIONS = (
    "SELECT namespace, name, version, fingerprint, distribution, distribution_version, deprecated, definition, "
    "published_at FROM tf_workflow_version ORDER BY namespace, name, version"
)

INSERT_APPROVAL = (
    "INSERT INTO tf_approval (namespace, name, version, fingerprint, approver, at, verified, via) "
    "VALUES (?, ?, ?, ?, ?, {now}, ?, ?)"
)
APPROVALS_OF = (
    "SELECT approver, fingerprint, at, verified, via FROM tf_approval WHERE namespace = ? AND name = ? AND version = ? "
    "ORDER BY at, id"
)
APPROVERS = (
    "SELECT approver FROM tf_approval WHERE namespace = ? AND name = ? AND version = ? AND fingerprint = ?"
)


class Catalog(StoreBase):
    def recorded_owners(self) -> dict[str, str]:
        """Namespace -> the distribution recorded as its owner."""
        return dict(self.execute(OWNERS).fetchall())

    def recorded_fingerprints(self) -> dict[tuple[str, str, str], str]:
        """(namespace, name, version) -> the fingerprint it was first published with."""
        return {(r[0], r[1], r[2]): r[3] for r in self.execute(FIRST_FINGERPRINTS).fetchall()}

    def publish(self, namespaces: Iterable[NamespaceRecord], versions: Iterable[VersionRecord]) -> None:
        """Record namespace owners (the first owner stays unless pinned) and what this host loaded."""
        now = time.time()
        with self.tx():
            existing = {r[0]: (r[1], r[2]) for r in self.execute(NAMESPACES).fetchall()}
            for ns in namespaces:
                policy = json.dumps(ns.policy)
                recorded = existing.get(ns.name)
                if recorded is None:
                    self.execute(INSERT_NAMESPACE, (ns.name, ns.owner, policy, now, now))
                elif recorded != (ns.owner, policy):
                    self.execute(UPDATE_NAMESPACE, (ns.owner, policy, now, ns.name))
            known = {(r[0], r[1], r[2]): (r[3], r[4]) for r in self.execute(PUBLISHED_KEYS).fetchall()}
            for v in versions:
                published = known.get((v.namespace, v.name, v.version))
                definition = json.dumps(v.definition)
                if published is None:
                    self.execute(
                        INSERT_VERSION,
                        (v.namespace, v.name, v.version, v.fingerprint, v.fingerprint, v.distribution,
                         v.distribution_version, v.deprecated, definition, now),
                    )
                elif published != (v.fingerprint, v.distribution_version):
                    self.execute(
                        UPDATE_VERSION,
                        (v.fingerprint, v.distribution, v.distribution_version, v.deprecated, definition, now,
                         v.namespace, v.name, v.version),
                    )

    def published_namespace(self, namespace: str) -> NamespaceRecord | None:
        row = self.execute(NAMESPACE, (namespace,)).fetchone()
        return None if row is None else NamespaceRecord(row[0], row[1], json.loads(row[2]))

    def published_versions(self, namespace: str, name: str) -> list[VersionRecord]:
        return [
            VersionRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7]), r[8])
            for r in self.execute(VERSIONS_OF, (namespace, name)).fetchall()
        ]

    def published_catalog(self) -> tuple[list[NamespaceRecord], list[VersionRecord]]:
        """Every namespace and version any host published (what caller contracts are checked against)."""
        namespaces = [NamespaceRecord(r[0], r[1], json.loads(r[2])) for r in self.execute(NAMESPACES).fetchall()]
        versions = [
            VersionRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7]), r[8])
            for r in self.execute(ALL_VERSIONS).fetchall()
        ]
        return namespaces, versions

    # -- approvals ----------------------------------------------------------------------

    def approve(
        self,
        namespace: str,
        name: str,
        version: str,
        fingerprint: str,
        approver: str,
        *,
        via: str | None = None,
        audit: AuditEntry | None = None,
    ) -> None:
        """Record a verified approval of one fingerprint, and its audit row, in one transaction."""
        with self.tx():
            self.execute(INSERT_APPROVAL, (namespace, name, version, fingerprint, approver, 1, via))
            if audit is not None:
                self.audit_in(audit)

    def approval_records(self, namespace: str, name: str, version: str) -> list[ApprovalRecord]:
        """Every approval of this version (each fingerprint's), oldest first."""
        return [
            ApprovalRecord(r[0], r[1], r[2], bool(r[3]), r[4])
            for r in self.execute(APPROVALS_OF, (namespace, name, version)).fetchall()
        ]

    def approvals(self, namespace: str, name: str, version: str, fingerprint: str) -> list[str]:
        """Who approved this version's fingerprint."""
        return [r[0] for r in self.execute(APPROVERS, (namespace, name, version, fingerprint)).fetchall()]
