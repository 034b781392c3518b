"""Contracts of the engine that DESIGN.md and issue 3 fix, each checked so that removing the
behaviour makes the test fail: backoff, configuration, SQLite durability settings, the step
context, child-workflow keying, publishing, events, cancellation and task listing.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import peewee as pw
import pytest
from conftest import req, wait_for
from flows import AlphaPlugin, BetaPlugin, policy

from teamflow import Host, RetryableError, Step, StepContext, TaskRequest, Workflow, hookimpl
from teamflow.config import load_config
from teamflow.engine import execute as runner_module
from teamflow.engine.execute import backoff
from teamflow.errors import ConfigError
from teamflow.views import TaskPage

# -- 1. backoff ------------------------------------------------------------------------------


def _fixed_random(monkeypatch: pytest.MonkeyPatch, value: float) -> None:
    monkeypatch.setattr(runner_module, "random", SimpleNamespace(random=lambda: value))


@pytest.mark.parametrize(
    ("attempt", "base", "cap", "d"),
    [
        (1, 0.1, 100.0, 0.1),  # the first retry waits about ``base``
        (2, 0.1, 100.0, 0.2),
        (3, 0.1, 100.0, 0.4),
        (5, 0.1, 100.0, 1.6),
        (3, 1.0, 5.0, 4.0),  # just under the cap
        (4, 1.0, 5.0, 5.0),  # 8 capped to 5
        (30, 1.0, 5.0, 5.0),
    ],
)
def test_backoff_is_equal_jitter_between_half_and_full_delay(
    monkeypatch: pytest.MonkeyPatch, attempt: int, base: float, cap: float, d: float
) -> None:
    """Proves: the lowest draw gives exactly d/2, the highest d, the middle 3d/4, with
    d = min(cap, base * 2**(attempt-1)). Full jitter (0..d), no jitter, a missing cap or an
    off-by-one exponent each change one of these values."""
    _fixed_random(monkeypatch, 0.0)
    assert backoff(attempt, base, cap) == pytest.approx(d / 2)
    _fixed_random(monkeypatch, 0.5)
    assert backoff(attempt, base, cap) == pytest.approx(0.75 * d)
    _fixed_random(monkeypatch, 0.999999)
    assert backoff(attempt, base, cap) == pytest.approx(d, rel=1e-5)
    assert backoff(attempt, base, cap) <= d


def test_backoff_doubles_per_attempt_until_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proves: the same draw gives twice the delay one attempt later, and the cap stops it."""
    _fixed_random(monkeypatch, 0.3)
    delays = [backoff(n, 0.05, 1.0) for n in range(1, 9)]
    for n in range(4):  # 0.05, 0.1, 0.2, 0.4, 0.8 are under the cap of 1.0
        assert delays[n + 1] == pytest.approx(2 * delays[n])
    assert delays[5] == delays[6] == delays[7] == pytest.approx(0.65)  # (0.5 + 0.3 * 0.5) * cap
    assert max(delays) <= 1.0


def test_backoff_jitter_is_real_and_spans_the_interval() -> None:
    """Proves: delays are drawn at random (not constant), always within [d/2, d], and cover
    the interval (a fixed fraction, or a narrower band, fails the spread checks)."""
    d = 0.04  # attempt 3, base 0.01
    samples = [backoff(3, 0.01, 10.0) for _ in range(1000)]
    assert all(d / 2 <= s <= d for s in samples)
    assert len(set(samples)) > 900
    assert min(samples) < d / 2 + 0.05 * d and max(samples) > d - 0.05 * d
    assert sum(samples) / len(samples) == pytest.approx(0.75 * d, rel=0.05)


def test_backoff_cap_holds_for_very_high_attempts() -> None:
    """Proves: the cap bounds the delay whatever the attempt number (a step with a large
    ``retry_limit`` keeps retrying every ``cap`` seconds instead of crashing)."""
    for attempt in (64, 1025, 5000):
        assert 2.5 <= backoff(attempt, 1.0, 5.0) <= 5.0


