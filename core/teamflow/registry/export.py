"""The registry export: a loaded registry as a documented, versioned JSON document, and its reader.

``teamflow registry export`` (and ``GET /registry/export``) write it; ``teamflow check
--against FILE`` reads it back and compares the registry installed now with it (see
``registry.release``). ``EXPORT_SCHEMA`` is the format, as a JSON Schema; version 1 holds:

- ``format`` (``"teamflow-registry-export"``) and ``version`` (``1``); ``teamflow_version``
  and ``exported_at`` (UTC, ISO 8601) say what wrote it and when; ``namespace`` the one
  namespace exported, or null for the whole registry.
- ``namespaces``: each with its owner distribution (and that distribution's version), its
  contributors and its policy (``owner_team``, ``contact_email``, ``description``,
  ``requires_approval``, ``approvers``, ``allowed_callers``, ``compatibility``).
- ``versions``: each workflow version with its fingerprint, the distribution that shipped
  it, deprecation, description, context schema and steps (name, dependencies, handler,
  retries, timeout, and the calls it declares, each with its examples).
- ``distributions``: each distribution with its version, the namespaces it owns and the
  workflow versions it shipped.

A reader refuses a document of another format or version by name, and any other shape
with the JSON path of each problem: a release check must not compare against a file it
half understood.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import jsonschema

from teamflow.errors import ExportInvalid, InvalidReference, InvalidVersion
from teamflow.models import Call
from teamflow.refs import parse_ref
from teamflow.registry.calls import CallSite, Layer, Provided, declared_calls, read_calls
from teamflow.registry.compat import MODES
from teamflow.registry.index import Registry
from teamflow.registry.records import CONFIG_OWNER, EXPORT, NamespaceEntry, WorkflowEntry
from teamflow.serialization import structure, unstructure
from teamflow.versions import Version, parse_constraint, parse_version

FORMAT = "teamflow-registry-export"
FORMAT_VERSION = 1


@attrs.frozen
class ExportedCall:
    ref: str
    examples: list[dict[str, Any]] = attrs.field(factory=list)


@attrs.frozen
class ExportedStep:
    name: str
    depends_on: list[str]
    handler: str
    retry_limit: int
    retryable: bool
    timeout_s: float | None
    calls: list[ExportedCall]


@attrs.frozen
class ExportedVersion:
    """One workflow version as exported."""

    namespace: str
    name: str
    version: str
    fingerprint: str
    distribution: str
    distribution_version: str
    deprecated: str | None
    description: str
    context_schema: dict[str, Any] | None
    steps: list[ExportedStep]

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}@{self.version}"

    @property
    def semver(self) -> Version:
        return parse_version(self.version)


@attrs.frozen
class ExportedPolicy:
    owner_team: str
    contact_email: str
    description: str
    requires_approval: bool
    approvers: list[str]
    allowed_callers: list[str]
    compatibility: str


@attrs.frozen
class ExportedNamespace:
    """A namespace as exported: its owner distribution (``teamflow.toml`` for one the host
    configuration defines), contributors and policy."""

    name: str
    owner: str
    owner_version: str
    contributors: list[str]
    policy: ExportedPolicy


@attrs.frozen
class ExportedDistribution:
    name: str
    version: str
    namespaces: list[str]
    workflows: list[str]


@attrs.frozen
class RegistryExport:
    """A registry export (format version 1): see the module's docstring and ``EXPORT_SCHEMA``."""

    format: str
    version: int
    teamflow_version: str
    exported_at: str
    namespace: str | None
    namespaces: list[ExportedNamespace]
    versions: list[ExportedVersion]
    distributions: list[ExportedDistribution]

    def policy(self, namespace: str) -> ExportedPolicy | None:
        return next((ns.policy for ns in self.namespaces if ns.name == namespace), None)


# --------------------------------------------------------------------------- writing


def exported_version(entry: WorkflowEntry) -> ExportedVersion:
    schema = entry.workflow.context_schema
    return ExportedVersion(
        namespace=entry.namespace,
        name=entry.name,
        version=entry.version.text,
        fingerprint=entry.fingerprint,
        distribution=entry.source.distribution,
        distribution_version=entry.source.version,
        deprecated=entry.deprecated,
        description=entry.workflow.description,
        context_schema=None if schema is None else dict(schema),
        steps=[
            ExportedStep(
                name=name,
                depends_on=sorted(entry.steps[name].depends_on),
                handler=entry.handler_refs[name],
                retry_limit=entry.steps[name].retry_limit,
                retryable=entry.steps[name].retryable,
                timeout_s=entry.steps[name].timeout_s,
                calls=[ExportedCall(c.ref, [dict(e) for e in c.examples]) for c in declared_calls(entry.steps[name])],
            )
            for name in entry.order
        ],
    )


