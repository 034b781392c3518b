"""Workflows and handlers for host tests (module-level, so workers can find them).

Handlers append a line to ``$TEAMFLOW_TEST_RECORD`` (when set) for every execution, so
tests can count how often each step really ran, across processes.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

from loguru import logger

from teamflow import (
    NamespacePolicy,
    PermanentError,
    RetryableError,
    Step,
    StepContext,
    TaskRequest,
    Workflow,
    hookimpl,
)

_lock = threading.Lock()


def record(ctx: StepContext, what: str = "ran") -> None:
    path = os.environ.get("TEAMFLOW_TEST_RECORD") or ctx.context.get("record")
    if path:
        with _lock, open(path, "a") as fh:
            fh.write(f"{ctx.task.id} {ctx.step} {ctx.attempt} {what} {time.time():.6f} {os.getpid()}\n")


def noop(ctx: StepContext) -> dict[str, Any]:
    record(ctx)
    return {"step": ctx.step}


def logs(ctx: StepContext) -> str:
    ctx.log.info("hello from {}", ctx.step)
    logger.info("plain hello from {}", ctx.step)  # loguru's global logger, not ctx.log
    return "logged"


async def logs_async(ctx: StepContext) -> str:
    await asyncio.sleep(0)
    logger.info("async hello from {}", ctx.step)
    return "logged"


def slow(ctx: StepContext) -> dict[str, Any]:
    record(ctx, "start")
    time.sleep(float(ctx.context.get("sleep", 0.3)))
    record(ctx, "end")
    return {"step": ctx.step, "slept": ctx.context.get("sleep", 0.3)}


def add_one(ctx: StepContext) -> int:
    record(ctx)
    earlier = [v for v in ctx.results.values() if isinstance(v, int)]
    return (max(earlier) if earlier else int(ctx.context.get("start", 0))) + 1


def flaky(ctx: StepContext) -> dict[str, Any]:
    """Fails with RetryableError while attempt <= context['fail_times']."""
    record(ctx)
    if ctx.attempt <= int(ctx.context.get("fail_times", 0)):
        raise RetryableError(
            f"transient failure on attempt {ctx.attempt}", retry_after=ctx.context.get("retry_after")
        )
    return {"attempt": ctx.attempt}


def crashes(ctx: StepContext) -> None:
    record(ctx)
    raise ValueError("unexpected bug")


def permanent(ctx: StepContext) -> None:
    record(ctx)
    raise PermanentError("card declined")


def sleeper(ctx: StepContext) -> str:
    record(ctx, "start")
    time.sleep(float(ctx.context.get("sleep", 1.0)))
    record(ctx, "end")
    return "late"


def not_json(ctx: StepContext) -> object:
    return {"when": object()}


async def async_step(ctx: StepContext) -> dict[str, Any]:
    await asyncio.sleep(0.01)
    record(ctx)
    return {"async": True, "previous": ctx.results.get("first")}


def call_child(ctx: StepContext) -> dict[str, Any]:
    """Calls beta/leaf (or context['child']) and returns the child's result."""
    record(ctx, "call")
    target = ctx.context.get("child", {"namespace": "beta", "name": "leaf", "version": "1.0.0"})
    child = ctx.run_workflow(TaskRequest(context={"n": ctx.context.get("n", 1)}, **target))
    record(ctx, "attached")
    if child.status != "completed":
        raise RetryableError(f"child {child.id} {child.status}: {child.error_summary}")
    return {"child_id": child.id, "child_result": child.step("work").result}


async def call_child_async(ctx: StepContext) -> dict[str, Any]:
    child = await ctx.run_workflow_async(
        TaskRequest(namespace="beta", name="leaf", version="1.0.0", context={"n": 2})
    )
    return {"child_id": child.id, "status": child.status}


def swallow_park(ctx: StepContext) -> str:
    """A handler that catches Exception around run_workflow: parking must still work."""
    try:
        child = ctx.run_workflow(TaskRequest(namespace="beta", name="leaf", version="1.0.0"))
    except Exception as exc:
        return f"swallowed {exc!r}"
    return child.status


def leaf_work(ctx: StepContext) -> dict[str, Any]:
    record(ctx)
    if ctx.context.get("fail"):
        raise PermanentError("leaf told to fail")
    time.sleep(float(ctx.context.get("sleep", 0)))
    return {"n": ctx.context.get("n", 0) * 10}


def lone_surrogate(ctx: StepContext) -> str:
    """Returns text that cannot be stored as UTF-8 JSON."""
    return "\ud800"


def huge_error(ctx: StepContext) -> None:
    """Fails with a message of context['mb'] megabytes (default 20)."""
    record(ctx)
    raise RetryableError("x" * int(float(ctx.context.get("mb", 20)) * 1024 * 1024), retry_after=0)


def policy(name: str, **kw: Any) -> NamespacePolicy:
    return NamespacePolicy(name=name, owner_team=f"team-{name}", contact_email=f"{name}@example.test", **kw)


CHAIN = [
    Step("s1", noop),
    Step("s2", noop, depends_on="s1"),
    Step("s3", noop, depends_on="s2"),
    Step("s4", noop, depends_on="s3"),
]
DIAMOND = [
    Step("top", noop),
    Step("left", slow, depends_on="top"),
    Step("right", slow, depends_on="top"),
    Step("bottom", noop, depends_on=["left", "right"]),
]


