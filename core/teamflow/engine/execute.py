"""Running one claimed step: its handler, with its task's context and earlier results, to an outcome.

The outcome is decided here (completed with a JSON result, retried after a backoff, failed,
or parked on a child); committing it is the group commit's job. A task's row, version and
finished results are cached while its steps run on this worker, so a chain reads its task
once.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import threading
from collections.abc import Callable
from typing import Any

import attrs
from loguru import logger

from teamflow.engine.children import Park
from teamflow.engine.context import RunChild, StepContext, TaskInfo, task_fields
from teamflow.errors import PermanentError, RetryableError
from teamflow.limits import MAX_RESULT_BYTES, Unstorable, cut, encode
from teamflow.logs import bound
from teamflow.models import Step
from teamflow.registry import Registry, WorkflowEntry
from teamflow.store import Store
from teamflow.store.records import DECODE, Claimed, Outcome, TaskRow

CACHE_LIMIT = 4096
_SCALARS = (int, float, str, bool, type(None))


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with equal jitter: in [d/2, d] for d = base * 2**(attempt-1), capped."""
    # The exponent is bounded so that a step with a huge retry_limit cannot overflow a float.
    delay = min(cap, base * 2.0 ** min(max(0, attempt - 1), 64))
    return delay / 2 + random.random() * delay / 2


@attrs.define(slots=True)
class CachedTask:
    row: TaskRow
    entry: WorkflowEntry | None  # None: this worker's registry does not hold its version
    results: dict[str, Any]
    info: TaskInfo
    log_fields: dict[str, str]  # the task's part of every log line of its steps


class TaskCache:
    """The tasks whose steps run here, bounded: tasks other workers finish never report back."""

    def __init__(self, limit: int = CACHE_LIMIT) -> None:
        self._tasks: dict[str, CachedTask] = {}
        self._limit = limit
        self._lock = threading.Lock()

    def get(self, task_id: str) -> CachedTask | None:
        return self._tasks.get(task_id)

    def add(self, cached: CachedTask) -> CachedTask:
        """Keep ``cached`` unless another thread cached the task first; return the one kept."""
        with self._lock:
            kept = self._tasks.setdefault(cached.row.id, cached)
            while len(self._tasks) > self._limit:
                del self._tasks[next(iter(self._tasks))]
        return kept

    def record(self, task_id: str, step: str, value: Any) -> None:
        cached = self._tasks.get(task_id)
        if cached is not None:
            cached.results[step] = value

    def forget(self, task_id: str) -> None:
        self._tasks.pop(task_id, None)


def decoded(out: Outcome) -> Any:
    """A completed outcome's result as its successors read it."""
    if out.value is DECODE:
        return json.loads(out.result) if out.result is not None else None
    return out.value


def log_for(claim: Claimed, row: TaskRow | None) -> Any:
    """A logger bound to a claimed step's task and step (the workflow when it is known)."""
    fields: dict[str, Any] = task_fields(row) if row is not None else {"task_id": claim.task_id}
    return logger.bind(**fields, step=claim.name, attempt=claim.attempt)


