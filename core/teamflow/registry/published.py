"""What a host publishes of the versions it loaded, and reading that back on another host.

A worker that holds only its own team's plugin can still resolve a request for another
team's workflow, check that namespace's ``allowed_callers`` and approval policy, and
create the child task for a worker that does hold it. Writing and reading the published
definition are kept side by side here, so its format has one owner.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import jsonschema

from teamflow.models import NamespacePolicy
from teamflow.registry.calls import CallSite, Layer, Provided, call_dicts, declared_calls, read_calls
from teamflow.registry.fingerprint import route_key
from teamflow.registry.index import select_version
from teamflow.registry.records import PUBLISHED, CatalogRow, PublishedCatalog, StepRow, WorkflowEntry
from teamflow.versions import Constraint, Version, parse_version


def schema_errors(validator: Any, context: Any) -> list[str]:
    errors = sorted(validator.iter_errors(context), key=lambda e: list(e.absolute_path))
    return [f"{e.json_path}: {e.message}" for e in errors]


def definition(entry: WorkflowEntry) -> dict[str, Any]:
    """The published definition of a loaded workflow version."""
    return {
        "steps": [
            {
                "name": n,
                "depends_on": list(s.depends_on),
                "handler": entry.handler_refs[n],
                "calls": call_dicts(declared_calls(s)),
                "retry_limit": s.retry_limit,
                "retryable": s.retryable,
                "timeout_s": s.timeout_s,
            }
            for n, s in entry.steps.items()
        ],
        "description": entry.workflow.description,
        "context_schema": entry.workflow.context_schema,
    }


def policy_dict(policy: NamespacePolicy) -> dict[str, Any]:
    """A namespace policy as published."""
    return {
        "owner_team": policy.owner_team,
        "contact_email": policy.contact_email,
        "description": policy.description,
        "requires_approval": policy.requires_approval,
        "approvers": list(policy.approvers),
        "allowed_callers": list(policy.allowed_callers),
        "compatibility": policy.compatibility,
    }


def published_policy(namespace: str, data: Mapping[str, Any]) -> NamespacePolicy:
    """The policy another host published for ``namespace``."""
    return NamespacePolicy(
        name=namespace,
        owner_team=data["owner_team"],
        contact_email=data["contact_email"],
        description=data.get("description", ""),
        requires_approval=data.get("requires_approval", False),
        approvers=tuple(data.get("approvers", ())),
        allowed_callers=tuple(data.get("allowed_callers", ("*",))),
        compatibility=data.get("compatibility", "backward"),
    )


@attrs.define(slots=True, eq=False)
class PublishedEntry:
    """A workflow version known from what another host published, not from a plugin loaded here."""

    namespace: str
    name: str
    version: Version
    fingerprint: str
    deprecated: str | None
    step_rows: tuple[StepRow, ...]
    context_schema: dict[str, Any] | None
    distribution: str

    @property
    def route(self) -> str:
        return route_key(self.namespace, self.name, self.version.text, self.fingerprint)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}@{self.version.text}"

    def context_errors(self, context: Any) -> list[str]:
        if self.context_schema is None:
            return [] if isinstance(context, dict) else ["$: expected a JSON object"]
        schema = self.context_schema
        return schema_errors(jsonschema.validators.validator_for(schema)(schema), context)


def resolve_published(
    namespace: str, name: str, rows: Iterable[CatalogRow], version: str | None, default: Constraint | None
) -> PublishedEntry | None:
    """The version a request resolves to among published ``rows`` (None when there are none)."""
    entries = [
        PublishedEntry(
            namespace=namespace,
            name=name,
            version=parse_version(row.version),
            fingerprint=row.fingerprint,
            deprecated=row.deprecated,
            step_rows=tuple(
                StepRow(s["name"], len(set(s["depends_on"])), 1 + s["retry_limit"], s["retryable"])
                for s in row.definition["steps"]
            ),
            context_schema=row.definition.get("context_schema"),
            distribution=row.distribution,
        )
        for row in rows
    ]
    if not entries:
        return None
    entries.sort(key=lambda e: e.version.key, reverse=True)
    return select_version(namespace, name, entries, version, default)


# -- the whole catalog: caller contracts across hosts -------------------------------------


def current_rows(rows: Iterable[CatalogRow]) -> list[CatalogRow]:
    """The published versions each distribution still ships: those of its most recently
    published release. A host rewrites every version it loads when its distribution's
    version changes, so a version a later release dropped keeps an older distribution
    version. The store never forgets it, and a caller no host runs any more must not fail
    a provider's check."""
    rows = list(rows)
    latest: dict[str, tuple[float, str]] = {}
    for row in rows:
        seen = latest.get(row.distribution)
        if seen is None or row.published_at > seen[0]:
            latest[row.distribution] = (row.published_at, row.distribution_version)
    return [row for row in rows if row.distribution_version == latest[row.distribution][1]]


def published_layer(catalog: PublishedCatalog) -> Layer:
    """What other hosts published, as the targets of calls."""
    return Layer(
        PUBLISHED,
        {ns: str(policy.get("contact_email", "")) for ns, policy in catalog.namespaces.items()},
        [
            Provided(
                row.namespace, row.name, parse_version(row.version), row.deprecated,
                row.definition.get("context_schema"), row.distribution, row.distribution_version,
            )
            for row in catalog.versions
        ],
    )


def published_sites(catalog: PublishedCatalog) -> list[CallSite]:
    """The calls that published versions declare (of each distribution's current release)."""
    return [
        CallSite(
            f"{row.namespace}/{row.name}@{row.version}", row.namespace, row.distribution, row.distribution_version,
            step["name"], call, PUBLISHED,
        )
        for row in sorted(current_rows(catalog.versions), key=lambda r: (r.namespace, r.name, r.version))
        for step in row.definition.get("steps", ())
        for call in read_calls(step.get("calls", ()))
    ]
