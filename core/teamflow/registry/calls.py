"""Caller contracts: the workflows a step declares it calls, and whether each call still
resolves to a version whose context schema accepts every example the step sends.

A call site is one declared call of one step of one workflow version, wherever it was read:
from the loaded registry, from what other hosts published to the store, or from a registry
export. What a call may resolve to comes in as ``Providers``: per namespace, where it is
known from (loaded here, published, an export) and its versions. The module is pure, and
the same check runs at load time (``build_registry``) and in ``teamflow check --against``.

- A call into a namespace known nowhere is a warning: nothing can be checked (strict mode
  makes it a problem).
- A call that resolves to no version of a known namespace is a problem, and so is an
  example the resolved version's context schema refuses. A remote ``$ref`` is never
  fetched: an example that needs one is reported as unchecked, a problem.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import jsonschema
import referencing.exceptions

from teamflow.errors import TeamflowError
from teamflow.models import Call, Step
from teamflow.refs import parse_ref
from teamflow.registry.index import select_version
from teamflow.registry.records import KNOWN_AS, LOADED, CallFinding, WorkflowEntry
from teamflow.versions import Constraint, Version

UNKNOWN_NAMESPACE = "unknown_namespace"


def declared_calls(step: Step) -> tuple[Call, ...]:
    """A step's calls as ``Call`` records (a plain reference string is a call without examples)."""
    return tuple(c if isinstance(c, Call) else Call(c) for c in step.calls)


def call_dicts(calls: Iterable[Call]) -> list[dict[str, Any]]:
    """Calls as a published definition and an export hold them."""
    return [{"ref": c.ref, "examples": [dict(e) for e in c.examples]} for c in calls]


def read_calls(items: Iterable[Any]) -> tuple[Call, ...]:
    """Calls from a published definition: ``{"ref", "examples"}``, or a plain reference string
    (what hosts wrote before calls had examples)."""
    return tuple(Call(item) if isinstance(item, str) else Call(item["ref"], item.get("examples", ())) for item in items)


# --------------------------------------------------------------------------- the records


@attrs.frozen
class Provided:
    """A workflow version a call may resolve to, wherever it is known from."""

    namespace: str
    name: str
    version: Version
    deprecated: str | None
    context_schema: Mapping[str, Any] | None
    distribution: str
    distribution_version: str

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}@{self.version.text}"

    @classmethod
    def of_entry(cls, entry: WorkflowEntry) -> Provided:
        return cls(
            entry.namespace, entry.name, entry.version, entry.deprecated, entry.workflow.context_schema,
            entry.source.distribution, entry.source.version,
        )


@attrs.frozen
class CallSite:
    """One declared call of one step of a workflow version, and where it was read."""

    caller: str  # the caller's workflow reference, namespace/name@version
    namespace: str
    distribution: str
    distribution_version: str
    step: str
    call: Call
    source: str = LOADED


def entry_sites(entry: WorkflowEntry) -> list[CallSite]:
    """The call sites of a loaded workflow version, in step order."""
    return [
        CallSite(entry.ref, entry.namespace, entry.source.distribution, entry.source.version, name, call)
        for name in entry.order
        for call in declared_calls(entry.steps[name])
    ]


@attrs.frozen
class Providers:
    """What calls may resolve to.

    ``known`` maps each namespace to where its versions come from (``loaded``,
    ``published``, ``export``); ``versions`` holds them per workflow, newest first;
    ``blocked`` says why a namespace known here has no runnable version at all.
    """

    known: Mapping[str, str] = attrs.field(factory=dict)
    versions: Mapping[tuple[str, str], tuple[Provided, ...]] = attrs.field(factory=dict)
    contacts: Mapping[str, str] = attrs.field(factory=dict)
    defaults: Mapping[tuple[str, str], Constraint] = attrs.field(factory=dict)
    blocked: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class Layer:
    """The namespaces one source knows, with their contact and versions (see ``merge``)."""

    source: str
    contacts: Mapping[str, str]
    versions: Sequence[Provided]


