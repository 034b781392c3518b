"""Workflow fingerprints: a digest of what a workflow version *does*.

Inputs, exactly: step names, sorted dependencies, handler references as
``module:qualname``, retry and timeout settings, the references of ``calls``, and the
canonical JSON of the context schema. Descriptions, deprecation and handler source code
are left out, so editing a docstring is not drift but changing a step is.

A call's ``examples`` are left out too: they say what the step sends, not what it does,
and are checked against the provider at every load. Were they in the digest, adding an
example would strand the version's unfinished tasks (a worker claims a step only for the
digest its task recorded), and a step declared with plain strings keeps its digest.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from teamflow.models import Step
from teamflow.registry.calls import declared_calls
from teamflow.serialization import canonical_json


class HandlerError(ValueError):
    """A handler that cannot be referenced by ``module:qualname``."""


def resolve_handler(handler: object) -> tuple[str, Callable[..., Any]]:
    """Return ``(module:qualname, callable)`` for a module-level callable or import string."""
    if isinstance(handler, str):
        module_name, sep, attr_path = handler.partition(":")
        if not sep or not module_name or not attr_path:
            raise HandlerError(f"handler {handler!r} is not an import string: write 'pkg.module:function'")
        try:
            target: Any = importlib.import_module(module_name)
        except Exception as exc:  # any import-time error of plugin code
            raise HandlerError(f"handler {handler!r}: cannot import {module_name!r}: {exc}") from exc
        for part in attr_path.split("."):
            try:
                target = getattr(target, part)
            except AttributeError:
                raise HandlerError(
                    f"handler {handler!r}: {module_name!r} has no attribute {attr_path!r}"
                ) from None
        if not callable(target):
            raise HandlerError(f"handler {handler!r} is not callable")
        return handler, target
    if not callable(handler):
        raise HandlerError(f"handler {handler!r} is neither a callable nor a 'pkg.module:function' string")
    module_name = getattr(handler, "__module__", None) or ""
    qualname = getattr(handler, "__qualname__", None) or ""
    if not module_name or not qualname:
        raise HandlerError(f"handler {handler!r} has no __module__/__qualname__: use a module-level function")
    if "<lambda>" in qualname or "<locals>" in qualname:
        raise HandlerError(
            f"handler {module_name}:{qualname} is a lambda or closure: a worker can only find "
            "module-level callables; move it to module level"
        )
    return f"{module_name}:{qualname}", handler


def route_key(namespace: str, name: str, version: str, digest: str) -> str:
    """What a worker must hold to run a task's steps: this exact version with this definition."""
    return hashlib.sha1(f"{namespace}/{name}@{version}#{digest}".encode()).hexdigest()[:20]


def fingerprint(steps: Sequence[Step], handler_refs: Mapping[str, str], context_schema: Any) -> str:
    """SHA-256 of the canonical JSON of a workflow version's behaviour."""
    body = {
        "steps": [
            {
                "name": step.name,
                "depends_on": sorted(step.depends_on),
                "handler": handler_refs[step.name],
                "retry_limit": step.retry_limit,
                "retryable": step.retryable,
                "timeout_s": step.timeout_s,
                "calls": sorted(call.ref for call in declared_calls(step)),
            }
            for step in sorted(steps, key=lambda s: s.name)
        ],
        "context_schema": context_schema,
    }
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()
