"""Settling who owns each namespace and which distribution's copy of each workflow version
loads, then building the ``Registry``.

Its inputs are what each distribution registered plus the rules that come from outside
(host configuration, owners and fingerprints the store recorded, the conflict-resolver
hook); its outputs are the runnable index and every refusal and conflict, with the
distributions involved, the reason and the fix.

Order independence is by construction: registrations are grouped by key and every group
is decided from its whole membership, never from arrival order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from teamflow.models import Candidate, Conflict, NamespacePolicy, Resolution, Workflow
from teamflow.refs import valid_name
from teamflow.registry.calls import settle
from teamflow.registry.compat import MODES
from teamflow.registry.index import Registry, parse_defaults
from teamflow.registry.published import published_layer, published_sites
from teamflow.registry.records import (
    CONFIG_OWNER,
    CallFinding,
    ConflictOutcome,
    Contribution,
    Drift,
    NamespaceEntry,
    Refusal,
    Rules,
    Source,
    WorkflowEntry,
)
from teamflow.registry.validate import Invalid, compile_workflow

ConflictResolver = Callable[[Conflict], tuple[Resolution | None, str]]
"""Asks the configured resolvers about a conflict: their resolution (or None) and who gave it."""


def _no_resolver(conflict: Conflict) -> tuple[Resolution | None, str]:
    return None, ""


class _Builder:
    def __init__(self, rules: Rules, resolver: ConflictResolver) -> None:
        self.rules = rules
        self.resolver = resolver
        self.refusals: list[Refusal] = []
        self.conflicts: list[ConflictOutcome] = []
        self.blocked: dict[str, str] = {}

    def refuse(
        self, kind: str, source: Source, subject: str, reason: str, fix: str = "", step: str | None = None
    ) -> None:
        self.refusals.append(Refusal(kind, source.distribution, source.version, subject, reason, fix, step))

    def settle(self, conflict: Conflict, default: Resolution) -> Resolution:
        """Ask the configured resolvers, check their answer, else apply the default."""
        resolution, resolver_name = self.resolver(conflict)
        if resolution is not None:
            if resolution.kept is None or resolution.kept in conflict.candidates:
                return attrs.evolve(resolution, decided_by=resolver_name)
            self.refusals.append(
                Refusal(
                    "bad_resolution",
                    resolver_name,
                    "",
                    conflict.key,
                    f"resolver kept {resolution.kept!r}, which is not one of the candidates; ignored",
                    "a resolution must keep one of conflict.candidates or None",
                )
            )
        return default

    # -- namespaces -------------------------------------------------------------------

    def namespaces(self, contributions: Sequence[Contribution]) -> dict[str, NamespaceEntry]:
        declared: dict[str, dict[Source, NamespacePolicy]] = defaultdict(dict)
        for contrib in contributions:
            seen: dict[str, int] = defaultdict(int)
            for policy in contrib.namespaces:
                if not isinstance(policy, NamespacePolicy):
                    self.refuse(
                        "invalid_namespace", contrib.source, repr(policy), "not a teamflow.NamespacePolicy"
                    )
                    continue
                if not valid_name(policy.name):
                    self.refuse(
                        "invalid_namespace",
                        contrib.source,
                        repr(policy.name),
                        "namespace names must match [a-z][a-z0-9_]* (at most 100 characters)",
                        "rename the namespace",
                    )
                    continue
                if policy.compatibility not in MODES:
                    self.refuse(
                        "invalid_namespace",
                        contrib.source,
                        policy.name,
                        f"compatibility {policy.compatibility!r} is not one of "
                        f"{', '.join(repr(m) for m in MODES)}",
                        'write compatibility="backward" (the default) or "none"',
                    )
                    continue
                seen[policy.name] += 1
                declared[policy.name][contrib.source] = policy
            for name, count in seen.items():
                if count > 1:
                    del declared[name][contrib.source]
                    self.refuse(
                        "duplicate",
                        contrib.source,
                        name,
                        f"declares namespace {name!r} {count} times",
                        "return each NamespacePolicy once",
                    )

        entries: dict[str, NamespaceEntry] = {}
        for name, platform in self.rules.platform_namespaces.items():
            entries[name] = NamespaceEntry(platform.policy, CONFIG_OWNER, "", tuple(platform.contributors))
        for name in sorted(declared):
            by_source = declared[name]
            if not by_source:
                continue
            sources = sorted(by_source, key=lambda s: (s.distribution, s.entry_point))
            if name in self.rules.platform_namespaces:
                for source in sources:
                    self.refuse(
                        "not_owner",
                        source,
                        name,
                        f"namespace {name!r} is defined by the host configuration ({CONFIG_OWNER})",
                        f"drop the policy; to contribute workflows ask for '{source.distribution}' "
                        f"in [namespaces.{name}] contributors",
                    )
                continue
            entry = self._settle_namespace(name, sources, by_source)
            if entry is not None:
                entries[name] = entry
        return entries

    def _settle_namespace(
        self, name: str, sources: list[Source], by_source: dict[Source, NamespacePolicy]
    ) -> NamespaceEntry | None:
        dists = {s.distribution for s in sources}
        pin = self.rules.owner_pins.get(name)
        recorded = self.rules.recorded_owners.get(name)
        candidates = tuple(Candidate(s.distribution, s.version, name) for s in sources)
        conflict = Conflict("namespace", name, candidates)
        winner: Source | None = None
        if pin is not None:
            winner = next((s for s in sources if s.distribution == pin), None)
            reason = f"owner pin in {CONFIG_OWNER}: {name} -> {pin}"
            fix = f"only {pin} may declare namespace {name!r}; remove this declaration"
            conflict_fix = (
                f"namespace {name!r} is pinned to {pin}: uninstall the other candidates, "
                f"or have them remove their declaration of {name!r}"
            )
            if winner is None:
                reason += f", which is not installed or does not declare {name!r}"
                fix = conflict_fix = f"install {pin}, or change [owner_pins] {name}"
            if len(sources) > 1 or winner is None:
                kept = Candidate(winner.distribution, winner.version, name) if winner else None
                self.conflicts.append(
                    ConflictOutcome(conflict, Resolution(kept, reason, "owner pin"), conflict_fix)
                )
        elif recorded is not None and recorded != CONFIG_OWNER:
            winner = next((s for s in sources if s.distribution == recorded), None)
            reason = f"the store recorded {recorded} as owner of {name!r}"
            fix = f'to hand {name!r} over, pin it in {CONFIG_OWNER}: [owner_pins] {name} = "<distribution>"'
            if len(sources) > 1 or winner is None:
                kept = Candidate(winner.distribution, winner.version, name) if winner else None
                handover = f'[owner_pins] {name} = "<distribution>" in {CONFIG_OWNER}'
                conflict_fix = (
                    f"{recorded} keeps namespace {name!r} as its recorded owner: uninstall the other "
                    f"candidates, or hand it over with {handover}"
                    if winner
                    else f"{recorded}, the recorded owner of namespace {name!r}, does not declare it here: "
                    f"install it, or hand {name!r} over with {handover}"
                )
                self.conflicts.append(
                    ConflictOutcome(conflict, Resolution(kept, reason, "recorded owner"), conflict_fix)
                )
        elif len(dists) == 1 and len(sources) == 1:
            winner = sources[0]
            reason, fix = "", ""
        else:
            default = Resolution(
                None,
                f"{len(sources)} distributions declare namespace {name!r} and no owner "
                "pin or recorded owner decides",
                "default",
            )
            resolution = self.settle(conflict, default)
            if resolution.kept is not None:
                winner = next(
                    s
                    for s in sources
                    if s.distribution == resolution.kept.distribution and s.version == resolution.kept.version
                )
            reason = resolution.reason
            fix = (
                f'pin the owner in {CONFIG_OWNER}: [owner_pins] {name} = "<distribution>", '
                "or uninstall all but one"
            )
            self.conflicts.append(ConflictOutcome(conflict, resolution, fix))
        for source in sources:
            if source is not winner:
                self.refuse("namespace_conflict", source, name, f"namespace refused: {reason}", fix)
        if winner is None:
            self.blocked[name] = reason
            return None
        return NamespaceEntry(by_source[winner], winner.distribution, winner.version)

    # -- workflows --------------------------------------------------------------------

    def workflows(
        self, contributions: Sequence[Contribution], namespaces: dict[str, NamespaceEntry]
    ) -> tuple[list[WorkflowEntry], list[Drift]]:
        compiled: dict[tuple[str, str, str], dict[Source, WorkflowEntry]] = defaultdict(dict)
        for contrib in contributions:
            mine: dict[tuple[str, str, str], list[WorkflowEntry]] = defaultdict(list)
            for workflow in contrib.workflows:
                subject = _subject(workflow)
                try:
                    entry = compile_workflow(workflow, contrib.source)
                except Invalid as exc:
                    self.refuse("invalid_workflow", contrib.source, subject, exc.reason, exc.fix, exc.step)
                    continue
                mine[(entry.namespace, entry.name, entry.version.text)].append(entry)
            for key, group in mine.items():
                if len(group) > 1:
                    self.refuse(
                        "duplicate",
                        contrib.source,
                        group[0].ref,
                        f"registered {len(group)} times by one distribution",
                        "return each workflow version once from teamflow_workflows",
                    )
                    continue
                compiled[key][contrib.source] = group[0]

        accepted: list[WorkflowEntry] = []
        drift: list[Drift] = []
        for key in sorted(compiled):
            by_source = compiled[key]
            settled = self._settle_key(key, by_source, namespaces)
            if settled is None:
                continue
            entry = settled
            recorded = self.rules.recorded_fingerprints.get(key)
            if recorded and recorded != entry.fingerprint and not entry.version.is_prerelease:
                drifted = Drift(
                    entry.ref, entry.source.distribution, recorded, entry.fingerprint, self.rules.strict
                )
                drift.append(drifted)
                if self.rules.strict:
                    self.refuse(
                        "drift",
                        entry.source,
                        entry.ref,
                        f"released version changed without a version bump (recorded fingerprint "
                        f"{recorded[:12]}, now {entry.fingerprint[:12]}); refused in strict mode",
                        drifted.fix,
                    )
                    continue
            accepted.append(entry)
        return accepted, drift

    def _settle_key(
        self,
        key: tuple[str, str, str],
        by_source: dict[Source, WorkflowEntry],
        namespaces: dict[str, NamespaceEntry],
    ) -> WorkflowEntry | None:
        ns = namespaces.get(key[0])
        sources = sorted(by_source, key=lambda s: (s.distribution, s.entry_point))
        ref = f"{key[0]}/{key[1]}@{key[2]}"
        if len(sources) > 1:
            candidates = tuple(Candidate(s.distribution, s.version, ref) for s in sources)
            owners = [s for s in sources if ns is not None and s.distribution == ns.owner]
            if len(owners) == 1:
                default = Resolution(
                    Candidate(owners[0].distribution, owners[0].version, ref),
                    f"{owners[0].distribution} owns namespace {key[0]!r}",
                    "default",
                )
            else:
                default = Resolution(
                    None,
                    f"{len(sources)} distributions register {ref} and none of them owns namespace {key[0]!r}",
                    "default",
                )
            conflict = Conflict("workflow", ref, candidates)
            resolution = self.settle(conflict, default)
            winner = None
            if resolution.kept is not None:
                winner = next(
                    s
                    for s in sources
                    if s.distribution == resolution.kept.distribution and s.version == resolution.kept.version
                )
            losers = [s.distribution for s in sources if s is not winner]
            # Only a resolver can refuse the owner's copy; the owner cannot fix that alone.
            overruled = default.kept is not None and resolution.kept != default.kept
            who = losers[0] if len(losers) == 1 else f"each of {', '.join(losers)}"
            self.conflicts.append(
                ConflictOutcome(conflict, resolution, self._key_fix(key[0], ns, resolution, overruled, who))
            )
            for source in sources:
                if source is not winner:
                    self.refuse(
                        "workflow_conflict",
                        source,
                        ref,
                        f"workflow version refused: {resolution.reason}",
                        self._key_fix(
                            key[0],
                            ns,
                            resolution,
                            overruled and ns is not None and source.distribution == ns.owner,
                            source.distribution,
                        ),
                    )
            if winner is None:
                self.blocked[ref] = resolution.reason
                return None
            sources = [winner]
        source = sources[0]
        if ns is None:
            why = self.blocked.get(key[0])
            reason = (
                f"namespace {key[0]!r} is blocked: {why}"
                if why
                else f"namespace {key[0]!r} is not declared by any distribution"
            )
            fix = (
                f"settle who owns {key[0]!r} first: pin it in {CONFIG_OWNER} "
                f'([owner_pins] {key[0]} = "<distribution>"), or ask the distributions that declare it'
                if why
                else f"declare {key[0]!r} with teamflow_namespaces() in {source.distribution}, "
                f"or register the workflow in a namespace {source.distribution} owns"
            )
            self.refuse("undeclared_namespace", source, ref, reason, fix)
            return None
        if not ns.may_register(source.distribution):
            self.refuse(
                "not_owner",
                source,
                ref,
                f"namespace {key[0]!r} belongs to {ns.owner} (team {ns.policy.owner_team})",
                f"register it in a namespace {source.distribution} owns, or ask {ns.policy.contact_email} "
                "to add it as a contributor",
            )
            return None
        return by_source[source]

    def _key_fix(
        self, namespace: str, ns: NamespaceEntry | None, resolution: Resolution, overruled: bool, who: str
    ) -> str:
        """What helps ``who``, whose copy of a workflow version lost its conflict.

        Never "bump the version": in a namespace another team owns, a new version is
        refused just the same.
        """
        if ns is None:
            where = (
                f"which is blocked: register it in a namespace {who} owns, or settle the namespace "
                f"conflict first ([owner_pins] in {CONFIG_OWNER})"
                if namespace in self.blocked
                else f"which no distribution declares: register it in a namespace {who} owns, "
                f"or have one distribution declare {namespace!r}"
            )
            return f"none of the candidates owns namespace {namespace!r}, {where}"
        if overruled:
            verdict = (
                f"kept {resolution.kept.distribution}" if resolution.kept else "refused every candidate"
            )
            return (
                f"the conflict resolver {resolution.decided_by} {verdict} over {ns.owner}, the owner of "
                f"namespace {namespace!r}: if that is wrong, ask the platform team that lists "
                f"{resolution.decided_by} in conflict_resolvers ({CONFIG_OWNER})"
            )
        owner = "the host configuration" if ns.owner == CONFIG_OWNER else ns.owner
        if ns.policy.owner_team:
            owner += f" (team {ns.policy.owner_team})"
        whose = f"namespace {namespace!r} belongs to {owner}"
        if resolution.kept is None:
            whose = f"none of the candidates owns namespace {namespace!r}; it belongs to {owner}"
        whom = ns.policy.contact_email or ns.owner
        return (
            f"{whose}: register it in a namespace {who} owns, "
            f"or ask {whom}, who decides what ships in {namespace!r}"
        )


def _subject(workflow: Any) -> str:
    if isinstance(workflow, Workflow):
        return f"{workflow.namespace}/{workflow.name}@{workflow.version}"
    return repr(workflow)


def build_registry(
    contributions: Iterable[Contribution],
    rules: Rules | None = None,
    resolver: ConflictResolver | None = None,
) -> Registry:
    """Validate and index every contribution; the outcome does not depend on their order."""
    rules = rules or Rules()
    # The distribution is the unit of ownership: merge its entry points into one contribution.
    merged: dict[tuple[str, str], Contribution] = {}
    for c in sorted(contributions, key=lambda c: c.source.entry_point):
        key = (c.source.distribution, c.source.version)
        seen = merged.get(key)
        merged[key] = (
            c
            if seen is None
            else Contribution(
                attrs.evolve(seen.source, entry_point=f"{seen.source.entry_point}; {c.source.entry_point}"),
                seen.namespaces + c.namespaces,
                seen.workflows + c.workflows,
            )
        )
    ordered = sorted(
        merged.values(), key=lambda c: (c.source.distribution, c.source.entry_point, c.source.version)
    )
    builder = _Builder(rules, resolver or _no_resolver)
    namespaces = builder.namespaces(ordered)
    entries, drift = builder.workflows(ordered, namespaces)
    entries, calls = _settle_calls(builder, entries, namespaces, rules)
    refusals = sorted(builder.refusals, key=lambda r: (r.subject, r.distribution, r.kind, r.step or ""))
    conflicts = sorted(builder.conflicts, key=lambda c: (c.conflict.kind, c.conflict.key))
    return Registry(namespaces, entries, refusals, conflicts, drift, builder.blocked, rules.default_versions, calls)


def _settle_calls(
    builder: _Builder, entries: list[WorkflowEntry], namespaces: dict[str, NamespaceEntry], rules: Rules
) -> tuple[list[WorkflowEntry], list[CallFinding]]:
    """Check every declared call (and, strict, refuse the versions whose calls do not hold)."""
    kept, findings = settle(
        entries,
        {name: ns.policy.contact_email for name, ns in namespaces.items()},
        builder.blocked,
        others=[published_layer(rules.published)],
        other_sites=published_sites(rules.published),
        defaults=parse_defaults(rules.default_versions),
        strict=rules.strict,
    )
    sources = {e.ref: e.source for e in entries}
    for finding in findings:
        if finding.refused:
            builder.refuse(
                "call_contract",
                sources[finding.caller],
                finding.caller,
                f"calls {finding.call}: {finding.reason}; refused in strict mode",
                finding.fix,
                finding.step,
            )
    return kept, findings
