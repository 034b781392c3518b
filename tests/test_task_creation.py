"""Creating tasks at the commit (issue 13): each caller's task is durable when its call
returns, concurrent callers share commits, a batch stores thousands of tasks in one
transaction with its idempotency keys held per item, a worker process on the same SQLite
file notices new work within milliseconds, and a task is read in one statement."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import install_test_plugins, req, wait_for
from flows import AlphaPlugin, BetaPlugin

from teamflow import Host, TaskRequest
from teamflow.engine.engine import new_task_id
from teamflow.errors import ContextInvalid, IdempotencyConflict, InvalidText, StoreError, VersionNotFound
from teamflow.store.records import Claims, ExistingTask, NewTask, TaskFilter


def _count_calls(monkeypatch: pytest.MonkeyPatch, obj: object, name: str) -> list[int]:
    """Record the size of every batch ``obj.name(items)`` is called with, counted as the
    items are read (a batch may be made as it is read: counting must not read it first)."""
    real = getattr(obj, name)
    sizes: list[int] = []

    def counting(items, *args, **kwargs):  # type: ignore[no-untyped-def]
        read = 0

        def counted():  # type: ignore[no-untyped-def]
            nonlocal read
            for item in items:
                read += 1
                yield item

        try:
            return real(counted(), *args, **kwargs)
        finally:
            sizes.append(read)

    monkeypatch.setattr(obj, name, counting)
    return sizes


def test_concurrent_callers_share_commits(make_host, monkeypatch: pytest.MonkeyPatch) -> None:
    host = make_host()
    sizes = _count_calls(monkeypatch, host.store, "create_tasks")
    barrier = threading.Barrier(8)
    ids: list[str] = []

    def call() -> None:
        barrier.wait()
        for _ in range(25):
            ids.append(host.execute_async(req("chain")))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(set(ids)) == 200 and sum(sizes) == 200
    assert len(sizes) < 200 and max(sizes) > 1  # some commits carried several callers' tasks
    stored = host.store.list_tasks(TaskFilter(status="pending"), 500)
    assert {t.id for t in stored} == set(ids)


def _transactions(host: Host) -> int | None:
    """How many transactions wrote the stored tasks (PostgreSQL's xmin; None on SQLite)."""
    if host.store.dialect != "postgres":
        return None
    return int(host.store.execute("SELECT count(DISTINCT xmin::text) FROM tf_task").fetchone()[0])


def test_execute_many_stores_a_thousand_tasks_in_one_transaction(make_host, monkeypatch: pytest.MonkeyPatch) -> None:
    host = make_host()
    commits = _count_calls(monkeypatch, host.store, "create_tasks")
    ids = host.execute_many([req("chain", n=i) for i in range(1000)])
    assert len(set(ids)) == 1000 and commits == [1000]
    assert _transactions(host) in (None, 1)  # PostgreSQL: four statements, one transaction
    assert host.get_task(ids[999]).context == {"n": 999}
    host.start_worker(concurrency=4)
    assert host.wait(ids[0], timeout=30).status == "completed"


def test_a_batch_of_several_workflows_numbers_each_tasks_steps_in_its_order(make_host) -> None:
    """A batch's plans travel once per version: each task still gets its own version's
    steps, in their order, with their dependencies, however the batch mixes them."""
    host = make_host()
    kinds = [req("chain"), req("diamond"), req("leaf", ns="beta"), req("versioned", version="1.1.0")]
    ids = host.execute_many([kinds[i % 3 if i % 7 else 3] for i in range(600)])
    for task_id in ids[:7] + ids[-7:]:
        snap = host.store.snapshot(task_id)
        assert snap is not None
        entry = host.registry.resolve(snap.task.namespace, snap.task.name, snap.task.version)
        assert [(s.name, s.deps_left, s.max_attempts) for s in snap.steps] == [
            (p.name, p.deps, p.max_attempts) for p in entry.step_rows]
    host.start_worker(concurrency=8)
    assert {host.wait(i, timeout=60).status for i in ids[-20:]} == {"completed"}


def test_a_bad_item_late_in_a_long_batch_stores_nothing(make_host) -> None:
    host = make_host()
    batch = [req("chain", n=i) for i in range(600)]
    batch[590] = req("schema", amount="x")
    with pytest.raises(ContextInvalid) as caught:
        host.execute_many(batch)
    assert caught.value.facts["index"] == 590
    assert host.store.list_tasks(TaskFilter(), 10) == []
    assert len(host.execute_many(batch[:590])) == 590  # the store works on


@pytest.mark.postgres
def test_a_long_batch_is_stored_while_its_later_items_are_checked(postgres_url: str, monkeypatch) -> None:
    """PostgreSQL: a batch's first chunk is sent while the next items are checked (the two
    cores work at once), all in one transaction, which rolls back what was sent when a
    later item is refused."""
    from conftest import _hosts

    make = _hosts(postgres_url)
    host = next(make)()
    try:
        checked: list[int] = []
        real_prepare, real_chunk = host.engine.prepare, host.store._create_chunk
        monkeypatch.setattr(host.engine, "prepare", lambda r, *a: (checked.append(1), real_prepare(r, *a))[1])
        sent_after: list[int] = []  # items checked when each chunk's statement began

        def chunk(*args: Any) -> None:
            sent_after.append(len(checked))
            real_chunk(*args)

        monkeypatch.setattr(host.store, "_create_chunk", chunk)
        ids = host.execute_many([req("chain", n=i) for i in range(1000)])
        assert len(set(ids)) == 1000 and _transactions(host) == 1
        assert len(sent_after) == 4 and sent_after[0] < 1000  # sent before the last item was checked
        checked.clear()
        sent_after.clear()
        batch = [req("chain", n=i) for i in range(1000)]
        batch[900] = req("chain", version="9.9.9")
        with pytest.raises(VersionNotFound):
            host.execute_many(batch)
        assert len(sent_after) == 3  # three chunks went out before item 900 was refused ...
        assert len(host.store.list_tasks(TaskFilter(), 2000)) == 1000  # ... and were rolled back
    finally:
        next(make, None)


@pytest.mark.postgres
def test_a_batch_whose_connection_dies_midway_stores_nothing(postgres_url: str, monkeypatch) -> None:
    """The server ends the batch's connection after its first chunk went out: the caller
    gets store_error (503), nothing is stored, and the next batch works on a new connection."""
    import psycopg2
    from conftest import _hosts

    make = _hosts(postgres_url)
    host = next(make)()
    killer = psycopg2.connect(**host.store.connect_params())
    killer.autocommit = True
    try:
        checked: list[int] = []
        real_prepare = host.engine.prepare

        def prepare(request: TaskRequest, *args: Any) -> Any:
            checked.append(1)
            if len(checked) == 400:  # the first chunk (250) is stored or on its way
                pid = host.store._local.txcur.connection.get_backend_pid()
                with killer.cursor() as cur:
                    cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
            return real_prepare(request, *args)

        monkeypatch.setattr(host.engine, "prepare", prepare)
        with pytest.raises(StoreError) as caught:
            host.execute_many([req("chain", n=i) for i in range(1000)])
        assert caught.value.status == 503, caught.value.detail
        monkeypatch.setattr(host.engine, "prepare", real_prepare)
        assert host.store.list_tasks(TaskFilter(), 10) == []
        assert len(host.execute_many([req("chain", n=i) for i in range(600)])) == 600
        assert len(host.store.list_tasks(TaskFilter(), 1000)) == 600
    finally:
        killer.close()
        next(make, None)


def test_execute_many_holds_idempotency_keys_per_item(make_host) -> None:
    host = make_host()
    def keyed(key: str, **context: object) -> TaskRequest:
        return TaskRequest(name="chain", namespace="alpha", version="1.0.0", idempotency_key=key, context=context)

    first = host.execute_async(keyed("k-1"))
    batch = [keyed("k-1"), keyed("k-2"), keyed("k-2"), req("chain")]  # stored before; twice in the batch; no key
    ids = host.execute_many(batch)
    assert ids[0] == first and ids[1] == ids[2] and len(set(ids)) == 3
    assert host.execute_many(batch)[:3] == ids[:3]  # the same batch again: the same tasks
    changed = keyed("k-2", x=1)
    before = len(host.store.list_tasks(TaskFilter(), 500))
    with pytest.raises(IdempotencyConflict):
        host.execute_many([req("chain"), changed])
    assert len(host.store.list_tasks(TaskFilter(), 500)) == before  # refused before anything was stored


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (req("chain", version="9.9.9"), VersionNotFound),
        (req("schema", amount="x"), ContextInvalid),
        (TaskRequest(name="chain", namespace="alpha", version="1.0.0", idempotency_key="k\x00-1"), InvalidText),
        (TaskRequest(name="chain", namespace="alpha", version="1.0.0", idempotency_key="k-\udc80"), InvalidText),
    ],
    ids=["unknown version", "context refused", "NUL in the key", "a lone surrogate in the key"],
)
def test_one_bad_item_refuses_the_whole_batch_and_names_it(make_host, bad, error) -> None:
    host = make_host()
    with pytest.raises(error) as caught:
        host.execute_many([req("chain"), req("chain"), bad])
    assert caught.value.facts["index"] == 2 and caught.value.detail.startswith("item 2: ")
    assert host.store.list_tasks(TaskFilter(), 10) == []


