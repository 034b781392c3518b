"""teamflow.testing, the pytest plugin for plugin authors: its fixtures and marker, seen
from generated test files run by pytester, and its helpers called directly."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from teamflow import NamespacePolicy, Step, StepContext, TaskRequest, TaskResult, Workflow, hookimpl
from teamflow.testing import TaskInfo, assert_plugin_loads, run_step

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]

# A plugin of two steps as a plugin author writes it, for the generated test files.
DEMO_PLUGIN = """
import pytest

from teamflow import NamespacePolicy, RetryableError, Step, Workflow, hookimpl
from teamflow.testing import run_workflow


def greet(ctx):
    if ctx.attempt == 1:
        raise RetryableError("the greeting service is warming up")
    return {"greeting": f"hello {ctx.context['name']}"}


def shout(ctx):
    return ctx.results["greet"]["greeting"].upper()


class Demo:
    @hookimpl
    def teamflow_namespaces(self):
        return [NamespacePolicy("demo", "demo", "demo@example.com")]

    @hookimpl
    def teamflow_workflows(self):
        return [Workflow("demo", "greet", "1.0.0", [Step("greet", greet), Step("shout", shout, depends_on="greet")])]
"""


def _run(pytester: pytest.Pytester, test_file: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_demo=DEMO_PLUGIN + textwrap.dedent(test_file))
    return pytester.runpytest("-p", "no:cacheprovider", "--strict-markers", *args)


def test_teamflow_host_runs_a_workflow_of_an_in_process_plugin(pytester: pytest.Pytester) -> None:
    result = _run(
        pytester,
        """
        @pytest.mark.teamflow_plugins(("demo-plugin", Demo()))
        def test_greet(teamflow_host):
            task = run_workflow(teamflow_host, "demo/greet@1.0.0", {"name": "ada"})
            assert task.status == "completed", task.error_summary
            assert task.step("greet").attempts == 2
            assert task.step("shout").result == "HELLO ADA"
            assert [p.distribution for p in teamflow_host.plugins.plugins] == ["demo-plugin"]
        """,
    )
    result.assert_outcomes(passed=1)


def test_teamflow_host_ignores_the_database_url_and_teamflow_toml(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEAMFLOW_DATABASE_URL", "postgresql://nobody@127.0.0.1:9/unreachable")
    monkeypatch.setenv("TEAMFLOW_STRICT", "true")
    pytester.makefile(
        ".toml", teamflow='database_url = "sqlite:////nonexistent/dir/teamflow.db"\nlease_s = -1\n'
    )
    result = _run(
        pytester,
        """
        @pytest.mark.teamflow_plugins(Demo())
        def test_database(teamflow_host, teamflow_host_factory, tmp_path):
            assert teamflow_host.database == f"sqlite:///{tmp_path}/teamflow.db"
            assert (teamflow_host.config.source, teamflow_host.config.strict) == ("teamflow.testing", False)
            assert run_workflow(teamflow_host, "demo/greet", {"name": "ada"}).status == "completed"
            strict = teamflow_host_factory(plugins=[], strict=True)
            assert strict.database == f"sqlite:///{tmp_path}/teamflow-2.db"
            assert strict.config.strict and not strict.registry.namespaces
        """,
    )
    result.assert_outcomes(passed=1)


def test_marker_loads_only_the_named_distributions(pytester: pytest.Pytester) -> None:
    result = _run(
        pytester,
        """
        @pytest.mark.teamflow_plugins("teamflow-inventory")
        def test_inventory_alone(teamflow_host):
            assert sorted(teamflow_host.registry.namespaces) == ["inventory"]
            assert [p.distribution for p in teamflow_host.plugins.plugins] == ["teamflow-inventory"]

        @pytest.mark.teamflow_plugins("teamflow_payments", Demo())
        def test_payments_and_an_object(teamflow_host):
            assert sorted(teamflow_host.registry.namespaces) == ["demo", "payments"]

        @pytest.mark.teamflow_plugins("teamflow-nonesuch")
        def test_not_installed(teamflow_host):
            pass
        """,
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*distribution 'teamflow-nonesuch' is not installed*"])


def test_the_distribution_under_test_is_the_rootdir_projects(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml('[project]\nname = "Teamflow_Customer_Success"\n')
    result = _run(
        pytester,
        """
        def test_default(teamflow_host):
            assert sorted(teamflow_host.registry.namespaces) == ["customer_success"]
        """,
    )
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("rootdir", "outcome", "says"),
    [
        # no pyproject.toml there: the one distribution whose entry point's module is under it
        (ROOT / "plugins" / "inventory" / "teamflow_inventory", "passed", None),
        # the host's own checkout holds three plugins: which one is meant is not said
        (
            ROOT,
            "errors",
            "*names 'teamflow', which has no teamflow.plugins entry point installed; the distributions "
            "with modules under the rootdir are teamflow-customer-success, teamflow-inventory, "
            "teamflow-payments; name the plugins with @pytest.mark.teamflow_plugins(*",
        ),
    ],
    ids=["module-under-rootdir", "ambiguous"],
)
def test_the_distribution_under_test_by_module_location(
    pytester: pytest.Pytester, rootdir: Path, outcome: str, says: str | None
) -> None:
    result = _run(
        pytester,
        """
        def test_default(teamflow_host):
            assert sorted(teamflow_host.registry.namespaces) == ["inventory"]
        """,
        f"--rootdir={rootdir}",
    )
    result.assert_outcomes(**{outcome: 1})
    if says:
        result.stdout.fnmatch_lines([says])


def _approved_refund(request: TaskRequest) -> TaskResult:
    return TaskResult(
        "child_1", request.namespace, request.name, "2.1.0", "completed", context=request.context
    )


def calls_payments(ctx: StepContext) -> dict:
    """A handler calling another team's workflow twice, as a team plugin's step does."""
    first = ctx.run_workflow(
        TaskRequest("process_refund", "payments", "^2.0", {"amount": ctx.context["amount"]})
    )
    second = ctx.run_workflow(TaskRequest("process_refund", "payments", "2.0.0", {"amount": 1}))
    return {
        "first": [first.id, first.version, dict(first.context)],
        "second": second.status,
        "key": ctx.idempotency_key,
        "task": ctx.task.ref,
        "attempt": ctx.attempt,
        "earlier": ctx.results["validate"],
    }


def test_run_step_answers_child_calls_from_children() -> None:
    failed = TaskResult("child_2", "payments", "process_refund", "2.0.0", "failed", error_summary="declined")
    result = run_step(
        calls_payments,
        {"amount": 5},
        {"validate": (1, 2)},
        task=TaskInfo("t1", "customer_success", "process_refund", "1.3.0"),
        attempt=2,
        children={"payments/process_refund@^2.0": _approved_refund, "payments/process_refund": failed},
    )
    assert result == {
        "first": ["child_1", "2.1.0", {"amount": 5}],
        "second": "failed",
        "key": "t1:calls_payments",
        "task": "customer_success/process_refund@1.3.0",
        "attempt": 2,
        "earlier": [1, 2],  # results come back from JSON, as from the store
    }
    requests: list[TaskRequest] = []

    def every_call(request: TaskRequest) -> TaskResult:
        requests.append(request)
        return failed

    assert (
        run_step(calls_payments, {"amount": 5}, {"validate": None}, children=every_call)["second"] == "failed"
    )
    assert [r.version for r in requests] == ["^2.0", "2.0.0"]


def test_run_step_fails_clearly_on_a_call_nothing_answers(pytester: pytest.Pytester) -> None:
    result = _run(
        pytester,
        """
        from teamflow import TaskRequest
        from teamflow.testing import run_step


        def refund(ctx):
            try:
                return ctx.run_workflow(TaskRequest("process_refund", "payments", "2.1.0")).status
            except Exception:  # a handler's own error handling cannot hide the missing answer
                return "swallowed"


        def test_unanswered():
            run_step(refund, children={"payments/process_payment@3.0.0": None})
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*run_step: test_demo:refund (step 'refund') called ctx.run_workflow(payments/process_refund@2.1.0) "
            "and nothing answers it; children answers payments/process_payment@3.0.0: "
            "pass children={'payments/process_refund@2.1.0': TaskResult(...)}"
        ]
    )
    result.stdout.no_fnmatch_line("*swallowed*")


