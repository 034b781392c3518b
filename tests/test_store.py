"""The store's schema and write path: migrations, task ids, and the runner's group commit."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator

import pytest
from conftest import IN_CI, _pg_problem, host_config, pg_schema_url, wait_for
from flows import AlphaPlugin, BetaPlugin
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from teamflow import Host, TaskRequest
from teamflow.config import HostConfig, load_config
from teamflow.engine.engine import new_task_id
from teamflow.errors import ConfigError, StoreError
from teamflow.registry import StepRow
from teamflow.store import DuplicateKey, Store, open_store, schema
from teamflow.store.records import Claimed, ExistingTask, FinishedTask, NewTask, Outcome, Take


def req(name: str, **context: object) -> TaskRequest:
    return TaskRequest(name=name, namespace="alpha", version="1.0.0", context=context)


@pytest.fixture
def sqlite_host(sqlite_url: str) -> Iterator[Host]:
    """Group commit of new tasks is SQLite's (one writer); PostgreSQL writers run side by side."""
    host = Host(
        config=host_config(sqlite_url, lease_s=0.6),
        plugins=(("team-alpha", AlphaPlugin()), ("team-beta", BetaPlugin())),
        discover=False,
        migrate=True,
    )
    yield host
    host.close()


def test_upgrade_from_v1_keeps_tasks_history_and_moves_the_keys_to_partial_indexes(database_url: str) -> None:
    store = open_store(database_url)
    store.connect()
    with store.db.bind_ctx(schema.MODELS), store.db.atomic():
        schema.MIGRATIONS[1](store.db)
        # the two indexes v1 built from the models, before v2 made them partial
        store.db.execute_sql(
            "CREATE UNIQUE INDEX tf_task_namespace_name_idempotency_key ON tf_task (namespace, name, idempotency_key)"
        )
        store.db.execute_sql(
            "CREATE INDEX tf_task_parent_id_parent_step_call_ordinal ON tf_task (parent_id, parent_step, call_ordinal)"
        )
        schema.Meta.insert(key="schema_version", value="1").execute()
    task_id = str(uuid.uuid4())
    with store.tx():
        store.execute(
            "INSERT INTO tf_task (id, namespace, name, version, fingerprint, context, status, steps_left, "
            "idempotency_key, request_hash, created_at, updated_at) "
            "VALUES (?, 'alpha', 'chain', '1.0.0', 'f', '{}', 'completed', 0, 'key-1', 'h', 1, 1)",
            (task_id,),
        )
        for n, status in enumerate(("pending", "in_progress", "completed"), start=1):
            store.execute(
                "INSERT INTO tf_transition (task_id, step, from_status, to_status, at) VALUES (?, NULL, NULL, ?, ?)",
                (task_id, status, float(n)),
            )
        # an approval from before approvers' identities were checked (schema v4)
        store.execute(
            "INSERT INTO tf_approval (namespace, name, version, fingerprint, approver, at) "
            "VALUES ('shared', 'notify', '1.0.0', 'fp', 'sarah@example.test', 5)"
        )

    assert store.upgrade() == list(range(2, schema.SCHEMA_VERSION + 1))
    [old] = store.approval_records("shared", "notify", "1.0.0")
    assert (old.approver, old.fingerprint, old.verified, old.via) == ("sarah@example.test", "fp", False, None)
    assert store.upgrade() == []  # idempotent
    assert store.schema_version() == schema.SCHEMA_VERSION == max(schema.MIGRATIONS)
    assert [t.to_status for t in store.transitions(task_id)] == ["pending", "in_progress", "completed"]
    indexes = {ix.name for ix in store.db.get_indexes("tf_task")}
    assert {"tf_task_idempotency", "tf_task_parent"} <= indexes
    assert not {"tf_task_namespace_name_idempotency_key", "tf_task_parent_id_parent_step_call_ordinal"} & indexes
    assert store.find_idempotent("alpha", "chain", "key-1") == ExistingTask(task_id, "h")
    # the key is still unique
    with pytest.raises(DuplicateKey), store.tx():
        store.execute(
            "INSERT INTO tf_task (id, namespace, name, version, fingerprint, context, status, steps_left, "
            "idempotency_key, created_at, updated_at) "
            "VALUES (?, 'alpha', 'chain', '1.0.0', 'f', '{}', 'pending', 0, 'key-1', 1, 1)",
            (str(uuid.uuid4()),),
        )
    store.close()