# -- 2. configuration ------------------------------------------------------------------------


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No TEAMFLOW_* variable and no teamflow.toml (the repository has one) in the cwd."""
    import os

    for var in [v for v in os.environ if v.startswith("TEAMFLOW_")]:
        monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_config_defaults(clean_env: Path) -> None:
    """Proves the documented defaults: a 30 s lease, a 1 s poll, sqlite:///teamflow.db,
    synchronous=FULL, when neither a file nor the environment says otherwise."""
    config = load_config()
    assert config.source == "defaults"
    assert config.lease_s == 30.0
    assert config.poll_interval_s == 1.0
    assert config.database_url == "sqlite:///teamflow.db"
    assert config.sqlite_synchronous == "FULL"


def test_config_environment_overrides_file_and_defaults(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proves: TEAMFLOW_LEASE_S, TEAMFLOW_POLL_INTERVAL_S and TEAMFLOW_DATABASE_URL are read
    from the environment by load_config (what the CLI calls) and win over teamflow.toml."""
    (clean_env / "teamflow.toml").write_text(
        'database_url = "sqlite:///from-file.db"\nlease_s = 12.0\npoll_interval_s = 3.0\n'
    )
    from_file = load_config()
    assert (from_file.database_url, from_file.lease_s, from_file.poll_interval_s) == (
        "sqlite:///from-file.db",
        12.0,
        3.0,
    )
    monkeypatch.setenv("TEAMFLOW_LEASE_S", "7.5")
    monkeypatch.setenv("TEAMFLOW_POLL_INTERVAL_S", "0.25")
    monkeypatch.setenv("TEAMFLOW_DATABASE_URL", "sqlite:///from-env.db")
    config = load_config()
    assert (config.database_url, config.lease_s, config.poll_interval_s) == (
        "sqlite:///from-env.db",
        7.5,
        0.25,
    )


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("TEAMFLOW_LEASE_S", "0", "lease_s must be > 0 seconds"),
        ("TEAMFLOW_LEASE_S", "soon", "environment variable TEAMFLOW_LEASE_S"),
        ("TEAMFLOW_POLL_INTERVAL_S", "-1", "poll_interval_s must be > 0 seconds"),
    ],
)
def test_config_refuses_bad_lease_and_poll_values(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, var: str, value: str, message: str
) -> None:
    """Proves: the variables are parsed (a bad one is refused, naming it) and a lease or poll
    interval that is not a positive number is refused at start."""
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config()


