"""Deprecation you can see (issue 16, point 6): a request that runs a deprecated version is
logged with a warning naming the caller, and its HTTP answer carries ``Deprecation``
(RFC 9745) and, when the host configures a sunset day, ``Sunset`` (RFC 8594); answers that
ran no deprecated version carry neither. payments/process_refund@2.0.0 is deprecated
("use 2.1.0") by the payments plugin.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from teamflow.config import HostConfig
from teamflow.host import Host

OLD = {"namespace": "payments", "name": "process_refund", "version": "2.0.0", "context": {"payment_id": "pay_1"}}
NEW = {**OLD, "version": "2.1.0"}
SUNSET = "Mon, 01 Mar 2027 00:00:00 GMT"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[Host, Any]]:
    from litestar.testing import TestClient

    from teamflow.api.app import create_app

    config = HostConfig(
        database_url=f"sqlite:///{tmp_path}/t.db", sunsets={"payments/process_refund@2.0.0": "2027-03-01"}
    )
    host = Host(config=config)
    try:
        with TestClient(create_app(host)) as c:
            yield host, c
    finally:
        host.close()


def test_a_deprecated_version_is_answered_with_deprecation_and_sunset(client: tuple[Host, Any]) -> None:
    _, c = client
    logged: list[str] = []
    sink = logger.add(lambda m: logged.append(str(m)), level="WARNING")
    try:
        response = c.post("/workflows/execute", json=OLD)
    finally:
        logger.remove(sink)
    assert response.status_code == 202, response.text
    assert re.fullmatch(r"@\d{10}", response.headers["deprecation"]), response.headers
    assert response.headers["sunset"] == SUNSET
    assert response.json()["deprecation"]["message"] == "use 2.1.0 (fraud screening)"
    assert any("anonymous runs deprecated payments/process_refund@2.0.0" in line for line in logged), logged

    fresh = c.post("/workflows/execute", json=NEW)
    assert fresh.status_code == 202 and "deprecation" not in fresh.headers and "sunset" not in fresh.headers
    assert fresh.json()["deprecation"] is None


def test_waited_and_batched_answers_carry_it_too(client: tuple[Host, Any]) -> None:
    _, c = client
    waited = c.post("/workflows/execute", json={**OLD, "wait": True})
    assert waited.status_code == 200 and waited.json()["status"] == "completed", waited.text
    assert waited.headers["sunset"] == SUNSET and waited.headers["deprecation"].startswith("@")
    batch = c.post("/workflows/execute/batch", json={"requests": [NEW, {**OLD, "context": {"payment_id": "pay_2"}}]})
    assert batch.status_code == 202 and batch.headers["sunset"] == SUNSET, batch.text
    assert [t["deprecation"] is None for t in batch.json()["tasks"]] == [True, False]
    plain = c.post("/workflows/execute/batch", json={"requests": [NEW]})
    assert "deprecation" not in plain.headers


def test_the_warning_names_the_token(client: tuple[Host, Any]) -> None:
    host, c = client
    secret = host.create_token("refunds-ci", ["payments"], ["execute"]).secret
    logged: list[str] = []
    sink = logger.add(lambda m: logged.append(str(m)), level="WARNING")
    try:
        response = c.post("/workflows/execute", json=OLD, headers={"Authorization": f"Bearer {secret}"})
    finally:
        logger.remove(sink)
    assert response.status_code == 202, response.text
    assert any("token:refunds-ci runs deprecated payments/process_refund@2.0.0" in line for line in logged), logged