def test_history_keeps_its_order_per_task(make_host) -> None:
    host = make_host()
    first = host.execute_sync(req("chain"))
    second = host.execute_sync(req("chain"))
    for task in (first, second):
        history = host.store.transitions(task.id)
        assert history[0].to_status == "pending" and history[-1].to_status == "completed"
        assert [t.at for t in history] == sorted(t.at for t in history)
        steps = [(t.step, t.to_status) for t in history if t.step]
        assert steps == [
            (name, status) for name in ("s1", "s2", "s3", "s4") for status in ("in_progress", "completed")
        ]


def test_a_transactions_history_is_written_whole_and_in_order_at_commit(make_host) -> None:
    # On SQLite a transaction's history rows wait for its commit and go out in chunks of
    # 16; a rolled-back transaction leaves none.
    host = make_host()
    store, task_id = host.store, host.execute_async(req("chain"))
    rows = [(task_id, None, "pending", "pending", n, "test", f"row {n}") for n in range(40)]
    with store.tx():
        store._transition(rows[:3])
        store._transition(rows[3:])
    with pytest.raises(RuntimeError), store.tx():
        store._transition([(task_id, None, "pending", "pending", 99, "test", "rolled back")])
        raise RuntimeError("roll back")
    details = [t.detail for t in store.transitions(task_id) if t.actor == "test"]
    assert details == [f"row {n}" for n in range(40)]


def test_a_background_thread_copies_the_wal_into_the_database(tmp_path) -> None:
    # The writers' own checkpoint is set out of reach (a million pages), so only the
    # background checkpointer can copy committed pages into the database file: without it
    # the file keeps its empty size and every page stays in the WAL.
    db = tmp_path / "wal.db"
    config = HostConfig(database_url=f"sqlite:///{db}", sqlite_wal_autocheckpoint=1_000_000)
    host = Host(config=config, plugins=[("team-alpha", AlphaPlugin()), ("team-beta", BetaPlugin())],
                discover=False, migrate=True)
    try:
        empty = db.stat().st_size
        for _ in range(300):
            assert host.execute_sync(req("chain")).status == "completed"
        checkpointer = host.store._checkpointer
        assert checkpointer is not None and checkpointer.running
        wait_for(lambda: db.stat().st_size > empty + 500_000)
    finally:
        host.close()
    assert not checkpointer.running  # close() stops the thread


