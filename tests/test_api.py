"""The HTTP API and admin pages, against a real ``teamflow serve`` subprocess.

The seed article's two curl commands are sent byte for byte; every bad request must come
back in the one error shape ``{"error", "detail", ...facts}`` and never as a 500. A few
fast in-process tests cover what a live server cannot provoke (an unexpected exception).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import (
    CS_REFUND,
    JSON,
    PAYMENTS_REFUND,
    LiveServer,
    _environment,
    live_server,
    poll,
    teamflow_command,
    wait_finished,
)

from teamflow import views
from teamflow.api import dag
from teamflow.api.schemas import ExecuteRequest, InvalidBody, decode_body
from teamflow.config import HostConfig
from teamflow.host import Host
from teamflow.store.records import ActiveVersion
from teamflow.store.schema import SCHEMA_VERSION

TEAMS = ("payments", "customer_success", "inventory")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("serve")) as live:
        yield live
        code, _ = live.stop()
        assert code == 0, live.output()


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def execute(client: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    return client.post("/workflows/execute", content=json.dumps(body).encode(), headers=JSON)


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The one error shape, the right status, no trace."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["error"] == code, body
    assert isinstance(body["detail"], str) and body["detail"], body
    assert "Traceback" not in response.text and 'File "' not in response.text
    return body


# -- the seed article -----------------------------------------------------------------------


@pytest.mark.slow
def test_seed_curl_bodies_are_accepted_and_complete(client: httpx.Client) -> None:
    ids = {}
    for body, namespace, version in (
        (PAYMENTS_REFUND, "payments", "2.1.0"),
        (CS_REFUND, "customer_success", "1.3.0"),
    ):
        response = client.post("/workflows/execute", content=body, headers=JSON)
        assert response.status_code == 202, response.text
        accepted = response.json()
        assert accepted["namespace"] == namespace and accepted["name"] == "process_refund"
        assert accepted["version"] == version
        assert accepted["status"] in ("pending", "in_progress", "completed")
        assert accepted["links"]["self"] == f"/tasks/{accepted['id']}"
        assert accepted["links"]["cancel"] == f"/tasks/{accepted['id']}/cancel"
        ids[namespace] = accepted["id"]
    for namespace, task_id in ids.items():
        detail = wait_finished(client, task_id)
        assert detail["status"] == "completed", detail
        assert all(step["status"] == "completed" for step in detail["steps"])
        assert detail["reference"] == f"{namespace}/process_refund@{detail['version']}"
        assert detail["transitions"], "the audit trail is part of the task detail"

    # The customer success refund ran the payments refund as a child task: visible both ways.
    cs_id = ids["customer_success"]
    children = client.get(f"/tasks/{cs_id}").json()["children"]
    assert [(c["namespace"], c["name"], c["version"], c["status"]) for c in children] == [
        ("payments", "process_refund", "2.1.0", "completed")
    ]
    page = client.get("/tasks", params={"parent_id": cs_id}).json()
    assert [t["id"] for t in page["tasks"]] == [children[0]["id"]]
    child = client.get(f"/tasks/{children[0]['id']}").json()
    assert child["parent_id"] == cs_id and child["parent_step"] == "execute_payment_refund"
    assert child["context"]["cs_ticket_id"] == "cs_456"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_seed_curl_commands_verbatim(server: LiveServer, client: httpx.Client) -> None:
    """The article's commands with only the host and port changed."""
    for body in (PAYMENTS_REFUND.decode(), CS_REFUND.decode()):
        command = [
            "curl",
            "-sS",
            "-X",
            "POST",
            f"{server.url}/workflows/execute",
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
            "-w",
            "\n%{http_code}",
        ]
        out = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True).stdout
        text, _, status = out.rpartition("\n")
        assert status == "202", out
        assert wait_finished(client, json.loads(text)["id"])["status"] == "completed"


# -- executing --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("version", "resolved"), [("^2.0", "2.1.0"), (None, "2.1.0"), ("2.0.0", "2.0.0")])
def test_execute_answers_the_resolved_version(
    client: httpx.Client, version: str | None, resolved: str
) -> None:
    body = {"namespace": "payments", "name": "process_refund", "context": {"payment_id": "pay_v1"}}
    if version is not None:
        body["version"] = version
    response = execute(client, body)
    assert response.status_code == 202, response.text
    assert response.json()["version"] == resolved