def alpha_workflows() -> list[Workflow]:
    return [
        Workflow("alpha", "chain", "1.0.0", CHAIN),
        Workflow("alpha", "diamond", "1.0.0", DIAMOND),
        Workflow(
            "alpha",
            "sum",
            "1.0.0",
            [Step("a", add_one), Step("b", add_one, depends_on="a"), Step("c", add_one, depends_on="b")],
        ),
        Workflow(
            "alpha",
            "flaky",
            "1.0.0",
            [Step("first", noop), Step("flaky", flaky, depends_on="first", retry_limit=3)],
        ),
        Workflow(
            "alpha",
            "crash",
            "1.0.0",
            [
                Step("first", noop),
                Step("boom", crashes, depends_on="first", retry_limit=1),
                Step("after", noop, depends_on="boom"),
                Step("side", noop, depends_on="first"),
            ],
        ),
        Workflow("alpha", "crash_once", "1.0.0", [Step("boom", crashes, retryable=False)]),
        Workflow(
            "alpha",
            "permanent",
            "1.0.0",
            [Step("charge", permanent), Step("after", noop, depends_on="charge")],
        ),
        Workflow("alpha", "timeout", "1.0.0", [Step("sleepy", sleeper, timeout_s=0.3, retry_limit=1)]),
        Workflow("alpha", "bad_result", "1.0.0", [Step("weird", not_json)]),
        Workflow("alpha", "surrogate_result", "1.0.0", [Step("weird", lone_surrogate)]),
        Workflow("alpha", "huge_error", "1.0.0", [Step("boom", huge_error, retry_limit=2)]),
        Workflow(
            "alpha", "async", "1.0.0", [Step("first", noop), Step("second", async_step, depends_on="first")]
        ),
        Workflow("alpha", "slow", "1.0.0", [Step("one", slow), Step("two", slow, depends_on="one")]),
        Workflow(
            "alpha",
            "parent",
            "1.0.0",
            [
                Step("prepare", noop),
                Step("call", call_child, depends_on="prepare", calls="beta/leaf@1.0.0"),
                Step("finish", noop, depends_on="call"),
            ],
        ),
        Workflow("alpha", "parent_async", "1.0.0", [Step("call", call_child_async, calls="beta/leaf@1.0.0")]),
        Workflow("alpha", "swallow", "1.0.0", [Step("call", swallow_park)]),
        Workflow(
            "alpha",
            "schema",
            "1.0.0",
            [Step("s1", noop)],
            context_schema={
                "type": "object",
                "required": ["amount"],
                "properties": {"amount": {"type": "number", "exclusiveMinimum": 0}},
            },
        ),
        Workflow(
            "alpha",
            "gated",
            "1.0.0",
            [
                Step("first", noop),
                Step("gate", gated, depends_on="first"),
                Step("after", noop, depends_on="gate"),
            ],
        ),
        Workflow("alpha", "versioned", "1.0.0", [Step("s1", noop)]),
        Workflow("alpha", "versioned", "1.1.0", [Step("s1", noop)]),
        Workflow("alpha", "versioned", "2.0.0", [Step("s1", noop)], deprecated="use 1.1.0"),
        Workflow("alpha", "versioned", "2.1.0-rc.1", [Step("s1", noop)]),
    ]


def beta_workflows() -> list[Workflow]:
    return [
        Workflow("beta", "leaf", "1.0.0", [Step("work", leaf_work)]),
        Workflow("beta", "chain", "1.0.0", CHAIN),
    ]


class AlphaPlugin:
    """Team alpha: owns namespace alpha; beta may be called by anyone."""

    @hookimpl
    def teamflow_namespaces(self) -> list[NamespacePolicy]:
        return [policy("alpha")]

    @hookimpl
    def teamflow_workflows(self) -> list[Workflow]:
        return alpha_workflows()


class BetaPlugin:
    def __init__(self, allowed_callers: tuple[str, ...] = ("*",)) -> None:
        self.allowed_callers = allowed_callers

    @hookimpl
    def teamflow_namespaces(self) -> list[NamespacePolicy]:
        return [policy("beta", allowed_callers=self.allowed_callers)]

    @hookimpl
    def teamflow_workflows(self) -> list[Workflow]:
        return beta_workflows()


# Entry-point objects for worker subprocesses (see conftest.install_test_plugins).
alpha_plugin = AlphaPlugin()
beta_plugin = BetaPlugin()


def gated(ctx: StepContext) -> str:
    """Fails permanently until the file named by context['gate'] exists."""
    record(ctx)
    if not os.path.exists(ctx.context["gate"]):
        raise PermanentError(f"gate {ctx.context['gate']} is closed")
    return "open"


def scripted(ctx: StepContext) -> dict[str, Any]:
    """Follows context['script'][step]: a list of outcomes per attempt ('ok', 'retry', 'fail')."""
    record(ctx, "start")
    plan = ctx.context.get("script", {}).get(ctx.step, [])
    action = plan[ctx.attempt - 1] if ctx.attempt <= len(plan) else "ok"
    missing = [d for d in ctx.context.get("deps", {}).get(ctx.step, []) if d not in ctx.results]
    record(ctx, "end")
    if missing:
        raise PermanentError(f"ran before its dependencies {missing}")
    if action == "retry":
        raise RetryableError("scripted retry", retry_after=0)
    if action == "fail":
        raise PermanentError("scripted failure")
    return {"step": ctx.step, "attempt": ctx.attempt}


class AlphaPluginV2(AlphaPlugin):
    """The next release of team alpha: drops versioned@1.0.0 and changes chain@1.0.0 without a bump."""

    @hookimpl
    def teamflow_workflows(self) -> list[Workflow]:
        changed = Workflow("alpha", "chain", "1.0.0", [Step("s1", noop), Step("s2", slow, depends_on="s1")])
        kept = [w for w in alpha_workflows() if (w.name, w.version) not in {("versioned", "1.0.0"), ("chain", "1.0.0")}]
        return [*kept, changed]


alpha_plugin_v2 = AlphaPluginV2()
