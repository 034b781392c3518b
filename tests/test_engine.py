"""The engine through the public API, on SQLite and PostgreSQL (one conformance suite)."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import pytest
from conftest import executions, req, wait_for
from flows import AlphaPlugin, BetaPlugin, policy

from teamflow import Host, Step, TaskRequest, TaskResult, Workflow, hookimpl
from teamflow.errors import (
    ContextInvalid,
    IdempotencyConflict,
    PermanentError,
    RetryableError,
    TaskStateError,
    VersionNotFound,
)


def test_chain_runs_in_order_and_passes_results(make_host) -> None:
    host = make_host()
    result = host.execute_sync(req("sum", start=10))
    assert result.status == "completed"
    assert [s.result for s in result.steps] == [11, 12, 13]
    assert all(s.attempts == 1 for s in result.steps)
    assert result.fingerprint == host.registry.get("alpha", "sum", "1.0.0").fingerprint


def test_diamond_branches_run_concurrently(make_host, record: Path) -> None:
    host = make_host()
    result = host.execute_sync(req("diamond", sleep=0.4))
    assert result.status == "completed"
    times: dict[tuple[str, str], float] = {(r[1], r[3]): float(r[4]) for r in executions(record)}
    assert (
        times[("left", "start")] < times[("right", "end")]
        and times[("right", "start")] < times[("left", "end")]
    )
    assert times[("bottom", "ran")] >= max(times[("left", "end")], times[("right", "end")])


def test_retryable_errors_are_retried_with_backoff(make_host, record: Path) -> None:
    host = make_host(retry_base_s=0.2, retry_max_s=5.0)
    result = host.execute_sync(req("flaky", fail_times=2))
    assert result.status == "completed"
    assert result.step("flaky").attempts == 3 and result.step("flaky").result == {"attempt": 3}
    runs = [float(r[4]) for r in executions(record) if r[1] == "flaky"]
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    # equal jitter: attempt n waits between base*2**(n-1)/2 and base*2**(n-1)
    assert 0.1 <= gaps[0] < 0.2 + 1.0
    assert 0.2 <= gaps[1] < 0.4 + 1.0
    kinds = [t.to_status for t in host.store.transitions(result.id) if t.step == "flaky"]
    assert kinds.count("retrying") == 2


def test_retry_after_overrides_backoff(make_host, record: Path) -> None:
    host = make_host()
    host.execute_sync(req("flaky", fail_times=1, retry_after=0.5))
    runs = [float(r[4]) for r in executions(record) if r[1] == "flaky"]
    assert runs[1] - runs[0] >= 0.5


def test_unexpected_errors_retry_then_fail_the_task(make_host) -> None:
    host = make_host()
    result = host.execute_sync(req("crash"))
    assert result.status == "failed"
    boom = result.step("boom")
    assert (boom.status, boom.attempts, boom.error_type) == ("failed", 2, "ValueError")
    assert result.step("after").status == "cancelled"
    assert (
        "boom" in result.error_summary
        and "2/2" in result.error_summary
        and "unexpected bug" in result.error_summary
    )


def test_permanent_error_and_non_retryable_fail_at_once(make_host) -> None:
    host = make_host()
    result = host.execute_sync(req("permanent"))
    assert (result.status, result.step("charge").attempts) == ("failed", 1)
    assert "card declined" in result.error_summary
    assert result.step("after").status == "cancelled"
    once = host.execute_sync(req("crash_once"))
    assert (once.status, once.step("boom").attempts) == ("failed", 1)


def test_timeout_discards_late_result(make_host, record: Path) -> None:
    host = make_host()
    started = time.monotonic()
    result = host.execute_sync(req("timeout", sleep=1.5))
    assert result.status == "failed"
    assert time.monotonic() - started < 1.4  # did not wait for the late handler
    step = result.step("sleepy")
    assert step.attempts == 2 and step.result is None and "timeout_s=0.3" in step.error
    time.sleep(1.6)
    assert host.get_task(result.id).step("sleepy").result is None


def test_result_must_be_json(make_host) -> None:
    result = make_host().execute_sync(req("bad_result"))
    assert result.status == "failed" and "JSON" in result.error_summary
    assert result.step("weird").attempts == 1


def test_async_handlers(make_host) -> None:
    result = make_host().execute_sync(req("async"))
    assert result.status == "completed"
    assert result.step("second").result == {"async": True, "previous": {"step": "first"}}


def test_schema_refusal_names_the_field_and_stores_nothing(make_host) -> None:
    host = make_host()
    with pytest.raises(ContextInvalid) as exc:
        host.execute_sync(req("schema", amount="ten"))
    assert "amount" in exc.value.detail
    with pytest.raises(ContextInvalid, match="amount"):
        host.execute_async(req("schema"))
    with pytest.raises(VersionNotFound, match=r"1\.0\.0"):
        host.execute_async(req("schema", version="^9"))
    assert host.list_tasks().tasks == []
    assert host.execute_sync(req("schema", amount=3)).status == "completed"


def test_version_resolution_from_requests(make_host) -> None:
    host = make_host()
    assert host.execute_sync(req("versioned", version=None)).version == "1.1.0"
    assert host.execute_sync(req("versioned", version="^2")).version == "2.0.0"
    assert host.execute_sync(req("versioned", version="2.1.0-rc.1")).version == "2.1.0-rc.1"


def test_idempotency_both_ways(make_host) -> None:
    host = make_host()
    a = TaskRequest(name="chain", namespace="alpha", context={"x": 1}, idempotency_key="k1")
    first = host.execute_async(a)
    assert host.execute_async(a) == first
    assert host.execute_sync(a).id == first
    with pytest.raises(IdempotencyConflict, match=first):
        host.execute_async(
            TaskRequest(name="chain", namespace="alpha", context={"x": 2}, idempotency_key="k1")
        )
    # keys are scoped to (namespace, name)
    assert host.execute_async(TaskRequest(name="sum", namespace="alpha", idempotency_key="k1")) != first


def test_cancel_lets_the_running_step_finish_but_starts_nothing_after(make_host, record: Path) -> None:
    host = make_host()
    task_id = host.execute_async(req("slow", sleep=0.6))
    host.start_worker(concurrency=2)
    wait_for(lambda: any(r[1] == "one" and r[3] == "start" for r in executions(record)))
    cancelled = host.cancel(task_id)
    assert cancelled.status == "cancelled" and cancelled.step("two").status == "cancelled"
    wait_for(lambda: host.get_task(task_id).step("one").status != "in_progress")
    time.sleep(0.3)
    final = host.get_task(task_id)
    assert final.step("one").status == "completed" and final.step("two").status == "cancelled"
    assert not [r for r in executions(record) if r[1] == "two"]
    with pytest.raises(TaskStateError):
        host.cancel(task_id)


def test_execute_async_drained_by_a_worker(make_host) -> None:
    host = make_host()
    ids = [host.execute_async(req("chain")) for _ in range(10)] + [
        host.execute_async(req("diamond", sleep=0.01))
    ]
    host.start_worker(concurrency=4)
    wait_for(lambda: all(host.get_task(i).status == "completed" for i in ids))


# -- child workflows ---------------------------------------------------------------------------


def test_child_workflow_reattaches_without_counting_an_attempt(make_host, record: Path) -> None:
    host = make_host()
    result = host.execute_sync(req("parent", n=4))
    assert result.status == "completed"
    call = result.step("call")
    assert call.attempts == 1 and call.result["child_result"] == {"n": 40}
    [child_id] = call.children
    child = host.get_task(child_id)
    assert (child.parent_id, child.parent_step, child.ref) == (result.id, "call", "beta/leaf@1.0.0")
    lines = executions(record)
    assert [r[3] for r in lines if r[1] == "call"] == ["call", "call", "attached"]  # parked, then re-attached
    assert len([r for r in lines if r[1] == "work"]) == 1
    assert "waiting" in [t.to_status for t in host.store.transitions(result.id)]


def test_async_handler_child_and_except_exception_cannot_swallow_parking(make_host) -> None:
    host = make_host()
    assert host.execute_sync(req("parent_async")).step("call").result["status"] == "completed"
    assert host.execute_sync(req("swallow")).step("call").result == "completed"


def once_leaf(ctx) -> dict[str, int]:
    """kid/once: its first run (counted in the file context['counter']) fails for good."""
    counter = Path(ctx.context["counter"])
    with counter.open("a") as fh:
        fh.write("x")
    runs = len(counter.read_text())
    if runs == 1:
        raise PermanentError("the first run of kid/once fails")
    return {"run": runs}


def call_once_leaf(ctx) -> dict[str, object]:
    child = ctx.run_workflow(
        TaskRequest(namespace="kid", name="once", version="1.0.0", context={"counter": ctx.context["counter"]})
    )
    if child.status != "completed":
        raise RetryableError(f"child {child.id} {child.status}", retry_after=0)
    return {"child": child.id, "run": child.step("work").result["run"]}


def sleep_for(ctx) -> float:
    time.sleep(ctx.context["sleep"])
    return ctx.context["sleep"]


def call_sleepy_child(ctx) -> str:
    child = ctx.run_workflow(
        TaskRequest(namespace="kid", name="sleepy", version="1.0.0", context={"sleep": ctx.context["sleep"]})
    )
    return child.status


class ChildrenPlugin:
    """par/caller calls kid/once, whose first run fails (1.0.0 retries the call, 2.0.0 does not);
    par/patient's step has timeout_s=0.5 and waits for kid/sleepy, which runs longer."""

    @hookimpl
    def teamflow_namespaces(self):
        return [policy("par"), policy("kid")]

    @hookimpl
    def teamflow_workflows(self):
        return [
            Workflow("kid", "once", "1.0.0", [Step("work", once_leaf, retry_limit=0)]),
            Workflow("par", "caller", "1.0.0", [Step("call", call_once_leaf, retry_limit=1, calls="kid/once@1.0.0")]),
            Workflow("par", "caller", "2.0.0", [Step("call", call_once_leaf, retry_limit=0, calls="kid/once@1.0.0")]),
            Workflow("kid", "sleepy", "1.0.0", [Step("work", sleep_for)]),
            Workflow("par", "patient", "1.0.0",
                     [Step("call", call_sleepy_child, timeout_s=0.5, retry_limit=0, calls="kid/sleepy@1.0.0")]),
        ]