def test_a_key_no_database_can_store_is_refused_the_same_on_both(make_host) -> None:
    """PostgreSQL text holds no NUL: such a key was a raw ValueError there (a 500 over HTTP)."""
    host = make_host()
    for key, says in (("a\x00b", "NUL character (U+0000) at character 1"), ("\ud800", "not valid Unicode")):
        with pytest.raises(InvalidText) as caught:
            host.execute_async(TaskRequest(name="chain", namespace="alpha", version="1.0.0", idempotency_key=key))
        assert caught.value.status == 422 and says in caught.value.detail
    assert host.store.list_tasks(TaskFilter(), 10) == []


@pytest.mark.postgres
def test_any_text_postgresql_cannot_hold_is_a_422_not_a_crash(postgres_url: str) -> None:
    """Not only idempotency keys: every value a PostgreSQL statement quotes (here a token's
    identity) is refused as invalid_text; psycopg2 raised a raw ValueError (a 500)."""
    from conftest import _hosts

    make = _hosts(postgres_url)
    host = next(make)()
    try:
        for identity, says in (("ops\x00team", "NUL character (U+0000)"), ("ops-\udc80", "not valid Unicode")):
            with pytest.raises(InvalidText) as caught:
                host.create_token("t1", ["alpha"], ["read"], identity=identity)
            assert caught.value.status == 422 and says in caught.value.detail
        assert host.list_tokens().tokens == []
        host.create_token("t1", ["alpha"], ["read"], identity="ops")  # the store works on after a refusal
    finally:
        next(make, None)