def test_a_wal_that_grew_during_a_burst_is_cut_back_when_it_restarts(tmp_path) -> None:
    # A reader holds checkpoints back while the engine writes, so the WAL grows far past
    # its usual size; once the reader is gone and the WAL restarts, the file is truncated
    # to the limit (twice the autocheckpoint) instead of keeping its largest size.
    db = tmp_path / "burst.db"
    wal = tmp_path / "burst.db-wal"
    config = HostConfig(database_url=f"sqlite:///{db}", sqlite_wal_autocheckpoint=100)
    host = Host(config=config, plugins=[("team-alpha", AlphaPlugin()), ("team-beta", BetaPlugin())],
                discover=False, migrate=True)
    limit = 2 * 100 * 4096
    try:
        reader = sqlite3.connect(db, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM tf_task").fetchone()  # a snapshot pins the WAL
        for _ in range(150):
            assert host.execute_sync(req("chain")).status == "completed"
        grown = wal.stat().st_size
        assert grown > 4 * limit
        reader.execute("COMMIT")
        reader.close()
        for _ in range(150):  # checkpoints catch up, the WAL restarts from its start
            assert host.execute_sync(req("chain")).status == "completed"
        wait_for(lambda: wal.stat().st_size <= limit + 64 * 4096)
    finally:
        host.close()


def test_task_ids_are_uuid7_in_creation_order() -> None:
    ids = [new_task_id() for _ in range(200)]
    assert all(uuid.UUID(i).version == 7 and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)
    assert len(set(ids)) == len(ids)
    stamps = [uuid.UUID(i).int >> 80 for i in ids]  # the 48-bit millisecond prefix
    assert stamps == sorted(stamps)


def test_a_forked_process_draws_task_ids_of_its_own() -> None:
    """Random bits are read ahead in batches; a child forked with some left must not reuse
    them, or parent and child would make the same ids in the same millisecond."""
    new_task_id()  # the parent now holds bits read ahead
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child process
        os.write(write, "".join(new_task_id()[14:] for _ in range(20)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    theirs = os.read(read, 4096).decode()
    os.close(read)
    ours = "".join(new_task_id()[14:] for _ in range(20))  # the random part, past the clock's digits
    assert len(theirs) == len(ours) and theirs != ours
    assert not {theirs[i : i + 22] for i in range(0, len(theirs), 22)} & {ours[i : i + 22] for i in range(0, len(ours), 22)}


class _Gate:
    """Holds the first group commit open until the test has queued more work behind it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.real = store.apply
        self.calls: list[tuple[int, int]] = []  # (outcomes, creates) per transaction
        self.takes: list[Take | None] = []  # and the claim that went with them
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail_next: BaseException | None = None

    def apply(self, outcomes, worker, lease_s, *, claim_successors, creates=(), take=None):
        self.calls.append((len(outcomes), len(creates)))
        self.takes.append(take)
        if len(self.calls) == 1:
            self.entered.set()
            assert self.release.wait(10)
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        return self.real(outcomes, worker, lease_s, claim_successors=claim_successors, creates=creates, take=take)


def test_new_tasks_and_step_outcomes_share_group_commits(sqlite_host: Host) -> None:
    host = sqlite_host
    runner = host.runner
    gate = _Gate(host.store)
    host.store.apply = gate.apply  # type: ignore[method-assign]
    results: list[str] = []

    def run() -> None:
        results.append(host.execute_sync(req("chain")).status)

    first = threading.Thread(target=run)
    first.start()
    assert gate.entered.wait(10)  # the first task's creation holds the lead
    others = [threading.Thread(target=run) for _ in range(5)]
    for t in others:
        t.start()

    def queued() -> bool:  # the five creations wait behind the leader
        return runner.commit.pending_creations() == 5

    wait_for(queued)
    gate.release.set()
    for t in (first, *others):
        t.join(30)
    assert results == ["completed"] * 6
    assert gate.calls[0] == (0, 1)
    assert gate.calls[1][1] == 5  # five new tasks (and maybe the first task's step), one transaction
    assert sum(c for _, c in gate.calls) == 6 and sum(o for o, _ in gate.calls) == 6 * 4
    assert len(gate.calls) < 6 + 6 * 4  # steps of different tasks shared commits too


def test_a_claim_made_while_a_commit_is_under_way_goes_out_with_the_next_commits_outcomes(make_host) -> None:
    # A worker's housekeeping claims new work (``GroupCommit.take``) while a step's outcome
    # is being committed: the claim waits and goes out in the transaction of the outcomes
    # queued meanwhile, not in a transaction of its own.
    host = make_host()
    runner, store = host.runner, host.store
    gate = _Gate(store)
    store.apply = gate.apply  # type: ignore[method-assign]
    claims_alone: list[int] = []
    claim = store.claim
    store.claim = lambda *a, **k: claims_alone.append(1) or claim(*a, **k)  # type: ignore[method-assign]
    a, b, c = (host.execute_async(req("chain")) for _ in range(3))
    [step_a, step_b] = claim(runner.worker_id, 30.0, 2, task_ids=[a, b]).claimed
    route = store.execute("SELECT route FROM tf_step WHERE task_id = ?", (c,)).fetchone()[0]

    def outcome(step: Claimed) -> Outcome:
        return runner.executor.run(step, runner.executor.load(step))  # type: ignore[arg-type]

    taken: list[list[Claimed]] = []
    first = threading.Thread(target=runner.commit.commit, args=([outcome(step_a)],))
    first.start()
    assert gate.entered.wait(10)  # step a's commit holds the lead
    second = threading.Thread(target=runner.commit.commit, args=([outcome(step_b)],))
    second.start()
    wait_for(lambda: len(runner.commit._batcher.waiting()) == 1)
    housekeeping = threading.Thread(target=lambda: taken.append(runner.commit.take(5, [route]).claimed))
    housekeeping.start()
    wait_for(lambda: len(runner.commit._batcher.waiting()) == 2)
    assert not taken  # it waits for the commit under way
    gate.release.set()
    for t in (first, second, housekeeping):
        t.join(30)
    [[root]] = taken
    assert (root.task_id, root.name) == (c, "s1")  # the one ready step left
    # (step b's outcome, and maybe a's next step, which a's commit claimed and the runner ran)
    assert gate.calls[0] == (1, 0) and gate.calls[1][0] >= 1 and gate.takes[:2] == [None, Take(5, (route,))]
    assert claims_alone == []
    assert host.get_task(c).step("s1").status == "in_progress" and host.get_task(c).status == "in_progress"
    # The runner ran the rest of a and b (their successors came with their commits); with
    # no commit under way, a claim goes out at once, alone.
    assert host.wait(a, timeout=15).status == host.wait(b, timeout=15).status == "completed"
    d = host.execute_async(req("chain"))
    assert [s.task_id for s in runner.commit.take(5, [route]).claimed] == [d]
    assert claims_alone == [1] and all(t is None for t in gate.takes[2:])


def test_a_failed_group_commit_fails_the_new_task_and_keeps_the_outcomes(sqlite_host: Host) -> None:
    host = sqlite_host
    gate = _Gate(host.store)
    gate.release.set()
    host.store.apply = gate.apply  # type: ignore[method-assign]
    assert host.execute_sync(req("chain")).status == "completed"
    # the database fails the next commit: the creation is refused, nothing half-stored
    gate.fail_next = StoreError("database error on test: disk I/O error")
    with pytest.raises(StoreError, match="disk I/O error"):
        host.execute_sync(req("chain"))
    # an unexpected error in the commit path fails the caller too, and parks nobody forever
    gate.fail_next = RuntimeError("bug")
    with pytest.raises(StoreError, match="internal error while committing: RuntimeError"):
        host.execute_sync(req("chain"))
    assert host.store.execute("SELECT COUNT(*) FROM tf_task").fetchone()[0] == 1
    # a step's outcome whose commit failed is committed again by housekeeping
    task_id = host.execute_async(req("chain"))
    runner = host.runner
    [claim] = host.store.claim(host.engine.worker_id, 0.6, 1, task_ids=[task_id]).claimed
    gate.fail_next = StoreError("database error on test: disk I/O error")
    runner.commit.commit([runner.executor.run(claim, runner.executor.load(claim))])  # type: ignore[arg-type]
    assert host.get_task(task_id).step("s1").status == "in_progress"
    runner.track(task_id)
    done = host.wait(task_id, timeout=10)
    assert done.status == "completed" and done.step("s1").attempts == 1


def test_a_task_is_read_from_one_snapshot(sqlite_host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    # get_task reads the task, its steps and its children: a change committed while it
    # reads (here: a cancel, as soon as the task row has been queried) must not show up in
    # some of them only.
    host, store = sqlite_host, sqlite_host.store
    task_id = host.execute_async(req("chain"))
    execute, fired = store.execute, []

    def cancel_after_the_task_is_read(text: str, params=()):
        cursor = execute(text, params)
        if not fired and "FROM tf_task WHERE id = " in text:
            fired.append(text)
            canceller = threading.Thread(target=host.cancel, args=(task_id,))
            canceller.start()
            canceller.join(10)
        return cursor

    monkeypatch.setattr(store, "execute", cancel_after_the_task_is_read)
    seen = host.get_task(task_id)
    assert fired
    assert seen.status == "pending" and {s.status for s in seen.steps} == {"pending"}
    after = host.get_task(task_id)
    assert after.status == "cancelled" and {s.status for s in after.steps} == {"cancelled"}


# -- batched completions ------------------------------------------------------------------------


@st.composite
def batch_runs(draw: st.DrawFn) -> tuple[list[tuple[str, list[str]]], int, list[int], int, list[int]]:
    """A random DAG, a number of tasks of it held by the worker and of tasks left ready for a
    claim, the subsets of held steps to complete together, and how many ready steps each
    batch claims besides (``Take``; 0: none)."""
    n = draw(st.integers(1, 6))
    steps = [
        (f"s{i}", draw(st.lists(st.sampled_from([f"s{j}" for j in range(i)]), unique=True, max_size=3)) if i else [])
        for i in range(n)
    ]
    masks = draw(st.lists(st.integers(0, 2**12), min_size=40, max_size=40))
    takes = draw(st.lists(st.integers(0, 3), min_size=40, max_size=40))
    return steps, draw(st.integers(1, 3)), masks, draw(st.integers(0, 3)), takes


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def batch_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """One store for all examples (their tasks are independent), on each backend."""
    if request.param == "sqlite":
        urls: Iterator[str] = iter([f"sqlite:///{tmp_path_factory.mktemp('batch')}/teamflow.db"])
    else:
        problem = _pg_problem()
        if problem:
            pytest.fail(problem) if IN_CI else pytest.skip(problem)
        urls = pg_schema_url()
    store = open_store(next(urls))
    store.connect()
    store.upgrade()
    yield store
    store.close()
    next(urls, None)  # drops the PostgreSQL schema


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(run=batch_runs())
def test_completions_committed_together_follow_the_dag(batch_store: Store, run) -> None:
    # Several steps of several tasks complete in one transaction (a diamond's two parents
    # included): each successor is claimed exactly when its last dependency completed,
    # each task completes exactly when its last step did, and a stale outcome is dropped.
    # A batch may also claim more ready steps (the roots of tasks nobody holds): it takes
    # ready ones only, each once, and starts their tasks, beside the completions.
    store = batch_store
    steps, n_tasks, masks, n_free, takes = run
    deps = dict(steps)
    successors = {name: tuple(s for s, d in steps if name in d) for name, _ in steps}
    rows = [StepRow(name, len(d), 1, True) for name, d in steps]
    roots = {name for name, d in steps if not d}
    route = f"r-{uuid.uuid4().hex[:18]}"  # this example's own: a claim takes none of another's
    held: list[Claimed] = []
    done: dict[str, set[str]] = {}
    for _ in range(n_tasks):
        task_id = new_task_id()
        task = NewTask(task_id, "prop", "dag", "1.0.0", "f", route, "{}")
        held += store.create_task(task, rows, claim_for="w", lease_s=30)
        done[task_id] = set()
    unclaimed: dict[str, set[str]] = {}  # tasks left for a claim -> their roots nobody took yet
    for _ in range(n_free):
        task_id = new_task_id()
        assert store.create_task(NewTask(task_id, "prop", "dag", "1.0.0", "f", route, "{}"), rows, claim_for=None,
                                 lease_s=30) == []  # fmt: skip
        unclaimed[task_id] = set(roots)
    stale: list[Outcome] = []
    for mask, want in [*zip(masks, takes, strict=True), *[(0, 100)] * 40]:  # then take and finish all
        if not held and not any(unclaimed.values()):
            break
        chosen = [c for i, c in enumerate(held) if mask >> i & 1] or held[:1]
        outs = [Outcome("complete", c, result=json.dumps(c.name), successors=successors[c.name]) for c in chosen]
        take = Take(want, (route,)) if want else None
        applied = store.apply(outs + stale, "w", 30, claim_successors=True, take=take)
        assert applied.accepted == outs and applied.dropped == stale
        stale = outs[:1]  # committed again next time: must be dropped
        for c in chosen:
            done[c.task_id].add(c.name)
        held = [c for c in held if c not in chosen] + applied.claimed
        if take is None:
            assert applied.taken is None
        else:
            assert applied.taken is not None
            taken = applied.taken.claimed
            assert len(taken) == min(want, sum(map(len, unclaimed.values())))
            fresh = {t for t, names in unclaimed.items() if t not in done}
            assert set(applied.taken.started) == {c.task_id for c in taken} & fresh  # a task starts once
            for c in taken:
                assert c.name in unclaimed[c.task_id], f"{c.name} of {c.task_id} taken twice or not ready"
                unclaimed[c.task_id].discard(c.name)
                done.setdefault(c.task_id, set())
            held += taken
        for c in applied.claimed:
            assert set(deps[c.name]) <= done[c.task_id], f"{c.name} claimed before its dependencies"
        for task_id, names in done.items():
            ready = {n for n in deps if n not in names and set(deps[n]) <= names} - unclaimed.get(task_id, set())
            assert ready == {c.name for c in held if c.task_id == task_id}  # every ready step is claimed
            finished = FinishedTask(task_id, "completed") in applied.finished_tasks
            status = store.task(task_id).status  # type: ignore[union-attr]
            assert (status == "completed") == (names == set(deps))
            assert finished <= (status == "completed")
    assert not held and set(done) == {*done, *unclaimed} and all(names == set(deps) for names in done.values())
    for task_id in done:
        history = [(t.step, t.to_status) for t in store.transitions(task_id)]
        assert history[0] == (None, "pending") and history[-1] == (None, "completed")
        assert sorted(h for h in history if h[0]) == sorted(
            (name, status) for name in deps for status in ("in_progress", "completed")
        )


def test_renew_extends_and_counts_only_the_leases_the_worker_still_holds(batch_store: Store) -> None:
    store = batch_store
    task = NewTask(new_task_id(), "prop", "dag", "1.0.0", "f", "r", "{}")
    a, b = store.create_task(task, [StepRow("a", 0, 1, True), StepRow("b", 0, 1, True)], claim_for="w", lease_s=30)
    store.apply([Outcome("complete", b, result="1")], "w", 30, claim_successors=False)  # no longer held
    expiry = "SELECT lease_expires_at FROM tf_step WHERE id = ?"
    before = store.execute(expiry, (a.step_id,)).fetchone()[0]
    assert store.renew("w", 60, [a.step_id, b.step_id]) == 1
    assert store.execute(expiry, (a.step_id,)).fetchone()[0] >= before + 29
    assert store.renew("other", 60, [a.step_id]) == 0  # another worker cannot extend it


# -- configuration -------------------------------------------------------------------------------


def test_wal_autocheckpoint_is_configured_on_every_connection(tmp_path) -> None:
    config = load_config(env={"TEAMFLOW_SQLITE_WAL_AUTOCHECKPOINT": "2500",
                              "TEAMFLOW_DATABASE_URL": f"sqlite:///{tmp_path}/tf.db"})
    assert config.sqlite_wal_autocheckpoint == 2500
    assert load_config(env={}).sqlite_wal_autocheckpoint == 10_000
    host = Host(config=config, plugins=(("team-alpha", AlphaPlugin()),), discover=False, migrate=True)
    try:
        seen: list[int] = []
        worker = threading.Thread(
            target=lambda: seen.append(host.store.execute("PRAGMA wal_autocheckpoint").fetchall()[0][0])
        )
        worker.start()
        worker.join()
        assert seen == [2500]  # another thread, its own connection, the same setting
    finally:
        host.close()


def test_a_wal_that_would_never_be_checkpointed_is_refused() -> None:
    with pytest.raises(ConfigError, match="sqlite_wal_autocheckpoint must be at least 100 pages"):
        load_config(env={"TEAMFLOW_SQLITE_WAL_AUTOCHECKPOINT": "0"})
