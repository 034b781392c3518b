"""A state machine of the step scheduler, driven at the store, where interleavings are ours to pick.

Random DAGs (1-6 steps, each with a retry limit of 0-2, mostly retryable) become tasks
through the registry's own bookkeeping (``WorkflowEntry.step_rows`` and ``successors``),
stored pending, stored with their roots leased, or stored inside a worker's group
commit. Three workers claim ready steps (all tasks' or one task's, up to a limit) and
commit batches of outcomes (complete, transient error, permanent error) in one
``apply``, claiming the successors they release or leaving them to a later claim, and
claiming retried steps at once as the runner does. Before a batch an operator may cancel
a task, or one of the worker's leases runs out and the reaper takes the step back; the
worker's late result, and outcomes it committed before, go into the batch anyway. A
Python model predicts every step's status, attempts and lease owner, and what every
store call returns. After every rule the database must show:

- no step in progress or completed before all of its dependencies completed;
- a task completed exactly when every one of its steps completed (a cancelled task
  stays cancelled when the steps it had in flight complete);
- a task with a step that failed for good (a permanent error, its retries used up, or a
  lost lease on its last attempt) failed, unless it was cancelled first, with nothing
  left queued, and none of its steps claimed afterwards;
- no step run more than ``1 + retry_limit`` times;
- every claim handed out (by ``claim`` or with a completion) of a running task's step
  whose dependencies all completed, the oldest due first, as many as the limit allows;
  every fenced-off (stale) outcome dropped without a trace;
- statuses, attempts, lease owners and dependency counts as the model has them.

A transient error (or a lost lease) of a step still in flight when its task failed or
was cancelled cancels the step instead of queueing it again: the machine found it queued
and claimed again, and ``test_a_step_of_a_finished_task_is_never_claimed_again`` pins
that interleaving on its own.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
import time
from typing import Any

import attrs
import pytest
from flows import noop, policy
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from teamflow import Step, Workflow
from teamflow.engine.engine import new_task_id
from teamflow.registry import Contribution, Source, StepRow, WorkflowEntry, build_registry
from teamflow.store import open_store
from teamflow.store.records import Applied, Claimed, NewTask, Outcome

WORKERS = ("w1", "w2", "w3")
LEASE_S = 3600.0  # no lease runs out unless a rule makes it
TERMINAL = ("completed", "failed", "cancelled")
MAX_TASKS = 4

DagSpec = list[tuple[str, tuple[str, ...], int, bool]]  # (step, dependencies, retry_limit, retryable)


def _finished(applied: Applied) -> list[tuple[str, str]]:
    return [(f.task_id, f.status) for f in applied.finished_tasks]


@st.composite
def dags(draw: st.DrawFn) -> DagSpec:
    steps: DagSpec = []
    for i in range(draw(st.integers(1, 6))):
        earlier = [f"s{j}" for j in range(i)]
        deps = tuple(draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3))) if earlier else ()
        steps.append((f"s{i}", deps, draw(st.integers(0, 2)), draw(st.sampled_from([True, True, True, False]))))
    return steps


def compile_dag(name: str, spec: DagSpec) -> WorkflowEntry:
    """The registry's entry for the DAG: the step rows and successors the engine uses."""
    workflow = Workflow(
        "prop",
        name,
        "1.0.0",
        [Step(s, noop, depends_on=deps, retry_limit=limit, retryable=ok) for s, deps, limit, ok in spec],
    )
    registry = build_registry([Contribution(Source("prop-dist", "1.0.0"), (policy("prop"),), (workflow,))])
    entry = registry.get("prop", name, "1.0.0")
    assert entry is not None, registry.refusals
    return entry


@functools.cache
def empty_database() -> str:
    """A migrated database without tasks, copied for each example (quicker than migrating)."""
    folder = tempfile.mkdtemp(prefix="tf-machine-empty-")
    atexit.register(shutil.rmtree, folder, True)
    store = open_store(f"sqlite:///{folder}/teamflow.db")
    store.connect()
    store.upgrade()
    store.close()
    return f"{folder}/teamflow.db"


@attrs.define
class StepModel:
    deps: tuple[str, ...]
    max_attempts: int
    retryable: bool
    status: str = "pending"
    attempts: int = 0
    owner: str | None = None


@attrs.define
class TaskModel:
    id: str
    entry: WorkflowEntry
    steps: dict[str, StepModel]
    status: str = "pending"

    def deps_left(self, name: str) -> int:
        return sum(1 for dep in self.steps[name].deps if self.steps[dep].status != "completed")

    def ready(self) -> set[str]:
        if self.status in TERMINAL:
            return set()
        return {n for n, s in self.steps.items() if s.status == "pending" and self.deps_left(n) == 0}


