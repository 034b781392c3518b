"""Plain-data views of the registry, the load report and tasks.

One source, three renderings: the CLI (``--json`` and rich tables), the HTTP API and the
admin pages all show these dictionaries.
"""

from __future__ import annotations

from typing import Any

from teamflow.plugins import LoadReport
from teamflow.registry import Registry, WorkflowEntry
from teamflow.serialization import unstructure


def load_report(report: LoadReport) -> dict[str, Any]:
    data: dict[str, Any] = unstructure(report)
    data["ok"] = report.ok
    data["problems"] = report.problems
    for refusal, raw in zip(report.refusals, data["refusals"], strict=True):
        raw["message"] = str(refusal)
    return data


def namespaces(registry: Registry) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "owner_distribution": ns.owner,
            "owner_distribution_version": ns.owner_version,
            "contributors": list(ns.contributors),
            "owner_team": ns.policy.owner_team,
            "contact_email": ns.policy.contact_email,
            "description": ns.policy.description,
            "requires_approval": ns.policy.requires_approval,
            "approvers": list(ns.policy.approvers),
            "allowed_callers": list(ns.policy.allowed_callers),
            "workflows": registry.workflow_names(name),
        }
        for name, ns in sorted(registry.namespaces.items())
    ]


def version_summary(entry: WorkflowEntry) -> dict[str, Any]:
    return {
        "namespace": entry.namespace,
        "name": entry.name,
        "version": entry.version.text,
        "reference": entry.ref,
        "prerelease": entry.version.is_prerelease,
        "deprecated": entry.deprecated,
        "description": entry.workflow.description,
        "fingerprint": entry.fingerprint,
        "distribution": entry.source.distribution,
        "distribution_version": entry.source.version,
        "steps": len(entry.steps),
    }


def workflows(registry: Registry, namespace: str | None = None) -> list[dict[str, Any]]:
    """One row per workflow, newest version first in ``versions``."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in registry.entries(namespace):
        row = rows.setdefault(
            (entry.namespace, entry.name),
            {"namespace": entry.namespace, "name": entry.name, "versions": [], "latest": None},
        )
        row["versions"].append(version_summary(entry))
    for (ns, name), row in rows.items():
        try:
            row["latest"] = registry.resolve(ns, name).version.text
        except Exception:
            row["latest"] = None
    return list(rows.values())


def callers(registry: Registry, entry: WorkflowEntry) -> list[dict[str, str]]:
    """Steps of other workflow versions that declare a call matching this version."""
    from teamflow.refs import parse_ref
    from teamflow.versions import parse_constraint

    found = []
    for other in registry.entries():
        for step in other.steps.values():
            for call in step.calls:
                ref = parse_ref(call)
                if (ref.namespace, ref.name) != (entry.namespace, entry.name):
                    continue
                if ref.version is None or parse_constraint(ref.version).matches(entry.version):
                    found.append({"caller": other.ref, "step": step.name, "call": call})
    return found


def version_detail(registry: Registry, entry: WorkflowEntry) -> dict[str, Any]:
    ns = registry.namespaces[entry.namespace]
    data = version_summary(entry)
    data.update(
        owner_team=ns.policy.owner_team,
        contact_email=ns.policy.contact_email,
        owner_distribution=ns.owner,
        requires_approval=ns.policy.requires_approval,
        context_schema=entry.workflow.context_schema,
        order=list(entry.order),
        steps=[
            {
                "name": name,
                "description": entry.steps[name].description,
                "depends_on": list(entry.steps[name].depends_on),
                "handler": entry.handler_refs[name],
                "retry_limit": entry.steps[name].retry_limit,
                "retryable": entry.steps[name].retryable,
                "timeout_s": entry.steps[name].timeout_s,
                "calls": list(entry.steps[name].calls),
            }
            for name in entry.order
        ],
        called_by=callers(registry, entry),
    )
    return data


def task(result: Any) -> dict[str, Any]:
    data: dict[str, Any] = unstructure(result)
    data["reference"] = result.ref
    return data
