"""Validating one workflow version: names, version, steps and their graph, context schema,
handlers. A valid version becomes a runnable ``WorkflowEntry``; anything else raises
``Invalid`` naming what is wrong, the step, and the fix.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import jsonschema

from teamflow.errors import InvalidVersion
from teamflow.models import Call, Step, Workflow
from teamflow.refs import parse_ref, valid_name
from teamflow.registry.fingerprint import HandlerError, fingerprint, resolve_handler, route_key
from teamflow.registry.records import Source, StepRow, WorkflowEntry
from teamflow.serialization import canonical_json, to_json
from teamflow.versions import parse_constraint, parse_version


@lru_cache(maxsize=1024)
def _schema_problem(schema_json: str) -> str | None:
    schema = json.loads(schema_json)
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        return f"context_schema is not a valid JSON Schema: {exc.message}"
    return None


class Invalid(Exception):
    """A workflow version the registry refuses: the reason, the fix, and the step if one."""

    def __init__(self, reason: str, fix: str = "", step: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.fix, self.step = reason, fix, step


def _topological_order(steps: Sequence[Step]) -> tuple[str, ...]:
    """Kahn's algorithm; on a cycle, raise naming the steps on it."""
    deps = {s.name: set(s.depends_on) for s in steps}
    order: list[str] = []
    ready = sorted(name for name, d in deps.items() if not d)
    remaining = {name: set(d) for name, d in deps.items() if d}
    while ready:
        name = ready.pop(0)
        order.append(name)
        for other in sorted(remaining):
            remaining[other].discard(name)
            if not remaining[other]:
                del remaining[other]
                ready.append(other)
    if remaining:
        cycle = sorted(remaining)
        raise Invalid(
            f"steps form a cycle through {', '.join(cycle)}",
            "steps must form a DAG: remove one of the depends_on edges between these steps",
            step=cycle[0],
        )
    return tuple(order)


def _validate_step(step: Any, names: set[str]) -> None:
    if not isinstance(step, Step):
        raise Invalid(f"{step!r} is not a teamflow.Step", "build each step with teamflow.Step(...)")
    if not valid_name(step.name):
        raise Invalid(
            f"step name {step.name!r} must match [a-z][a-z0-9_]* (at most 100 characters)", "rename the step", step=str(step.name)
        )
    for dep in step.depends_on:
        if dep == step.name:
            raise Invalid(
                "step depends on itself (a cycle)", "remove it from its own depends_on", step=step.name
            )
        if dep not in names:
            raise Invalid(
                f"depends on unknown step {dep!r}",
                f"depends_on must name steps of this workflow version: {', '.join(sorted(names))}",
                step=step.name,
            )
    if isinstance(step.retry_limit, bool) or not isinstance(step.retry_limit, int) or step.retry_limit < 0:
        raise Invalid(f"retry_limit {step.retry_limit!r} must be an integer >= 0", step=step.name)
    if not isinstance(step.retryable, bool):
        raise Invalid(f"retryable {step.retryable!r} must be True or False", step=step.name)
    if step.timeout_s is not None and (
        isinstance(step.timeout_s, bool) or not isinstance(step.timeout_s, int | float) or step.timeout_s <= 0
    ):
        raise Invalid(f"timeout_s {step.timeout_s!r} must be a positive number or None", step=step.name)
    for call in step.calls:
        _validate_call(call, step.name)


def _validate_call(call: Any, step: str) -> None:
    if not isinstance(call, str | Call):
        raise Invalid(
            f"calls entry {call!r} is neither a reference string nor a teamflow.Call",
            "write 'namespace/name@version', or teamflow.Call('namespace/name@version', examples=[{...}])",
            step=step,
        )
    ref_text = call.ref if isinstance(call, Call) else call
    try:
        ref = parse_ref(ref_text)
        if ref.version is not None:
            parse_constraint(ref.version)
    except Exception as exc:
        raise Invalid(f"calls entry {ref_text!r}: {exc}", "write 'namespace/name@version'", step=step) from None
    if not isinstance(call, Call):
        return
    for index, example in enumerate(call.examples):
        problem = None
        if not isinstance(example, dict):
            problem = f"is {type(example).__name__}, not a JSON object"
        else:
            try:
                to_json(example)
            except (TypeError, ValueError) as exc:
                problem = f"is not JSON: {exc}"
        if problem:
            raise Invalid(
                f"calls entry {ref_text!r}: example {index} {problem}",
                "give each example as the context (a dict of JSON values) the step sends",
                step=step,
            )


def compile_workflow(workflow: Any, source: Source) -> WorkflowEntry:
    """Validate one workflow version from ``source``; raise Invalid naming what is wrong and the fix."""
    if not isinstance(workflow, Workflow):
        raise Invalid(f"{workflow!r} is not a teamflow.Workflow", "return teamflow.Workflow objects")
    if not valid_name(workflow.namespace):
        raise Invalid(f"namespace {workflow.namespace!r} must match [a-z][a-z0-9_]* (at most 100 characters)")
    if not valid_name(workflow.name):
        raise Invalid(f"workflow name {workflow.name!r} must match [a-z][a-z0-9_]* (at most 100 characters)")
    if not isinstance(workflow.version, str):
        raise Invalid(f"version {workflow.version!r} must be a string such as '1.0.0'")
    try:
        version = parse_version(workflow.version)
    except InvalidVersion as exc:
        raise Invalid(exc.detail, "use a full SemVer 2.0 version such as 2.1.0") from None
    if not workflow.steps:
        raise Invalid("has no steps", "give the workflow at least one teamflow.Step")
    names: set[str] = set()
    for step in workflow.steps:
        name = getattr(step, "name", None)
        if name in names:
            raise Invalid(
                "duplicate step name", "give every step of a workflow version its own name", step=name
            )
        if isinstance(name, str):
            names.add(name)
    for step in workflow.steps:
        _validate_step(step, names)
    order = _topological_order(workflow.steps)
    if workflow.context_schema is not None:
        if not isinstance(workflow.context_schema, dict):
            raise Invalid("context_schema must be a JSON Schema object (a dict)")
        try:
            schema_json = canonical_json(workflow.context_schema)
        except (TypeError, ValueError) as exc:
            raise Invalid(f"context_schema is not JSON: {exc}") from None
        problem = _schema_problem(schema_json)
        if problem:
            raise Invalid(problem, "fix the schema (see https://json-schema.org)")
    if workflow.deprecated is not None and not isinstance(workflow.deprecated, str):
        raise Invalid("deprecated must be a message string such as 'use 2.1.0', or None")
    handlers: dict[str, Callable[..., Any]] = {}
    refs: dict[str, str] = {}
    for step in workflow.steps:
        try:
            refs[step.name], handlers[step.name] = resolve_handler(step.handler)
        except HandlerError as exc:
            raise Invalid(str(exc), "point the step at a module-level function", step=step.name) from None
    digest = fingerprint(workflow.steps, refs, workflow.context_schema)
    return WorkflowEntry(
        workflow=workflow,
        version=version,
        fingerprint=digest,
        source=source,
        handlers=handlers,
        handler_refs=refs,
        order=order,
        steps={s.name: s for s in workflow.steps},
        successors={
            s.name: tuple(o.name for o in workflow.steps if s.name in o.depends_on) for s in workflow.steps
        },
        dependencies={s.name: tuple(s.depends_on) for s in workflow.steps},
        route=route_key(workflow.namespace, workflow.name, version.text, digest),
        step_rows=tuple(StepRow(s.name, len(set(s.depends_on)), 1 + s.retry_limit, s.retryable) for s in workflow.steps),
    )