def merge(
    layers: Sequence[Layer],
    defaults: Mapping[tuple[str, str], Constraint] | None = None,
    blocked: Mapping[str, str] | None = None,
) -> Providers:
    """One ``Providers`` from ``layers``, the first that knows a namespace giving all of it:
    a namespace loaded here is never resolved through what was published or exported."""
    known: dict[str, str] = {}
    contacts: dict[str, str] = {}
    grouped: dict[tuple[str, str], list[Provided]] = {}
    for layer in layers:
        fresh = {ns for ns in layer.contacts if ns not in known}
        for ns in sorted(fresh):
            known[ns], contacts[ns] = layer.source, layer.contacts[ns]
        for provided in layer.versions:
            if provided.namespace in fresh:
                grouped.setdefault((provided.namespace, provided.name), []).append(provided)
    versions = {key: tuple(sorted(group, key=lambda p: p.version.key, reverse=True)) for key, group in grouped.items()}
    return Providers(known, versions, contacts, dict(defaults or {}), dict(blocked or {}))


# --------------------------------------------------------------------------- the check


def check_sites(sites: Iterable[CallSite], providers: Providers, strict: bool = False) -> list[CallFinding]:
    """Every declared call in ``sites`` that does not hold against ``providers``, sorted."""
    validators: dict[str, Any] = {}
    findings = [f for site in sites for f in _check(site, providers, strict, validators)]
    return sorted(findings, key=_order)


def _check(site: CallSite, providers: Providers, strict: bool, validators: dict[str, Any]) -> list[CallFinding]:
    def finding(kind: str, severity: str, reason: str, fix: str, **more: Any) -> CallFinding:
        return CallFinding(
            kind, severity, site.caller, site.distribution, site.distribution_version, site.step, site.call.ref,
            reason, fix, site.source, **more,
        )

    try:
        ref = parse_ref(site.call.ref)
    except TeamflowError as exc:
        return [finding("invalid_call", "problem", exc.detail, "write 'namespace/name@version' (teamflow.Call(ref, examples=[...]))")]
    known = providers.known.get(ref.namespace)
    if known is None:
        return [
            finding(
                UNKNOWN_NAMESPACE,
                "problem" if strict else "warning",
                f"namespace {ref.namespace!r} is neither loaded here nor published by any host, so the call "
                "cannot be checked" + ("" if strict else " (a warning; strict mode makes it a problem)"),
                f"install the plugin of {ref.namespace!r} here, start a host that loads it on this database, or "
                "check against an export of the registry that holds it (`teamflow check --against FILE`)",
            )
        ]
    contact = providers.contacts.get(ref.namespace) or f"the owner of namespace {ref.namespace!r}"
    candidates = providers.versions.get((ref.namespace, ref.name), ())
    if not candidates:
        why = providers.blocked.get(ref.namespace)
        names = sorted(name for ns, name in providers.versions if ns == ref.namespace)
        reason = (
            f"namespace {ref.namespace!r} is blocked ({why})"
            if why
            else f"{ref.namespace}/{ref.name} does not exist ({KNOWN_AS[known]}); workflows of "
            f"{ref.namespace!r}: {', '.join(names) or 'none'}"
        )
        return [finding("unresolved", "problem", reason, f"call a workflow that exists, or ask {contact} to ship {ref.namespace}/{ref.name}")]
    try:
        target = select_version(
            ref.namespace, ref.name, candidates, ref.version, providers.defaults.get((ref.namespace, ref.name))
        )
    except TeamflowError as exc:
        return [
            finding(
                "unresolved",
                "problem",
                f"{exc.detail} ({KNOWN_AS[known]})",
                f"widen the call's version to one that exists, or ask {contact} to keep a version matching "
                f"{ref.version or 'the default'} until this step calls another",
            )
        ]
    found = []
    for index, example in enumerate(site.call.examples):
        errors = _refusals(target, example, validators)
        if errors:
            found.append(
                finding(
                    "example_refused",
                    "problem",
                    f"it resolves to {target.ref} ({target.distribution} {target.distribution_version}), whose "
                    f"context schema does not accept example {index} {_show(example)}: {'; '.join(errors)}",
                    f"send what {target.ref} accepts (and update the example), or ask {contact} to keep accepting it "
                    f"within major version {target.version.major} (a change that refuses it needs a new major version)",
                    example=index,
                    provider=target.ref,
                    provider_distribution=target.distribution,
                )
            )
    return found


