"""Drain (issue 16, point 5): for every version, its unfinished tasks and the oldest of them,
the versions that started child tasks of it lately, the rollout share; the CLI, the API and
the admin version page show the same counts as the store, before and after the tasks run.
"""

from __future__ import annotations

import json
import re
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from api_support import _environment, teamflow_command

from teamflow import Step, StepContext, Workflow, hookimpl
from teamflow.config import HostConfig
from teamflow.host import Host
from teamflow.models import NamespacePolicy, TaskRequest


def _counts(view: dict) -> dict[str, int]:
    return {d["version"]: d["unfinished"] for d in view["drain"]}


def test_the_drain_of_each_version_on_cli_api_and_admin_matches_the_store(tmp_path: Path) -> None:
    from litestar.testing import TestClient

    from teamflow.api.app import create_app

    db = tmp_path / "t.db"
    host = Host(config=HostConfig(database_url=f"sqlite:///{db}"))
    try:
        old = [host.execute_async(TaskRequest("process_refund", "payments", "2.0.0", {"payment_id": f"pay_o{i}"}))
               for i in range(3)]
        new = [host.execute_async(TaskRequest("process_refund", "payments", "2.1.0", {"payment_id": f"pay_n{i}"}))
               for i in range(2)]
        # customer_success's refund starts a payments 2.1.0 child, and finishes (with it)
        parent = host.execute_sync(TaskRequest("process_refund", "customer_success", "1.3.0", {"ticket_id": "cs_1"}))
        assert parent.status == "completed", parent.error_summary
        store = host.store.unfinished("payments", "process_refund")
        assert {v: n for v, (n, _) in store.items()} == {"2.0.0": 3, "2.1.0": 2}

        with TestClient(create_app(host)) as client:
            api = client.get("/workflows/payments/process_refund").json()
            assert _counts(api)["2.0.0"] == 3 and _counts(api)["2.1.0"] == 2
            by_version = {d["version"]: d for d in api["drain"]}
            oldest = datetime.fromisoformat(by_version["2.0.0"]["oldest_unfinished_at"])  # ISO 8601, UTC
            assert oldest.utcoffset() == timedelta(0) and oldest.timestamp() == pytest.approx(store["2.0.0"][1])
            assert by_version["2.1.0"]["child_callers"] == [
                {"caller": "customer_success/process_refund@1.3.0", "tasks": 1}
            ]
            assert any(c["caller"].startswith("customer_success/") for c in by_version["2.1.0"]["declared_callers"])
            page = client.get("/admin/workflows/payments/process_refund/2.0.0").text
            assert re.search(r'class="unfinished">3\b', page), page
            newer = client.get("/admin/workflows/payments/process_refund/2.1.0").text
            shown = host.version_view("payments", "process_refund", "2.1.0").compatibility
            assert shown is not None and shown.previous == "2.0.0"
            assert ("Compatible with 2.0.0" in newer) == shown.compatible, newer

        env = _environment(db, {})
        listed = subprocess.run(teamflow_command("workflows", "payments", "--json"), env=env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=120, check=True)
        [cli] = [w for w in json.loads(listed.stdout)["workflows"] if w["name"] == "process_refund"]
        assert _counts(cli)["2.0.0"] == 3 and _counts(cli)["2.1.0"] == 2
        human = subprocess.run(teamflow_command("workflows", "payments"), env={**env, "COLUMNS": "200"}, cwd=tmp_path,
                               capture_output=True, text=True, timeout=120, check=True).stdout
        assert "2.0.0 (deprecated) (3)" in human, human

        host.start_worker(concurrency=2)  # run them to the end: nothing left to drain
        for task_id in old + new:
            assert host.wait(task_id, timeout=60).status == "completed"
        with TestClient(create_app(host)) as client:
            assert set(_counts(client.get("/workflows/payments/process_refund").json()).values()) == {0}
        assert host.store.unfinished("payments", "process_refund") == {}
    finally:
        host.close()


def _done(ctx: StepContext) -> dict[str, Any]:
    return {}


_OPEN = {"type": "object", "properties": {"id": {"type": "string"}}}


class Lab:
    """lab/flow 1.0.0; 1.0.1 adds an optional field; 1.1.0 requires one and drops step b."""

    @hookimpl
    def teamflow_namespaces(self) -> list[NamespacePolicy]:
        return [NamespacePolicy("lab", owner_team="lab", contact_email="lab@example.test")]

    @hookimpl
    def teamflow_workflows(self) -> list[Workflow]:
        wider = {"type": "object", "properties": {"id": {"type": "string"}, "x": {"type": "string"}}}
        return [
            Workflow("lab", "flow", "1.0.0", [Step("a", _done), Step("b", _done)], context_schema=_OPEN),
            Workflow("lab", "flow", "1.0.1", [Step("a", _done), Step("b", _done)], context_schema=wider),
            Workflow("lab", "flow", "1.1.0", [Step("a", _done)], context_schema={**_OPEN, "required": ["id"]}),
        ]


def test_the_version_page_says_how_each_version_compares_with_the_one_before(tmp_path: Path) -> None:
    """1.1.0 requires a field 1.0.0 did not and drops a step: both listed; 1.0.1 only adds an
    optional field: compatible."""
    from litestar.testing import TestClient

    from teamflow.api.app import create_app

    host = Host(config=HostConfig(database_url=f"sqlite:///{tmp_path}/t.db"), plugins=[("teamflow-lab", Lab())])
    try:
        newest = host.version_view("lab", "flow", "1.1.0").compatibility
        assert newest is not None and newest.previous == "1.0.1" and not newest.compatible
        assert any("required" in b for b in newest.breaking) and "step 'b' removed or renamed" in newest.breaking
        patch = host.version_view("lab", "flow", "1.0.1").compatibility
        assert patch is not None and patch.previous == "1.0.0"
        first = host.version_view("lab", "flow", "1.0.0").compatibility
        assert first is not None and first.previous is None
        with TestClient(create_app(host)) as client:
            page = client.get("/admin/workflows/lab/flow/1.1.0").text
            assert "Breaks callers of 1.0.1" in page and "step &#39;b&#39; removed or renamed" in page, page
    finally:
        host.close()