def test_host_from_env_uses_the_environment_end_to_end(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proves: the environment reaches the engine (lease), the runner (poll) and the store (URL)."""
    url = f"sqlite:///{clean_env}/env.db"
    monkeypatch.setenv("TEAMFLOW_DATABASE_URL", url)
    monkeypatch.setenv("TEAMFLOW_LEASE_S", "4")
    monkeypatch.setenv("TEAMFLOW_POLL_INTERVAL_S", "0.3")
    host = Host.from_env(plugins=(("team-alpha", AlphaPlugin()),), discover=False)
    try:
        assert host.store.url == url and (clean_env / "env.db").exists()
        assert host.engine.lease_s == 4.0
        assert host.runner.poll_interval_s == 0.3
    finally:
        host.close()


# -- 3. SQLite durability --------------------------------------------------------------------


def _pragmas_on_a_fresh_thread(host: Host) -> tuple[int, str]:
    """PRAGMAs as seen by a connection opened on another thread (step threads open their own)."""
    seen: list[tuple[int, str]] = []

    def read() -> None:
        conn = host.store.db.connection()
        seen.append(
            (
                conn.execute("PRAGMA synchronous").fetchone()[0],
                conn.execute("PRAGMA journal_mode").fetchone()[0],
            )
        )
        host.store.db.close()

    thread = threading.Thread(target=read)
    thread.start()
    thread.join(10)
    return seen[0]


def test_sqlite_defaults_to_wal_and_synchronous_full(make_sqlite_host) -> None:
    """Proves: every connection (the host's and a new thread's) runs WAL with synchronous=FULL (2)."""
    host = make_sqlite_host()
    conn = host.store.db.connection()
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert _pragmas_on_a_fresh_thread(host) == (2, "wal")


def test_sqlite_synchronous_normal_is_an_opt_in(make_sqlite_host) -> None:
    """Proves: the setting is really applied (so the FULL above is not SQLite's own default)."""
    host = make_sqlite_host(sqlite_synchronous="NORMAL")
    assert _pragmas_on_a_fresh_thread(host) == (1, "wal")


def test_sqlite_writes_happen_only_inside_begin_immediate(
    make_sqlite_host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proves: on every connection of every thread (caller, step threads, worker housekeeping),
    each transaction starts with BEGIN IMMEDIATE and no write runs outside one.

    The trace callback is installed on each connection as peewee opens it.
    """
    statements: list[tuple[int, str, str]] = []  # (connection, thread, statement)
    original = pw.SqliteDatabase._connect

    def traced(self: pw.SqliteDatabase) -> Any:
        conn = original(self)
        key = id(conn)
        conn.set_trace_callback(lambda sql: statements.append((key, threading.current_thread().name, sql)))
        return conn

    monkeypatch.setattr(pw.SqliteDatabase, "_connect", traced)
    host = make_sqlite_host()
    assert host.execute_sync(req("diamond", sleep=0.01)).status == "completed"
    host.cancel(host.execute_async(req("chain")))
    drained = host.execute_async(req("sum"))
    host.start_worker(concurrency=2)
    wait_for(lambda: host.get_task(drained).status == "completed")
    host.close()

    begins: list[str] = []
    outside: list[str] = []
    in_tx: dict[int, bool] = {}
    for conn, thread, sql in statements:
        head = sql.lstrip().upper()
        if head.startswith("BEGIN"):
            begins.append(f"{thread}: {sql.strip()}")
            in_tx[conn] = True
        elif head.startswith(("COMMIT", "END", "ROLLBACK")) and not head.startswith("ROLLBACK TO"):
            in_tx[conn] = False
        elif head.startswith(("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE")) and not in_tx.get(conn):
            outside.append(f"{thread}: {sql[:80]}")
    assert len(begins) >= 8
    assert {b.split(": ", 1)[1].upper() for b in begins} == {"BEGIN IMMEDIATE"}, begins
    assert not outside, outside
    assert {b.split(": ", 1)[0] for b in begins} > {"MainThread"}  # other threads wrote too


# -- 4. StepContext.idempotency_key and step ----------------------------------------------------

_SEEN: list[tuple[str, str, str, int, str]] = []
_SEEN_LOCK = threading.Lock()


def keyed_flaky(ctx: StepContext) -> str:
    """Records its step context, fails the first attempt, succeeds on the second."""
    with _SEEN_LOCK:
        _SEEN.append((ctx.task.id, ctx.step, ctx.context["tag"], ctx.attempt, ctx.idempotency_key))
    if ctx.attempt == 1:
        raise RetryableError("first attempt fails", retry_after=0)
    return ctx.idempotency_key


class KeysPlugin:
    @hookimpl
    def teamflow_namespaces(self) -> list:
        return [policy("keys")]

    @hookimpl
    def teamflow_workflows(self) -> list[Workflow]:
        return [
            Workflow(
                "keys",
                "twice",
                "1.0.0",
                [Step("charge", keyed_flaky, retry_limit=2), Step("ship", keyed_flaky, depends_on="charge")],
            )
        ]


def test_idempotency_key_is_stable_per_task_and_step_across_attempts(make_host) -> None:
    """Proves: each attempt of a step sees the same key (an attempt-dependent key fails), the
    key differs between the steps of one task and between tasks (a constant, or a per-step
    only key fails), and ctx.step names the running step."""
    host = make_host(("team-alpha", AlphaPlugin()), ("team-keys", KeysPlugin()))
    with _SEEN_LOCK:
        _SEEN.clear()
    first = host.execute_sync(req("twice", ns="keys", tag="a"))
    second = host.execute_sync(req("twice", ns="keys", tag="b"))
    assert first.status == second.status == "completed"
    keys: dict[tuple[str, str], set[str]] = {}
    for task_id, step, _tag, _attempt, key in _SEEN:
        keys.setdefault((task_id, step), set()).add(key)
    assert sorted((t, s, a) for t, s, _, a, _ in _SEEN if t == first.id) == [
        (first.id, "charge", 1),
        (first.id, "charge", 2),
        (first.id, "ship", 1),
        (first.id, "ship", 2),
    ]
    assert set(keys) == {(t.id, s) for t in (first, second) for s in ("charge", "ship")}
    assert all(len(v) == 1 for v in keys.values()), keys  # stable across attempts
    distinct = {next(iter(v)) for v in keys.values()}
    assert len(distinct) == 4  # differs between steps and between tasks
    # what the step returned on attempt 2 is the key it saw on attempt 1
    assert first.step("charge").result == next(iter(keys[(first.id, "charge")]))
    assert first.step("charge").attempts == 2


# -- 5. a different request at the same call ordinal -------------------------------------------


def call_varying_child(ctx: StepContext) -> dict[str, Any]:
    """Calls beta/leaf with n = attempt when context['vary'], else n = 1; retries once."""
    n = ctx.attempt if ctx.context.get("vary") else 1
    child = ctx.run_workflow(TaskRequest(namespace="beta", name="leaf", version="1.0.0", context={"n": n}))
    if ctx.attempt == 1:
        raise RetryableError("try once more", retry_after=0)
    return {"child": child.id, "n": child.step("work").result}


class VaryingPlugin(AlphaPlugin):
    @hookimpl
    def teamflow_workflows(self) -> list[Workflow]:
        return [Workflow("alpha", "vary", "1.0.0", [Step("call", call_varying_child, retry_limit=3)])]


def test_a_different_request_at_the_same_call_ordinal_is_permanent(make_host) -> None:
    """Proves: on a re-run, a call whose request differs from the child stored at that ordinal
    fails the step at once with a PermanentError naming the step and the rule, and starts no
    second child; the same request re-attaches (the control, so the failure is the mismatch)."""
    host = make_host(("team-alpha", VaryingPlugin()), ("team-beta", BetaPlugin()))
    same = host.execute_sync(req("vary", vary=False))
    assert same.status == "completed" and same.step("call").attempts == 2
    assert len(same.step("call").children) == 1 and same.step("call").result["n"] == {"n": 10}

    changed = host.execute_sync(req("vary", vary=True))
    call = changed.step("call")
    assert changed.status == "failed"
    assert (call.status, call.attempts, call.error_type) == ("failed", 2, "PermanentError")
    assert "'call'" in call.error and "call #1" in call.error
    assert "must make the same calls in the same order" in call.error
    assert "permanent error" in changed.error_summary
    assert len(call.children) == 1  # the first child only: no replacement was started


# -- 6. a cancelled child is replaced --------------------------------------------------------------


def test_a_cancelled_child_wakes_its_parent_and_is_replaced_on_the_next_attempt(make_host) -> None:
    """DESIGN: "a failed or cancelled child is replaced by a fresh one on the next attempt".

    The parent's step is parked on a child nobody serves yet; the child is cancelled. The
    parent must be re-run (it sees the cancelled child, whose handler raises RetryableError),
    and its next attempt must start a fresh child, which a beta worker then completes.
    Proves the parent is not left parked on a child that will never finish.
    """
    alpha_only = make_host()
    beta_only = make_host()
    task_id = alpha_only.execute_async(req("parent", n=3))
    alpha_only.start_worker(concurrency=2, namespaces=["alpha"])
    wait_for(lambda: alpha_only.get_task(task_id).step("call").status == "waiting")
    [first_child] = alpha_only.get_task(task_id).step("call").children
    assert alpha_only.cancel(first_child).status == "cancelled"
    beta_only.start_worker(concurrency=2, namespaces=["beta"])
    deadline = time.monotonic() + 6.0
    while (final := alpha_only.get_task(task_id)).status not in (
        "completed",
        "failed",
    ) and time.monotonic() < deadline:
        time.sleep(0.05)
    call = final.step("call")
    children = {c: alpha_only.get_task(c).status for c in call.children}
    history = [(t.step, t.from_status, t.to_status, t.attempt, t.detail) for t in alpha_only.task_view(task_id).transitions]
    assert final.status in ("completed", "failed"), (
        f"parent still {final.status} with step 'call' {call.status} (attempts {call.attempts}) 6 s after its child "
        f"{first_child} was cancelled; children {children}; history {history}; workers "
        f"{alpha_only.store.live_workers(60)}"
    )
    assert final.status == "completed", final.error_summary
    assert call.attempts == 2 and len(call.children) == 2 and call.children[0] == first_child
    assert call.result["child_result"] == {"n": 30}
    assert alpha_only.get_task(call.children[1]).status == "completed"


# -- 7. publishing -----------------------------------------------------------------------------


def test_a_host_publishes_namespaces_policies_and_versions(make_host) -> None:
    """Proves: after start the store holds each namespace's owner and full policy, and each
    loaded version with its fingerprint, distribution, deprecation and definition."""
    host = make_host(
        ("team-alpha", AlphaPlugin()), ("team-beta", BetaPlugin(allowed_callers=("gamma", "alpha")))
    )
    store = host.store
    assert store.recorded_owners() == {"alpha": "team-alpha", "beta": "team-beta"}
    beta = store.published_namespace("beta")
    assert beta is not None and beta.owner == "team-beta"
    assert beta.policy == {
        "owner_team": "team-beta",
        "contact_email": "beta@example.test",
        "description": "",
        "requires_approval": False,
        "approvers": [],
        "allowed_callers": ["gamma", "alpha"],
        "compatibility": "backward",
    }
    assert store.published_namespace("alpha").policy["allowed_callers"] == ["*"]  # type: ignore[union-attr]
    assert store.published_namespace("nobody") is None

    versioned = {row.version: row for row in store.published_versions("alpha", "versioned")}
    assert set(versioned) == {"1.0.0", "1.1.0", "2.0.0", "2.1.0-rc.1"}
    for version, row in versioned.items():
        assert row.fingerprint == host.registry.get("alpha", "versioned", version).fingerprint
        assert row.distribution == "team-alpha"
    assert versioned["2.0.0"].deprecated == "use 1.1.0" and versioned["1.1.0"].deprecated is None

    [chain] = store.published_versions("alpha", "chain")
    steps = chain.definition["steps"]
    assert [(s["name"], s["depends_on"], s["handler"], s["retry_limit"]) for s in steps] == [
        ("s1", [], "flows:noop", 3),
        ("s2", ["s1"], "flows:noop", 3),
        ("s3", ["s2"], "flows:noop", 3),
        ("s4", ["s3"], "flows:noop", 3),
    ]
    [parent] = store.published_versions("alpha", "parent")
    assert parent.definition["steps"][1]["calls"] == [{"ref": "beta/leaf@1.0.0", "examples": []}]
    [leaf] = store.published_versions("beta", "leaf")
    assert (leaf.fingerprint, leaf.distribution) == (
        host.registry.get("beta", "leaf", "1.0.0").fingerprint,
        "team-beta",
    )
    assert chain.fingerprint == host.registry.get("alpha", "chain", "1.0.0").fingerprint


@pytest.mark.parametrize("allowed", [("gamma",), ("*",)])
def test_published_caller_policy_is_enforced_by_a_host_without_the_plugin(make_host, allowed) -> None:
    """A host holding only team alpha's plugin calls beta/leaf as a child: it resolves the
    request and checks ``allowed_callers`` against what the beta host published.

    Proves: a non-'*' policy refuses (permanently, naming both namespaces) although the
    calling host never loaded beta's policy; with '*' the same call is accepted and the child
    is created from the published definition (so the refusal comes from the policy).
    """
    publisher = make_host(("team-alpha", AlphaPlugin()), ("team-beta", BetaPlugin(allowed_callers=allowed)))
    assert publisher.store.published_namespace("beta").policy["allowed_callers"] == list(allowed)  # type: ignore[union-attr]
    caller = make_host(("team-alpha", AlphaPlugin()))
    assert "beta" not in caller.registry.namespaces
    task_id = caller.execute_async(req("parent"))
    caller.start_worker(concurrency=2)
    if allowed == ("gamma",):
        result = caller.wait(task_id, timeout=10)
        call = result.step("call")
        assert result.status == "failed" and (call.status, call.attempts) == ("failed", 1)
        assert call.error_type == "PermanentError" and not call.children
        assert "namespace 'alpha' may not call beta/leaf@1.0.0" in call.error
        assert "allows callers gamma" in call.error
    else:
        waiting = wait_for(lambda: (t := caller.get_task(task_id)).step("call").status == "waiting" and t)
        [child_id] = waiting.step("call").children
        child = caller.get_task(child_id)
        assert (child.ref, child.status, child.parent_id) == ("beta/leaf@1.0.0", "pending", task_id)
        assert child.fingerprint == publisher.registry.get("beta", "leaf", "1.0.0").fingerprint


# -- 8. events ---------------------------------------------------------------------------------


class StoreReader:
    """Reads the store inside the hook, from a new thread (its own connection), so it sees only
    what was committed: a change still in an open transaction is invisible there."""

    def __init__(self) -> None:
        self.host: Host | None = None
        self.seen: list[tuple[Any, ...]] = []
        self.lock = threading.Lock()

    def _read(self, task_id: str) -> tuple[Any, list[Any]]:
        assert self.host is not None
        out: list[Any] = []

        def read() -> None:
            snapshot = self.host.store.snapshot(task_id)
            out.append((snapshot and snapshot.task, snapshot.steps if snapshot else []))
            self.host.store.db.close()

        thread = threading.Thread(target=read)
        thread.start()
        thread.join(10)
        return out[0]

    @hookimpl
    def teamflow_task_event(self, event) -> None:
        task, steps = self._read(event.task_id)
        step_status = next((s.status for s in steps if s.name == event.step), None)
        with self.lock:
            self.seen.append(
                (
                    event.kind,
                    event.step,
                    event.namespace,
                    event.name,
                    event.version,
                    event.task_id,
                    task and task.status,
                    step_status,
                )
            )


class Raises:
    @hookimpl
    def teamflow_task_event(self, event) -> None:
        raise RuntimeError(f"subscriber bug on {event.kind}")


def test_events_are_fired_after_commit_with_full_identity(make_host) -> None:
    """Proves: when a subscriber runs, the change its event announces is already committed
    (read on another connection), and every event names namespace, workflow, version, task
    and (for step events) the step. A subscriber raising before and after it changes nothing."""
    from loguru import logger

    reader = StoreReader()
    errors: list[Any] = []
    sink = logger.add(lambda message: errors.append(message.record), level="ERROR")
    try:
        host = make_host(
            ("team-alpha", AlphaPlugin()),
            ("audit-early", Raises()),
            ("audit", reader),
            ("audit-late", Raises()),
        )
        reader.host = host
        # retry_after leaves the retried step pending long enough for the reader to see it so
        done = host.execute_sync(req("flaky", fail_times=1, retry_after=0.3))
        failed = host.execute_sync(req("permanent"))
    finally:
        logger.remove(sink)
    assert (done.status, failed.status) == ("completed", "failed")

    ok = [s for s in reader.seen if s[5] == done.id]
    assert ok[0][0] == "task.created" and ok[0][6] in ("pending", "in_progress")  # the row exists
    assert [
        (kind, step, task_status, step_status) for kind, step, _, _, _, _, task_status, step_status in ok[1:]
    ] == [
        ("task.started", None, "in_progress", None),
        ("step.started", "first", "in_progress", "in_progress"),
        ("step.completed", "first", "in_progress", "completed"),
        ("step.started", "flaky", "in_progress", "in_progress"),
        ("step.retrying", "flaky", "in_progress", "pending"),
        ("step.started", "flaky", "in_progress", "in_progress"),
        ("step.completed", "flaky", "completed", "completed"),
        ("task.completed", None, "completed", None),
    ]
    assert {s[2:5] for s in ok} == {("alpha", "flaky", "1.0.0")}
    bad = [s for s in reader.seen if s[5] == failed.id]
    assert ("step.failed", "charge", "failed", "failed") in [(s[0], s[1], s[6], s[7]) for s in bad]
    assert (bad[-1][0], bad[-1][6]) == ("task.failed", "failed")
    assert {s[2:5] for s in bad} == {("alpha", "permanent", "1.0.0")}

    # both raising subscribers were logged once per event, each with its traceback
    raised = [r for r in errors if "teamflow_task_event of" in r["message"]]
    assert len(raised) == 2 * len(reader.seen)
    assert all(r["exception"] is not None for r in raised)
    assert any(f"raised on step.retrying for task {done.id}" in r["message"] for r in raised)


# -- 9. cancelling a parked step; listing by version ---------------------------------------------


def test_cancelling_a_task_cancels_its_waiting_step(make_host, record: Path) -> None:
    """Proves: a step parked on a child (status 'waiting') becomes 'cancelled' with its task,
    the child is cancelled too, and the parked handler is not re-run afterwards."""
    host = make_host()
    task_id = host.execute_async(req("parent", n=1))
    host.start_worker(concurrency=2, namespaces=["alpha"])
    wait_for(lambda: host.get_task(task_id).step("call").status == "waiting")
    runs_before = record.read_text().count(" call ")
    cancelled = host.cancel(task_id)
    assert cancelled.status == "cancelled"
    assert [(s.name, s.status) for s in cancelled.steps] == [
        ("prepare", "completed"),
        ("call", "cancelled"),
        ("finish", "cancelled"),
    ]
    [child_id] = cancelled.step("call").children
    assert host.get_task(child_id).status == "cancelled"
    time.sleep(0.3)  # a few polls of the worker
    assert host.get_task(task_id).step("call").status == "cancelled"
    assert record.read_text().count(" call ") == runs_before


def test_list_tasks_filters_by_version(make_host) -> None:
    """Proves: list_tasks(version=...) returns exactly that version's tasks (ignoring the
    filter, or filtering on another column, returns the wrong set)."""
    host = make_host()
    old = {host.execute_async(req("versioned", version="1.0.0")) for _ in range(2)}
    new = {host.execute_async(req("versioned", version="1.1.0"))}
    other = host.execute_async(req("chain"))  # also version 1.0.0, another workflow
    rows = host.list_tasks(namespace="alpha", name="versioned", version="1.0.0").tasks
    assert {r.id for r in rows} == old and {r.version for r in rows} == {"1.0.0"}
    rows = host.list_tasks(name="versioned", version="1.1.0").tasks
    assert {r.id for r in rows} == new
    rows = host.list_tasks(version="1.0.0").tasks
    assert {r.id for r in rows} == old | {other}
    assert host.list_tasks(version="9.9.9") == TaskPage([], None)
    first = host.list_tasks(version="1.0.0", limit=2)
    page, cursor = first.tasks, first.next_cursor
    assert len(page) == 2 and cursor is not None
    second = host.list_tasks(version="1.0.0", limit=2, cursor=cursor)
    rest, end = second.tasks, second.next_cursor
    assert {r.id for r in page + rest} == old | {other} and end is None
