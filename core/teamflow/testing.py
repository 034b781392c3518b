"""teamflow's pytest plugin for plugin authors: a host per test, and helpers to run
workflows, single steps and load checks.

pytest loads this module in every run where teamflow is installed (it is registered
under the ``pytest11`` entry point ``teamflow``), so it imports only pytest and
the handler's types when it loads; the host, the plugin manager and entry-point discovery
are imported when a fixture or helper needs them.

Fixtures:

- ``teamflow_host``: a :class:`teamflow.Host` on a temporary SQLite file, closed after
  the test, holding the plugins the test names with the ``teamflow_plugins`` marker, or
  else the distribution under test.
- ``teamflow_host_factory``: builds more hosts (each on its own temporary SQLite file
  unless given a ``database_url``) with other plugins or configuration.

Marker: ``@pytest.mark.teamflow_plugins(*plugins)``. Each argument is the name of an
installed distribution (its ``teamflow.plugins`` entry points are loaded, and no other
distribution's), an in-process plugin object holding hookimpls, or a
``(distribution_name, object)`` pair. The closest marker wins: a function's marker
replaces its module's. With no argument the host loads no plugin at all.

The distribution under test, loaded when no marker names plugins, is found from pytest's
rootdir:

1. the ``[project] name`` of ``<rootdir>/pyproject.toml``, if an installed distribution of
   that name has a ``teamflow.plugins`` entry point (this covers any kind of install,
   e.g. ``pip install --no-deps --target DIR``);
2. else the one installed distribution whose ``teamflow.plugins`` entry points' modules
   are files under the rootdir (an editable install of the project being tested).

When neither rule finds exactly one distribution, a test using ``teamflow_host`` fails
and says what it looked at; name the plugins with the marker instead.

The hosts never read ``teamflow.toml`` or ``TEAMFLOW_*`` variables: their configuration
is :class:`teamflow.config.HostConfig`'s defaults, with short retry delays and polling so
that retries take milliseconds, and the overrides a test passes.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import tempfile
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeAlias

import pytest

# The handler's types, the errors and the plain models are light; the host, the plugin manager and
# entry-point discovery are imported inside the fixtures and helpers that use them.
from teamflow.engine.context import StepContext, TaskInfo
from teamflow.errors import PermanentError
from teamflow.models import TERMINAL, TaskRequest, TaskResult
from teamflow.refs import parse_ref

if TYPE_CHECKING:
    from teamflow.host import Host
    from teamflow.plugins import LoadReport

__all__ = [
    "ChildAnswer",
    "Children",
    "HostFactory",
    "TaskInfo",
    "assert_plugin_loads",
    "run_step",
    "run_workflow",
]

_MARKER = "teamflow_plugins"

# What a test host is configured with besides its database: retries and polling fast
# enough that a test never waits on the production back-off.
_TEST_CONFIG: Mapping[str, Any] = {
    "retry_base_s": 0.01,
    "retry_max_s": 0.05,
    "poll_interval_s": 0.05,
    "source": "teamflow.testing",
}

ChildAnswer: TypeAlias = TaskResult | Callable[[TaskRequest], TaskResult]
"""What answers one ``ctx.run_workflow`` call in :func:`run_step`: the child's final
state, or a callable that builds it from the request."""

Children: TypeAlias = Mapping[str, ChildAnswer] | Callable[[TaskRequest], TaskResult]
"""``run_step``'s ``children``: answers by workflow reference, or one callable for every call."""


# -- pytest hooks and fixtures -----------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``teamflow_plugins`` marker (so ``--strict-markers`` accepts it)."""
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(*plugins): the plugins teamflow_host loads instead of the distribution under "
        "test: installed distribution names, plugin objects, or (distribution_name, object) pairs",
    )


class HostFactory(Protocol):
    """The ``teamflow_host_factory`` fixture's type: ``factory(plugins=None, **config) -> Host``."""

    def __call__(self, plugins: Sequence[object] | None = None, **config: Any) -> Host:
        """A new host, closed after the test.

        :param plugins: distribution names, plugin objects or ``(distribution_name, object)``
            pairs; ``None`` loads what ``teamflow_host`` loads (the marker's plugins, else
            the distribution under test).
        :param config: :class:`teamflow.config.HostConfig` fields that override the test
            configuration, e.g. ``strict=True``, ``owner_pins={...}``, or a ``database_url``
            to share one database between hosts.
        """
        ...


