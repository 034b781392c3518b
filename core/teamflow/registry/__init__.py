"""The registry: validates, indexes and resolves namespaces and workflow versions.

Pure and in memory: it imports neither the store nor the engine. What the store recorded
(owners, fingerprints) and what the configuration says (pins, platform namespaces, strict
mode) come in as ``Rules``.

- ``records``: the typed records it takes and gives (sources, contributions, rules,
  entries; refusals, conflicts and drift with their message and fix).
- ``validate``: one workflow version checked (names, version, step graph, schema,
  handlers) and compiled into a ``WorkflowEntry``.
- ``fingerprint``: the digest of a version's definition, handler references, route keys.
- ``ownership``: who owns each namespace and whose copy of each workflow version loads;
  ``build_registry``, whose outcome does not depend on load order.
- ``index``: ``Registry`` (browse, resolve) and ``select_version``, the version rule.
- ``published``: what a host publishes of its versions, and resolving a request through
  what other hosts published (for namespaces this process did not load).
- ``compat``: whether a context schema still accepts what the previous version accepted
  (``compare``, ``is_compatible``; Confluent's BACKWARD rules for JSON Schema).
- ``calls``: caller contracts: each declared call resolves to a version whose context
  schema accepts every example (at load time, and in ``teamflow check``).
- ``export``: the registry as a versioned JSON document, and its reader.
- ``release``: what the registry installed now breaks, compared with an export of the
  previous release (``teamflow check --against``).
"""

from teamflow.registry.index import Registry, Versioned, select_version
from teamflow.registry.ownership import ConflictResolver, build_registry
from teamflow.registry.records import (
    CONFIG_OWNER,
    CallFinding,
    ConflictOutcome,
    Contribution,
    Drift,
    NamespaceEntry,
    PlatformNamespace,
    Refusal,
    Rules,
    Source,
    StepRow,
    WorkflowEntry,
)
from teamflow.versions import Constraint

__all__ = [
    "CONFIG_OWNER",
    "CallFinding",
    "ConflictOutcome",
    "ConflictResolver",
    "Constraint",
    "Contribution",
    "Drift",
    "NamespaceEntry",
    "PlatformNamespace",
    "Refusal",
    "Registry",
    "Rules",
    "Source",
    "StepRow",
    "Versioned",
    "WorkflowEntry",
    "build_registry",
    "select_version",
]