def test_every_field_of_a_new_task_is_stored_as_given(make_host) -> None:
    """Both PostgreSQL creation statements (with keys and without) and SQLite's store a task,
    its steps and its first transition field for field; a key taken already is left out."""
    host = make_host()
    entry = host.registry.resolve("alpha", "chain", "1.0.0")
    plan = entry.step_rows
    context = '{"n": "\u00e9\\u0000 \\"q\\""}'  # stored as given: non-ASCII, escapes, quotes

    def task(key: str | None, **links: Any) -> NewTask:
        return NewTask(new_task_id(), "alpha", "chain", "1.0.0", entry.fingerprint, entry.route, context,
                       idempotency_key=key,
                       request_hash="h" if key else None, actor="token:t", detail="why", **links)

    parent = task(None)
    child = task(None, parent_id=parent.id, parent_step="s", parent_attempt=2, call_ordinal=3)
    keyed, taken, beside = task("k-1"), task("k-1"), task(None)
    assert host.store.create_tasks([(parent, plan), (child, plan)]) == {parent.id, child.id}
    assert host.store.create_tasks([(keyed, plan)]) == {keyed.id}
    assert host.store.create_tasks([(taken, plan), (beside, plan)]) == {beside.id}
    for new in (child, keyed, beside):
        snap = host.store.snapshot(new.id, history=True)
        assert snap is not None
        row = snap.task
        assert (row.namespace, row.name, row.version, row.fingerprint, row.context, row.status) == (
            "alpha", "chain", "1.0.0", entry.fingerprint, context, "pending")
        assert (row.idempotency_key, row.request_hash) == (new.idempotency_key, new.request_hash)
        assert [(s.name, s.status, s.attempts, s.max_attempts) for s in snap.steps] == [
            (p.name, "pending", 0, p.max_attempts) for p in plan]
        [first] = snap.transitions
        assert (first.step, first.from_status, first.to_status, first.actor, first.detail) == (
            None, None, "pending", "token:t", "why")
    assert host.store.find_idempotent("alpha", "chain", "k-1") == ExistingTask(keyed.id, "h")
    assert [(c.id, c.parent_step, c.call_ordinal) for c in host.store.children(parent.id)] == [(child.id, "s", 3)]
    assert host.store.snapshot(taken.id) is None
    host.start_worker(concurrency=4)
    assert host.wait(beside.id, timeout=30).status == "completed"  # the roots are ready, the rest wait on them


