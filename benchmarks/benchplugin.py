"""A bench-only team plugin: no-op steps in a 4-step chain and a 4-step diamond."""

from __future__ import annotations

from teamflow import NamespacePolicy, Step, StepContext, Workflow, hookimpl


def noop(ctx: StepContext) -> int:
    return 1


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
    ]
