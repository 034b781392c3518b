"""What other hosts published to the store, for namespaces this process did not load.

A worker that holds only its own team's plugin can still resolve a request for another
team's workflow, check that namespace's ``allowed_callers`` and approval policy, and
create the child task for a worker that does hold it.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import jsonschema

from teamflow.errors import NamespaceNotFound, WorkflowNotFound
from teamflow.models import NamespacePolicy
from teamflow.registry import Constraint, select_version
from teamflow.registry.fingerprint import route_key
from teamflow.store import Store
from teamflow.versions import Version, parse_version


def schema_errors(validator: Any, context: Any) -> list[str]:
    errors = sorted(validator.iter_errors(context), key=lambda e: list(e.absolute_path))
    return [f"{e.json_path}: {e.message}" for e in errors]


@attrs.define(slots=True, eq=False)
class PublishedEntry:
    """A workflow version known from the store, not from a plugin loaded here."""

    namespace: str
    name: str
    version: Version
    fingerprint: str
    deprecated: str | None
    step_rows: tuple[tuple[str, int, int, bool], ...]
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


def published_policy(store: Store, namespace: str) -> NamespacePolicy:
    data = store.published_policy(namespace)
    if data is None:
        known = sorted(store.recorded_owners())
        raise NamespaceNotFound(
            f"namespace {namespace!r} is neither loaded here nor published by any host; namespaces: "
            f"{', '.join(known) or 'none'}",
            namespace=namespace,
            namespaces=known,
        )
    return NamespacePolicy(
        name=namespace,
        owner_team=data["owner_team"],
        contact_email=data["contact_email"],
        description=data.get("description", ""),
        requires_approval=data.get("requires_approval", False),
        approvers=tuple(data.get("approvers", ())),
        allowed_callers=tuple(data.get("allowed_callers", ("*",))),
    )


def resolve_published(
    store: Store, namespace: str, name: str, version: str | None, default: Constraint | None
) -> PublishedEntry:
    rows = store.published_versions(namespace, name)
    if not rows:
        raise WorkflowNotFound(f"{namespace}/{name} was not published by any host", namespace=namespace, name=name)
    entries = []
    for row in rows:
        definition = row["definition"]
        entries.append(
            PublishedEntry(
                namespace=namespace,
                name=name,
                version=parse_version(row["version"]),
                fingerprint=row["fingerprint"],
                deprecated=row["deprecated"],
                step_rows=tuple(
                    (s["name"], len(set(s["depends_on"])), 1 + s["retry_limit"], s["retryable"])
                    for s in definition["steps"]
                ),
                context_schema=definition.get("context_schema"),
                distribution=row["distribution"],
            )
        )
    entries.sort(key=lambda e: e.version.key, reverse=True)
    return select_version(namespace, name, entries, version, default)


def definition_json(entry: Any) -> str:
    """The published definition of a loaded workflow version."""
    return json.dumps(
        {
            "steps": [
                {
                    "name": n,
                    "depends_on": list(s.depends_on),
                    "handler": entry.handler_refs[n],
                    "calls": list(s.calls),
                    "retry_limit": s.retry_limit,
                    "retryable": s.retryable,
                    "timeout_s": s.timeout_s,
                }
                for n, s in entry.steps.items()
            ],
            "description": entry.workflow.description,
            "context_schema": entry.workflow.context_schema,
        }
    )