def _exported_namespace(name: str, ns: NamespaceEntry) -> ExportedNamespace:
    policy = ns.policy
    return ExportedNamespace(
        name=name,
        owner=ns.owner,
        owner_version=ns.owner_version,
        contributors=list(ns.contributors),
        policy=ExportedPolicy(
            owner_team=policy.owner_team,
            contact_email=policy.contact_email,
            description=policy.description,
            requires_approval=policy.requires_approval,
            approvers=list(policy.approvers),
            allowed_callers=list(policy.allowed_callers),
            compatibility=policy.compatibility,
        ),
    )


def build_export(
    registry: Registry, namespace: str | None = None, *, teamflow_version: str, exported_at: str
) -> RegistryExport:
    """The export of ``registry`` (or of one namespace: a NamespaceNotFound when it has none)."""
    if namespace is not None:
        registry.require_namespace(namespace)
    names = sorted(n for n in registry.namespaces if namespace in (None, n))
    entries = registry.entries(namespace)
    owned: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    for name in names:
        ns = registry.namespaces[name]
        if ns.owner != CONFIG_OWNER:
            owned.setdefault((ns.owner, ns.owner_version), ([], []))[0].append(name)
    for entry in entries:
        owned.setdefault((entry.source.distribution, entry.source.version), ([], []))[1].append(entry.ref)
    return RegistryExport(
        format=FORMAT,
        version=FORMAT_VERSION,
        teamflow_version=teamflow_version,
        exported_at=exported_at,
        namespace=namespace,
        namespaces=[_exported_namespace(name, registry.namespaces[name]) for name in names],
        versions=[exported_version(e) for e in entries],
        distributions=[
            ExportedDistribution(dist, version, sorted(ns), sorted(refs))
            for (dist, version), (ns, refs) in sorted(owned.items())
        ],
    )


def export_json(export: RegistryExport) -> dict[str, Any]:
    """The export as the JSON document written to a file or answered by the API."""
    data: dict[str, Any] = unstructure(export)
    return data


# --------------------------------------------------------------------------- reading


def read_export(data: Any, where: str = "the export") -> RegistryExport:
    """Read an export back; raise ExportInvalid naming what is wrong and what to do.

    :param data: the parsed JSON document.
    :param where: how to name the document in errors (its file name).
    """
    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        raise ExportInvalid(
            f'{where} is not a teamflow registry export (it has no "format": "{FORMAT}"): write one with '
            "`teamflow registry export -o FILE` (or GET /registry/export)"
        )
    if data.get("version") != FORMAT_VERSION:
        raise ExportInvalid(
            f"{where} is in registry export format version {data.get('version')!r}, and this teamflow reads "
            f"version {FORMAT_VERSION} only: export it again with this teamflow, or check with the teamflow "
            "that wrote it",
            version=data.get("version"),
        )
    errors = sorted(_VALIDATOR.iter_errors(data), key=lambda e: list(e.absolute_path))
    problems = [f"{e.json_path}: {e.message}" for e in errors[:20]]
    if not problems:
        problems = _semantic_problems(data)
    if problems:
        more = f" (and {len(errors) - 20} more)" if len(errors) > 20 else ""
        raise ExportInvalid(
            f"{where} is not a valid registry export (format version {FORMAT_VERSION}): {'; '.join(problems)}{more}. "
            "Export it again with `teamflow registry export -o FILE` rather than editing it",
            errors=problems,
        )
    return structure(data, RegistryExport)


