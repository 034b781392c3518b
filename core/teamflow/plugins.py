"""Plugin discovery, the pluggy manager, and the load report.

A typed facade over the hooks: the rest of the host calls ``Plugins.collect()``,
``Plugins.resolve_conflict()`` and ``Plugins.fire()``, never ``pm.hook.x`` directly.
Every hook is called per plugin so that each registration is attributed to the
distribution that made it, and a plugin that raises affects only itself.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
import importlib_metadata
import pluggy
from loguru import logger

from teamflow import hookspecs
from teamflow.config import normalize_distribution
from teamflow.events import TaskEvent
from teamflow.models import Candidate, Conflict, Resolution
from teamflow.registry import CallFinding, ConflictOutcome, Contribution, Drift, Refusal, Registry, Source

ENTRY_POINT_GROUP = "teamflow.plugins"


@attrs.frozen
class PluginRecord:
    """One entry point: where it came from, whether it loaded, what it registered."""

    distribution: str
    version: str
    entry_point: str
    status: str  # "loaded" or "failed"
    error: str | None = None
    error_where: str | None = None
    hooks: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    workflows: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        """What every surface says of a plugin that failed to load."""
        where = f" at {self.error_where}" if self.error_where else ""
        return f"{self.distribution} {self.version} ({self.entry_point}): {self.error}{where}"

    @property
    def fix(self) -> str:
        return f"repair or uninstall {self.distribution}; the other plugins still loaded"


@attrs.frozen
class LoadReport:
    """The outcome of loading plugins: one source for the CLI, the HTTP API and the admin page."""

    plugins: tuple[PluginRecord, ...]
    refusals: tuple[Refusal, ...]
    conflicts: tuple[ConflictOutcome, ...]
    drift: tuple[Drift, ...]
    calls: tuple[CallFinding, ...] = ()  # declared calls that do not hold (problems and warnings)

    @property
    def failed(self) -> tuple[PluginRecord, ...]:
        return tuple(p for p in self.plugins if p.status != "loaded")

    @property
    def problems(self) -> int:
        calls = sum(c.severity == "problem" for c in self.calls)
        return len(self.failed) + len(self.refusals) + len(self.conflicts) + len(self.drift) + calls

    @property
    def ok(self) -> bool:
        return self.problems == 0

    def plugin(self, distribution: str) -> PluginRecord:
        wanted = normalize_distribution(distribution)
        for record in self.plugins:
            if record.distribution == wanted:
                return record
        raise KeyError(f"no plugin from distribution {distribution!r}")


def _where(exc: BaseException) -> str:
    """The plugin's own line: for a SyntaxError the file it names, else the innermost real frame."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<frozen")]
    if not frames:
        return ""
    last = frames[-1]
    return f"{last.filename}:{last.lineno} in {last.name}"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Plugins:
    """Owns the plugin manager and knows which distribution each plugin came from."""

    def __init__(self, resolvers: Sequence[str] = ()) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.resolvers = tuple(normalize_distribution(r) for r in resolvers)
        self._sources: dict[str, Source] = {}
        self._records: dict[str, PluginRecord] = {}
        self._hook_refusals: list[Refusal] = []

    # -- loading ----------------------------------------------------------------------

    def discover(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Load each entry point of ``group`` on its own; a broken one is recorded, not fatal."""
        for ep in sorted(
            importlib_metadata.entry_points(group=group),
            key=lambda e: (e.dist.name if e.dist else "", e.name),
        ):
            dist_name = normalize_distribution(ep.dist.name) if ep.dist else ep.name
            dist_version = ep.dist.version if ep.dist else "0"
            source = Source(dist_name, dist_version, f"{ep.name} = {ep.value}")
            try:
                plugin = ep.load()
            except BaseException as exc:  # a plugin's import may raise anything, even SystemExit
                if isinstance(exc, KeyboardInterrupt):
                    raise
                logger.error("Error importing plugin {}: {}", source, _describe(exc))
                self._fail(source, f"import failed: {_describe(exc)}", _where(exc))
                continue
            self.register(plugin, source)

    def register(self, plugin: object, source: Source) -> None:
        """Register one plugin object (a module or an instance holding hookimpls)."""
        name = f"{source.distribution}:{source.entry_point}"
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # pluggy validation: bad hookimpl signature, duplicate object
            self._fail(source, f"registration failed: {_describe(exc)}", "")
            return
        unknown = [hc.name for hc in self.pm.get_hookcallers(plugin) or () if hc.spec is None]
        if unknown:
            self.pm.unregister(plugin)
            self._fail(
                source,
                f"implements unknown hook(s) {', '.join(unknown)}: misspelled? teamflow's hooks are "
                "teamflow_namespaces, teamflow_workflows, teamflow_resolve_conflict, teamflow_task_event",
                "",
            )
            return
        hooks = tuple(sorted(hc.name for hc in self.pm.get_hookcallers(plugin) or ()))
        self._sources[name] = source
        self._records[name] = PluginRecord(
            source.distribution, source.version, source.entry_point, "loaded", hooks=hooks
        )

    def _fail(self, source: Source, error: str, where: str) -> None:
        key = f"{source.distribution}:{source.entry_point}"
        self._records[key] = PluginRecord(
            source.distribution, source.version, source.entry_point, "failed", error, where
        )

    # -- registration hooks -----------------------------------------------------------

    def _call_each(self, hook_name: str) -> Iterable[tuple[Source, list[Any]]]:
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            source = self._sources[impl.plugin_name]
            try:
                result = impl.function()
                items = list(result or ())
            except Exception as exc:
                logger.error("{} of {} raised {}", hook_name, source, _describe(exc))
                self._hook_refusals.append(
                    Refusal(
                        "hook_failed",
                        source.distribution,
                        source.version,
                        hook_name,
                        f"raised {_describe(exc)} at {_where(exc)}",
                        f"fix {hook_name} in {source.distribution}",
                    )
                )
                continue
            yield source, items

    def collect(self) -> list[Contribution]:
        """Ask every plugin, one at a time, for its namespaces and workflows."""
        namespaces: dict[Source, list[Any]] = {}
        workflows: dict[Source, list[Any]] = {}
        for source, items in self._call_each("teamflow_namespaces"):
            namespaces.setdefault(source, []).extend(items)
        for source, items in self._call_each("teamflow_workflows"):
            workflows.setdefault(source, []).extend(items)
        for impl in self.pm.hook.teamflow_resolve_conflict.get_hookimpls():
            source = self._sources[impl.plugin_name]
            if source.distribution not in self.resolvers:
                self._hook_refusals.append(
                    Refusal(
                        "resolver_ignored",
                        source.distribution,
                        source.version,
                        "teamflow_resolve_conflict",
                        "implements teamflow_resolve_conflict but is not listed in conflict_resolvers; "
                        "its answers are ignored (a team cannot award itself another team's namespace)",
                        "remove the hook, or have the platform add this distribution to conflict_resolvers",
                    )
                )
        sources = set(namespaces) | set(workflows)
        return [
            Contribution(source, tuple(namespaces.get(source, ())), tuple(workflows.get(source, ())))
            for source in sorted(sources, key=lambda s: (s.distribution, s.entry_point))
        ]

    def resolve_conflict(self, conflict: Conflict) -> tuple[Resolution | None, str]:
        """Ask the configured resolvers in configuration order; first non-None answer wins."""
        impls = {
            self._sources[i.plugin_name].distribution: i
            for i in self.pm.hook.teamflow_resolve_conflict.get_hookimpls()
        }
        for distribution in self.resolvers:
            impl = impls.get(distribution)
            if impl is None:
                continue
            try:
                answer = impl.function(conflict=conflict)
            except Exception as exc:
                logger.error(
                    "teamflow_resolve_conflict of {} raised {}; asking the next resolver",
                    distribution,
                    _describe(exc),
                )
                continue
            if answer is None:
                continue
            if not isinstance(answer, Resolution) or not (
                answer.kept is None or isinstance(answer.kept, Candidate)
            ):
                logger.error(
                    "teamflow_resolve_conflict of {} returned {!r}, not a teamflow.Resolution; ignored",
                    distribution,
                    answer,
                )
                source = next(s for s in self._sources.values() if s.distribution == distribution)
                self._hook_refusals.append(
                    Refusal(
                        "bad_resolution",
                        distribution,
                        source.version,
                        conflict.key,
                        f"teamflow_resolve_conflict returned {answer!r}, not a teamflow.Resolution; ignored",
                        "return Resolution(kept=<one of conflict.candidates or None>, reason=...)",
                    )
                )
                continue
            return answer, distribution
        return None, ""

    # -- events -----------------------------------------------------------------------

    def has_event_subscribers(self) -> bool:
        return bool(self.pm.hook.teamflow_task_event.get_hookimpls())

    def fire(self, event: TaskEvent) -> None:
        """Call each event subscriber on its own; one that raises is logged, the rest still run."""
        for impl in self.pm.hook.teamflow_task_event.get_hookimpls():
            try:
                impl.function(event=event)
            except Exception as exc:
                source = self._sources.get(impl.plugin_name)
                logger.opt(exception=exc).error(
                    "teamflow_task_event of {} raised on {} for task {}", source, event.kind, event.task_id
                )

    # -- the report -------------------------------------------------------------------

    def report(self, registry: Registry) -> LoadReport:
        namespaces: dict[str, list[str]] = {}
        workflows: dict[str, list[str]] = {}
        for name, ns in registry.namespaces.items():
            namespaces.setdefault(ns.owner, []).append(name)
        for entry in registry.entries():
            workflows.setdefault(entry.source.distribution, []).append(entry.ref)
        records = []
        for record in self._records.values():
            records.append(
                attrs.evolve(
                    record,
                    namespaces=tuple(sorted(namespaces.get(record.distribution, ()))),
                    workflows=tuple(sorted(workflows.get(record.distribution, ()))),
                )
            )
        records.sort(key=lambda r: (r.distribution, r.entry_point))
        refusals = tuple(sorted(self._hook_refusals, key=lambda r: (r.distribution, r.kind))) + tuple(
            registry.refusals
        )
        return LoadReport(
            tuple(records), refusals, tuple(registry.conflicts), tuple(registry.drift), tuple(registry.calls)
        )