class StepExecutor:
    """Loads a claimed step's task and runs its handler to an ``Outcome``."""

    def __init__(
        self,
        store: Store,
        registry: Registry,
        cache: TaskCache,
        run_child: RunChild,
        *,
        retry_base_s: float,
        retry_max_s: float,
    ) -> None:
        self._store = store
        self._registry = registry
        self.cache = cache
        self._run_child = run_child
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self._async: dict[Callable[..., Any], bool] = {}  # handler -> is it ``async def``

    def load(self, claim: Claimed) -> CachedTask | None:
        """The claimed step's task, with the results its step depends on (None: no such task)."""
        cached = self.cache.get(claim.task_id)
        if cached is None:
            row = claim.task or self._store.task_rows([claim.task_id]).get(claim.task_id)
            if row is None:
                return None
            entry = self._registry.get(row.namespace, row.name, row.version)
            if entry is not None and entry.fingerprint != row.fingerprint:
                entry = None
            cached = self.cache.add(
                CachedTask(row, entry, {}, TaskInfo(row.id, row.namespace, row.name, row.version), task_fields(row))
            )
        if cached.entry is not None:
            results = cached.results
            for dep in cached.entry.steps[claim.name].depends_on:
                if dep not in results:  # finished elsewhere (another worker, an earlier run)
                    results.update(self._store.results(claim.task_id))
                    break
        return cached

    def log(self, claim: Claimed) -> Any:
        cached = self.cache.get(claim.task_id)
        return log_for(claim, cached.row if cached is not None else claim.task)

    def run(self, claim: Claimed, cached: CachedTask) -> Outcome:
        """Run the step's handler; every way it can end becomes an outcome."""
        entry = cached.entry
        assert entry is not None
        step = entry.steps[claim.name]
        handler = entry.handlers[claim.name]
        ctx = StepContext(
            cached.info, claim.name, claim.attempt, cached.row.context, dict(cached.results), self._run_child
        )
        try:
            # Lines a handler logs through loguru's global ``logger`` are bound as ctx.log's are.
            with bound({**cached.log_fields, "step": claim.name, "attempt": claim.attempt}):
                result = asyncio.run(handler(ctx)) if self._is_async(handler) else handler(ctx)
        except Park as park:
            ctx.log.debug("parked waiting for child task {}", park.child_id)
            return Outcome("park", claim, child_id=park.child_id)
        except PermanentError as exc:
            return self.failure(claim, step, exc, permanent=True, log=ctx.log)
        except RetryableError as exc:
            return self.failure(claim, step, exc, permanent=False, log=ctx.log, retry_after=exc.retry_after)
        except Exception as exc:
            return self.failure(claim, step, exc, permanent=not step.retryable, log=ctx.log)
        try:
            text = encode(result, max_bytes=MAX_RESULT_BYTES)
        except Unstorable as exc:
            bad = PermanentError(f"the handler's result cannot be stored: it is {exc}")
            return self.failure(claim, step, bad, permanent=True, log=ctx.log)
        # A scalar reads back from JSON as itself: successors on this worker can take it as is.
        value = result if type(result) in _SCALARS else DECODE
        return Outcome("complete", claim, result=text, successors=entry.successors[claim.name], value=value)

    def timed_out(self, claim: Claimed) -> Outcome | None:
        """The outcome of a step that ran past its ``timeout_s`` (its late result will be dropped)."""
        cached = self.cache.get(claim.task_id)
        if cached is None or cached.entry is None:
            return None
        step = cached.entry.steps[claim.name]
        exc = TimeoutError(f"step exceeded timeout_s={step.timeout_s}; its late result will be discarded")
        return self.failure(claim, step, exc, permanent=False, log=log_for(claim, cached.row))

    def failure(
        self, claim: Claimed, step: Step, exc: BaseException, *, permanent: bool, log: Any,
        retry_after: float | None = None,
    ) -> Outcome:
        kind = type(exc).__name__
        # Kept (and logged) once per attempt: a huge message is cut, with its size.
        message = cut(str(getattr(exc, "message", None) or exc) or kind)
        max_attempts = 1 + step.retry_limit
        if not permanent and claim.attempt < max_attempts:
            delay = retry_after if retry_after is not None else backoff(claim.attempt, self.retry_base_s,
                                                                        self.retry_max_s)
            log.warning("attempt {}/{} failed ({}: {}); retrying in {:.2f}s", claim.attempt, max_attempts, kind,
                        message, delay)
            return Outcome("retry", claim, error=message, error_type=kind, delay=delay)
        why = "permanent error" if permanent else f"gave up after {claim.attempt} attempt(s)"
        summary = f"step {claim.name!r} failed ({why}, attempt {claim.attempt}/{max_attempts}): {kind}: {message}"
        log.error(summary)
        return Outcome("fail", claim, error=summary, error_type=kind)

    def _is_async(self, handler: Callable[..., Any]) -> bool:
        known = self._async.get(handler)
        if known is None:
            known = self._async[handler] = inspect.iscoroutinefunction(handler)
        return known