def _refusals(target: Provided, example: Any, validators: dict[str, Any]) -> list[str]:
    """Why ``target``'s context schema refuses ``example`` (empty when it accepts it)."""
    if not isinstance(example, Mapping):
        return ["$: an example is a context: a JSON object"]
    schema = target.context_schema
    if schema is None:
        return []
    validator = validators.get(target.ref)
    if validator is None:
        validator = validators[target.ref] = jsonschema.validators.validator_for(schema)(schema)
    try:
        errors = sorted(validator.iter_errors(example), key=lambda e: list(e.absolute_path))
        return [f"{e.json_path}: {e.message}" for e in errors]
    except referencing.exceptions.Unresolvable as exc:  # a remote $ref: never fetched
        return [f"it cannot be checked: the schema refers to {exc.ref!r}, which is never fetched (vendor it under $defs)"]


def _show(example: Any) -> str:
    text = json.dumps(example, sort_keys=True, default=str)
    return text if len(text) <= 160 else text[:157] + "..."


# --------------------------------------------------------------------------- at load time


def settle(
    entries: Sequence[WorkflowEntry],
    namespaces: Mapping[str, str],
    blocked: Mapping[str, str],
    others: Sequence[Layer] = (),
    other_sites: Sequence[CallSite] = (),
    defaults: Mapping[tuple[str, str], Constraint] | None = None,
    strict: bool = False,
) -> tuple[list[WorkflowEntry], list[CallFinding]]:
    """The call findings of a registry being built, and (strict mode) the versions it keeps.

    :param entries: the workflow versions that loaded.
    :param namespaces: the namespaces loaded here, each with its contact.
    :param blocked: namespaces (and workflow versions) blocked here, with why.
    :param others: what calls into namespaces not loaded here resolve to (published rows).
    :param other_sites: calls other hosts published; only those into a namespace loaded here
        are checked (its own host checks the rest).
    :param strict: refuse the versions whose calls do not hold. A refused version may have
        been the only target of another one's call, so this repeats until nothing changes.
    """
    local = {ns for ns in namespaces} | {key for key in blocked if "/" not in key}
    contacts = {ns: namespaces.get(ns, "") for ns in local}
    incoming = [s for s in other_sites if s.namespace not in local and target_namespace(s) in local]
    kept = list(entries)
    refused: list[CallFinding] = []
    while True:
        providers = merge([Layer(LOADED, contacts, [Provided.of_entry(e) for e in kept]), *others], defaults, blocked)
        findings = check_sites([*(site for e in kept for site in entry_sites(e)), *incoming], providers, strict)
        # a call into a namespace known nowhere checked nothing: strict mode fails the check, not the caller
        bad = {
            f.caller
            for f in findings
            if strict and f.source == LOADED and f.severity == "problem" and f.kind != UNKNOWN_NAMESPACE
        }
        if not bad:
            return kept, sorted([*findings, *refused], key=_order)
        refused += [attrs.evolve(f, refused=True) for f in findings if f.caller in bad]
        kept = [e for e in kept if e.ref not in bad]


def target_namespace(site: CallSite) -> str | None:
    """The namespace a call site calls into (None when its reference does not parse)."""
    try:
        return parse_ref(site.call.ref).namespace
    except TeamflowError:
        return None


def _order(f: CallFinding) -> tuple[Any, ...]:
    return (f.caller, f.step, f.call, -1 if f.example is None else f.example, f.reason)