def test_time_parked_on_a_child_does_not_count_toward_timeout(make_host) -> None:
    host = make_host(("team-par", ChildrenPlugin()))
    result = host.execute_sync(TaskRequest(namespace="par", name="patient", version="1.0.0", context={"sleep": 1.2}))
    call = result.step("call")
    assert result.status == "completed" and call.attempts == 1 and call.result == "completed"
    child = host.get_task(call.children[0])
    assert child.step("work").finished_at - child.step("work").started_at >= 1.2  # longer than timeout_s
    assert call.finished_at - call.started_at < 0.5  # the re-run after the child ended


def test_failed_child_is_handed_back_in_its_attempt_and_replaced_on_the_next(make_host, tmp_path: Path) -> None:
    host = make_host(("team-par", ChildrenPlugin()), retry_base_s=0.01)
    result = host.execute_sync(
        TaskRequest(namespace="par", name="caller", version="1.0.0", context={"counter": str(tmp_path / "runs")})
    )
    call = result.step("call")
    # Attempt 1 parks on child 1, wakes, and gets child 1 back failed (the same attempt
    # re-attaches); attempt 2 starts child 2, which completes.
    assert result.status == "completed" and call.attempts == 2
    first, second = (host.get_task(c) for c in call.children)
    assert (first.status, second.status) == ("failed", "completed")
    assert call.result == {"child": second.id, "run": 2}