def returns_a_set(ctx: StepContext) -> dict:
    return {"ids": {1, 2}}


def test_run_step_refuses_a_result_the_store_could_not_hold() -> None:
    with pytest.raises(
        pytest.fail.Exception, match=r"the result of .*:returns_a_set is not JSON-serialisable"
    ):
        run_step(returns_a_set)


def hello(ctx: StepContext) -> dict:
    return {"hello": ctx.context.get("name", "world")}


class Namespace:
    @hookimpl
    def teamflow_namespaces(self) -> list[NamespacePolicy]:
        return [NamespacePolicy("demo", "demo", "demo@example.com")]


class BadVersion(Namespace):
    @hookimpl
    def teamflow_workflows(self) -> list[Workflow]:
        return [
            Workflow("demo", "hello", "2.1", [Step("hello", hello)]),
            Workflow("demo", "hello", "1.0.0", [Step("hello", hello)]),
        ]


class MisspelledHook(Namespace):
    @hookimpl
    def teamflow_workflow(self) -> list[Workflow]:
        return []


def test_assert_plugin_loads_fails_with_the_refusals_message() -> None:
    with pytest.raises(AssertionError) as raised:
        assert_plugin_loads(("demo-plugin", BadVersion()))
    assert str(raised.value) == (
        "BadVersion did not load cleanly:\n"
        "- demo-plugin 0+local: demo/hello@2.1: invalid version '2.1': a version needs all three numbers "
        "MAJOR.MINOR.PATCH; write '2.1.0' (fix: use a full SemVer 2.0 version such as 2.1.0)"
    )


def test_assert_plugin_loads_names_an_unknown_hook_twice_over() -> None:
    with pytest.raises(AssertionError) as raised:
        assert_plugin_loads(("demo-plugin", MisspelledHook()))
    message = str(raised.value)
    assert "implements unknown hook(s) teamflow_workflow: misspelled?" in message
    assert "- pluggy check_pending: unknown hook 'teamflow_workflow'" in message


def test_assert_plugin_loads_returns_the_load_report() -> None:
    report = assert_plugin_loads("teamflow-payments", ("demo-plugin", Namespace()))
    assert report.ok
    assert report.plugin("demo-plugin").namespaces == ("demo",)
    assert report.plugin("teamflow-payments").namespaces == ("payments",)