_DISTRIBUTION_UNDER_TEST = pytest.StashKey[tuple[str | None, str]]()


def _distribution_under_test(config: pytest.Config) -> str:
    """The distribution found by the rules in this module's docstring (computed once per run)."""
    if _DISTRIBUTION_UNDER_TEST not in config.stash:
        config.stash[_DISTRIBUTION_UNDER_TEST] = _find_distribution(config.rootpath)
    name, why = config.stash[_DISTRIBUTION_UNDER_TEST]
    if name is None:
        _fail(
            f"teamflow_host: cannot tell which distribution is under test: {why}; name the plugins with "
            f'@pytest.mark.{_MARKER}("your-distribution", ...)'
        )
    return name


def _find_distribution(rootdir: Path) -> tuple[str | None, str]:
    """``(distribution, "")``, or ``(None, what was looked at)``."""
    import importlib_metadata

    from teamflow.config import normalize_distribution
    from teamflow.plugins import ENTRY_POINT_GROUP

    providers: dict[str, list[importlib_metadata.EntryPoint]] = {}
    for ep in importlib_metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.dist is not None:
            providers.setdefault(normalize_distribution(ep.dist.name), []).append(ep)
    pyproject = rootdir / "pyproject.toml"
    project = None
    if pyproject.is_file():
        project = tomllib.loads(pyproject.read_text()).get("project", {}).get("name")
        if isinstance(project, str) and normalize_distribution(project) in providers:
            return normalize_distribution(project), ""
        named = f"{pyproject} names {project!r}, which has no {ENTRY_POINT_GROUP} entry point installed"
    else:
        named = f"there is no pyproject.toml in the rootdir {rootdir}"

    def under_rootdir(ep: importlib_metadata.EntryPoint) -> bool:
        # find_spec of a top-level name locates it without importing it
        spec = importlib.util.find_spec(ep.module.partition(".")[0])
        if spec is None:
            return False
        places = [spec.origin] if spec.origin else list(spec.submodule_search_locations or ())
        return any(Path(place).resolve().is_relative_to(rootdir.resolve()) for place in places)

    local = sorted(name for name, eps in providers.items() if any(under_rootdir(ep) for ep in eps))
    if len(local) == 1:
        return local[0], ""
    found = (
        f"the distributions with modules under the rootdir are {', '.join(local)}"
        if local
        else f"no installed {ENTRY_POINT_GROUP} entry point has its module under the rootdir {rootdir}"
    )
    return None, f"{named}; {found}"


def _marked_plugins(request: pytest.FixtureRequest) -> Sequence[object]:
    marker = request.node.get_closest_marker(_MARKER)
    if marker is not None:
        return marker.args
    return [_distribution_under_test(request.config)]


@pytest.fixture
def teamflow_host_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HostFactory]:
    """Build hosts on temporary SQLite files; every host it built is closed after the test.

    ``teamflow_host_factory(plugins=None, **config)``: see :class:`HostFactory`.
    """
    hosts: list[Host] = []

    def make(plugins: Sequence[object] | None = None, **config: Any) -> Host:
        loaded, failures = _load(_marked_plugins(request) if plugins is None else plugins)
        if failures:
            _fail("\n".join(failures))
        name = "teamflow.db" if not hosts else f"teamflow-{len(hosts) + 1}.db"
        host = _host(loaded, tmp_path / name, config)
        hosts.append(host)
        return host

    yield make
    for host in reversed(hosts):
        host.close()


@pytest.fixture
def teamflow_host(teamflow_host_factory: HostFactory) -> Host:
    """A host on a temporary SQLite file with the marker's plugins, else the distribution
    under test; closed after the test."""
    return teamflow_host_factory()


def _fail(message: str) -> NoReturn:
    """Fail the test with ``message`` alone: teamflow.testing's own frames would only hide it."""
    raise pytest.fail.Exception(message, pytrace=False)


# -- building hosts ----------------------------------------------------------------------