def test_a_retried_task_replaces_the_child_that_failed_before_the_retry(make_host, tmp_path: Path) -> None:
    host = make_host(("team-par", ChildrenPlugin()), retry_base_s=0.01)
    request = TaskRequest(namespace="par", name="caller", version="2.0.0", context={"counter": str(tmp_path / "runs")})
    failed = host.execute_sync(request)
    assert failed.status == "failed" and len(failed.step("call").children) == 1
    host.retry(failed.id)
    # The retry resets attempts, so the re-run is attempt 1 again, like the run that
    # started the failed child: that child must not be handed back as this run's own.
    final = host.wait(failed.id, timeout=15)
    call = final.step("call")
    assert final.status == "completed" and call.attempts == 1
    assert len(call.children) == 2 and call.result == {"child": call.children[1], "run": 2}
    assert host.get_task(call.children[0]).status == "failed"


def test_parent_parks_when_its_worker_does_not_serve_the_child(make_host) -> None:
    alpha_only = make_host()
    beta_only = make_host()
    task_id = alpha_only.execute_async(req("parent", n=2))
    alpha_only.start_worker(concurrency=2, namespaces=["alpha"])
    wait_for(lambda: alpha_only.get_task(task_id).step("call").status == "waiting")
    time.sleep(0.3)
    assert alpha_only.get_task(task_id).status == "in_progress"  # nobody serves beta yet
    beta_only.start_worker(concurrency=2, namespaces=["beta"])
    final = wait_for(lambda: (t := alpha_only.get_task(task_id)).status == "completed" and t)
    assert final.step("call").result["child_result"] == {"n": 20}