@pytest.mark.slow
def test_wait_true_answers_the_finished_task(client: httpx.Client) -> None:
    response = execute(
        client,
        {
            "namespace": "payments",
            "name": "process_refund",
            "wait": True,
            "context": {"payment_id": "pay_wait"},
        },
    )
    assert response.status_code == 200, response.text
    task = response.json()
    assert task["status"] == "completed" and task["version"] == "2.1.0"
    assert [s["status"] for s in task["steps"]] == ["completed"] * 5
    assert task["steps"][2]["result"]["refund_id"]
    assert task["links"]["self"] == f"/tasks/{task['id']}"


def test_every_timestamp_is_iso_8601_with_its_zone(server: LiveServer, client: httpx.Client) -> None:
    task = execute(client, {"namespace": "payments", "name": "process_refund", "wait": True,
                            "context": {"payment_id": "pay_when"}}).json()
    shown = client.get(f"/tasks/{task['id']}").json()
    stamps = [shown["created_at"], shown["finished_at"], *(s["started_at"] for s in shown["steps"]),
              *(s["finished_at"] for s in shown["steps"]), *(t["at"] for t in shown["transitions"])]
    listed = client.get("/tasks", params={"limit": 5}).json()["tasks"]
    stamps += [row["created_at"] for row in listed]
    for stamp in stamps:
        assert isinstance(stamp, str) and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", stamp), stamp
    created = datetime.fromisoformat(shown["created_at"])
    assert abs(created.timestamp() - time.time()) < 300
    # the OpenAPI document says so, and the admin page and the CLI show the same instant, in UTC
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    [task_schema] = [v for k, v in schema.items() if k.endswith("TaskView")]
    created_schema = json.dumps(task_schema["properties"]["created_at"])
    assert '"date-time"' in created_schema, created_schema
    when = created.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert when in client.get(f"/admin/tasks/{task['id']}").text
    env = {**_environment(server.workdir / "teamflow.db", {}), "COLUMNS": "200"}
    listing = subprocess.run(teamflow_command("tasks", "--limit", "500"), capture_output=True, text=True,
                             env=env, cwd=server.workdir, timeout=120, check=True).stdout
    [row] = [line for line in listing.splitlines() if task["id"] in line]
    assert when in row, row


@pytest.mark.slow
def test_wait_seconds_runs_out_with_202(client: httpx.Client) -> None:
    body = {
        "namespace": "payments",
        "name": "process_refund",
        "context": {"payment_id": "pay_slow", "simulate_slow_s": 2},
        "wait": 0.3,
    }
    started = time.monotonic()
    response = execute(client, body)
    assert time.monotonic() - started < 1.9
    assert response.status_code == 202, response.text
    assert response.json()["status"] in ("pending", "in_progress")
    assert wait_finished(client, response.json()["id"])["status"] == "completed"


@pytest.mark.slow
def test_idempotency_key(client: httpx.Client) -> None:
    body = {
        "namespace": "payments",
        "name": "process_refund",
        "context": {"payment_id": "pay_idem"},
        "idempotency_key": "refund-idem-1",
    }
    first = execute(client, body)
    again = execute(client, body)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    conflict = assert_error(
        execute(client, {**body, "context": {"payment_id": "pay_other"}}), 409, "idempotency_conflict"
    )
    assert conflict["task_id"] == first.json()["id"]
    assert conflict["idempotency_key"] == "refund-idem-1"


