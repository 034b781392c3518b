"""Release safety: what the registry installed now breaks, compared with an export of the last release.

Both sides are registry exports (``registry.export``): the previous one read from a file,
the current one built from the loaded registry, so the rules compare like with like.

Which versions are judged. Each installed version of a namespace loaded here is compared
with the highest lower release of the same major in the export (installed now or not). A
version that is itself in the export is not judged again: that pair was judged when it
shipped. With no lower version of its major, the highest lower version of an earlier major
is its baseline, and what breaks is reported as allowed: a major version may break. Only
namespaces loaded here are judged, so a team's CI that installs its own plugin can check
it against an export of the whole production registry.

What breaks:

- ``removed_with_tasks``: a version of the export is gone while unfinished tasks of it
  exist (no worker could finish them). Always, even across a major bump.
- ``removed_while_called``: a version is gone while a call declared by another namespace
  resolved to it and now resolves to nothing (allowed when the workflow has a version of a
  higher major now).
- ``policy_loosened``: ``requires_approval`` dropped, ``approvers`` or ``allowed_callers``
  changed, ``compatibility`` set to ``"none"`` (allowed when the owner distribution's
  major version went up: a plugin must not waive its own approval in a minor release).
- ``schema_incompatible``: a context schema that no longer accepts what its baseline
  accepted (``registry.compat``), unless the namespace's ``compatibility`` is ``"none"`` on
  both sides. A remote ``$ref`` is never fetched; keywords the checker cannot reason about
  are reported as breaking, by name.
- ``step_removed``: a step of the baseline that the new version does not have (removed or
  renamed): callers read a child's results by step name.

Callers. Every declared call that touches a namespace loaded here is checked as at load
time (``registry.calls``), now also with the calls the export declares for namespaces not
installed here, and resolving calls into namespaces neither loaded nor published through
the export: so a provider's release that would break a caller fails the provider's check.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

import attrs

from teamflow.errors import TeamflowError
from teamflow.refs import parse_ref
from teamflow.registry.calls import LOADED, CallSite, check_sites, merge, target_namespace
from teamflow.registry.compat import compare
from teamflow.registry.export import (
    ExportedPolicy,
    ExportedVersion,
    RegistryExport,
    export_layer,
    export_sites,
    provided,
)
from teamflow.registry.index import select_version
from teamflow.registry.published import published_layer, published_sites
from teamflow.registry.records import CallFinding, PublishedCatalog
from teamflow.versions import Constraint

REMOVED_WITH_TASKS = "removed_with_tasks"
REMOVED_WHILE_CALLED = "removed_while_called"
POLICY_LOOSENED = "policy_loosened"
SCHEMA_INCOMPATIBLE = "schema_incompatible"
STEP_REMOVED = "step_removed"

MAJOR_FIX = "or release the change in a new major version"
_UNSURE = frozenset({"remote_ref", "unresolved_ref", "unsupported_keyword"})  # compat could not decide


@attrs.frozen
class Judged:
    """One pair compared: an installed version and its baseline in the export."""

    namespace: str
    workflow: str
    previous: str
    current: str
    major_bump: bool


@attrs.frozen
class ReleaseFinding:
    """One breaking change between the export and what is installed now.

    ``previous`` and ``current`` are the two versions (of the workflow, or for a policy of
    the owner distribution); ``where`` is the schema path, the step, the policy field or the
    version removed; ``allowed`` is true when a major version bump makes the break legitimate.
    """

    rule: str
    namespace: str
    workflow: str | None
    previous: str | None
    current: str | None
    previous_distribution: str
    distribution: str
    where: str
    what: str
    fix: str
    allowed: bool = False
    message: str = attrs.field()

    @message.default
    def _message(self) -> str:
        subject = f"{self.namespace}/{self.workflow}" if self.workflow else f"namespace {self.namespace}"
        versions = f"{self.previous or '-'} -> {self.current or 'removed'}"
        dists = (
            self.distribution
            if self.previous_distribution == self.distribution
            else f"{self.previous_distribution} -> {self.distribution}"
        )
        verdict = " (allowed: a major version bump may break)" if self.allowed else ""
        return f"{subject} {versions} ({dists}): {self.where}: {self.what}{verdict}"


@attrs.frozen
class ReleaseOutcome:
    """Everything ``check_release`` found."""

    judged: list[Judged]
    findings: list[ReleaseFinding]
    callers: list[CallFinding]

    @property
    def breaking(self) -> int:
        return sum(not f.allowed for f in self.findings) + sum(c.severity == "problem" for c in self.callers)


def check_release(
    previous: RegistryExport,
    current: RegistryExport,
    *,
    active: Mapping[tuple[str, str, str], int] | None = None,
    catalog: PublishedCatalog | None = None,
    defaults: Mapping[tuple[str, str], Constraint] | None = None,
    blocked: Mapping[str, str] | None = None,
    strict: bool = False,
    known: Iterable[CallFinding] = (),
) -> ReleaseOutcome:
    """Compare ``current`` (the registry installed now) with ``previous`` (an export).

    :param active: unfinished tasks per (namespace, name, version), as the database holds them.
    :param catalog: what hosts published to the store (callers and call targets).
    :param defaults: default-version pins, for calls that name no version.
    :param blocked: namespaces blocked here, with why.
    :param strict: a call into a namespace known nowhere is a problem, not a warning.
    :param known: call findings the load report holds already; they are not repeated.
    """
    catalog = catalog or PublishedCatalog()
    defaults = dict(defaults or {})
    loaded = {ns.name for ns in current.namespaces}
    exported = {ns.name for ns in previous.namespaces}
    sites = [
        *export_sites(current, LOADED),
        *(s for s in export_sites(previous) if s.namespace not in loaded),
        *(s for s in published_sites(catalog) if s.namespace not in loaded | exported),
    ]
    judged, findings = _judge(previous, current, active or {}, sites, defaults)
    here = export_layer(current, LOADED)
    # a namespace blocked here is known here, with no version to resolve to
    here = attrs.evolve(here, contacts={**{ns: "" for ns in blocked or {} if "/" not in ns}, **here.contacts})
    providers = merge([here, published_layer(catalog), export_layer(previous)], defaults, blocked)
    touching = [s for s in sites if s.namespace in loaded or target_namespace(s) in loaded]
    seen = {_key(f) for f in known}
    callers = [f for f in check_sites(touching, providers, strict) if _key(f) not in seen]
    return ReleaseOutcome(judged, findings, callers)


def _key(f: CallFinding) -> tuple[object, ...]:
    return (f.caller, f.step, f.call, f.example, f.reason)


# --------------------------------------------------------------------------- the rules


def _judge(
    previous: RegistryExport,
    current: RegistryExport,
    active: Mapping[tuple[str, str, str], int],
    sites: Sequence[CallSite],
    defaults: Mapping[tuple[str, str], Constraint],
) -> tuple[list[Judged], list[ReleaseFinding]]:
    loaded = {ns.name for ns in current.namespaces}
    before = _by_workflow(v for v in previous.versions if v.namespace in loaded)
    now = _by_workflow(current.versions)
    judged: list[Judged] = []
    findings: list[ReleaseFinding] = []
    for ns in sorted(loaded):
        findings += _policy(ns, previous, current)
    for key in sorted(set(before) | set(now)):
        old, new = before.get(key, []), now.get(key, [])
        old_texts = {v.semver.text for v in old}
        mode = _mode(previous.policy(key[0]), current.policy(key[0]))
        for version in new:
            if version.semver.text in old_texts:
                continue  # judged when it shipped
            baseline = _baseline(version, old)
            if baseline is None:
                continue
            bump = baseline.semver.major < version.semver.major
            judged.append(Judged(key[0], key[1], baseline.version, version.version, bump))
            findings += _schema(baseline, version, mode, bump)
            findings += _steps(baseline, version, bump)
        new_texts = {v.semver.text for v in new}
        for gone in old:
            if gone.semver.text not in new_texts:
                findings += _removed(gone, new, active, sites, defaults, old)
    return judged, findings


def _by_workflow(versions: Iterable[ExportedVersion]) -> dict[tuple[str, str], list[ExportedVersion]]:
    grouped: dict[tuple[str, str], list[ExportedVersion]] = {}
    for v in versions:
        grouped.setdefault((v.namespace, v.name), []).append(v)
    return {k: sorted(g, key=lambda v: v.semver.key) for k, g in grouped.items()}


def _baseline(version: ExportedVersion, old: Sequence[ExportedVersion]) -> ExportedVersion | None:
    """The highest lower release of the same major; else the highest lower release of all."""
    lower = [v for v in old if v.semver.key < version.semver.key and not v.semver.is_prerelease]
    same = [v for v in lower if v.semver.major == version.semver.major]
    chosen = same or lower
    return max(chosen, key=lambda v: v.semver.key) if chosen else None


def _mode(before: ExportedPolicy | None, now: ExportedPolicy | None) -> str:
    """Checked unless the namespace says ``none`` on both sides (turning it off is itself a finding)."""
    modes = {p.compatibility for p in (before, now) if p is not None}
    return "none" if modes == {"none"} else "backward"


def _dist(version: ExportedVersion) -> str:
    return f"{version.distribution} {version.distribution_version}"


def _schema(old: ExportedVersion, new: ExportedVersion, mode: str, bump: bool) -> list[ReleaseFinding]:
    return [
        ReleaseFinding(
            SCHEMA_INCOMPATIBLE, new.namespace, new.name, old.version, new.version, _dist(old), _dist(new),
            f"context_schema {change.path}",
            f"{change.message}: "
            + (
                f"the check cannot show that {new.version} accepts every context {old.version} accepted, so it "
                "does not call it compatible"
                if change.kind in _UNSURE
                else f"a context {old.version} accepted may be refused by {new.version}"
            ),
            change.fix,
            bump,
        )
        for change in compare(old.context_schema, new.context_schema, mode)
        if change.breaking
    ]


def _steps(old: ExportedVersion, new: ExportedVersion, bump: bool) -> list[ReleaseFinding]:
    kept = {s.name for s in new.steps}
    added = sorted(kept - {s.name for s in old.steps})
    renamed = f"; new steps: {', '.join(added)}" if added else ""
    return [
        ReleaseFinding(
            STEP_REMOVED, new.namespace, new.name, old.version, new.version, _dist(old), _dist(new),
            f"step {step.name!r}",
            f"{old.version} has it and {new.version} does not (removed or renamed{renamed})",
            f"keep step {step.name!r} (callers read a child task's results by step name: "
            f"child.step({step.name!r})), {MAJOR_FIX}",
            bump,
        )
        for step in old.steps
        if step.name not in kept
    ]


def _removed(
    gone: ExportedVersion,
    now: Sequence[ExportedVersion],
    active: Mapping[tuple[str, str, str], int],
    sites: Sequence[CallSite],
    defaults: Mapping[tuple[str, str], Constraint],
    before: Sequence[ExportedVersion],
) -> list[ReleaseFinding]:
    found = []
    here = f"{now[-1].distribution} {now[-1].distribution_version}" if now else "not installed"
    tasks = active.get((gone.namespace, gone.name, gone.version), 0)
    if tasks:
        found.append(
            ReleaseFinding(
                REMOVED_WITH_TASKS, gone.namespace, gone.name, gone.version, None, _dist(gone), here,
                f"version {gone.version}",
                f"{gone.ref} is no longer installed while {tasks} unfinished task(s) of it exist: no worker can "
                "finish them (even a major version bump does not)",
                f"keep shipping {gone.ref} until its tasks have finished (or cancel them: list them with `teamflow "
                f"tasks --namespace {gone.namespace} --name {gone.name} --version {gone.version}`, then "
                "`teamflow cancel ID`)",
            )
        )
    bump = any(v.semver.major > gone.semver.major for v in now)
    targets_before, targets_now = [provided(v) for v in reversed(before)], [provided(v) for v in reversed(now)]
    for site in sites:
        try:
            ref = parse_ref(site.call.ref)
        except TeamflowError:
            continue
        if (ref.namespace, ref.name) != (gone.namespace, gone.name) or site.namespace == gone.namespace:
            continue
        default = defaults.get((ref.namespace, ref.name))
        try:
            select_version(ref.namespace, ref.name, targets_now, ref.version, default)
            continue  # it still resolves
        except TeamflowError:
            pass
        try:
            was = select_version(ref.namespace, ref.name, targets_before, ref.version, default)
        except TeamflowError:
            continue  # it resolved to nothing before either: the caller check reports it
        if was.version.text != gone.semver.text:
            continue
        found.append(
            ReleaseFinding(
                REMOVED_WHILE_CALLED, gone.namespace, gone.name, gone.version, None, _dist(gone), here,
                f"version {gone.version}",
                f"{gone.ref} is no longer installed while {site.caller} ({site.distribution} "
                f"{site.distribution_version}) step {site.step!r} calls {site.call.ref}, which resolved to it and "
                "now resolves to nothing",
                f"keep shipping {gone.ref} until {site.distribution} calls another version, {MAJOR_FIX}",
                bump,
            )
        )
    return found


def _policy(namespace: str, previous: RegistryExport, current: RegistryExport) -> list[ReleaseFinding]:
    before = next((ns for ns in previous.namespaces if ns.name == namespace), None)
    now = next(ns for ns in current.namespaces if ns.name == namespace)
    if before is None:
        return []
    old, new = before.policy, now.policy
    changes = []
    if old.requires_approval and not new.requires_approval:
        changes.append(("requires_approval", "requires_approval dropped: its versions would run unapproved"))
    if set(old.approvers) != set(new.approvers):
        changes.append(("approvers", f"approvers changed: {_listed(old.approvers)} -> {_listed(new.approvers)}"))
    if set(old.allowed_callers) != set(new.allowed_callers):
        changes.append(
            ("allowed_callers", f"allowed_callers changed: {_listed(old.allowed_callers)} -> {_listed(new.allowed_callers)}")
        )
    if old.compatibility != "none" and new.compatibility == "none":
        changes.append(("compatibility", f"compatibility {old.compatibility!r} -> 'none': context schemas go unchecked"))
    old_major, new_major = _major(before.owner_version), _major(now.owner_version)
    bump = before.owner == now.owner and old_major is not None and new_major is not None and new_major > old_major
    return [
        ReleaseFinding(
            POLICY_LOOSENED, namespace, None, before.owner_version, now.owner_version,
            f"{before.owner} {before.owner_version}", f"{now.owner} {now.owner_version}",
            f"policy {field}", what,
            f"restore the namespace policy's {field} ({_listed(getattr(old, field))}); a policy change ships in a "
            f"new major version of {now.owner}, with the platform team's review",
            bump,
        )
        for field, what in changes
    ]


def _listed(value: object) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(sorted(map(str, value))) + "]"
    return repr(value)


def _major(version: str) -> int | None:
    """A distribution version's major number (PEP 440 or SemVer), or None when it has none."""
    match = re.match(r"\d+", version)
    return int(match.group()) if match else None