def test_caller_policy_refusal_is_permanent_and_names_both(make_host) -> None:
    host = make_host(("team-alpha", AlphaPlugin()), ("team-beta", BetaPlugin(allowed_callers=("gamma",))))
    result = host.execute_sync(req("parent"))
    assert result.status == "failed" and result.step("call").attempts == 1
    assert "'alpha' may not call beta/leaf@1.0.0" in result.error_summary


def test_cancelling_a_parent_cancels_its_children(make_host) -> None:
    host = make_host()
    task_id = host.execute_async(req("parent", n=1))
    # run only alpha: the child stays pending
    host.start_worker(concurrency=2, namespaces=["alpha"])
    wait_for(lambda: host.get_task(task_id).step("call").children)
    child_id = host.get_task(task_id).step("call").children[0]
    host.cancel(task_id)
    assert host.get_task(child_id).status == "cancelled"


# -- operators --------------------------------------------------------------------------------


def test_retry_reopens_failed_steps_and_keeps_history(make_host, tmp_path: Path) -> None:
    host = make_host()
    gate = tmp_path / "gate"
    failed = host.execute_sync(req("gated", gate=str(gate)))
    assert failed.status == "failed" and failed.step("after").status == "cancelled"
    gate.touch()
    assert host.retry(failed.id) == ["gate", "after"]
    done = host.wait(failed.id, timeout=10)
    assert done.status == "completed" and done.step("gate").attempts == 1
    statuses = [t.to_status for t in host.store.transitions(failed.id) if t.step == "gate"]
    assert statuses == ["in_progress", "failed", "pending", "in_progress", "completed"]
    with pytest.raises(TaskStateError, match="only failed"):
        host.retry(failed.id)


def test_resolve_by_hand_satisfies_dependants(make_host) -> None:
    host = make_host()
    failed = host.execute_sync(req("permanent"))
    resolved = host.resolve_step(failed.id, "charge", {"manual": True}, actor="ops@example.test")
    done = host.wait(resolved.id, timeout=10)
    assert done.status == "completed"
    charge = done.step("charge")
    assert (charge.status, charge.result, charge.resolved_by) == (
        "resolved",
        {"manual": True},
        "ops@example.test",
    )
    assert done.step("after").status == "completed"


