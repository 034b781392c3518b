"""A property of the step scheduler, over random DAGs and random per-attempt outcomes:

- a task ends ``completed`` exactly when every step completed, and ``failed`` exactly
  when the script makes some step fail for good (a permanent error, or retries used up);
- no step ever runs before all of its dependencies finished.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from conftest import executions, host_config
from flows import policy, scripted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from teamflow import Host, Step, TaskRequest, Workflow, hookimpl


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[tuple[str, list[str], int]], dict[str, list[str]]]:
    n = draw(st.integers(1, 6))
    steps = []
    for i in range(n):
        deps = (
            draw(st.lists(st.sampled_from([f"s{j}" for j in range(i)]), unique=True, max_size=3)) if i else []
        )
        steps.append((f"s{i}", deps, draw(st.integers(0, 2))))
    script = {
        name: draw(st.lists(st.sampled_from(["ok", "retry", "retry", "fail"]), max_size=3))
        for name, _, _ in steps
    }
    return steps, script


def expected_to_complete(steps: list[tuple[str, list[str], int]], script: dict[str, list[str]]) -> bool:
    for name, _, retry_limit in steps:
        for attempt in range(1 + retry_limit):
            action = script[name][attempt] if attempt < len(script[name]) else "ok"
            if action == "ok":
                break
            if action == "fail":
                return False
        else:
            return False
    return True


class DagPlugin:
    def __init__(self, steps: list[tuple[str, list[str], int]]) -> None:
        self.steps = steps

    @hookimpl
    def teamflow_namespaces(self):
        return [policy("prop")]

    @hookimpl
    def teamflow_workflows(self):
        steps = [Step(name, scripted, depends_on=deps, retry_limit=limit) for name, deps, limit in self.steps]
        return [Workflow("prop", "dag", "1.0.0", steps)]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags())
def test_task_completes_exactly_when_every_step_completes(case) -> None:
    steps, script = case
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "log"
        log.touch()
        config = host_config(f"sqlite:///{tmp}/t.db")
        with Host(config=config, plugins=[("prop", DagPlugin(steps))], discover=False) as host:
            deps = {name: d for name, d, _ in steps}
            result = host.execute_sync(
                TaskRequest(
                    namespace="prop", name="dag", context={"script": script, "deps": deps, "record": str(log)}
                )
            )
        statuses = {s.name: s.status for s in result.steps}
        all_completed = all(status == "completed" for status in statuses.values())
        assert (result.status == "completed") == all_completed
        assert result.status == ("completed" if expected_to_complete(steps, script) else "failed")
        if result.status == "failed":
            assert result.error_summary and any(status == "failed" for status in statuses.values())
        # Ordering, from the handlers' own timestamps: a step starts after its dependencies ended.
        starts: dict[str, float] = {}
        ends: dict[str, float] = {}
        for _, step, _, what, at, _ in executions(log):
            if what == "start":
                starts.setdefault(step, float(at))
            else:
                ends[step] = float(at)
        for name, dependencies, _ in steps:
            for dep in dependencies:
                if name in starts:
                    assert dep in ends and ends[dep] <= starts[name]
