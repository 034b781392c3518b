"""Worker processes: crashes, namespace routing with real distributions, rolling upgrades."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import executions, host_config, install_test_plugins
from conftest import wait_for as poll
from flows import AlphaPlugin, AlphaPluginV2, BetaPlugin

from teamflow import Host, TaskRequest

pytestmark = pytest.mark.slow


def worker(env: dict[str, str], url: str, *args: str, cwd: Path) -> subprocess.Popen[bytes]:
    env = dict(
        env,
        TEAMFLOW_DATABASE_URL=url,
        TEAMFLOW_POLL_INTERVAL_S="0.1",
        TEAMFLOW_LEASE_S="1",
        TEAMFLOW_RETRY_BASE_S="0.05",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "teamflow.cli", "worker", "--concurrency", "2", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_for(predicate: Any, timeout: float = 30.0) -> Any:  # worker processes take longer to start
    return poll(predicate, timeout, every=0.05)


def stop(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err.decode()


def client(url: str, *plugins: object) -> Host:
    """A host that stores tasks but runs nothing (no worker)."""
    chosen = plugins or (("team-alpha", AlphaPlugin()), ("team-beta", BetaPlugin()))
    return Host(config=host_config(url, lease_s=1.0), plugins=chosen, discover=False, migrate=True)


def test_sigkilled_worker_loses_nothing(tmp_path: Path, database_url: str, record: Path) -> None:
    env = install_test_plugins(tmp_path / "site")
    env["TEAMFLOW_TEST_RECORD"] = str(record)
    host = client(database_url)
    ids = [
        host.execute_async(
            TaskRequest(namespace="alpha", name="slow", version="1.0.0", context={"sleep": 1.5})
        )
    ]
    ids += [
        host.execute_async(TaskRequest(namespace="alpha", name="chain", version="1.0.0")) for _ in range(20)
    ]
    first = worker(env, database_url, cwd=tmp_path)
    try:
        wait_for(lambda: any(r[1] == "one" and r[3] == "start" for r in executions(record)))
        first.kill()  # SIGKILL in the middle of step "one"
        first.wait()
        second = worker(env, database_url, cwd=tmp_path)
        wait_for(lambda: all(host.get_task(i).status == "completed" for i in ids), timeout=60)
        assert stop(second)[0] == 0
    finally:
        first.kill()
    slow = host.get_task(ids[0])
    assert slow.step("one").attempts == 2  # the lost lease counted as an attempt
    starts = [r for r in executions(record) if r[0] == ids[0] and r[1] == "one" and r[3] == "start"]
    assert [r[2] for r in starts] == ["1", "2"] and starts[0][5] != starts[1][5]  # two processes
    # A step ran more than once only where the killed worker held it.
    for task_id in ids:
        task = host.get_task(task_id)
        for step in task.steps:
            runs = [r for r in executions(record) if r[0] == task_id and r[1] == step.name and r[3] != "end"]
            assert 1 <= len(runs) <= step.attempts
            if step.attempts > 1:
                holders = {
                    t.actor
                    for t in host.store.transitions(task_id)
                    if t.step == step.name and t.to_status == "in_progress" and t.attempt == 1
                }
                assert [f":{first.pid}:" in h for h in holders] == [True]
    host.close()


def test_workers_routed_by_namespace_each_with_only_its_team_plugin(
    tmp_path: Path, database_url: str
) -> None:
    alpha_env = install_test_plugins(tmp_path / "alpha-site", which=("alpha",))
    beta_env = install_test_plugins(tmp_path / "beta-site", which=("beta",))
    host = client(database_url)
    parent = host.execute_async(
        TaskRequest(namespace="alpha", name="parent", version="1.0.0", context={"n": 3})
    )
    leaf = host.execute_async(TaskRequest(namespace="beta", name="chain", version="1.0.0"))
    alpha = worker(alpha_env, database_url, "--namespace", "alpha", cwd=tmp_path)
    try:
        wait_for(lambda: host.get_task(parent).step("call").status == "waiting")
        time.sleep(0.5)
        assert host.get_task(leaf).status == "pending"  # nobody serves beta yet
        beta = worker(beta_env, database_url, "--namespace", "beta", cwd=tmp_path)
        try:
            done = wait_for(lambda: (t := host.get_task(parent)).status == "completed" and t)
            assert done.step("call").result["child_result"] == {"n": 30}
            wait_for(lambda: host.get_task(leaf).status == "completed")
        finally:
            assert stop(beta)[0] == 0
    finally:
        code, err = stop(alpha)
    assert code == 0, err
    host.close()


def test_worker_refuses_a_namespace_it_does_not_hold(tmp_path: Path, sqlite_url: str) -> None:
    env = install_test_plugins(tmp_path / "site", which=("alpha",))
    proc = worker(env, sqlite_url, "--namespace", "beta", cwd=tmp_path)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "beta" in err.decode() and "install" in err.decode()


def test_rolling_upgrade_reports_removed_and_drifted_versions(tmp_path: Path, database_url: str) -> None:
    old = client(database_url)
    removed = old.execute_async(TaskRequest(namespace="alpha", name="versioned", version="1.0.0"))
    drifted = old.execute_async(TaskRequest(namespace="alpha", name="chain", version="1.0.0"))
    old_fingerprint = old.get_task(drifted).fingerprint
    old.close()

    new_env = install_test_plugins(tmp_path / "new-site", which=("alpha-v2", "beta"))
    new_env.update(TEAMFLOW_DATABASE_URL=database_url)
    check = subprocess.run(
        [sys.executable, "-m", "teamflow.cli", "check", "--json"],
        env=new_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 1
    report = json.loads(check.stdout)
    unservable = {u["reference"]: u for u in report["unservable_tasks"]}
    assert "version not loaded" in unservable["alpha/versioned@1.0.0"]["reason"]
    assert "drifted" in unservable["alpha/chain@1.0.0"]["reason"]
    assert [d["ref"] for d in report["drift"]] == ["alpha/chain@1.0.0"]

    upgraded = worker(new_env, database_url, cwd=tmp_path)
    try:
        time.sleep(2.0)
        new_host = client(database_url, ("team-alpha", AlphaPluginV2()), ("team-beta", BetaPlugin()))
        # The worker holding the new definition does not run the old tasks.
        assert new_host.get_task(drifted).status == "pending"
        assert new_host.get_task(drifted).fingerprint == old_fingerprint
        assert new_host.get_task(removed).status == "pending"
        new_host.close()
    finally:
        assert stop(upgraded)[0] == 0
    # A worker still holding the old release finishes them.
    old_env = install_test_plugins(tmp_path / "old-site")
    survivor = worker(old_env, database_url, cwd=tmp_path)
    try:
        old = client(database_url)
        wait_for(
            lambda: (
                old.get_task(drifted).status == "completed" and old.get_task(removed).status == "completed"
            )
        )
        old.close()
    finally:
        stop(survivor)


def test_graceful_stop_releases_steps_in_hand(tmp_path: Path, sqlite_url: str, record: Path) -> None:
    env = install_test_plugins(tmp_path / "site")
    env["TEAMFLOW_TEST_RECORD"] = str(record)
    host = client(sqlite_url)
    task_id = host.execute_async(
        TaskRequest(namespace="alpha", name="slow", version="1.0.0", context={"sleep": 0.8})
    )
    proc = worker(env, sqlite_url, cwd=tmp_path)
    wait_for(lambda: any(r[1] == "one" and r[3] == "start" for r in executions(record)))
    code, _ = stop(proc)  # SIGTERM: the step in hand finishes, nothing new starts
    assert code == 0
    task = host.get_task(task_id)
    assert task.step("one").status == "completed" and task.step("one").attempts == 1
    # The commit of "one" claimed "two" for this worker; stopping gives it back at once
    # (not left to a lease that expires, and no attempt is charged for a run that never began).
    assert task.step("two").status == "pending" and task.step("two").attempts == 0
    assert host.store.execute("SELECT lease_owner FROM tf_step WHERE task_id = ? AND name = 'two'",
                              (task_id,)).fetchone() == (None,)
    moves = [(t.from_status, t.to_status, t.detail) for t in host.store.transitions(task_id) if t.step == "two"]
    assert moves == [("pending", "in_progress", None), ("in_progress", "pending", "worker stopping")]
    assert not any(r[1] == "two" for r in executions(record))
    assert not os.environ.get("TEAMFLOW_DATABASE_URL")
    host.close()


def test_a_step_a_worker_cannot_serve_is_said_once_per_version(make_sqlite_host) -> None:
    """A claimed step whose task this worker's registry does not hold is given back and
    warned about once per version (and reason), not at every poll."""
    from loguru import logger

    from teamflow.store.records import Claimed

    host = make_sqlite_host()
    task_id = host.execute_async(TaskRequest(name="chain", namespace="alpha", version="1.0.0"))
    runner = host.runner
    lines: list[tuple[str, str]] = []
    sink = logger.add(lambda m: lines.append((m.record["level"].name, m.record["message"])), level="DEBUG")
    try:
        for attempt in range(3):
            runner._unservable(Claimed(10_000 + attempt, task_id, "a", 1), None)
    finally:
        logger.remove(sink)
    said = [(level, text) for level, text in lines if "cannot serve step" in text]
    assert [level for level, _ in said] == ["WARNING", "DEBUG", "DEBUG"], said
    assert "task not found" in said[0][1]


def test_a_notify_wakes_only_a_worker_that_would_act_on_it(make_sqlite_host) -> None:
    """Every worker hears every NOTIFY; only the group's leader, or a worker with a backlog
    and room in its queue, wakes its housekeeping for one. An overflow (urgent) wakes all."""
    host = make_sqlite_host()
    runner = host._make_runner(concurrency=4, namespaces=None, worker_mode=True)  # not started
    work, house = runner.work, runner.housekeeping

    def woken(urgent: bool, *, leading: bool, backlog: bool, queued: int = 0) -> bool:
        house._leading, work.backlog, work.kick = leading, backlog, False
        work.queue.clear()
        work.queue.extend([object()] * queued)  # type: ignore[list-item]
        runner.wake(urgent)
        return work.kick

    assert not woken(False, leading=False, backlog=False)  # another worker's business
    assert woken(True, leading=False, backlog=False)  # overflow: the leader asks everyone
    assert woken(False, leading=True, backlog=False)  # the leader takes new work
    assert woken(False, leading=False, backlog=True, queued=1)  # its queue has room
    assert not woken(False, leading=False, backlog=True, queued=4)  # enough queued already
    assert woken(False, leading=True, backlog=True, queued=4)  # the leader wakes the others when full
