"""A bench-only team plugin: a 4-step chain and a 4-step diamond, each in two forms.

* ``chain`` / ``diamond``: no-op steps (the drain-only engine figures of ``run.py``);
* ``checked_chain`` / ``checked_diamond``: every step checks the result it receives, as a
  user's steps would read their input (``benchmarks/user_bench.py``). The task's context holds
  ``n``; ``a`` returns ``n``, and each later step checks that ``ctx.results`` holds what its
  predecessors returned *for this task* and returns the next number. A mismatch raises
  ``PermanentError``, so the task fails and the bench says so.
"""

from __future__ import annotations

from typing import Any

from teamflow import NamespacePolicy, PermanentError, Step, StepContext, Workflow, hookimpl

CHECKED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"n": {"type": "integer"}},
    "required": ["n"],
}


def noop(ctx: StepContext) -> int:
    return 1


def _received(ctx: StepContext, step: str, expected: int) -> int:
    got = ctx.results.get(step)
    if got != expected:
        raise PermanentError(
            f"task {ctx.task.id} step {ctx.step}: step {step} returned {got!r}, expected {expected!r}"
        )
    return expected


def first(ctx: StepContext) -> int:
    return int(ctx.context["n"])


def chain_b(ctx: StepContext) -> int:
    return _received(ctx, "a", ctx.context["n"]) + 1


def chain_c(ctx: StepContext) -> int:
    return _received(ctx, "b", ctx.context["n"] + 1) + 1


def chain_d(ctx: StepContext) -> int:
    return _received(ctx, "c", ctx.context["n"] + 2) + 1


def diamond_b(ctx: StepContext) -> int:
    return _received(ctx, "a", ctx.context["n"]) + 1


def diamond_c(ctx: StepContext) -> int:
    return _received(ctx, "a", ctx.context["n"]) + 2


def diamond_d(ctx: StepContext) -> int:
    n = ctx.context["n"]
    return _received(ctx, "b", n + 1) + _received(ctx, "c", n + 2)


@hookimpl
def teamflow_namespaces() -> list[NamespacePolicy]:
    return [NamespacePolicy("bench", "bench", "bench@example.test")]


@hookimpl
def teamflow_workflows() -> list[Workflow]:
    return [
        Workflow(
            "bench",
            "chain",
            "1.0.0",
            [
                Step("a", noop),
                Step("b", noop, depends_on="a"),
                Step("c", noop, depends_on="b"),
                Step("d", noop, depends_on="c"),
            ],
        ),
        Workflow(
            "bench",
            "diamond",
            "1.0.0",
            [
                Step("a", noop),
                Step("b", noop, depends_on="a"),
                Step("c", noop, depends_on="a"),
                Step("d", noop, depends_on=["b", "c"]),
            ],
        ),
        Workflow(
            "bench",
            "checked_chain",
            "1.0.0",
            [
                Step("a", first),
                Step("b", chain_b, depends_on="a"),
                Step("c", chain_c, depends_on="b"),
                Step("d", chain_d, depends_on="c"),
            ],
            context_schema=CHECKED_SCHEMA,
        ),
        Workflow(
            "bench",
            "checked_diamond",
            "1.0.0",
            [
                Step("a", first),
                Step("b", diamond_b, depends_on="a"),
                Step("c", diamond_c, depends_on="a"),
                Step("d", diamond_d, depends_on=["b", "c"]),
            ],
            context_schema=CHECKED_SCHEMA,
        ),
    ]