@pytest.mark.slow
def test_cancel(client: httpx.Client) -> None:
    body = {
        "namespace": "payments",
        "name": "process_refund",
        "context": {"payment_id": "pay_cancel", "simulate_slow_s": 1.5},
    }
    task_id = execute(client, body).json()["id"]
    response = client.post(f"/tasks/{task_id}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert response.json()["id"] == task_id
    assert_error(client.post(f"/tasks/{task_id}/cancel"), 409, "invalid_task_state")


@pytest.mark.slow
def test_cancel_a_finished_task_is_409(client: httpx.Client) -> None:
    task_id = execute(
        client,
        {
            "namespace": "payments",
            "name": "process_refund",
            "context": {"payment_id": "pay_done"},
            "wait": True,
        },
    ).json()["id"]
    body = assert_error(client.post(f"/tasks/{task_id}/cancel"), 409, "invalid_task_state")
    assert body["status"] == "completed" and body["task_id"] == task_id


# -- every bad request: one shape, never a 500 -------------------------------------------------


def _post(body: bytes | str) -> tuple[str, str, bytes]:
    return ("POST", "/workflows/execute", body.encode() if isinstance(body, str) else body)


BAD_REQUESTS = [
    pytest.param(
        *_post(b'{"namespace": "payments", "name": '),
        400,
        "invalid_request",
        "not valid JSON",
        id="malformed",
    ),
    pytest.param(*_post(b""), 400, "invalid_request", "body is empty", id="empty-body"),
    pytest.param(*_post(b"[1, 2]"), 400, "invalid_request", "expected a JSON object", id="not-an-object"),
    pytest.param(
        *_post('{"namespace": 5, "name": "process_refund"}'),
        400,
        "invalid_request",
        "expected str @ $.namespace",
        id="wrong-type",
    ),
    pytest.param(
        *_post('{"namespace": null, "name": "process_refund"}'),
        400,
        "invalid_request",
        "expected str @ $.namespace",
        id="null-name",
    ),
    pytest.param(
        *_post('{"namespace": "payments"}'),
        400,
        "invalid_request",
        "required field missing @ $.name",
        id="missing-field",
    ),
    pytest.param(
        *_post('{"namespace": "payments", "name": "process_refund", "contxt": {}}'),
        400,
        "invalid_request",
        "contxt",
        id="unknown-field",
    ),
    pytest.param(
        *_post('{"namespace": "payments", "name": "process_refund", "context": [1]}'),
        400,
        "invalid_request",
        "$.context",
        id="context-not-object",
    ),
    pytest.param(
        *_post('{"namespace": "payments", "name": "process_refund", "version": 2}'),
        400,
        "invalid_request",
        "$.version",
        id="version-number",
    ),
    pytest.param(
        *_post('{"namespace": "payments", "name": "process_refund", "wait": "yes"}'),
        400,
        "invalid_request",
        "$.wait",
        id="wait-string",
    ),
    pytest.param(
        *_post('{"namespace": "payments", "name": "process_refund", "wait": -1}'),
        400,
        "invalid_request",
        "$.wait",
        id="wait-negative",
    ),
    pytest.param(
        *_post('{"namespace": "payments", "name": "process_refund", "context": {"x": NaN}}'),
        400,
        "invalid_request",
        "NaN",
        id="nan",
    ),
    pytest.param(*_post("[" * 5000 + "]" * 5000), 400, "invalid_request", "JSON", id="deep-nesting"),
    pytest.param(
        *_post('{"namespace": "billing", "name": "process_refund"}'),
        404,
        "namespace_not_found",
        "payments",
        id="unknown-namespace",
    ),
    pytest.param(
        *_post('{"namespace": "payments", "name": "refund"}'),
        404,
        "workflow_not_found",
        "process_refund",
        id="unknown-workflow",
    ),
    pytest.param(
        *_post('{"namespace": "payments", "name": "process_refund", "version": "9.9.9"}'),
        404,
        "version_not_found",
        "2.1.0, 2.0.0",
        id="unknown-version",
    ),
    pytest.param(
        *_post('{"namespace": "payments", "name": "process_refund", "version": "^^2"}'),
        400,
        "invalid_version",
        "^^2",
        id="bad-constraint",
    ),
    pytest.param(
        *_post('{"namespace": "payments", "name": "process_refund", "context": {"payment_id": "x"}}'),
        422,
        "context_invalid",
        "payment_id",
        id="context-schema",
    ),
    pytest.param(
        *_post('{"namespace": "payments", "name": "process_refund"}'),
        422,
        "context_invalid",
        "'payment_id' is a required property",
        id="context-missing-field",
    ),
    pytest.param(
        "GET",
        "/workflows/billing",
        b"",
        404,
        "namespace_not_found",
        "customer_success",
        id="get-unknown-namespace",
    ),
    pytest.param(
        "GET",
        "/workflows/payments/refund",
        b"",
        404,
        "workflow_not_found",
        "process_refund",
        id="get-unknown-workflow",
    ),
    pytest.param(
        "GET",
        "/workflows/payments/process_refund/3.0.0",
        b"",
        404,
        "version_not_found",
        "2.0.0",
        id="get-unknown-version",
    ),
    pytest.param(
        "GET",
        "/workflows/payments/process_refund/%3E%3D",
        b"",
        400,
        "invalid_version",
        ">=",
        id="get-bad-constraint",
    ),
    pytest.param(
        "GET",
        "/tasks/00000000-0000-0000-0000-000000000000",
        b"",
        404,
        "task_not_found",
        "does not exist",
        id="unknown-task",
    ),
    pytest.param("POST", "/tasks/nope/cancel", b"", 404, "task_not_found", "nope", id="cancel-unknown-task"),
    pytest.param("GET", "/tasks?limit=0", b"", 400, "invalid_request", "limit", id="limit-zero"),
    pytest.param("GET", "/tasks?limit=ten", b"", 400, "invalid_request", "limit", id="limit-text"),
    pytest.param("GET", "/tasks?status=done", b"", 400, "invalid_request", "status", id="unknown-status"),
    pytest.param(
        "GET", "/tasks?cursor=yesterday", b"", 400, "invalid_cursor", "next_cursor", id="bad-cursor"
    ),
    pytest.param("GET", "/no/such/route", b"", 404, "not_found", "/no/such/route", id="unknown-route"),
    pytest.param("DELETE", "/workflows", b"", 405, "method_not_allowed", "GET", id="wrong-method"),
    pytest.param("GET", "/workflows/execute", b"", 405, "method_not_allowed", "POST", id="get-execute"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path", "body", "status", "code", "mentions"), BAD_REQUESTS)
def test_bad_requests_get_the_error_shape(
    client: httpx.Client, method: str, path: str, body: bytes, status: int, code: str, mentions: str
) -> None:
    response = client.request(method, path, content=body or None, headers=JSON if body else None)
    error = assert_error(response, status, code)
    assert mentions in json.dumps(error, ensure_ascii=False), error


@pytest.mark.slow
def test_not_found_errors_list_what_exists(client: httpx.Client) -> None:
    assert set(TEAMS) <= set(
        assert_error(client.get("/workflows/billing"), 404, "namespace_not_found")["namespaces"]
    )
    workflows = assert_error(client.get("/workflows/payments/refund"), 404, "workflow_not_found")["workflows"]
    assert "process_refund" in workflows
    versions = assert_error(client.get("/workflows/payments/process_refund/3.0.0"), 404, "version_not_found")
    assert versions["versions"] == ["2.1.0", "2.0.0"]
    errors = assert_error(
        execute(
            client, {"namespace": "payments", "name": "process_refund", "context": {"payment_id": "nope"}}
        ),
        422,
        "context_invalid",
    )["errors"]
    assert any("payment_id" in e for e in errors)


@pytest.mark.slow
def test_auth_header_is_ignored_when_no_tokens_are_configured(client: httpx.Client) -> None:
    response = client.post(
        "/workflows/execute", content=PAYMENTS_REFUND, headers={**JSON, "Authorization": "Bearer whatever"}
    )
    assert response.status_code == 202


# -- reading -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_registry_routes(client: httpx.Client) -> None:
    registry = client.get("/workflows").json()
    teams = {ns["name"]: ns for ns in registry["namespaces"]}
    assert set(TEAMS) <= set(teams)
    assert teams["payments"]["owner_team"] == "payments" and teams["payments"]["contact_email"]
    payments = client.get("/workflows/payments").json()
    assert payments["namespace"]["name"] == "payments"
    assert {w["name"] for w in payments["workflows"]} >= {"process_refund", "process_payment"}
    refund = client.get("/workflows/payments/process_refund").json()
    assert [v["version"] for v in refund["versions"]] == ["2.1.0", "2.0.0"]
    assert refund["latest"] == "2.1.0"
    assert refund["versions"][1]["deprecated"], "2.0.0 is deprecated in favour of 2.1.0"
    detail = client.get("/workflows/payments/process_refund/%5E2.0").json()  # ^2.0, URL-encoded
    assert detail["version"] == "2.1.0"
    assert [s["name"] for s in detail["steps"]][:2] == [
        "validate_payment_eligibility",
        "check_fraud_indicators",
    ]
    assert {
        "caller": "customer_success/process_refund@1.3.0",
        "step": "execute_payment_refund",
        "call": "payments/process_refund@2.1.0",
    } in detail["called_by"]
    assert detail["context_schema"]["required"] == ["payment_id"]
    assert len(detail["fingerprint"]) == 64


@pytest.mark.slow
def test_tasks_pages_and_filters(client: httpx.Client) -> None:
    for n in range(3):
        execute(
            client,
            {"namespace": "payments", "name": "process_refund", "context": {"payment_id": f"pay_p{n}"}},
        )
    first = client.get("/tasks", params={"namespace": "payments", "limit": 2}).json()
    assert len(first["tasks"]) == 2 and first["next_cursor"]
    second = client.get(
        "/tasks", params={"namespace": "payments", "limit": 2, "cursor": first["next_cursor"]}
    ).json()
    assert not {t["id"] for t in first["tasks"]} & {t["id"] for t in second["tasks"]}
    assert all(t["namespace"] == "payments" for t in first["tasks"] + second["tasks"])
    poll(lambda: client.get("/tasks", params={"status": "completed", "limit": 500}).json()["tasks"], bool)
    completed = client.get("/tasks", params={"status": "completed", "limit": 500}).json()["tasks"]
    assert completed and all(t["status"] == "completed" for t in completed)


@pytest.mark.slow
def test_plugins_report(client: httpx.Client) -> None:
    report = client.get("/plugins").json()
    assert report["ok"] is True and report["problems"] == 0
    loaded = {p["distribution"]: p for p in report["plugins"]}
    assert {"teamflow-payments", "teamflow-customer-success", "teamflow-inventory"} <= set(loaded)
    assert loaded["teamflow-payments"]["status"] == "loaded"
    assert "payments/process_refund@2.1.0" in loaded["teamflow-payments"]["workflows"]
    assert report["unservable_tasks"] == []


@pytest.mark.slow
def test_health(client: httpx.Client) -> None:
    assert client.get("/health/live").json()["status"] == "ok"
    ready = client.get("/health/ready")
    assert ready.status_code == 200 and ready.json() == {"status": "ok", "reasons": [], "schema_version": SCHEMA_VERSION}


@pytest.mark.slow
def test_metrics(client: httpx.Client) -> None:
    wait_finished(
        client, client.post("/workflows/execute", content=PAYMENTS_REFUND, headers=JSON).json()["id"]
    )
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert re.search(
        r'teamflow_tasks\{namespace="payments",status="completed",version="2\.1\.0",'
        r'workflow="process_refund"\} [1-9]',
        text,
    ), text
    assert 'teamflow_workflow_versions{namespace="payments"} 6.0' in text
    assert 'teamflow_load_problems{kind="conflict"} 0.0' in text
    assert 'teamflow_http_requests_total{method="POST",route="/workflows/execute",status="202"}' in text
    assert "teamflow_http_request_duration_seconds_bucket" in text
    assert re.search(
        r'teamflow_steps\{namespace="payments",status="completed",version="2\.1\.0",workflow="process_refund"\} [1-9]',
        text,
    ), text
    step_hist = re.search(
        r'teamflow_step_duration_seconds_count\{namespace="payments",version="2\.1\.0",workflow="process_refund"\} '
        r"(\d+)",
        text,
    )
    assert step_hist and int(step_hist.group(1)) >= 5, text
    assert 'teamflow_step_duration_seconds_bucket{le="+Inf",namespace="payments"' in text


@pytest.mark.slow
def test_openapi_document(client: httpx.Client) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {
        "/workflows/execute",
        "/workflows/execute/batch",
        "/workflows",
        "/workflows/{namespace}",
        "/workflows/{namespace}/{name}",
        "/workflows/{namespace}/{name}/{version}",
        "/workflows/{namespace}/{name}/{version}/approvals",
        "/workflows/{namespace}/{name}/{version}/rollout",
        "/workflows/{namespace}/{name}/rollout",
        "/tasks",
        "/tasks/{task_id}",
        "/tasks/{task_id}/cancel",
        "/tasks/{task_id}/retry",
        "/tasks/{task_id}/steps/{step}/resolve",
        "/audit",
        "/tokens",
        "/tokens/{name}",
        "/tokens/{name}/revoke",
        "/plugins",
        "/registry/export",
        "/health/live",
        "/health/ready",
        "/metrics",
    }
    body = doc["components"]["schemas"]["ExecuteRequest"]
    assert body["additionalProperties"] is False and sorted(body["required"]) == ["name", "namespace"]
    execute_responses = doc["paths"]["/workflows/execute"]["post"]["responses"]
    assert {"200", "202", "400", "404", "409", "422"} <= set(execute_responses)
    assert execute_responses["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }


# -- admin pages -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_admin_registry_page(client: httpx.Client) -> None:
    assert client.get("/admin", follow_redirects=False).headers["location"] == "/admin/workflows"
    page = client.get("/admin/workflows")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    for team in TEAMS:
        assert f'<dd class="owner-team">{team}</dd>' in html
    assert "payments-team@growthcorp.example" in html
    assert "deprecated: use 2.1.0" in html
    assert 'href="/admin/workflows/payments/process_refund/2.1.0"' in html
    assert "<script" not in html.lower()


@pytest.mark.slow
def test_admin_version_page(client: httpx.Client) -> None:
    html = client.get("/admin/workflows/payments/process_refund/2.1.0").text
    assert "<svg" in html and html.count('<g class="node">') == 5
    assert "check_fraud_indicators" in html and "teamflow_payments.handlers:process_gateway_refund" in html
    assert "customer_success/process_refund@1.3.0" in html, "called by the customer success refund"
    assert "payment_id" in html, "the context schema"


@pytest.mark.slow
def test_admin_task_page_escapes_user_text(client: httpx.Client) -> None:
    evil = "<script>alert('owned')</script>"
    response = execute(
        client,
        {
            "namespace": "payments",
            "name": "process_refund",
            "wait": True,
            "context": {"payment_id": "pay_evil", "reason": evil, "note": "<b>&amp;</b>"},
        },
    )
    task_id = response.json()["id"]
    html = client.get(f"/admin/tasks/{task_id}").text
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt;" in html
    assert "&lt;b&gt;&amp;amp;&lt;/b&gt;" in html
    assert html.count('class="step"') == 5 and "completed" in html

    listing = client.get("/admin/tasks", params={"status": "completed"}).text
    assert f'href="/admin/tasks/{task_id}"' in listing


@pytest.mark.slow
def test_admin_task_page_links_parent_and_children(client: httpx.Client) -> None:
    cs_id = client.post("/workflows/execute", content=CS_REFUND, headers=JSON).json()["id"]
    child_id = wait_finished(client, cs_id)["children"][0]["id"]
    parent_html = client.get(f"/admin/tasks/{cs_id}").text
    assert f'href="/admin/tasks/{child_id}"' in parent_html
    child_html = client.get(f"/admin/tasks/{child_id}").text
    assert f'href="/admin/tasks/{cs_id}"' in child_html
    # the task list shows whole ids, its own and its parent's (a uuid7's first 8 characters
    # are the same for every task created within a minute)
    listing = client.get("/admin/tasks", params={"namespace": "payments"}).text
    assert f">{child_id}</a>" in listing and f">{cs_id}</a>" in listing


@pytest.mark.slow
def test_admin_errors_are_pages(client: httpx.Client) -> None:
    response = client.get("/admin/tasks/nope")
    assert response.status_code == 404 and response.headers["content-type"].startswith("text/html")
    assert "task_not_found" in response.text and "Traceback" not in response.text
    response = client.get("/admin/tasks", params={"status": "<done>"})
    assert response.status_code == 400 and "&lt;done&gt;" in response.text


# -- stopping ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_answers_waiting_requests(tmp_path: Path) -> None:
    with live_server(tmp_path / "stop") as live, live.client() as client:
        answers: list[httpx.Response] = []
        body = {
            "namespace": "payments",
            "name": "process_refund",
            "wait": True,
            "context": {"payment_id": "pay_stop", "simulate_slow_s": 2},
        }
        waiting = threading.Thread(target=lambda: answers.append(execute(client, body)))
        waiting.start()
        poll(lambda: client.get("/tasks", params={"status": "in_progress"}).json()["tasks"], bool)
        code, took = live.stop()
        waiting.join(10)
        assert code == 0, live.output()
        assert took < 10, f"stopping took {took:.1f}s"
        assert answers and answers[0].status_code == 503, answers
        stopped = answers[0].json()
        assert stopped["error"] == "shutting_down" and stopped["links"]["self"].startswith("/tasks/")
        log = live.output()
        assert "listening on http://127.0.0.1:" in log
        assert (
            "plugins: teamflow-customer-success-1.0.0, teamflow-inventory-1.0.0, teamflow-payments-1.0.0"
            in log
        )
        assert log.rstrip().endswith("teamflow stopped"), log


# -- in process ---------------------------------------------------------------------------------------


@pytest.fixture
def app_client(tmp_path: Path) -> Iterator[tuple[Host, Any]]:
    from litestar.testing import TestClient

    from teamflow.api.app import create_app

    host = Host(config=HostConfig(database_url=f"sqlite:///{tmp_path}/teamflow.db"))
    try:
        with TestClient(create_app(host)) as c:
            yield host, c
    finally:
        host.close()


def test_an_unexpected_error_is_a_500_without_trace(
    app_client: tuple[Host, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from loguru import logger

    host, c = app_client
    logged: list[str] = []
    sink = logger.add(logged.append, level="ERROR")

    def broken(task_id: str, *_: Any) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(host, "task_view", broken)
    try:
        response = c.get("/tasks/abc")
    finally:
        logger.remove(sink)
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "internal_error" and body["incident"] in body["detail"]
    assert "secret internals" not in response.text and "Traceback" not in response.text
    assert response.headers["content-type"].startswith("application/json")
    # The operators get one line under the incident id the client saw: the error, where it
    # was raised, never a traceback with the values it held (issue 14).
    assert len(logged) == 1 and body["incident"] in logged[0] and logged[0].count("\n") == 1
    assert "unhandled RuntimeError on GET /tasks/abc at " in logged[0] and "secret internals" in logged[0]
    assert "Traceback" not in logged[0]


def test_ready_is_503_with_reasons_when_tasks_cannot_be_served(
    app_client: tuple[Host, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    host, c = app_client
    monkeypatch.setattr(
        host,
        "unservable",
        lambda: [
            views.unservable(ActiveVersion("payments", "process_refund", "1.0.0", "f" * 64, 2), loaded=None)
        ],
    )
    response = c.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert "2 unfinished task(s) of payments/process_refund@1.0.0" in response.json()["reasons"][0]
    assert c.get("/health/live").status_code == 200


def test_decode_body_names_every_field() -> None:
    with pytest.raises(InvalidBody) as caught:
        decode_body(b'{"namespace": 1, "name": [], "wait": "x", "extra": 1}', ExecuteRequest)
    assert "expected str @ $.namespace" in caught.value.errors
    assert "expected str @ $.name" in caught.value.errors
    assert any("$.wait" in e for e in caught.value.errors)
    assert any("extra" in e for e in caught.value.errors)
    request = decode_body(b'{"namespace": "a", "name": "b"}', ExecuteRequest)
    assert request == ExecuteRequest(namespace="a", name="b")


def test_dag_layers_by_longest_path_and_escapes() -> None:
    nodes = [
        dag.Node("a"),
        dag.Node("b", ("a",)),
        dag.Node("c", ("a", "b")),
        dag.Node("d", ("a",)),
        dag.Node('<x y="1">&', ("c",), status="failed", note="failed · 3x", title="<title>"),
    ]
    assert dag.layers(nodes) == {"a": 0, "b": 1, "d": 1, "c": 2, '<x y="1">&': 3}
    svg = dag.render(nodes)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count('<path class="edge"') == 5
    assert "<x" not in svg and "&lt;x y=&quot;1&quot;&gt;&amp;" in svg and "&lt;title&gt;" in svg
    assert dag.render([]) == ""
    assert dag.layers([dag.Node("p", ("q",)), dag.Node("q", ("p",))]).keys() == {
        "p",
        "q",
    }  # a cycle terminates


def test_the_batch_route_answers_every_task_and_refuses_past_its_limit(client) -> None:
    item = {"namespace": "payments", "name": "process_refund", "version": "2.1.0", "context": {"payment_id": "pay_batch1"}}
    response = client.post("/workflows/execute/batch", content=json.dumps({"requests": [item] * 3}), headers=JSON)
    assert response.status_code == 202, response.text
    tasks = response.json()["tasks"]
    assert [t["status"] for t in tasks] == ["pending"] * 3 and len({t["id"] for t in tasks}) == 3
    assert client.get(tasks[0]["links"]["self"]).json()["id"] == tasks[0]["id"]
    too_many = client.post("/workflows/execute/batch", content=json.dumps({"requests": [item] * 10_001}),
                           headers=JSON)
    assert too_many.status_code == 413 and too_many.json()["error"] == "batch_too_large"
    assert too_many.json()["limit"] == 10_000
    empty = client.post("/workflows/execute/batch", content=json.dumps({"requests": []}), headers=JSON)
    assert empty.status_code == 400 and empty.json()["error"] == "invalid_request"
    bad = client.post("/workflows/execute/batch", content=json.dumps({"requests": [item, {**item, "version": "9.9.9"}]}),
                      headers=JSON)
    assert bad.status_code == 404 and bad.json()["index"] == 1