def _semantic_problems(data: Mapping[str, Any]) -> list[str]:
    """What the JSON Schema cannot say: versions, references and context schemas are valid, no
    version appears twice."""
    problems = []
    seen: set[tuple[str, str, str]] = set()
    for i, version in enumerate(data["versions"]):
        path = f"$.versions[{i}]"
        try:
            key = (version["namespace"], version["name"], parse_version(version["version"]).text)
        except InvalidVersion as exc:
            problems.append(f"{path}.version: {exc.detail}")
            continue
        if key in seen:
            problems.append(f"{path}: {key[0]}/{key[1]}@{key[2]} appears twice")
        seen.add(key)
        schema = version["context_schema"]
        if schema is not None:
            try:
                jsonschema.validators.validator_for(schema).check_schema(schema)
            except jsonschema.SchemaError as exc:
                problems.append(f"{path}.context_schema: not a valid JSON Schema: {exc.message}")
        for j, step in enumerate(version["steps"]):
            for k, call in enumerate(read_calls(step["calls"])):
                try:
                    ref = parse_ref(call.ref)
                    if ref.version is not None:
                        parse_constraint(ref.version)
                except (InvalidReference, InvalidVersion) as exc:
                    problems.append(f"{path}.steps[{j}].calls[{k}].ref: {exc.detail}")
    return problems


_NAME = {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,99}$"}
_TEXT = {"type": "string"}
_TEXTS = {"type": "array", "items": _TEXT}


def _record(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": sorted(properties), "additionalProperties": False}


EXPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": f"teamflow registry export, format version {FORMAT_VERSION}",
    **_record(
        {
            "format": {"const": FORMAT},
            "version": {"const": FORMAT_VERSION},
            "teamflow_version": _TEXT,
            "exported_at": _TEXT,
            "namespace": {"anyOf": [_NAME, {"type": "null"}]},
            "namespaces": {
                "type": "array",
                "items": _record(
                    {
                        "name": _NAME,
                        "owner": _TEXT,
                        "owner_version": _TEXT,
                        "contributors": _TEXTS,
                        "policy": _record(
                            {
                                "owner_team": _TEXT,
                                "contact_email": _TEXT,
                                "description": _TEXT,
                                "requires_approval": {"type": "boolean"},
                                "approvers": _TEXTS,
                                "allowed_callers": _TEXTS,
                                "compatibility": {"enum": list(MODES)},
                            }
                        ),
                    }
                ),
            },
            "versions": {
                "type": "array",
                "items": _record(
                    {
                        "namespace": _NAME,
                        "name": _NAME,
                        "version": _TEXT,
                        "fingerprint": _TEXT,
                        "distribution": _TEXT,
                        "distribution_version": _TEXT,
                        "deprecated": {"type": ["string", "null"]},
                        "description": _TEXT,
                        "context_schema": {"type": ["object", "null"]},
                        "steps": {
                            "type": "array",
                            "minItems": 1,
                            "items": _record(
                                {
                                    "name": _NAME,
                                    "depends_on": {"type": "array", "items": _NAME},
                                    "handler": _TEXT,
                                    "retry_limit": {"type": "integer", "minimum": 0},
                                    "retryable": {"type": "boolean"},
                                    "timeout_s": {"type": ["number", "null"], "exclusiveMinimum": 0},
                                    "calls": {
                                        "type": "array",
                                        "items": _record(
                                            {"ref": _TEXT, "examples": {"type": "array", "items": {"type": "object"}}}
                                        ),
                                    },
                                }
                            ),
                        },
                    }
                ),
            },
            "distributions": {
                "type": "array",
                "items": _record({"name": _TEXT, "version": _TEXT, "namespaces": {"type": "array", "items": _NAME}, "workflows": _TEXTS}),
            },
        }
    ),
}
_VALIDATOR = jsonschema.Draft202012Validator(EXPORT_SCHEMA)


# --------------------------------------------------------------------------- as call sites and targets


def provided(version: ExportedVersion) -> Provided:
    """An exported version as the target of calls."""
    return Provided(
        version.namespace, version.name, version.semver, version.deprecated, version.context_schema,
        version.distribution, version.distribution_version,
    )


def export_layer(export: RegistryExport, source: str = EXPORT) -> Layer:
    """An export's namespaces and versions, as what calls resolve to."""
    return Layer(source, {ns.name: ns.policy.contact_email for ns in export.namespaces}, [provided(v) for v in export.versions])


def export_sites(export: RegistryExport, source: str = EXPORT) -> list[CallSite]:
    """The calls an export's versions declare."""
    return [
        CallSite(v.ref, v.namespace, v.distribution, v.distribution_version, step.name, Call(call.ref, call.examples), source)
        for v in export.versions
        for step in v.steps
        for call in step.calls
    ]
