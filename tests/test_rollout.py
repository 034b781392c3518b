"""Rollouts (issue 16, point 4): a share of the requests that name no exact version goes to
the rolled-out version, decided by a SHA-256 bucket, so every host decides alike; stored in
the database, so every host follows a change within seconds; refused with the reason for a
version that cannot take requests; each task records whether a rollout chose its version.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from api_support import _environment, teamflow_command

from teamflow import Step, StepContext, Workflow, hookimpl
from teamflow.config import HostConfig
from teamflow.errors import RolloutRefused
from teamflow.host import Host
from teamflow.models import NamespacePolicy, TaskRequest
from teamflow.registry.rollout import BUCKETS, bucket


def _done(ctx: StepContext) -> dict[str, Any]:
    return {"ok": True}


class Lab:
    """lab/ledger 1.0.0 and 1.1.0 (the default), 0.9.0 deprecated."""

    @hookimpl
    def teamflow_namespaces(self) -> list[NamespacePolicy]:
        return [NamespacePolicy("lab", owner_team="lab", contact_email="lab@example.test")]

    @hookimpl
    def teamflow_workflows(self) -> list[Workflow]:
        return [
            Workflow("lab", "ledger", "1.0.0", [Step("post", _done)]),
            Workflow("lab", "ledger", "1.1.0", [Step("post", _done), Step("check", _done, depends_on=["post"])]),
            Workflow("lab", "ledger", "0.9.0", [Step("post", _done)], deprecated="use 1.1.0"),
        ]


def _host(url: str) -> Host:
    return Host(config=HostConfig(database_url=url), plugins=[("teamflow-lab", Lab())])


def ledger(version: str | None = None, key: str | None = None) -> TaskRequest:
    return TaskRequest("ledger", "lab", version, {}, idempotency_key=key)


def test_ten_percent_of_2000_requests_land_on_the_rolled_out_version(tmp_path: Path) -> None:
    host = _host(f"sqlite:///{tmp_path}/t.db")
    try:
        host.set_rollout("lab/ledger@1.0.0", 10)
        ids = host.execute_many([ledger() for _ in range(2000)])
        versions = [t.version for t in host.list_tasks(limit=500).tasks]
        counts = {"1.0.0": 0, "1.1.0": 0}
        cursor = None
        while True:
            page = host.list_tasks(limit=500, cursor=cursor)
            for t in page.tasks:
                counts[t.version] += 1
            cursor = page.next_cursor
            if cursor is None:
                break
        assert sum(counts.values()) == len(ids) == 2000 and versions
        assert 0.07 <= counts["1.0.0"] / 2000 <= 0.13, counts
        # an exact version is never rolled; a constraint the rolled-out version does not meet neither
        assert {host.get_task(host.execute_async(ledger("1.1.0"))).version for _ in range(50)} == {"1.1.0"}
        assert {host.get_task(host.execute_async(ledger("^1.1"))).version for _ in range(50)} == {"1.1.0"}
        # each task says whether a rollout chose its version
        rolled = next(i for i in ids if host.get_task(i).version == "1.0.0")
        first = host.task_view(rolled).transitions[0]
        assert first.detail == "rollout: 10% to 1.0.0", first
        kept = next(i for i in ids if host.get_task(i).version == "1.1.0")
        assert host.task_view(kept).transitions[0].detail is None
        drain = {d.version: d.rollout_percent for d in host.workflow_view("lab", "ledger").drain or []}
        assert drain["1.0.0"] == 10.0 and drain["1.1.0"] == 0.0
    finally:
        host.close()


def test_the_same_key_gets_the_same_version_on_every_host(tmp_path: Path) -> None:
    a, b = _host(f"sqlite:///{tmp_path}/a.db"), _host(f"sqlite:///{tmp_path}/b.db")
    try:
        for host in (a, b):
            host.set_rollout("lab/ledger@1.0.0", 50)
        keys = [f"order-{i}" for i in range(60)]
        on_a = [a.get_task(a.execute_async(ledger(key=k))).version for k in keys]
        on_b = [b.get_task(b.execute_async(ledger(key=k))).version for k in keys]
        assert on_a == on_b and set(on_a) == {"1.0.0", "1.1.0"}
        again = [a.get_task(a.execute_async(ledger(key=k))).version for k in keys]
        assert again == on_a
        expected = ["1.0.0" if bucket("lab", "ledger", k) < BUCKETS // 2 else "1.1.0" for k in keys]
        assert on_a == expected
    finally:
        a.close()
        b.close()


def test_a_rollout_set_by_another_process_is_followed_within_5_s_and_clear_ends_it(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    host = _host(f"sqlite:///{db}")
    site = tmp_path / "site"
    site.mkdir()
    (site / "lab_ledger.py").write_text(
        "from teamflow import NamespacePolicy, Step, Workflow, hookimpl\n"
        "@hookimpl\n"
        "def teamflow_namespaces():\n"
        "    return [NamespacePolicy('lab', owner_team='lab', contact_email='lab@example.test')]\n"
        "def _done(ctx):\n    return {'ok': True}\n"
        "@hookimpl\n"
        "def teamflow_workflows():\n"
        "    return [Workflow('lab', 'ledger', '1.0.0', [Step('post', _done)]),\n"
        "            Workflow('lab', 'ledger', '1.1.0', [Step('post', _done), Step('check', _done, depends_on=['post'])]),\n"
        "            Workflow('lab', 'ledger', '0.9.0', [Step('post', _done)], deprecated='use 1.1.0')]\n"
    )
    info = site / "teamflow_lab-1.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: teamflow-lab\nVersion: 1.0.0\n")
    (info / "entry_points.txt").write_text("[teamflow.plugins]\nledger = lab_ledger\n")
    (info / "RECORD").write_text("")
    env = _environment(db, {})
    env["PYTHONPATH"] = f"{site}:{env.get('PYTHONPATH', '')}"

    def tf(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(teamflow_command(*args), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == code, done.stdout + done.stderr
        return done

    try:
        assert host.get_task(host.execute_async(ledger())).version == "1.1.0"
        assert json.loads(tf("rollout", "lab/ledger@1.0.0", "--percent", "100", "--json").stdout)["percent"] == 100
        deadline = time.monotonic() + 5
        while host.get_task(host.execute_async(ledger())).version != "1.0.0":
            assert time.monotonic() < deadline, "the other process's rollout was not followed within 5 s"
            time.sleep(0.1)
        tf("rollout", "lab/ledger@1.0.0", "--clear")
        deadline = time.monotonic() + 5
        while host.get_task(host.execute_async(ledger())).version != "1.1.0":
            assert time.monotonic() < deadline, "the cleared rollout was still followed after 5 s"
            time.sleep(0.1)
        refused = tf("rollout", "lab/ledger@0.9.0", "--percent", "10", code=2)
        assert "rollout_refused" in refused.stderr and "deprecated" in refused.stderr
        audit = [r.action for r in host.audit().rows]
        assert audit[:2] == ["rollout.clear", "rollout.set"], audit
    finally:
        host.close()


@pytest.mark.parametrize(
    ("ref", "why"),
    [
        ("lab/ledger@0.9.0", "is deprecated (use 1.1.0)"),
        ("lab/ledger@2.0.0", "is not loaded on this host (loaded versions: "),
        ("lab/ledger", "name the exact version"),
    ],
)
def test_a_refused_rollout_names_why(tmp_path: Path, ref: str, why: str) -> None:
    host = _host(f"sqlite:///{tmp_path}/t.db")
    try:
        with pytest.raises(RolloutRefused) as refused:
            host.set_rollout(ref, 10)
        assert why in refused.value.detail
        assert host.engine.rollouts() == {}
        with pytest.raises(RolloutRefused, match="at most 100"):
            host.set_rollout("lab/ledger@1.0.0", 150)
    finally:
        host.close()


def test_a_version_waiting_for_approval_cannot_be_rolled_out(tmp_path: Path) -> None:
    """A namespace that requires approval: a rollout to an unapproved version is refused
    (it could not run), and accepted once one of its approvers approved it."""
    from teamflow.config import NamespaceConfig

    class Shared:
        @hookimpl
        def teamflow_workflows(self) -> list[Workflow]:
            return [
                Workflow("shared", "notify", "1.0.0", [Step("send", _done)]),
                Workflow("shared", "notify", "1.1.0", [Step("send", _done)]),
            ]

    policy = NamespaceConfig("platform", "p@example.test", requires_approval=True, approvers=("sarah@example.test",),
                             contributors=("team-shared",))
    host = Host(config=HostConfig(database_url=f"sqlite:///{tmp_path}/t.db", namespaces={"shared": policy}),
                plugins=[("team-shared", Shared())])
    try:
        with pytest.raises(RolloutRefused, match="waits for approval"):
            host.set_rollout("shared/notify@1.0.0", 10)
        host.approve("shared/notify@1.0.0", "sarah@example.test")
        assert host.set_rollout("shared/notify@1.0.0", 10).percent == 10.0
    finally:
        host.close()
