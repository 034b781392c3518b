"""Each hook's contract, one test named for each, and a meta-test that keeps it so.

The meta-test holds every hook in ``hookspecs.py`` to three things: a docstring in
pytest's shape (a one-line summary, ``:param:`` for every argument, when it is called,
the stock sentence of a ``firstresult`` hook), a test whose name contains the hook's name,
and a line in the README's hook list.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest
from flows import AlphaPlugin, BetaPlugin, noop, policy

from teamflow import Candidate, Resolution, Step, TaskEvent, TaskRequest, Workflow, hookimpl, hookspecs

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("teamflow_"))
FIRSTRESULT = "Stops at first non-None result."


def _test_names() -> set[str]:
    names = set()
    for path in [*ROOT.glob("tests/test_*.py"), *ROOT.glob("plugins/*/tests/test_*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                names.add(node.name)
    return names


def _readme_hook_lines() -> dict[str, str]:
    """The README's hook list: ``- `teamflow_x(...)` ...`` lines under its "Hooks" heading."""
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^#+ Hooks\n(.*?)(?=^#)", text, re.S | re.M)
    assert section, "the README has no Hooks section"
    return {m.group(1): m.group(0) for m in re.finditer(r"^- `(teamflow_\w+)\(.*$", section.group(1), re.M)}


def test_hookspecs_define_the_documented_hooks() -> None:
    assert HOOKS == ["teamflow_namespaces", "teamflow_resolve_conflict", "teamflow_task_event", "teamflow_workflows"]


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_tested_and_listed(hook: str) -> None:
    spec = getattr(hookspecs, hook)
    doc = inspect.getdoc(spec) or ""
    summary, _, body = doc.partition("\n\n")
    assert summary and "\n" not in summary and summary.endswith("."), f"{hook}: a one-line summary first"
    for param in inspect.signature(spec).parameters:
        assert f":param {param}:" in body, f"{hook}: no ':param {param}:' in its docstring"
    assert re.search(r"\bCalled\b", body), f"{hook}: the docstring says when it is called"
    opts = spec.teamflow_spec if hasattr(spec, "teamflow_spec") else {}
    assert (FIRSTRESULT in body) == bool(opts.get("firstresult")), f"{hook}: firstresult hooks say '{FIRSTRESULT}'"
    assert any(hook in name for name in _test_names()), f"{hook}: no test named for it"
    assert hook in _readme_hook_lines(), f"{hook}: no line in the README's hook list"


# -- the hooks' contracts ------------------------------------------------------------------------


class _Billing:
    """A second team: one namespace, one good and one bad workflow version."""

    @hookimpl
    def teamflow_namespaces(self) -> list[object]:
        return [policy("billing")]

    @hookimpl
    def teamflow_workflows(self) -> list[object]:
        return [
            Workflow("billing", "charge", "1.0.0", [Step("a", noop)]),
            Workflow("billing", "charge", "1.1", [Step("a", noop)]),  # not SemVer: refused alone
        ]


def test_teamflow_namespaces_are_attributed_to_the_distribution_that_declared_them(make_sqlite_host) -> None:
    host = make_sqlite_host(("team-alpha", AlphaPlugin()), ("team-billing", _Billing()))
    assert host.registry.namespaces["billing"].owner == "team-billing"
    assert host.plugins.plugin("team-billing").namespaces == ("billing",)
    assert host.plugins.plugin("team-alpha").namespaces == ("alpha",)


def test_teamflow_workflows_refuses_a_bad_version_alone_and_names_its_distribution(make_sqlite_host) -> None:
    host = make_sqlite_host(("team-billing", _Billing()))
    assert [e.ref for e in host.registry.entries("billing")] == ["billing/charge@1.0.0"]
    [refusal] = host.plugins.refusals
    assert (refusal.distribution, refusal.subject) == ("team-billing", "billing/charge@1.1")
    assert "2.1.0" in refusal.message or "1.1.0" in refusal.message  # the fix names a full version


class _Resolver:
    """A platform plugin that awards contested workflow keys to the distribution it names."""

    def __init__(self, winner: str) -> None:
        self.winner = winner
        self.asked: list[str] = []

    @hookimpl
    def teamflow_resolve_conflict(self, conflict: object) -> Resolution | None:
        self.asked.append(conflict.key)  # type: ignore[attr-defined]
        kept = next((c for c in conflict.candidates if c.distribution == self.winner), None)  # type: ignore[attr-defined]
        return Resolution(kept, f"the platform gave it to {self.winner}") if kept else None


class _Squatter:
    """Registers a workflow version that team-alpha also registers, in team-alpha's namespace."""

    @hookimpl
    def teamflow_workflows(self) -> list[object]:
        return [Workflow("alpha", "chain", "1.0.0", [Step("s1", noop)])]


def test_teamflow_resolve_conflict_is_asked_only_of_listed_resolvers(make_sqlite_host) -> None:
    listed, unlisted = _Resolver("team-alpha"), _Resolver("team-squatter")
    host = make_sqlite_host(
        ("team-alpha", AlphaPlugin()),
        ("team-squatter", _Squatter()),
        ("team-platform", listed),
        ("team-rogue", unlisted),
        conflict_resolvers=("team-platform",),
    )
    assert listed.asked == ["alpha/chain@1.0.0"] and unlisted.asked == []
    [outcome] = host.plugins.conflicts
    assert outcome.resolution.kept == Candidate("team-alpha", "0+local", "alpha/chain@1.0.0")
    assert outcome.resolution.decided_by == "team-platform"
    ignored = [r for r in host.plugins.refusals if r.kind == "resolver_ignored"]
    assert [r.distribution for r in ignored] == ["team-rogue"]


class _Recorder:
    def __init__(self, raises: bool = False) -> None:
        self.raises = raises
        self.kinds: list[str] = []

    @hookimpl
    def teamflow_task_event(self, event: TaskEvent) -> None:
        self.kinds.append(event.kind)
        if self.raises:
            raise RuntimeError("subscriber bug")


def test_teamflow_task_event_calls_each_subscriber_on_its_own(make_sqlite_host) -> None:
    broken, sound = _Recorder(raises=True), _Recorder()
    host = make_sqlite_host(("team-alpha", AlphaPlugin()), ("team-beta", BetaPlugin()), ("obs-a", broken),
                            ("obs-b", sound))
    result = host.execute_sync(TaskRequest(name="chain", namespace="alpha", version="1.0.0"))
    assert result.status == "completed"
    assert sound.kinds == broken.kinds  # the raising subscriber harmed neither the task nor the other one
    assert sound.kinds[:2] == ["task.created", "task.started"] and sound.kinds[-1] == "task.completed"
    assert sound.kinds.count("step.completed") == 4
