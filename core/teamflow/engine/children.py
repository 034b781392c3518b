"""Child tasks: a step calling another workflow (of any namespace its policy allows).

A child is keyed by (parent step, call ordinal within the handler). On a re-run, an
existing child that is pending, running or completed is re-attached; a failed or
cancelled child is replaced on the next attempt; a different request at the same ordinal
is a ``PermanentError``. A step whose child is not finished is parked: ``Park`` unwinds
the handler, and the step runs again when the child ends.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from teamflow.engine.context import StepContext
from teamflow.engine.engine import Engine, ParentCall, request_hash
from teamflow.errors import CallerNotAllowed, PermanentError, StoreError, TeamflowError
from teamflow.models import TaskRequest, TaskResult
from teamflow.registry import WorkflowEntry
from teamflow.store.records import Claimed


class Park(BaseException):
    """Raised inside ``run_workflow`` to park the calling step until its child finishes.

    A ``BaseException`` so that a handler's ``except Exception`` cannot swallow it.
    """

    def __init__(self, child_id: str) -> None:
        super().__init__(child_id)
        self.child_id = child_id


class DatabaseFailed(BaseException):
    """teamflow's database failed while a step called a child: the step did not fail.

    A ``BaseException``, like ``Park``, so that a handler's ``except Exception`` cannot
    turn it into a failed (and spent) attempt.
    """

    def __init__(self, error: StoreError) -> None:
        super().__init__(str(error))
        self.error = error


class Children:
    """``StepContext.run_workflow`` for the steps one runner runs.

    ``serves`` are the namespaces that runner runs: a child in one of them is started
    with its roots leased to the runner, and handed to ``adopt``; any other child is left
    to the workers that serve it.
    """

    def __init__(
        self, engine: Engine, serves: Collection[str], adopt: Callable[[str, Sequence[Claimed]], None]
    ) -> None:
        self._engine = engine
        self._serves = serves
        self._adopt = adopt

    def __call__(self, ctx: StepContext, request: TaskRequest, ordinal: int) -> TaskResult:
        """Re-attach to or start the child at (step, ordinal); park the step until it ends."""
        try:
            return self._call(ctx, request, ordinal)
        except StoreError as exc:
            raise DatabaseFailed(exc) from exc

    def _call(self, ctx: StepContext, request: TaskRequest, ordinal: int) -> TaskResult:
        engine = self._engine
        if not isinstance(request, TaskRequest):
            raise PermanentError(f"run_workflow takes a teamflow.TaskRequest, got {type(request).__name__}")
        existing = engine.store.find_child(ctx.task.id, ctx.step, ordinal)
        if existing is not None:
            if existing.request_hash != request_hash(request):
                raise PermanentError(
                    f"{ctx.task.ref} step {ctx.step!r}: call #{ordinal + 1} asks for {request.ref} with a different "
                    f"request than the child {existing.id} it started before; a step must make the same calls in "
                    "the same order on every run"
                )
            ended = existing.status in ("failed", "cancelled")
            if existing.status == "completed" or (ended and existing.parent_attempt == ctx.attempt):
                return engine.get_task(existing.id)
            if existing.status in ("pending", "in_progress"):
                raise Park(existing.id)
            # failed or cancelled during an earlier attempt (or before a retry, which
            # detaches it: parent_attempt NULL): start a fresh child below
        try:
            entry, policy = engine.lookup(request)
        except StoreError:
            raise
        except TeamflowError as exc:
            raise PermanentError(f"{ctx.task.ref} step {ctx.step!r} cannot call {request.ref}: {exc.detail}") from None
        if not policy.allows_caller(ctx.task.namespace):
            raise PermanentError(
                str(
                    CallerNotAllowed(
                        f"namespace {ctx.task.namespace!r} may not call {entry.ref}: namespace {entry.namespace!r} "
                        f"allows callers {', '.join(policy.allowed_callers) or '(none)'}; ask {policy.contact_email}"
                    )
                )
            )
        try:
            prepared = engine.prepare(request, parent_key=f"{ctx.task.id}\x00{ctx.step}\x00{ordinal}")
        except StoreError:
            raise
        except TeamflowError as exc:
            raise PermanentError(f"{ctx.task.ref} step {ctx.step!r} cannot call {request.ref}: {exc.detail}") from None
        serves = isinstance(prepared.entry, WorkflowEntry) and prepared.entry.namespace in self._serves
        created = engine.create(
            request, prepared, claim=serves, parent=ParentCall(ctx.task.id, ctx.step, ctx.attempt, ordinal)
        )
        if created.claimed:
            self._adopt(created.id, created.claimed)
        raise Park(created.id)