def test_a_step_resolved_ahead_of_its_dependency_still_lets_the_task_complete(make_host) -> None:
    # "two" is resolved by hand while "one" has not run: when "one" completes it has no
    # successor left to run, so its commit must find that the task is done.
    host = make_host()
    task_id = host.execute_async(req("slow", sleep=0.05))
    host.resolve_step(task_id, "two", {"skipped": True}, actor="ops@example.test")
    host.start_worker(concurrency=2)
    done = host.wait(task_id, timeout=10)
    assert done.status == "completed"
    assert (done.step("one").status, done.step("two").status) == ("completed", "resolved")
    assert done.step("two").result == {"skipped": True}


# -- events -----------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()

    @hookimpl
    def teamflow_task_event(self, event) -> None:
        with self.lock:
            self.events.append((event.kind, event.step))


class Broken:
    @hookimpl
    def teamflow_task_event(self, event) -> None:
        raise RuntimeError("subscriber bug")


def test_events_fire_in_order_and_a_broken_subscriber_harms_nobody(make_host) -> None:
    recorder = Recorder()
    host = make_host(
        ("team-alpha", AlphaPlugin()),
        ("team-beta", BetaPlugin()),
        ("audit-broken", Broken()),
        ("audit", recorder),
    )
    result = host.execute_sync(req("flaky", fail_times=1))
    assert result.status == "completed"
    assert recorder.events == [
        ("task.created", None),
        ("task.started", None),
        ("step.started", "first"),
        ("step.completed", "first"),
        ("step.started", "flaky"),
        ("step.retrying", "flaky"),
        ("step.started", "flaky"),
        ("step.completed", "flaky"),
        ("task.completed", None),
    ]
    recorder.events.clear()
    host.execute_sync(req("permanent"))
    assert ("step.failed", "charge") in recorder.events and recorder.events[-1] == ("task.failed", None)
    recorder.events.clear()
    task_id = host.execute_async(req("chain"))
    host.cancel(task_id)
    assert recorder.events == [("task.created", None), ("task.cancelled", None)]


class TaskRecorder:
    def __init__(self) -> None:
        self.events: dict[str, list[tuple[str, str | None]]] = {}
        self.lock = threading.Lock()

    @hookimpl
    def teamflow_task_event(self, event) -> None:
        if event.step == "left" and event.kind == "step.completed":
            time.sleep(0.005)  # slow on one branch: the other branch's later commit must wait for it
        with self.lock:
            self.events.setdefault(event.task_id, []).append((event.kind, event.step))


def test_events_keep_their_order_when_commits_are_grouped(make_host) -> None:
    # Several callers at once: outcomes of different tasks share commits, and each task's
    # events must still come in the order its changes happened.
    recorder = TaskRecorder()
    host = make_host(("team-alpha", AlphaPlugin()), ("team-beta", BetaPlugin()), ("audit", recorder))
    results: list[TaskResult] = []

    def run() -> None:
        for _ in range(10):
            results.append(host.execute_sync(req("diamond", sleep=0)))

    callers = [threading.Thread(target=run) for _ in range(4)]
    for t in callers:
        t.start()
    for t in callers:
        t.join(60)
    assert len(results) == 40 and {r.status for r in results} == {"completed"}
    for result in results:
        events = recorder.events[result.id]
        at = {event: i for i, event in enumerate(events)}
        assert events[0] == ("task.created", None) and events[-1] == ("task.completed", None), events
        assert len(events) == len(at) == 3 + 2 * 4, events
        for step in ("top", "left", "right", "bottom"):
            assert at[("step.started", step)] < at[("step.completed", step)], events
        assert at[("step.completed", "top")] < min(at[("step.started", "left")], at[("step.started", "right")])
        assert max(at[("step.completed", "left")], at[("step.completed", "right")]) < at[
            ("step.started", "bottom")
        ], events


