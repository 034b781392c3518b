"""The typed records the registry takes (sources, contributions, rules) and gives (entries,
refusals, conflicts, drift).

Refusals, conflicts and drift carry their ``message`` and ``fix`` as attrs fields, so the
CLI, the HTTP API and the admin page show the same words, and JSON output (which cattrs
builds from fields only, never from properties) includes them. The message is computed
from the record's facts at construction; it stays an ``__init__`` argument because the
API structures an unstructured load report back into these types.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import attrs
import jsonschema

from teamflow.models import Conflict, NamespacePolicy, Resolution, Step, Workflow
from teamflow.versions import Version

CONFIG_OWNER = "teamflow.toml"
"""The owner recorded for a namespace that the host configuration defines."""


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


class CatalogRow(Protocol):
    """What the registry reads of a version another host published (the store's ``VersionRecord``)."""

    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def fingerprint(self) -> str: ...
    @property
    def deprecated(self) -> str | None: ...
    @property
    def definition(self) -> dict[str, Any]: ...
    @property
    def distribution(self) -> str: ...
    @property
    def distribution_version(self) -> str: ...
    @property
    def published_at(self) -> float: ...


@attrs.frozen
class PublishedCatalog:
    """Everything hosts published to the store: each namespace's policy, every version."""

    namespaces: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    versions: tuple[CatalogRow, ...] = ()


@attrs.frozen
class Rules:
    """What the registry takes from outside: configuration and the store's memory."""

    platform_namespaces: Mapping[str, PlatformNamespace] = attrs.field(factory=dict)
    owner_pins: Mapping[str, str] = attrs.field(factory=dict)
    default_versions: Mapping[str, str] = attrs.field(factory=dict)
    strict: bool = False
    recorded_owners: Mapping[str, str] = attrs.field(factory=dict)
    recorded_fingerprints: Mapping[tuple[str, str, str], str] = attrs.field(factory=dict)
    # what other hosts published: the targets of calls into namespaces not loaded here, and
    # the calls of theirs into namespaces loaded here
    published: PublishedCatalog = attrs.field(factory=PublishedCatalog)


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
    message: str = attrs.field()

    @message.default
    def _message(self) -> str:
        where = f" step {self.step!r}" if self.step else ""
        text = f"{self.distribution} {self.distribution_version}: {self.subject}{where}: {self.reason}"
        return f"{text} (fix: {self.fix})" if self.fix else text

    def __str__(self) -> str:
        return self.message


@attrs.frozen
class ConflictOutcome:
    """A conflict, how it was resolved, and what would settle it for good.

    ``fix`` depends on who owns the namespace, which the conflict itself does not say, so
    the code that settles the conflict supplies it.
    """

    conflict: Conflict
    resolution: Resolution
    fix: str
    message: str = attrs.field()

    @message.default
    def _message(self) -> str:
        candidates = ", ".join(f"{c.distribution} {c.version}" for c in self.conflict.candidates)
        kept = self.resolution.kept
        verdict = f"kept {kept.distribution} {kept.version}" if kept else "all refused, key blocked"
        decided = f"; decided by {self.resolution.decided_by}" if self.resolution.decided_by else ""
        return (
            f"{self.conflict.kind} {self.conflict.key}: {candidates} -> {verdict} "
            f"({self.resolution.reason}{decided})"
        )


@attrs.frozen
class Drift:
    """A released version whose definition changed without a version bump."""

    ref: str
    distribution: str
    recorded: str
    current: str
    refused: bool
    fix: str = "release the change under a new version, or restore the released definition"
    message: str = attrs.field()

    @message.default
    def _message(self) -> str:
        verdict = "refused (strict mode)" if self.refused else "loaded (set strict = true to refuse)"
        return (
            f"{self.ref} from {self.distribution}: recorded fingerprint {self.recorded[:12]}, now "
            f"{self.current[:12]}: a released version changed without a version bump; {verdict}"
        )


LOADED, PUBLISHED, EXPORT = "loaded", "published", "export"
"""Where a caller's declared call or a provider's versions were read."""

KNOWN_AS = {LOADED: "loaded here", PUBLISHED: "published to the store", EXPORT: "in the export"}


@attrs.frozen
class CallFinding:
    """A declared call that does not hold: it resolves to nothing, or an example is refused.

    ``kind``: ``unknown_namespace`` (a warning, or in strict mode a problem: nothing could be
    checked), ``unresolved`` (no version matches), ``example_refused`` or ``invalid_call``.
    ``severity`` is ``problem`` (``teamflow check`` exits 1) or ``warning``. ``source`` says where the caller's
    declaration was read (``loaded`` here, ``published`` by another host, an ``export``);
    ``refused`` that strict mode did not load the caller's version.
    """

    kind: str
    severity: str
    caller: str
    distribution: str
    distribution_version: str
    step: str
    call: str
    reason: str
    fix: str
    source: str = LOADED
    example: int | None = None
    provider: str | None = None
    provider_distribution: str | None = None
    refused: bool = False
    message: str = attrs.field()

    @message.default
    def _message(self) -> str:
        where = "" if self.source == LOADED else f" ({KNOWN_AS[self.source]})"
        return (
            f"{self.distribution} {self.distribution_version}: {self.caller}{where} step {self.step!r} calls "
            f"{self.call}: {self.reason}"
        )


@attrs.frozen
class NamespaceEntry:
    """A namespace the registry settled: its policy, its owner distribution, its contributors."""

    policy: NamespacePolicy
    owner: str
    owner_version: str
    contributors: tuple[str, ...] = ()

    def may_register(self, distribution: str) -> bool:
        """Whether ``distribution`` may register workflows in this namespace."""
        return distribution == self.owner or distribution in self.contributors


@attrs.frozen(slots=True)
class StepRow:
    """How the store creates one step of a new task (it reads these four fields)."""

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