class SchedulerMachine(RuleBasedStateMachine):
    """The store's scheduler against a model of it; one fresh SQLite file per example."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="tf-machine-")
        shutil.copyfile(empty_database(), f"{self.tmp}/teamflow.db")
        # The machine checks scheduling, not durability: skip the fsyncs.
        self.store = open_store(f"sqlite:///{self.tmp}/teamflow.db", synchronous="OFF")
        self.store.connect()
        self.tasks: dict[str, TaskModel] = {}
        self.held: dict[int, tuple[str, Claimed]] = {}  # step id -> (worker, its live claim)
        self.stale: dict[int, tuple[str, Claimed]] = {}  # step id -> its last claim committed or taken back
        self.by_step_id: dict[int, tuple[str, str]] = {}  # step id -> (task id, step name)
        self.stamped = 0.0  # when the last statement that set next_attempt_at returned

    def _tick(self) -> None:
        """Let the database clock move on (it counts milliseconds) before a statement that
        stamps ``next_attempt_at``: claims take the oldest first, and a tie between two
        statements would make the choice, hence a replayed example, depend on timing."""
        wait = self.stamped + 0.0012 - time.time()
        if wait > 0:
            time.sleep(wait)

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the model's transitions -----------------------------------------------------------

    def _start(self, task: TaskModel, name: str, worker: str) -> None:
        """The model's side of a claim: the step must be ready."""
        step = task.steps[name]
        assert task.status not in TERMINAL, f"{name} of {task.status} task {task.id} was claimed"
        assert step.status == "pending", f"{name} claimed while {step.status}"
        assert task.deps_left(name) == 0, f"{name} claimed before its dependencies {step.deps}"
        step.status, step.attempts, step.owner = "in_progress", step.attempts + 1, worker

    def _hold(self, claim: Claimed, worker: str) -> None:
        """The worker's side: it now holds ``claim``, which must be what the model started."""
        step = self.tasks[claim.task_id].steps[claim.name]
        assert (step.status, step.owner, step.attempts) == ("in_progress", worker, claim.attempt)
        assert self.by_step_id[claim.step_id] == (claim.task_id, claim.name)
        self.held[claim.step_id] = (worker, claim)

    def _fail_task(self, task: TaskModel, finished: list[tuple[str, str]]) -> None:
        if task.status in ("pending", "in_progress"):
            task.status = "failed"
            finished.append((task.id, "failed"))
            for step in task.steps.values():
                if step.status == "pending":
                    step.status = "cancelled"

    def _apply_model(
        self, out: Outcome, worker: str, claim_successors: bool, finished: list[tuple[str, str]]
    ) -> tuple[bool, list[str]]:
        """One outcome, as the store should apply it: (accepted, successors it claimed)."""
        task_id, name = self.by_step_id[out.claim.step_id]
        task = self.tasks[task_id]
        step = task.steps[name]
        if not (step.status == "in_progress" and step.owner == worker and step.attempts == out.claim.attempt):
            return False, []  # fenced off
        self.held.pop(out.claim.step_id, None)
        step.owner = None
        claimed: list[str] = []
        if out.kind == "complete":
            step.status = "completed"
            for succ in task.entry.successors[name]:
                if task.steps[succ].status == "pending" and task.deps_left(succ) == 0 and claim_successors:
                    self._start(task, succ, worker)  # claimed in the same statement
                    claimed.append(succ)
            if task.status == "in_progress" and all(s.status == "completed" for s in task.steps.values()):
                task.status = "completed"
                finished.append((task.id, "completed"))
        elif out.kind == "retry":  # queued again only while its task runs
            step.status = "cancelled" if task.status in TERMINAL else "pending"
        else:
            step.status = "failed"
            self._fail_task(task, finished)
        return True, claimed

    # -- rules -------------------------------------------------------------------------------

    @initialize(spec=dags(), mode=st.sampled_from(["pending", "claimed", "group"]), worker=st.sampled_from(WORKERS))
    def first_task(self, spec: DagSpec, mode: str, worker: str) -> None:
        self.new_task(spec, mode, worker)

    @precondition(lambda self: len(self.tasks) < MAX_TASKS)
    @rule(spec=dags(), mode=st.sampled_from(["pending", "claimed", "group"]), worker=st.sampled_from(WORKERS))
    def new_task(self, spec: DagSpec, mode: str, worker: str) -> None:
        task_id = new_task_id()
        entry = compile_dag(f"dag{len(self.tasks)}", spec)
        row = NewTask(task_id, "prop", entry.name, "1.0.0", entry.fingerprint, entry.route, "{}")
        self._tick()
        if mode == "group":  # stored in a worker's group commit, roots leased to it
            applied = self.store.apply([], worker, LEASE_S, claim_successors=True, creates=[(row, entry.step_rows)])
            claimed = applied.created[task_id]
        else:
            claim_for = worker if mode == "claimed" else None
            claimed = self.store.create_task(row, entry.step_rows, claim_for=claim_for, lease_s=LEASE_S)
        self.stamped = time.time()
        task = TaskModel(
            task_id,
            entry,
            {name: StepModel(deps, 1 + limit, ok) for name, deps, limit, ok in spec},
            "pending" if mode == "pending" else "in_progress",
        )
        self.tasks[task_id] = task
        for step_id, name in self.store.execute("SELECT id, name FROM tf_step WHERE task_id = ?", (task_id,)):
            self.by_step_id[step_id] = (task_id, name)
        roots = [name for name, deps, _, _ in spec if not deps]
        assert [c.name for c in claimed] == ([] if mode == "pending" else roots)
        for c in claimed:
            self._start(task, c.name, worker)
            self._hold(c, worker)

    @precondition(lambda self: self.tasks)
    @rule(worker=st.sampled_from(WORKERS), limit=st.integers(1, 4), data=st.data())
    def claim(self, worker: str, limit: int, data: st.DataObject) -> None:
        only = data.draw(st.none() | st.sampled_from(list(self.tasks)), label="only task")
        self._claim(worker, limit, [only] if only else None)

    def _claim(self, worker: str, limit: int, task_ids: list[str] | None) -> None:
        scope = [self.tasks[t] for t in task_ids] if task_ids is not None else list(self.tasks.values())
        ready = {(t.id, name) for t in scope for name in t.ready()}
        due = dict(self.store.execute(
            "SELECT id, next_attempt_at FROM tf_step WHERE status = 'pending' AND deps_left = 0"
        ).fetchall())
        taken = self.store.claim(worker, LEASE_S, limit, task_ids=task_ids)
        claimed, started = taken.claimed, taken.started
        got = [(c.task_id, c.name) for c in claimed]
        assert len(set(got)) == len(got), "a step was claimed twice"
        assert set(got) <= ready, f"claimed {set(got) - ready}, which are not ready"
        assert len(got) == min(limit, len(ready)), f"claimed {len(got)} of {len(ready)} ready (limit {limit})"
        left = [due[i] for i, key in self.by_step_id.items() if key in ready and key not in got]
        assert not claimed or not left or max(due[c.step_id] for c in claimed) <= min(left), "not the oldest first"
        expect_started = sorted({c.task_id for c in claimed if self.tasks[c.task_id].status == "pending"})
        assert sorted(started) == expect_started
        for c in claimed:
            task = self.tasks[c.task_id]
            task.status = "in_progress"
            self._start(task, c.name, worker)
            self._hold(c, worker)

    @precondition(lambda self: self.held)
    @rule(claim_successors=st.booleans(), data=st.data())
    def commit(self, claim_successors: bool, data: st.DataObject) -> None:
        """One worker commits a batch of outcomes of its claims together, as group commit does.

        An operator may cancel a task first. One of the worker's claims may have stalled:
        its lease ran out, the reaper took the step back, and the worker's late result goes
        into the batch anyway; so may an outcome it committed before (a redelivery). Both
        must be dropped. After a retry the worker may claim the task's ready steps at once.
        """
        worker = data.draw(st.sampled_from(sorted({w for w, _ in self.held.values()})), label="worker")
        mine = sorted(step_id for step_id, (w, _) in self.held.items() if w == worker)
        chosen = data.draw(st.lists(st.sampled_from(mine), min_size=1, max_size=len(mine), unique=True))
        if data.draw(st.integers(0, 5), label="cancel first?") == 0:  # an operator's cancel races the batch
            self._cancel(self.tasks[data.draw(st.sampled_from(list(self.tasks)), label="cancelled task")])
        outcomes: list[Outcome] = []
        stalled: Claimed | None = None
        for step_id in chosen:
            claim = self.held[step_id][1]
            task_id, name = self.by_step_id[step_id]
            step = self.tasks[task_id].steps[name]
            retries = step.retryable and claim.attempt < step.max_attempts
            kinds = ["complete", "complete", "complete", "transient", "transient", "permanent", "stall"]
            if stalled is not None:
                kinds = [k for k in kinds if k != "stall"]
            kind = data.draw(st.sampled_from(kinds), label=f"outcome of {name}")
            if kind == "stall":
                stalled = claim
                kind = data.draw(st.sampled_from(["complete", "transient", "permanent"]), label="late outcome")
            outcomes.append(self._outcome(claim, kind, retries))
        if stalled is not None:
            self._lose_lease(worker, stalled)
        # A stale outcome, preferably of a step the worker holds again (only the attempt fences it off).
        stale = [c for w, c in self.stale.values() if w == worker and c is not stalled]
        again = [c for c in stale if self.held.get(c.step_id, ("",))[0] == worker]
        if stale and data.draw(st.booleans(), label="redeliver?"):
            late = data.draw(st.sampled_from(again or stale), label="redelivered claim")
            kind = data.draw(st.sampled_from(["complete", "transient", "permanent"]), label="redelivered outcome")
            outcomes.append(self._outcome(late, kind, True))
            if again:
                event("redelivery of an earlier attempt of a step the worker holds again")
        outcomes = data.draw(st.permutations(outcomes), label="batch order")

        finished: list[tuple[str, str]] = []
        accepted: list[Outcome] = []
        released: list[str] = []
        for out in outcomes:
            ok, claimed = self._apply_model(out, worker, claim_successors, finished)
            if ok:
                accepted.append(out)
                released += [f"{out.claim.task_id}/{name}" for name in claimed]
        self._tick()
        applied = self.store.apply(outcomes, worker, LEASE_S, claim_successors=claim_successors)
        self.stamped = time.time()
        self.check_applied(applied, outcomes, accepted, finished)
        event(f"batch of {min(len(accepted), 3)}{'+' if len(accepted) > 2 else ''}")
        if applied.dropped:
            event("stale outcomes dropped")
        for _, status in finished:
            event(f"task {status}")
        assert sorted(f"{c.task_id}/{c.name}" for c in applied.claimed) == sorted(released)
        for c in applied.claimed:
            self._hold(c, worker)
        self.stale.update((out.claim.step_id, (worker, out.claim)) for out in accepted)
        retried = sorted({out.claim.task_id for out in accepted if out.kind == "retry"})
        if retried and data.draw(st.booleans(), label="claim the retries at once?"):
            self._claim(worker, 4, retried)  # as the runner's retry timer does (the delay was 0)

    def _outcome(self, claim: Claimed, kind: str, retries: bool) -> Outcome:
        """The outcome the runner would commit for a handler that ended this way."""
        if kind == "complete":
            successors = self.tasks[claim.task_id].entry.successors[claim.name]
            return Outcome("complete", claim, result=json.dumps(claim.name), successors=successors)
        if kind == "transient" and retries:  # the runner retries while attempts remain
            return Outcome("retry", claim, error="transient", error_type="RetryableError", delay=0.0)
        return Outcome("fail", claim, error=f"{kind} failure", error_type="PermanentError")

    def _lose_lease(self, worker: str, claim: Claimed) -> str:
        """The worker stalls: its lease runs out and the reaper takes the step back (an attempt)."""
        self.store.renew(worker, -1.0, [claim.step_id])  # a lease that ended a second ago
        assert [lease.step_id for lease in self.store.expired()] == [claim.step_id]
        self._tick()
        applied = self.store.reap_expired()
        self.stamped = time.time()
        step = self.tasks[claim.task_id].steps[claim.name]
        kind = "retry" if step.retryable and step.attempts < step.max_attempts else "fail"
        finished: list[tuple[str, str]] = []
        ok, _ = self._apply_model(Outcome(kind, claim), worker, False, finished)
        assert ok
        event(f"lost lease: {kind}")
        assert [(o.claim.step_id, o.kind) for o in applied.accepted] == [(claim.step_id, kind)]
        assert _finished(applied) == finished and not applied.claimed
        self.stale[claim.step_id] = (worker, claim)
        return kind

    def _cancel(self, task: TaskModel) -> None:
        """An operator cancels a task: its queued steps are cancelled, the ones in flight finish."""
        applied = self.store.cancel(task.id, "machine")
        if task.status in ("pending", "in_progress"):
            assert _finished(applied) == [(task.id, "cancelled")]
            task.status = "cancelled"
            for step in task.steps.values():
                if step.status == "pending":
                    step.status = "cancelled"
            event("task cancelled")
        else:
            assert _finished(applied) == []

    def check_applied(
        self, applied: Applied, outcomes: list[Outcome], accepted: list[Outcome], finished: list[tuple[str, str]]
    ) -> None:
        taken = {id(o) for o in accepted}
        assert [id(o) for o in applied.accepted] == [id(o) for o in accepted]
        assert [id(o) for o in applied.dropped] == [id(o) for o in outcomes if id(o) not in taken]
        assert sorted(_finished(applied)) == sorted(finished)

    # -- invariants, against the database ----------------------------------------------------

    @invariant()
    def database_agrees_with_the_model(self) -> None:
        rows = self.store.execute(
            "SELECT task_id, name, status, attempts, max_attempts, lease_owner, deps_left FROM tf_step"
        ).fetchall()
        tasks = dict(self.store.execute("SELECT id, status FROM tf_task").fetchall())
        steps: dict[str, dict[str, tuple[Any, ...]]] = {}
        for task_id, name, *rest in rows:
            steps.setdefault(task_id, {})[name] = tuple(rest)
        assert set(tasks) == set(self.tasks)
        for task_id, model in self.tasks.items():
            stored = steps[task_id]
            status = {name: row[0] for name, row in stored.items()}
            assert set(stored) == set(model.steps)
            for name, (st_status, attempts, max_attempts, owner, deps_left) in stored.items():
                spec = model.steps[name]
                if st_status in ("in_progress", "completed"):
                    late = [d for d in spec.deps if status[d] != "completed"]
                    assert not late, f"{name} is {st_status} before its dependencies {late} completed"
                assert attempts <= max_attempts == spec.max_attempts, f"{name} ran {attempts} times"
                assert (st_status, attempts) == (spec.status, spec.attempts), f"{task_id}/{name}"
                assert owner == (spec.owner if st_status == "in_progress" else None), f"{name} leased to {owner}"
                if st_status == "pending":
                    assert deps_left == model.deps_left(name), f"{name} counts {deps_left} dependencies left"
            # (A step in flight when its task was cancelled still completes: the task stays cancelled.)
            all_completed = all(s == "completed" for s in status.values())
            if tasks[task_id] != "cancelled":
                assert (tasks[task_id] == "completed") == all_completed, f"task {tasks[task_id]}, steps {status}"
            if "failed" in status.values():
                assert tasks[task_id] in ("failed", "cancelled"), f"task {tasks[task_id]} with a failed step"
                assert "pending" not in status.values(), "a failed task has steps queued"
            if tasks[task_id] == "failed":
                assert "failed" in status.values()
            assert tasks[task_id] == model.status


SchedulerMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_scheduler_machine = SchedulerMachine.TestCase


# -- the interleaving the machine leaves out ---------------------------------------------------------


@pytest.mark.parametrize("end", ["failed", "cancelled"])
@pytest.mark.parametrize("requeue", ["retry", "lost lease", "release"])
def test_a_step_of_a_finished_task_is_never_claimed_again(database_url: str, end: str, requeue: str) -> None:
    # Two parallel roots: 'a' ends the task (fails for good, or the task is cancelled)
    # while 'b' is in flight; then 'b' has a transient error, loses its lease, or is
    # given back by a stopping worker. (On both backends: PostgreSQL checks the task
    # with FOR SHARE.)
    store = open_store(database_url)
    store.connect()
    store.upgrade()
    try:
        task_id = new_task_id()
        row = NewTask(task_id, "prop", "dag", "1.0.0", "f", "r", "{}")
        a, b = store.create_task(row, [StepRow("a", 0, 1, True), StepRow("b", 0, 3, True)], claim_for="w1",
                                 lease_s=LEASE_S)
        if end == "failed":
            store.apply([Outcome("fail", a, error="permanent")], "w1", LEASE_S, claim_successors=True)
        else:
            store.cancel(task_id, "machine")
        assert store.task(task_id).status == end  # type: ignore[union-attr]
        if requeue == "retry":
            store.apply([Outcome("retry", b, error="transient")], "w1", LEASE_S, claim_successors=True)
        elif requeue == "lost lease":
            store.renew("w1", -1.0, [b.step_id])
            store.reap_expired()
        else:
            store.release([b], "w1", 0.0, "worker stopping")
        status = store.execute("SELECT status FROM tf_step WHERE id = ?", (b.step_id,)).fetchone()[0]
        assert status == "cancelled", f"step 'b' of a {end} task is {status}, not cancelled"
        claimed = store.claim("w2", LEASE_S, 10).claimed
        assert claimed == [], f"step {claimed[0].name!r} of a {end} task claimed again (attempt {claimed[0].attempt})"
    finally:
        store.close()
