"""The registry: validates, indexes and resolves namespaces and workflow versions.

Pure and in memory. Its inputs are what each distribution registered plus the rules that
come from outside (host configuration, owners and fingerprints the store recorded, the
conflict-resolver hook); its outputs are the runnable index and every refusal and
conflict, with the distributions involved and the reason.

Order independence is by construction: registrations are grouped by key and every group
is decided from its whole membership, never from arrival order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Protocol, TypeVar

import attrs
import jsonschema

from teamflow.errors import InvalidVersion, NamespaceNotFound, VersionNotFound, WorkflowNotFound
from teamflow.fingerprint import HandlerError, canonical_json, fingerprint, resolve_handler, route_key
from teamflow.models import Candidate, Conflict, NamespacePolicy, Resolution, Step, Workflow
from teamflow.refs import parse_ref, valid_name
from teamflow.versions import Constraint, Version, parse_constraint, parse_version

CONFIG_OWNER = "teamflow.toml"


@attrs.frozen
class Source:
    """The distribution a registration came from."""

    distribution: str
    version: str
    entry_point: str = ""

    def __str__(self) -> str:
        return f"{self.distribution} {self.version}"


@attrs.frozen
class Contribution:
    """Everything one plugin registered through the hooks."""

    source: Source
    namespaces: tuple[Any, ...] = ()
    workflows: tuple[Any, ...] = ()


@attrs.frozen
class PlatformNamespace:
    """A namespace whose policy the host configuration defines (the seed's ``shared``)."""

    policy: NamespacePolicy
    contributors: tuple[str, ...] = ()


@attrs.frozen
class Rules:
    """What the registry takes from outside: configuration and the store's memory."""

    platform_namespaces: Mapping[str, PlatformNamespace] = attrs.field(factory=dict)
    owner_pins: Mapping[str, str] = attrs.field(factory=dict)
    default_versions: Mapping[str, str] = attrs.field(factory=dict)
    strict: bool = False
    recorded_owners: Mapping[str, str] = attrs.field(factory=dict)
    recorded_fingerprints: Mapping[tuple[str, str, str], str] = attrs.field(factory=dict)


@attrs.frozen
class Refusal:
    """One registration the registry did not accept, and what to do about it."""

    kind: str
    distribution: str
    distribution_version: str
    subject: str
    reason: str
    fix: str = ""
    step: str | None = None

    def __str__(self) -> str:
        where = f" step {self.step!r}" if self.step else ""
        text = f"{self.distribution} {self.distribution_version}: {self.subject}{where}: {self.reason}"
        return f"{text} (fix: {self.fix})" if self.fix else text


@attrs.frozen
class ConflictOutcome:
    """A conflict and how it was resolved."""

    conflict: Conflict
    resolution: Resolution


@attrs.frozen
class Drift:
    """A released version whose definition changed without a version bump."""

    ref: str
    distribution: str
    recorded: str
    current: str
    refused: bool


@attrs.frozen
class NamespaceEntry:
    policy: NamespacePolicy
    owner: str
    owner_version: str
    contributors: tuple[str, ...] = ()

    def may_register(self, distribution: str) -> bool:
        return distribution == self.owner or distribution in self.contributors


@attrs.frozen(slots=True)
class StepRow:
    """How the store creates one step of a new task (``store.records.StepPlan``)."""

    name: str
    deps: int  # distinct dependencies: 0 for a root
    max_attempts: int
    retryable: bool


@attrs.define(slots=True, eq=False)
class WorkflowEntry:
    """One runnable workflow version with everything the engine needs to run it."""

    workflow: Workflow
    version: Version
    fingerprint: str
    source: Source
    handlers: dict[str, Callable[..., Any]]
    handler_refs: dict[str, str]
    order: tuple[str, ...]  # steps in a topological order
    steps: dict[str, Step]
    successors: dict[str, tuple[str, ...]] = attrs.field(factory=dict)
    dependencies: dict[str, tuple[str, ...]] = attrs.field(factory=dict)
    step_rows: tuple[StepRow, ...] = ()
    route: str = ""
    _validator: Any = None

    @property
    def namespace(self) -> str:
        return self.workflow.namespace

    @property
    def name(self) -> str:
        return self.workflow.name

    @property
    def ref(self) -> str:
        return f"{self.workflow.namespace}/{self.workflow.name}@{self.version.text}"

    @property
    def deprecated(self) -> str | None:
        return self.workflow.deprecated

    def context_errors(self, context: Any) -> list[str]:
        """Return readable JSON Schema failures of ``context`` (empty when valid)."""
        if self.workflow.context_schema is None:
            return [] if isinstance(context, dict) else ["$: expected a JSON object"]
        if self._validator is None:
            schema = self.workflow.context_schema
            self._validator = jsonschema.validators.validator_for(schema)(schema)
        errors = sorted(self._validator.iter_errors(context), key=lambda e: list(e.absolute_path))
        return [f"{e.json_path}: {e.message}" for e in errors]


ConflictResolver = Callable[[Conflict], tuple[Resolution | None, str]]


def _no_resolver(conflict: Conflict) -> tuple[Resolution | None, str]:
    return None, ""


@lru_cache(maxsize=1024)
def _schema_problem(schema_json: str) -> str | None:
    import json

    schema = json.loads(schema_json)
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        return f"context_schema is not a valid JSON Schema: {exc.message}"
    return None


class _Invalid(Exception):
    def __init__(self, reason: str, fix: str = "", step: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.fix, self.step = reason, fix, step


def _topological_order(steps: Sequence[Step]) -> tuple[str, ...]:
    """Kahn's algorithm; on a cycle, raise naming the steps on it."""
    deps = {s.name: set(s.depends_on) for s in steps}
    order: list[str] = []
    ready = sorted(name for name, d in deps.items() if not d)
    remaining = {name: set(d) for name, d in deps.items() if d}
    while ready:
        name = ready.pop(0)
        order.append(name)
        for other in sorted(remaining):
            remaining[other].discard(name)
            if not remaining[other]:
                del remaining[other]
                ready.append(other)
    if remaining:
        cycle = sorted(remaining)
        raise _Invalid(
            f"steps form a cycle through {', '.join(cycle)}",
            "steps must form a DAG: remove one of the depends_on edges between these steps",
            step=cycle[0],
        )
    return tuple(order)


def _validate_step(step: Any, names: set[str]) -> None:
    if not isinstance(step, Step):
        raise _Invalid(f"{step!r} is not a teamflow.Step", "build each step with teamflow.Step(...)")
    if not valid_name(step.name):
        raise _Invalid(
            f"step name {step.name!r} must match [a-z][a-z0-9_]*", "rename the step", step=str(step.name)
        )
    for dep in step.depends_on:
        if dep == step.name:
            raise _Invalid(
                "step depends on itself (a cycle)", "remove it from its own depends_on", step=step.name
            )
        if dep not in names:
            raise _Invalid(
                f"depends on unknown step {dep!r}",
                f"depends_on must name steps of this workflow version: {', '.join(sorted(names))}",
                step=step.name,
            )
    if isinstance(step.retry_limit, bool) or not isinstance(step.retry_limit, int) or step.retry_limit < 0:
        raise _Invalid(f"retry_limit {step.retry_limit!r} must be an integer >= 0", step=step.name)
    if not isinstance(step.retryable, bool):
        raise _Invalid(f"retryable {step.retryable!r} must be True or False", step=step.name)
    if step.timeout_s is not None and (
        isinstance(step.timeout_s, bool) or not isinstance(step.timeout_s, int | float) or step.timeout_s <= 0
    ):
        raise _Invalid(f"timeout_s {step.timeout_s!r} must be a positive number or None", step=step.name)
    for call in step.calls:
        try:
            ref = parse_ref(call)
            if ref.version is not None:
                parse_constraint(ref.version)
        except Exception as exc:
            raise _Invalid(
                f"calls entry {call!r}: {exc}", "write 'namespace/name@version'", step=step.name
            ) from None


def _compile(workflow: Any, source: Source) -> WorkflowEntry:
    """Validate one workflow version; raise _Invalid naming what is wrong and the fix."""
    if not isinstance(workflow, Workflow):
        raise _Invalid(f"{workflow!r} is not a teamflow.Workflow", "return teamflow.Workflow objects")
    if not valid_name(workflow.namespace):
        raise _Invalid(f"namespace {workflow.namespace!r} must match [a-z][a-z0-9_]*")
    if not valid_name(workflow.name):
        raise _Invalid(f"workflow name {workflow.name!r} must match [a-z][a-z0-9_]*")
    if not isinstance(workflow.version, str):
        raise _Invalid(f"version {workflow.version!r} must be a string such as '1.0.0'")
    try:
        version = parse_version(workflow.version)
    except InvalidVersion as exc:
        raise _Invalid(exc.detail, "use a full SemVer 2.0 version such as 2.1.0") from None
    if not workflow.steps:
        raise _Invalid("has no steps", "give the workflow at least one teamflow.Step")
    names: set[str] = set()
    for step in workflow.steps:
        name = getattr(step, "name", None)
        if name in names:
            raise _Invalid(
                "duplicate step name", "give every step of a workflow version its own name", step=name
            )
        if isinstance(name, str):
            names.add(name)
    for step in workflow.steps:
        _validate_step(step, names)
    order = _topological_order(workflow.steps)
    if workflow.context_schema is not None:
        if not isinstance(workflow.context_schema, dict):
            raise _Invalid("context_schema must be a JSON Schema object (a dict)")
        try:
            schema_json = canonical_json(workflow.context_schema)
        except (TypeError, ValueError) as exc:
            raise _Invalid(f"context_schema is not JSON: {exc}") from None
        problem = _schema_problem(schema_json)
        if problem:
            raise _Invalid(problem, "fix the schema (see https://json-schema.org)")
    if workflow.deprecated is not None and not isinstance(workflow.deprecated, str):
        raise _Invalid("deprecated must be a message string such as 'use 2.1.0', or None")
    handlers: dict[str, Callable[..., Any]] = {}
    refs: dict[str, str] = {}
    for step in workflow.steps:
        try:
            refs[step.name], handlers[step.name] = resolve_handler(step.handler)
        except HandlerError as exc:
            raise _Invalid(str(exc), "point the step at a module-level function", step=step.name) from None
    digest = fingerprint(workflow.steps, refs, workflow.context_schema)
    return WorkflowEntry(
        workflow=workflow,
        version=version,
        fingerprint=digest,
        source=source,
        handlers=handlers,
        handler_refs=refs,
        order=order,
        steps={s.name: s for s in workflow.steps},
        successors={
            s.name: tuple(o.name for o in workflow.steps if s.name in o.depends_on) for s in workflow.steps
        },
        dependencies={s.name: tuple(s.depends_on) for s in workflow.steps},
        route=route_key(workflow.namespace, workflow.name, version.text, digest),
        step_rows=tuple(StepRow(s.name, len(set(s.depends_on)), 1 + s.retry_limit, s.retryable) for s in workflow.steps),
    )


class Registry:
    """The runnable index plus the load-time outcome (refusals, conflicts, drift)."""

    def __init__(
        self,
        namespaces: dict[str, NamespaceEntry],
        entries: Iterable[WorkflowEntry],
        refusals: list[Refusal],
        conflicts: list[ConflictOutcome],
        drift: list[Drift],
        blocked: dict[str, str],
        default_versions: Mapping[str, str],
    ) -> None:
        self.namespaces = namespaces
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
        self._default_versions = {
            tuple(key.split("/", 1)): parse_constraint(value) for key, value in default_versions.items()
        }

    # -- browsing ---------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._exact)

    def entries(self, namespace: str | None = None) -> list[WorkflowEntry]:
        """Every runnable version, sorted by namespace, name and descending version."""
        keys = sorted(k for k in self._versions if namespace is None or k[0] == namespace)
        return [entry for key in keys for entry in self._versions[key]]

    def workflow_names(self, namespace: str) -> list[str]:
        return list(self._names_by_namespace.get(namespace, ()))

    def versions(self, namespace: str, name: str) -> list[WorkflowEntry]:
        self._require_workflow(namespace, name)
        return list(self._versions[(namespace, name)])

    def get(self, namespace: str, name: str, version: str) -> WorkflowEntry | None:
        """The exact version, or None."""
        return self._exact.get((namespace, name, version))

    def default_constraint(self, namespace: str, name: str) -> Constraint | None:
        return self._default_versions.get((namespace, name))

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
            self._require_workflow(namespace, name)
            raise AssertionError("unreachable")
        return select_version(
            namespace, name, candidates, version, self._default_versions.get((namespace, name))
        )

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

    def _require_workflow(self, namespace: str, name: str) -> None:
        if (namespace, name) in self._versions:
            return
        self.require_namespace(namespace)
        names = self.workflow_names(namespace)
        raise WorkflowNotFound(
            f"{namespace}/{name} does not exist; workflows in {namespace}: {', '.join(names) or 'none'}",
            namespace=namespace,
            name=name,
            workflows=names,
        )


class Versioned(Protocol):
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


# ---------------------------------------------------------------------------------------
# Building the registry
# ---------------------------------------------------------------------------------------


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
                resolution = attrs.evolve(resolution, decided_by=resolver_name)
                self.conflicts.append(ConflictOutcome(conflict, resolution))
                return resolution
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
        self.conflicts.append(ConflictOutcome(conflict, default))
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
                        "namespace names must match [a-z][a-z0-9_]*",
                        "rename the namespace",
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
        winner: Source | None = None
        if pin is not None:
            winner = next((s for s in sources if s.distribution == pin), None)
            reason = f"owner pin in {CONFIG_OWNER}: {name} -> {pin}"
            fix = f"only {pin} may declare namespace {name!r}; remove this declaration"
            if winner is None:
                reason += f", which is not installed or does not declare {name!r}"
                fix = f"install {pin}, or change [owner_pins] {name}"
            if len(sources) > 1 or winner is None:
                kept = Candidate(winner.distribution, winner.version, name) if winner else None
                self.conflicts.append(
                    ConflictOutcome(
                        Conflict("namespace", name, candidates), Resolution(kept, reason, "owner pin")
                    )
                )
        elif recorded is not None and recorded != CONFIG_OWNER:
            winner = next((s for s in sources if s.distribution == recorded), None)
            reason = f"the store recorded {recorded} as owner of {name!r}"
            fix = f'to hand {name!r} over, pin it in {CONFIG_OWNER}: [owner_pins] {name} = "<distribution>"'
            if len(sources) > 1 or winner is None:
                kept = Candidate(winner.distribution, winner.version, name) if winner else None
                self.conflicts.append(
                    ConflictOutcome(
                        Conflict("namespace", name, candidates), Resolution(kept, reason, "recorded owner")
                    )
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
            resolution = self.settle(Conflict("namespace", name, candidates), default)
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
                    entry = _compile(workflow, contrib.source)
                except _Invalid as exc:
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
                drift.append(
                    Drift(
                        entry.ref, entry.source.distribution, recorded, entry.fingerprint, self.rules.strict
                    )
                )
                if self.rules.strict:
                    self.refuse(
                        "drift",
                        entry.source,
                        entry.ref,
                        f"released version changed without a version bump (recorded fingerprint "
                        f"{recorded[:12]}, now {entry.fingerprint[:12]}); refused in strict mode",
                        "release the change under a new version, or restore the released definition",
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
            resolution = self.settle(Conflict("workflow", ref, candidates), default)
            winner = None
            if resolution.kept is not None:
                winner = next(
                    s
                    for s in sources
                    if s.distribution == resolution.kept.distribution and s.version == resolution.kept.version
                )
            for source in sources:
                if source is not winner:
                    self.refuse(
                        "workflow_conflict",
                        source,
                        ref,
                        f"workflow version refused: {resolution.reason}",
                        f"bump the version, or register it in a namespace {source.distribution} owns",
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
            self.refuse(
                "undeclared_namespace",
                source,
                ref,
                reason,
                "declare it with teamflow_namespaces() or ask its owner; see `teamflow check`",
            )
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
    refusals = sorted(builder.refusals, key=lambda r: (r.subject, r.distribution, r.kind, r.step or ""))
    conflicts = sorted(builder.conflicts, key=lambda c: (c.conflict.kind, c.conflict.key))
    return Registry(namespaces, entries, refusals, conflicts, drift, builder.blocked, rules.default_versions)