def test_a_task_is_read_in_one_statement(make_host, monkeypatch: pytest.MonkeyPatch) -> None:
    host = make_host()
    task = host.execute_sync(req("parent"))
    statements: list[str] = []
    real = host.store.execute

    def counting(text: str, params=()):  # type: ignore[no-untyped-def]
        statements.append(text)
        return real(text, params)

    monkeypatch.setattr(host.store, "execute", counting)
    view = host.task_view(task.id)
    assert len(statements) == 1
    assert view.children and view.transitions and view.steps
    assert view.transitions[0].to_status == "pending" and view.transitions[-1].to_status == "completed"


def test_execute_async_returns_only_after_its_commit(tmp_path: Path) -> None:
    """A process killed with SIGKILL right after execute_async returned has lost nothing."""
    url = f"sqlite:///{tmp_path}/teamflow.db"
    env = install_test_plugins(tmp_path / "site")
    script = textwrap.dedent(
        f"""
        import sys
        from conftest import host_config
        from flows import AlphaPlugin, BetaPlugin
        from teamflow import Host, TaskRequest
        host = Host(config=host_config({url!r}), plugins=(("team-alpha", AlphaPlugin()), ("team-beta", BetaPlugin())),
                    discover=False, migrate=True)
        while True:
            print(host.execute_async(TaskRequest(name="chain", namespace="alpha", version="1.0.0")), flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    returned = [proc.stdout.readline().strip() for _ in range(300)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    host = Host(config=None, database_url=url, plugins=(("team-alpha", AlphaPlugin()), ("team-beta", BetaPlugin())),
                discover=False, migrate=True)
    try:
        stored = {t.id for t in host.store.list_tasks(TaskFilter(), 1000)}
        assert set(returned) <= stored
    finally:
        host.close()


def test_a_worker_on_the_same_sqlite_file_notices_new_work_within_milliseconds(tmp_path: Path) -> None:
    """The worker polls every 30 s here: only the data_version watch can wake it in time."""
    url = f"sqlite:///{tmp_path}/teamflow.db"
    env = {**install_test_plugins(tmp_path / "site"), "TEAMFLOW_DATABASE_URL": url, "TEAMFLOW_POLL_INTERVAL_S": "30"}
    host = Host(database_url=url, plugins=(("team-alpha", AlphaPlugin()), ("team-beta", BetaPlugin())),
                discover=False, migrate=True)
    worker = subprocess.Popen([sys.executable, "-m", "teamflow.cli", "worker", "--concurrency", "2"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        warm = host.execute_async(req("chain"))  # picked up by the worker's first claim
        wait_for(lambda: host.get_task(warm).status == "completed", 30, "the worker's first task")
        time.sleep(0.5)  # idle long enough to back off fully
        delays = []
        for _ in range(5):
            task_id = host.execute_async(req("versioned", version="1.1.0"))
            started = time.monotonic()
            wait_for(lambda t=task_id: host.get_task(t).status == "completed", 10, "a new task", every=0.002)
            delays.append(time.monotonic() - started)
            time.sleep(0.2)
        assert sorted(delays)[2] < 0.2, delays  # the median; a poll would take up to 30 s
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=30)
        host.close()


# -- submit: the event loop's way in (POST /workflows/execute on SQLite) ---------------------


def test_submitted_tasks_share_the_committer_threads_commits(make_host, monkeypatch: pytest.MonkeyPatch) -> None:
    host = make_host()
    sizes = _count_calls(monkeypatch, host.store, "create_tasks")
    futures = [host.submit(req("chain", n=i)) for i in range(200)]  # none of these calls waits
    answers = [f.result(30) for f in futures]
    assert len({a.id for a in answers}) == 200 and {a.status for a in answers} == {"pending"}
    assert sum(sizes) == 200 and len(sizes) < 200  # the committer took what queued meanwhile
    stored = {t.id for t in host.store.list_tasks(TaskFilter(status="pending"), 500)}
    assert stored == {a.id for a in answers}  # answered only once committed


def test_submit_holds_idempotency_keys_even_when_both_were_staged(make_host, monkeypatch) -> None:
    host = make_host()
    staged = threading.Event()
    real = host.store.create_tasks

    def after_both(*args, **kwargs):  # type: ignore[no-untyped-def]
        staged.wait(10)  # the committer stores nothing before the second request was staged
        return real(*args, **kwargs)

    monkeypatch.setattr(host.store, "create_tasks", after_both)
    keyed = TaskRequest(name="chain", namespace="alpha", version="1.0.0", context={"n": 1}, idempotency_key="k1")
    first, second = host.submit(keyed), host.submit(keyed)  # neither found the key stored
    staged.set()
    a, b = first.result(30), second.result(30)
    assert a.id == b.id
    assert host.submit(keyed).result(30).id == a.id  # found by its key before staging
    with pytest.raises(IdempotencyConflict):
        host.submit(TaskRequest(name="chain", namespace="alpha", version="1.0.0", context={"n": 2},
                                idempotency_key="k1"))
    with pytest.raises(ContextInvalid):  # a refusal raises at once, nothing is queued
        host.submit(req("schema", amount="many"))


def test_a_failed_commit_answers_every_submitted_task_with_its_error(make_host, monkeypatch) -> None:
    host = make_host()

    def down(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise StoreError("database unavailable: connection refused")

    monkeypatch.setattr(host.store, "create_tasks", down)
    futures = [host.submit(req("chain")) for _ in range(5)]
    for future in futures:
        with pytest.raises(StoreError, match="database unavailable"):
            future.result(30)
    monkeypatch.undo()
    assert host.submit(req("chain")).result(30).status == "pending"  # the committer goes on


def test_close_commits_what_was_submitted_then_refuses(make_host) -> None:
    host = make_host()
    futures = [host.submit(req("chain")) for _ in range(50)]
    host.tasks.close()
    assert all(f.done() for f in futures)
    ids = {f.result().id for f in futures}
    assert ids <= {t.id for t in host.store.list_tasks(TaskFilter(), 500)}
    with pytest.raises(StoreError, match="closing"):
        host.submit(req("chain"))


def test_the_sqlite_watch_rests_while_its_worker_is_not_hungry(tmp_path: Path) -> None:
    """This process's own commits change data_version too: a busy worker is not woken for them."""
    import sqlite3

    from teamflow.store.sqlite import SqliteStore

    path = tmp_path / "watched.db"
    store = SqliteStore(f"sqlite:///{path}")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("CREATE TABLE t (x INTEGER)")
    woken: list[bool] = []
    hungry = threading.Event()
    stop = store.watch(woken.append, hungry.is_set)
    try:
        time.sleep(0.05)
        for i in range(20):
            other.execute("INSERT INTO t VALUES (?)", (i,))
            time.sleep(0.005)
        time.sleep(0.05)
        assert woken == []  # not hungry: no wake-up, however often the file changed
        hungry.set()
        other.execute("INSERT INTO t VALUES (99)")
        wait_for(lambda: woken, 2, "a wake-up once hungry", every=0.002)
    finally:
        stop()
        other.close()
        store.close()


def test_a_full_leader_asks_one_more_helper_at_a_time(make_sqlite_host, monkeypatch) -> None:
    """The longest-running of the others first; one more every ESCALATE_S while the leader
    stays full; past them all, every worker. A claim that takes all that is ready (the
    leader is no longer full) starts again from the first."""
    from teamflow.engine.housekeeping import ESCALATE_S, OVERFLOW_S

    host = make_sqlite_host()
    runner = host._make_runner(concurrency=4, namespaces=None, worker_mode=True)  # not started
    house = runner.housekeeping
    asked: list[list[str]] = []
    monkeypatch.setattr(host.store, "overflow", lambda helpers=(): asked.append(list(helpers)))
    monkeypatch.setattr(host.store, "claim", lambda *a, **k: Claims([], []))  # nothing ready
    house._heartbeat()  # the longest-running of its group...
    for other in ("second", "third"):
        time.sleep(0.01)
        host.store.heartbeat(other, house._group, ["r"], 4)
    house._heartbeat()
    assert house._leading and house._helpers == ["second", "third"]  # ...leads, and knows its helpers
    t = time.monotonic()
    steps = [0.0, OVERFLOW_S * 2, ESCALATE_S * 1.2, ESCALATE_S * 1.2 + OVERFLOW_S / 2, ESCALATE_S * 2.4]
    for dt in steps:
        house._overflow(t + dt, True)
    assert asked == [["second"], ["second"], ["second", "third"], []]  # the fourth came too soon
    house._overflow(t + ESCALATE_S * 3.6, False)  # not woken: no overflow
    assert len(asked) == 4
    runner.work.idle = 2
    house._poll(t + 1.0, t + 60.0)  # woken by new work it can take: nothing was ready
    assert not runner.work.backlog
    house._overflow(t + 1.1, True)
    assert asked[-1] == ["second"]
    house._leading = False
    house._overflow(t + 2.0, True)
    assert len(asked) == 5  # only the leader asks


def test_a_group_is_listed_longest_running_first(make_host) -> None:
    host = make_host()
    store = host.store
    for worker in ("first", "second", "third"):
        store.heartbeat(worker, "g", ["r"], 4)
        time.sleep(0.01)
    store.heartbeat("elsewhere", "h", ["s"], 4)
    store.heartbeat("first", "g", ["r"], 4)  # a heartbeat keeps its place

    def group() -> list[str]:
        return [w.id for w in store.live_workers(60.0) if w.group == "g"]

    assert group() == ["first", "second", "third"]
    store.forget_worker("first")
    assert group() == ["second", "third"]


def test_workers_started_together_settle_their_leader_within_a_second(make_host) -> None:
    """A worker whose first heartbeat saw only itself leads; when another of its group turns
    out to have registered first (its commit came later), the second heartbeat, SETTLE_S
    after the first and not a third of a lease later, hands the lead over."""
    from teamflow.engine.housekeeping import SETTLE_S

    host = make_host(lease_s=30.0)  # the next heartbeat a third of a lease on: 10 s
    store = host.store
    runner = host.start_worker(concurrency=2)
    house = runner.housekeeping
    wait_for(lambda: any(w.id == house._worker_id for w in store.live_workers(60.0)), 10, "the first heartbeat")
    assert house._leading
    store.heartbeat("earlier", house._group, ["r"], 4)
    with store.tx():
        store.execute("UPDATE tf_worker SET started_at = started_at - 60 WHERE id = 'earlier'")
    assert house.lease_s / 3 > SETTLE_S + 3
    wait_for(lambda: not house._leading, SETTLE_S + 2, "the second heartbeat")
    assert house._helpers == ["earlier"]


def test_a_busy_worker_claims_in_batches_not_a_few_at_a_time(make_sqlite_host, monkeypatch) -> None:
    """Woken while its queue is above the refill mark (its own commits, a NOTIFY), a worker
    claims nothing; its threads ask when the queue runs low, for at least half a queue."""
    host = make_sqlite_host(poll_interval_s=30.0)  # only wake-ups claim: no timer tops the queue up
    ids = [host.execute_async(req("chain", n=i)) for i in range(300)]
    claims: list[tuple[int, int]] = []  # (asked for, got)
    real = host.store.claim

    def counting(worker, lease_s, limit, **kwargs):  # type: ignore[no-untyped-def]
        got = real(worker, lease_s, limit, **kwargs)
        if kwargs.get("routes") is not None:
            claims.append((limit, len(got.claimed)))
        return got

    monkeypatch.setattr(host.store, "claim", counting)
    host.start_worker(concurrency=8)
    wait_for(lambda: all(t.status == "completed" for t in host.store.list_tasks(TaskFilter(), 1000)), 60,
             "300 chains")
    assert len(ids) == 300
    # Until a claim finds less than it asked for, ready work is left: a backlog.
    backlogged = list(itertools.takewhile(lambda c: c[1] == c[0], claims))
    assert backlogged and min(asked for asked, _ in backlogged) > 4, claims  # more than half a queue (8)