def test_a_steps_log_is_bound_to_its_task_and_step(make_host) -> None:
    """ctx.log, and loguru's global logger inside a handler (sync or async), carry the task fields."""
    from loguru import logger

    class Logging(BetaPlugin):
        @hookimpl
        def teamflow_workflows(self):
            from flows import Step, Workflow, logs, logs_async

            return [Workflow("beta", "logs", "1.0.0", [Step("speak", logs), Step("echo", logs_async, depends_on="speak")])]

    records: list[dict] = []
    sink = logger.add(lambda message: records.append(message.record), level="INFO")
    try:
        host = make_host(("team-alpha", AlphaPlugin()), ("team-beta", Logging()))
        result = host.execute_sync(req("logs", ns="beta"))
    finally:
        logger.remove(sink)
    assert result.step("speak").result == "logged" and result.status == "completed"
    keys = ("namespace", "workflow", "version", "task_id", "step", "attempt")
    for message, step in (("hello from speak", "speak"), ("plain hello from speak", "speak"), ("async hello from echo", "echo")):
        said = [r for r in records if r["message"] == message]
        assert len(said) == 1, message
        assert {k: said[0]["extra"].get(k) for k in keys} == {
            "namespace": "beta",
            "workflow": "logs",
            "version": "1.0.0",
            "task_id": result.id,
            "step": step,
            "attempt": 1,
        }, message
    # Outside a step the global logger is bound to no task.
    sink = logger.add(lambda message: records.append(message.record), level="INFO")
    try:
        logger.info("after the task")
    finally:
        logger.remove(sink)
    assert records[-1]["message"] == "after the task" and "task_id" not in records[-1]["extra"]


# -- leases -----------------------------------------------------------------------------------


def test_fencing_a_worker_whose_lease_was_taken_cannot_write(make_host) -> None:
    from teamflow.store.records import Outcome

    host: Host = make_host(lease_s=0.2)
    task_id = host.execute_async(req("chain"))
    store = host.store
    [stale] = store.claim("worker-a", 0.2, 1, task_ids=[task_id]).claimed
    time.sleep(0.5)
    reaped = store.reap_expired()
    assert [o.claim.step_id for o in reaped.accepted] == [stale.step_id]
    [fresh] = store.claim("worker-b", 30, 1, task_ids=[task_id]).claimed
    assert fresh.attempt == 2  # the lost lease counted as an attempt
    late = store.apply(
        [Outcome("complete", stale, result='"late"', successors=("s2",))],
        "worker-a",
        30,
        claim_successors=False,
    )
    assert late.dropped and not late.accepted
    ok = store.apply(
        [Outcome("complete", fresh, result='"fresh"', successors=("s2",))],
        "worker-b",
        30,
        claim_successors=False,
    )
    assert ok.accepted
    task: TaskResult = host.get_task(task_id)
    assert task.step("s1").result == "fresh" and task.step("s1").attempts == 2


def test_a_lease_is_renewed_while_the_handler_runs(make_host, tmp_path: Path) -> None:
    """A step running two and a half times longer than its lease keeps it: the other worker,
    which takes back expired leases, never gets it, and the step runs once. (A lease of 1 s:
    renewed every third of it, a shorter one is lost to a loaded machine's pauses.)"""
    record = tmp_path / "record"
    holder: Host = make_host(lease_s=1.0)
    reaper: Host = make_host(lease_s=1.0)
    task_id = holder.execute_async(req("slow", sleep=2.5, record=str(record)))
    holder.start_worker(concurrency=1)
    wait_for(lambda: holder.get_task(task_id).step("one").status == "in_progress")
    reaper.start_worker(concurrency=2)
    final = holder.wait(task_id, timeout=20)
    assert final.status == "completed"
    assert (final.step("one").attempts, final.step("two").attempts) == (1, 1)
    assert [r[1:4] for r in executions(record)] == [
        ["one", "1", "start"], ["one", "1", "end"], ["two", "1", "start"], ["two", "1", "end"]
    ]
    assert not [t for t in holder.store.transitions(task_id) if "lease" in (t.detail or "")]


def test_lost_lease_of_a_non_retryable_step_fails_it(make_host) -> None:
    host: Host = make_host(lease_s=0.1)
    task_id = host.execute_async(req("crash_once"))
    host.store.claim("worker-a", 0.1, 1, task_ids=[task_id])
    time.sleep(0.3)
    host.store.reap_expired()
    task = host.get_task(task_id)
    assert task.status == "failed" and "retryable=False" in task.step("boom").error