def _load(plugins: Sequence[object]) -> tuple[list[object], list[str]]:
    """The objects to register (distribution names replaced by their entry points' objects),
    and a message for each distribution or entry point that could not be loaded."""
    import importlib_metadata

    from teamflow.config import normalize_distribution
    from teamflow.plugins import ENTRY_POINT_GROUP

    loaded: list[object] = []
    failures: list[str] = []
    for plugin in plugins:
        if not isinstance(plugin, str):
            loaded.append(plugin)
            continue
        try:
            dist = importlib_metadata.distribution(plugin)
        except importlib_metadata.PackageNotFoundError:
            failures.append(f"distribution {plugin!r} is not installed: install it beside teamflow")
            continue
        name = normalize_distribution(dist.name)
        eps = sorted(dist.entry_points.select(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
        if not eps:
            failures.append(
                f"{name} {dist.version} has no {ENTRY_POINT_GROUP} entry point: add one under "
                f'[project.entry-points."{ENTRY_POINT_GROUP}"] in its pyproject.toml'
            )
        for ep in eps:
            try:
                loaded.append((name, ep.load()))
            except Exception as exc:
                failures.append(
                    f'Error importing plugin "{name} {dist.version} ({ep.name} = {ep.value})": '
                    f"{type(exc).__name__}: {exc}"
                )
    return loaded, failures


def _host(plugins: Sequence[object], database: Path, overrides: Mapping[str, Any]) -> Host:
    from teamflow.config import HostConfig, normalize_distribution
    from teamflow.host import Host

    settings = {"database_url": f"sqlite:///{database}", **_TEST_CONFIG, **overrides}
    # load_config normalises distribution names; a test's overrides get the same treatment
    if "owner_pins" in settings:
        settings["owner_pins"] = {ns: normalize_distribution(d) for ns, d in settings["owner_pins"].items()}
    if "conflict_resolvers" in settings:
        settings["conflict_resolvers"] = tuple(
            normalize_distribution(d) for d in settings["conflict_resolvers"]
        )
    return Host(config=HostConfig(**settings), plugins=plugins, discover=False, migrate=True)


# -- helpers -----------------------------------------------------------------------------


def run_workflow(
    host: Host, ref_or_request: str | TaskRequest, context: Mapping[str, Any] | None = None
) -> TaskResult:
    """Run a workflow to the end in this process (``host.execute_sync``) and return its final state.

    Inspect the steps with ``result.step("name").result``, ``.status``, ``.attempts`` and
    ``.error``; a failed task is returned, not raised (``result.status == "failed"``,
    ``result.error_summary``).

    :param host: the host to run on, e.g. the ``teamflow_host`` fixture.
    :param ref_or_request: a reference ``"namespace/name[@version-or-constraint]"``, or a
        :class:`teamflow.TaskRequest` (which carries its own context).
    :param context: the task's context, with a reference.
    """
    if isinstance(ref_or_request, TaskRequest):
        if context is not None:
            raise TypeError("run_workflow: a TaskRequest carries its context; pass a reference to give one")
        request = ref_or_request
    else:
        ref = parse_ref(ref_or_request)
        request = TaskRequest(ref.name, ref.namespace, ref.version, context or {})
    return host.execute_sync(request)


def run_step(
    handler: Callable[[StepContext], Any],
    context: Mapping[str, Any] | None = None,
    results: Mapping[str, Any] | None = None,
    *,
    task: TaskInfo | None = None,
    step: str | None = None,
    attempt: int = 1,
    children: Children | None = None,
) -> Any:
    """Run one handler with a real :class:`teamflow.StepContext` and no host; return its result.

    The context and the earlier results reach the handler, and its result comes back,
    through JSON, as they do through the store: a result that is not JSON fails the test.
    ``ctx.idempotency_key`` is ``f"{task.id}:{step}"``, as in the host. An ``async def``
    handler is run to the end. Exceptions the handler raises (``RetryableError``,
    ``PermanentError``, ...) propagate to the test.

    :param handler: the step's handler.
    :param context: the task's context (``ctx.context``).
    :param results: finished steps' results by step name (``ctx.results``).
    :param task: the task the step belongs to (``ctx.task``); default
        ``TaskInfo("task_1", "test", "test", "0.0.0")``.
    :param step: the step's name (``ctx.step``); default the handler's ``__name__``.
    :param attempt: the 1-based attempt (``ctx.attempt``).
    :param children: what ``ctx.run_workflow(request)`` returns, so that a handler calling
        another team's workflow is tested without that team's plugin: a mapping whose
        keys are references as the handler requests them (``"payments/process_refund@2.1.0"``,
        ``"payments/process_refund@^2.0"``), or ``"namespace/name"`` for any version, and
        whose values are a :class:`teamflow.TaskResult` or a callable building one from
        the request; or one callable answering every call. A call nothing answers fails
        the test, naming the reference requested.
    """
    if step is None:
        step = getattr(handler, "__name__", None)
        if step is None:
            raise TypeError(f"run_step: {handler!r} has no __name__: pass step=")
    label = f"{getattr(handler, '__module__', '?')}:{getattr(handler, '__qualname__', step)}"

    def run_child(_ctx: StepContext, request: TaskRequest, _ordinal: int) -> TaskResult:
        if not isinstance(request, TaskRequest):  # as the host's own check says it
            raise PermanentError(f"run_workflow takes a teamflow.TaskRequest, got {type(request).__name__}")
        if children is None or isinstance(children, Mapping):
            answers = children or {}
            answer = answers.get(request.ref, answers.get(f"{request.namespace}/{request.name}"))
            if answer is None:
                known = f"; children answers {', '.join(sorted(answers))}" if answers else ""
                _fail(
                    f"run_step: {label} (step {step!r}) called ctx.run_workflow({request.ref}) and nothing "
                    f"answers it{known}: pass children={{{request.ref!r}: TaskResult(...)}}"
                )
        else:
            answer = children
        child = answer if isinstance(answer, TaskResult) else answer(request)
        if not isinstance(child, TaskResult) or child.status not in TERMINAL:
            _fail(
                f"run_step: the answer to {request.ref} must be a teamflow.TaskResult that ended "
                f"(status {', '.join(sorted(TERMINAL))}), as run_workflow returns only once the child "
                f"ends; got {child!r}"
            )
        return child

    ctx = StepContext(
        task or TaskInfo("task_1", "test", "test", "0.0.0"),
        step,
        attempt,
        _through_json(context or {}, "the context"),
        _through_json(results or {}, "the results"),
        run_child,
    )
    result = asyncio.run(handler(ctx)) if inspect.iscoroutinefunction(handler) else handler(ctx)
    return _through_json(result, f"the result of {label}")


def _through_json(value: Any, what: str) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        _fail(f"run_step: {what} is not JSON-serialisable ({exc}); the host stores JSON")


def assert_plugin_loads(*plugins: object, **config: Any) -> LoadReport:
    """Assert that the plugins load into a fresh host without a problem; return its load report.

    Fails (``AssertionError``, listing each problem with its fix) on an entry point that
    does not import, a plugin teamflow refused to register (a misspelled hook, a bad
    hookimpl signature), a refused namespace or workflow version, a conflict, drift, or
    a hookimpl pluggy's ``check_pending()`` finds no hookspec for.

    The host is built as ``teamflow_host_factory`` builds one, on a temporary SQLite file,
    and is closed before this returns: the report is what is left to inspect
    (``report.plugin("teamflow-payments").workflows``).

    :param plugins: distribution names, plugin objects or ``(distribution_name, object)``
        pairs, as for the ``teamflow_plugins`` marker.
    :param config: :class:`teamflow.config.HostConfig` overrides, e.g. ``strict=True``.
    """
    __tracebackhide__ = True
    if not plugins:
        raise TypeError("assert_plugin_loads: name at least one plugin")
    loaded, problems = _load(plugins)
    with tempfile.TemporaryDirectory(prefix="teamflow-testing-") as tmp:
        host = _host(loaded, Path(tmp) / "teamflow.db", config)
        report = host.plugins
        host.close()
    problems += [f"{p.message} (fix: {p.fix})" for p in report.failed]
    problems += [r.message for r in report.refusals]  # a refusal's message ends with its fix
    problems += [f"{c.message} (fix: {c.fix})" for c in report.conflicts]
    problems += [f"drift: {d.message} (fix: {d.fix})" for d in report.drift]
    problems += _pending(loaded)
    if problems:
        names = ", ".join(_label(p) for p in plugins)
        raise AssertionError(f"{names} did not load cleanly:\n" + "\n".join(f"- {p}" for p in problems))
    return report


def _pending(plugins: Sequence[object]) -> list[str]:
    """pluggy's own verdict on hookimpls without a hookspec, on a manager of these plugins alone."""
    import pluggy

    from teamflow import hookspecs

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for plugin in plugins:
        obj = plugin[1] if isinstance(plugin, tuple) else plugin
        try:
            pm.register(obj)
        except Exception:  # pluggy's validation: teamflow's report already holds this failure
            continue
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        return [f"pluggy check_pending: {exc}"]
    return []


def _label(plugin: object) -> str:
    if isinstance(plugin, str):
        return plugin
    obj = plugin[1] if isinstance(plugin, tuple) else plugin
    return getattr(obj, "__name__", None) or type(obj).__name__
