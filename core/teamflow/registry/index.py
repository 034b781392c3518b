"""The runnable index: browse namespaces and workflow versions, resolve a request to one
version, and ``select_version``, the version rule shared with what other hosts published.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, TypeVar

from teamflow.errors import (
    InvalidVersion,
    NamespaceNotFound,
    VersionNotFound,
    WorkflowNotFound,
    WorkflowRefused,
)
from teamflow.registry.records import (
    CallFinding,
    ConflictOutcome,
    Drift,
    NamespaceEntry,
    Refusal,
    WorkflowEntry,
)
from teamflow.versions import Constraint, Version, parse_constraint, parse_version


class Registry:
    """The runnable index plus the load-time outcome (refusals, conflicts, drift, calls that do not hold)."""

    def __init__(
        self,
        namespaces: dict[str, NamespaceEntry],
        entries: Iterable[WorkflowEntry],
        refusals: list[Refusal],
        conflicts: list[ConflictOutcome],
        drift: list[Drift],
        blocked: dict[str, str],
        default_versions: Mapping[str, str],
        calls: Sequence[CallFinding] = (),
    ) -> None:
        self.namespaces = namespaces
        self.calls = list(calls)
        self.refusals = refusals
        self.conflicts = conflicts
        self.drift = drift
        self.blocked = blocked  # namespace or workflow key -> why
        self._exact: dict[tuple[str, str, str], WorkflowEntry] = {}
        by_workflow: dict[tuple[str, str], list[WorkflowEntry]] = defaultdict(list)
        for entry in entries:
            self._exact[(entry.namespace, entry.name, entry.version.text)] = entry
            by_workflow[(entry.namespace, entry.name)].append(entry)
        # Newest first: resolve() walks down and stops at the first match.
        self._versions = {
            key: sorted(group, key=lambda e: e.version.key, reverse=True)
            for key, group in by_workflow.items()
        }
        self._names_by_namespace: dict[str, list[str]] = defaultdict(list)
        for ns, name in sorted(self._versions):
            self._names_by_namespace[ns].append(name)
        self._default_versions = parse_defaults(default_versions)

    # -- browsing ---------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._exact)

    def entries(self, namespace: str | None = None) -> list[WorkflowEntry]:
        """Every runnable version, sorted by namespace, name and descending version."""
        keys = sorted(k for k in self._versions if namespace is None or k[0] == namespace)
        return [entry for key in keys for entry in self._versions[key]]

    def workflow_names(self, namespace: str) -> list[str]:
        """The names of the runnable workflows of ``namespace``, sorted (empty when none)."""
        return list(self._names_by_namespace.get(namespace, ()))

    def versions(self, namespace: str, name: str) -> list[WorkflowEntry]:
        """Every runnable version of one workflow, newest first; a NotFound when it has none."""
        self._require_workflow(namespace, name)
        return list(self._versions[(namespace, name)])

    def get(self, namespace: str, name: str, version: str) -> WorkflowEntry | None:
        """The exact version, or None."""
        return self._exact.get((namespace, name, version))

    def default_constraint(self, namespace: str, name: str) -> Constraint | None:
        """The configured default-version pin of one workflow, or None."""
        return self._default_versions.get((namespace, name))

    def default_constraints(self) -> dict[tuple[str, str], Constraint]:
        """Every configured default-version pin, by (namespace, name)."""
        return dict(self._default_versions)

    # -- resolution -------------------------------------------------------------------

    def resolve(self, namespace: str, name: str, version: str | None = None) -> WorkflowEntry:
        """Resolve a request to one version (exact, constraint, or None for the default).

        Among the matches the highest version that is not deprecated wins; a deprecated
        one only when nothing else matches. Raise a NotFound naming what exists.
        """
        if version is not None:
            exact = self._exact.get((namespace, name, version))
            if exact is not None:
                return exact
        candidates = self._versions.get((namespace, name))
        if candidates is None:
            self._require_workflow(namespace, name, version)
            raise AssertionError("unreachable")
        try:
            return select_version(
                namespace, name, candidates, version, self._default_versions.get((namespace, name))
            )
        except VersionNotFound as missing:
            self._raise_if_refused(namespace, name, version, missing)
            raise

    def require_namespace(self, namespace: str) -> NamespaceEntry:
        """The namespace, or NamespaceNotFound listing those that exist (or why it is blocked)."""
        entry = self.namespaces.get(namespace)
        if entry is None:
            known = ", ".join(sorted(self.namespaces)) or "none"
            why = self.blocked.get(namespace)
            raise NamespaceNotFound(
                f"namespace {namespace!r} is "
                + (f"blocked: {why}" if why else f"unknown; namespaces: {known}"),
                namespace=namespace,
                namespaces=sorted(self.namespaces),
            )
        return entry

    def _require_workflow(self, namespace: str, name: str, version: str | None = None) -> None:
        if (namespace, name) in self._versions:
            return
        self.require_namespace(namespace)
        names = self.workflow_names(namespace)
        missing = WorkflowNotFound(
            f"{namespace}/{name} does not exist; workflows in {namespace}: {', '.join(names) or 'none'}",
            namespace=namespace,
            name=name,
            workflows=names,
        )
        self._raise_if_refused(namespace, name, version, missing)
        raise missing

    def _raise_if_refused(
        self, namespace: str, name: str, version: str | None, missing: WorkflowNotFound | VersionNotFound
    ) -> None:
        """Raise WorkflowRefused when a version the request would have matched was registered
        and refused at load: "does not exist" would send its author looking in the wrong place."""
        refused = self.refused_versions(namespace, name)
        constraint = None
        if version is not None:
            try:
                constraint = parse_constraint(version)
            except InvalidVersion:
                return
        for found, refusal in refused:
            if constraint is None and found.is_prerelease:
                continue
            if version == found.text or constraint is None or constraint.matches(found):
                raise WorkflowRefused(
                    f"{refusal.subject} was registered by {refusal.distribution} {refusal.distribution_version} "
                    f"and refused at load ({refusal.kind}): {refusal.reason}. Fix: {refusal.fix}",
                    namespace=namespace,
                    name=name,
                    version=found.text,
                    kind=refusal.kind,
                    distribution=refusal.distribution,
                    fix=refusal.fix,
                    runnable=[e.version.text for e in self._versions.get((namespace, name), ())],
                ) from missing

    def refused_versions(self, namespace: str, name: str) -> list[tuple[Version, Refusal]]:
        """The refused registrations of one workflow with a valid version, newest first."""
        found: dict[str, tuple[Version, Refusal]] = {}
        prefix = f"{namespace}/{name}@"
        for refusal in self.refusals:
            if not refusal.subject.startswith(prefix):
                continue
            try:
                parsed = parse_version(refusal.subject[len(prefix):])
            except InvalidVersion:
                continue
            found.setdefault(parsed.text, (parsed, refusal))
        return sorted(found.values(), key=lambda pair: pair[0].key, reverse=True)


def parse_defaults(default_versions: Mapping[str, str]) -> dict[tuple[str, str], Constraint]:
    """Default-version pins (``{"payments/process_refund": "^2.0"}``) by (namespace, name)."""
    parsed = {}
    for key, value in default_versions.items():
        namespace, _, name = key.partition("/")
        parsed[(namespace, name)] = parse_constraint(value)
    return parsed


class Versioned(Protocol):
    """What ``select_version`` needs of a candidate: a loaded entry or a published version."""

    @property
    def version(self) -> Version: ...

    @property
    def deprecated(self) -> str | None: ...


V = TypeVar("V", bound=Versioned)


def select_version(
    namespace: str, name: str, candidates: Sequence[V], version: str | None, default: Constraint | None
) -> V:
    """DESIGN's rule over ``candidates`` (newest first): the highest match that is not
    deprecated; a deprecated one only when nothing else matches; pre-releases only when
    the constraint names one. Raise VersionNotFound listing what exists."""
    if version is not None:
        for entry in candidates:
            if entry.version.text == version:
                return entry
    constraint = parse_constraint(version) if version is not None else default
    fallback: V | None = None
    for entry in candidates:
        if constraint is None:
            if entry.version.is_prerelease:
                continue
        elif not constraint.matches(entry.version):
            continue
        if entry.deprecated is None:
            return entry
        if fallback is None:
            fallback = entry
    if fallback is not None:
        return fallback
    existing = ", ".join(e.version.text for e in candidates) or "none"
    wanted = version if version is not None else f"the default ({constraint or 'newest release'})"
    raise VersionNotFound(
        f"{namespace}/{name}: no version matches {wanted}; versions that exist: {existing}",
        namespace=namespace,
        name=name,
        requested=version,
        versions=[e.version.text for e in candidates],
    )
