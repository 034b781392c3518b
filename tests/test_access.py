"""Access control (issue 15): tokens, the authorisation matrix of every route, approvals you
can trust, the audit trail, start-up safety, and revocation across hosts.

The matrix runs in-process (Litestar's TestClient) for speed; start-up safety and the
cross-host revocation run ``teamflow serve`` as subprocesses.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import pytest
from api_support import _environment, free_port, live_server, poll, teamflow_command

from teamflow import Step, StepContext, Workflow, hookimpl
from teamflow.config import HostConfig, NamespaceConfig
from teamflow.host import Host
from teamflow.models import TaskRequest
from teamflow.serialization import unstructure

SECRET_CONTEXT = "pay_matrix_secret_ctx"  # a context value no refusal may show
CS_SECRET = "cs_424242"
SHARED = NamespaceConfig(
    "platform",
    "platform@example.test",
    requires_approval=True,
    approvers=("sarah@example.test",),
    contributors=("team-shared",),
)


def _notify(ctx: StepContext) -> dict[str, Any]:
    return {"notified": ctx.context.get("who", "everyone")}


class SharedPlugin:
    @hookimpl
    def teamflow_workflows(self) -> list[Workflow]:
        return [Workflow("shared", "notify", "1.0.0", [Step("send", _notify)])]


def _config(url: str, **overrides: Any) -> HostConfig:
    return attrs.evolve(HostConfig(database_url=url, namespaces={"shared": SHARED}), **overrides)


def _host(url: str, **overrides: Any) -> Host:
    """The three team plugins (installed distributions) and a platform ``shared`` workflow."""
    return Host(config=_config(url, **overrides), plugins=[("team-shared", SharedPlugin())])


def payments(**context: Any) -> TaskRequest:
    return TaskRequest("process_refund", "payments", "2.1.0", {"payment_id": "pay_1", **context})


def customer_success() -> TaskRequest:
    return TaskRequest("process_refund", "customer_success", "1.3.0", {"ticket_id": CS_SECRET})


# -- the matrix ----------------------------------------------------------------------------------

PRINCIPALS = ("none", "unknown", "revoked", "expired", "read", "execute", "operate", "approve", "metrics", "admin")
ANONYMOUS = ("none", "unknown", "revoked", "expired")
SCOPED = {  # each token reaches payments and shared ("own"); customer_success is "other"
    "read": ["read"],
    "execute": ["execute"],
    "operate": ["operate"],
    "approve": ["approve"],
    "metrics": ["metrics"],
}

# route -> (the scope it needs or None for any valid token or "-" for none at all,
#           {principal-with-the-scope: (status own, status other)})
# A principal without the scope gets 403 (checked before any lookup); an anonymous one 401.
MATRIX: dict[tuple[str, str], tuple[str | None, tuple[int, int]]] = {
    ("POST", "/workflows/execute"): ("execute", (202, 403)),
    ("POST", "/workflows/execute/batch"): ("execute", (202, 403)),
    ("GET", "/workflows"): (None, (200, 200)),
    ("GET", "/workflows/{namespace}"): (None, (200, 200)),
    ("GET", "/workflows/{namespace}/{name}"): (None, (200, 200)),
    ("GET", "/workflows/{namespace}/{name}/{version}"): (None, (200, 200)),
    ("POST", "/workflows/{namespace}/{name}/{version}/approvals"): ("approve", (201, 403)),
    ("PUT", "/workflows/{namespace}/{name}/{version}/rollout"): ("operate", (200, 403)),
    ("DELETE", "/workflows/{namespace}/{name}/rollout"): ("operate", (200, 403)),
    ("GET", "/tasks"): ("read", (200, 200)),
    ("GET", "/tasks/{task_id}"): ("read", (200, 404)),
    ("POST", "/tasks/{task_id}/cancel"): ("operate", (200, 404)),
    ("POST", "/tasks/{task_id}/retry"): ("operate", (409, 404)),  # a pending task: not failed
    ("POST", "/tasks/{task_id}/steps/{step}/resolve"): ("operate", (200, 404)),
    ("GET", "/audit"): ("read", (200, 200)),
    ("GET", "/tokens"): ("admin", (200, 200)),
    ("PUT", "/tokens/{name}"): ("admin", (201, 201)),
    ("POST", "/tokens/{name}/revoke"): ("admin", (200, 200)),
    ("GET", "/plugins"): (None, (200, 200)),
    ("GET", "/registry/export"): (None, (200, 200)),
    ("GET", "/health/live"): ("-", (200, 200)),
    ("GET", "/health/ready"): ("-", (200, 200)),
    ("GET", "/metrics"): ("metrics", (200, 200)),
}
# The admin token: every scope on every namespace, so "other" is reached too; it has no
# identity, so it cannot approve.
ADMIN_EXCEPTIONS = {
    ("POST", "/workflows/{namespace}/{name}/{version}/approvals"): (403, 403),
    ("POST", "/workflows/execute"): (202, 202),
    ("POST", "/workflows/execute/batch"): (202, 202),
    ("PUT", "/workflows/{namespace}/{name}/{version}/rollout"): (200, 200),
    ("DELETE", "/workflows/{namespace}/{name}/rollout"): (200, 200),
    ("GET", "/tasks/{task_id}"): (200, 200),
    ("POST", "/tasks/{task_id}/cancel"): (200, 200),
    ("POST", "/tasks/{task_id}/retry"): (409, 409),
    ("POST", "/tasks/{task_id}/steps/{step}/resolve"): (200, 200),
}


def expected(route: tuple[str, str], principal: str, where: str) -> int:
    scope, (own, other) = MATRIX[route]
    if scope == "-":
        return own
    if principal in ANONYMOUS:
        return 401
    if principal == "admin":
        pair = ADMIN_EXCEPTIONS.get(route, (own, other))
        return pair[0] if where == "own" else pair[1]
    if scope is not None and scope not in SCOPED[principal]:
        return 403
    return own if where == "own" else other


@attrs.define
class World:
    host: Host
    client: Any
    secrets: dict[str, str]
    made: int = 0

    def headers(self, principal: str) -> dict[str, str]:
        if principal == "none":
            return {}
        return {"Authorization": f"Bearer {self.secrets[principal]}"}

    def fresh_task(self, where: str) -> str:
        return self.host.execute_async(payments(payment_id=f"pay_{SECRET_CONTEXT}") if where == "own" else customer_success())

    def fresh_name(self) -> str:
        self.made += 1
        return f"made-{self.made}"

    def request(self, route: tuple[str, str], principal: str, where: str) -> Any:
        method, template = route
        own = where == "own"
        body: Any = None
        path = template
        if "{task_id}" in template:
            path = path.replace("{task_id}", self.fresh_task(where)).replace("{step}", "validate_payment_eligibility" if own else "validate_refund_request")
        if template == "/workflows/{namespace}/{name}/{version}/approvals":
            path = "/workflows/shared/notify/1.0.0/approvals" if own else "/workflows/customer_success/process_refund/1.3.0/approvals"
        path = (
            path.replace("{namespace}", "payments" if own else "customer_success")
            .replace("{name}", "process_refund")
            .replace("{version}", "2.1.0" if own else "1.3.0")
        )
        if template == "/tokens/{name}/revoke":
            name = self.fresh_name()
            self.host.create_token(name, ["payments"], ["read"])
            path = f"/tokens/{name}/revoke"
        spec = payments() if own else customer_success()
        item = {"namespace": spec.namespace, "name": spec.name, "version": spec.version, "context": dict(spec.context)}
        if template == "/workflows/execute":
            body = item
        elif template == "/workflows/execute/batch":
            body = {"requests": [item, item]}
        elif template.endswith("/resolve"):
            body = {"result": {"by": "hand"}}
        elif template.endswith("/{version}/rollout"):
            body = {"percent": 10}
        elif template == "/tokens/{name}":
            path = f"/tokens/{self.fresh_name()}"
            body = {"namespaces": ["payments"], "scopes": ["read"]}
        query = {}
        if template in ("/tasks", "/audit"):
            query = {"namespace": "payments" if own else "customer_success"}
        return self.client.request(method, path, json=body, params=query, headers=self.headers(principal))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from litestar.testing import TestClient

    from teamflow import access
    from teamflow.api.app import create_app

    saved = access.FAILURES_ALLOWED
    access.FAILURES_ALLOWED = 10**9  # the matrix sends hundreds of refused requests on purpose
    host = _host(f"sqlite:///{tmp_path_factory.mktemp('matrix')}/teamflow.db")
    secrets = {"unknown": "tf_" + "x" * 32}
    for name, scopes in SCOPED.items():
        identity = "sarah@example.test" if name == "approve" else None
        secrets[name] = host.create_token(name, ["payments", "shared"], scopes, identity=identity).secret
    secrets["admin"] = host.create_token("admin", ["*"], ["admin"]).secret
    secrets["revoked"] = host.create_token("revoked", ["*"], ["admin"]).secret
    host.revoke_token("revoked")
    secrets["expired"] = host.create_token("expired", ["*"], ["admin"], expires_s=1.0).secret
    time.sleep(1.1)
    try:
        with TestClient(create_app(host)) as client:
            yield World(host, client, secrets)
    finally:
        access.FAILURES_ALLOWED = saved
        host.close()


def test_every_route_of_the_openapi_document_has_a_row(world: World) -> None:
    """A new route without a row in MATRIX fails here."""
    doc = world.client.get("/openapi.json").json()
    routes = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    assert routes == set(MATRIX), f"routes without a row: {routes - set(MATRIX)}; rows without a route: {set(MATRIX) - routes}"


# Routes outside the OpenAPI document that hold no data, open to anyone; the admin pages
# have their own matrix (tests/test_admin_access.py).
OPEN_PAGES = {("GET", "/"): 302, ("GET", "/api"): 200}


def test_every_route_of_the_app_is_in_a_matrix(world: World) -> None:
    from teamflow.api import admin

    admin_paths = {_template(path) for route in admin.ROUTES for path in route.paths}
    app = world.client.app
    served = {
        (method, route.path)
        for route in app.routes
        for method in getattr(route, "methods", ())
        if method not in ("OPTIONS", "HEAD") and not route.path.startswith("/openapi.json")
    }
    known = {(m, p.replace(":str", "")) for m, p in MATRIX} | set(OPEN_PAGES)
    unknown = {(m, p) for m, p in served if (m, _template(p)) not in known and _template(p) not in admin_paths}
    assert not unknown, f"routes in no authorisation matrix: {sorted(unknown)}"
    for (method, path), status in OPEN_PAGES.items():
        for principal in ("none", "unknown"):
            response = world.client.request(method, path, headers=world.headers(principal), follow_redirects=False)
            assert response.status_code == status, (path, principal, response.text[:200])


def _template(path: str) -> str:
    import re

    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


@pytest.mark.parametrize("route", sorted(MATRIX), ids=lambda r: f"{r[0]} {r[1]}")
def test_authorisation_matrix(world: World, route: tuple[str, str]) -> None:
    """Every route x every kind of token x own and other namespace: exactly the status the
    table says, and no refusal shows task data."""
    wrong = []
    for principal in PRINCIPALS:
        for where in ("own", "other"):
            response = world.request(route, principal, where)
            want = expected(route, principal, where)
            if response.status_code != want:
                wrong.append(f"{principal}/{where}: {response.status_code} (want {want}) {response.text[:200]}")
            if response.status_code in (401, 403, 404):
                assert SECRET_CONTEXT not in response.text and CS_SECRET not in response.text, response.text
                assert response.json()["error"] in ("unauthorized", "forbidden", "task_not_found", "not_found"), response.text
    assert not wrong, "\n".join(wrong)


def test_one_body_for_every_kind_of_unauthenticated_request(world: World) -> None:
    bodies = {p: world.request(("GET", "/tasks"), p, "own").json() for p in ANONYMOUS}
    assert len({json.dumps(b, sort_keys=True) for b in bodies.values()}) == 1, bodies
    response = world.request(("GET", "/tasks"), "none", "own")
    assert response.headers["www-authenticate"] == "Bearer"


def test_lists_hold_only_the_tokens_namespaces(world: World) -> None:
    world.client.post(f"/tasks/{world.fresh_task('own')}/cancel", headers=world.headers("admin"))
    world.client.post(f"/tasks/{world.fresh_task('other')}/cancel", headers=world.headers("admin"))
    listed = world.client.get("/tasks", headers=world.headers("read")).json()["tasks"]
    assert listed and {t["namespace"] for t in listed} == {"payments"}
    everything = world.client.get("/tasks", headers=world.headers("admin")).json()["tasks"]
    assert {"payments", "customer_success"} <= {t["namespace"] for t in everything}
    registry = world.client.get("/workflows", headers=world.headers("read")).json()
    assert {n["name"] for n in registry["namespaces"]} == {"payments", "shared"}
    assert {w["namespace"] for w in registry["workflows"]} == {"payments", "shared"}
    assert len(world.client.get("/workflows", headers=world.headers("admin")).json()["namespaces"]) >= 4
    audit = world.client.get("/audit", headers=world.headers("read")).json()["rows"]
    assert audit and all(r["namespace"] in ("payments", "shared") for r in audit), audit
    everyone = world.client.get("/audit", headers=world.headers("admin")).json()["rows"]
    assert any(r["namespace"] == "customer_success" for r in everyone) and any(r["namespace"] is None for r in everyone)


def test_anonymous_readiness_tells_only_the_status(world: World) -> None:
    assert world.client.get("/health/ready").json() == {"status": "ok"}
    full = world.client.get("/health/ready", headers=world.headers("read")).json()
    assert full["status"] == "ok" and "schema_version" in full


def test_a_task_records_the_token_that_created_it(world: World) -> None:
    item = {"namespace": "payments", "name": "process_refund", "version": "2.1.0", "context": {"payment_id": "pay_9"}}
    created = world.client.post("/workflows/execute", json=item, headers=world.headers("execute")).json()
    shown = world.client.get(f"/tasks/{created['id']}", headers=world.headers("read")).json()
    assert shown["created_by"] == "token:execute"
    assert world.host.task_view(world.host.accept(payments(), world.host.cli_caller()).id).created_by.startswith("cli:")


def test_a_batch_with_one_item_of_another_namespace_is_refused_whole(world: World) -> None:
    own = {"namespace": "payments", "name": "process_refund", "version": "2.1.0", "context": {"payment_id": "pay_b"}}
    other = {"namespace": "customer_success", "name": "process_refund", "version": "1.3.0",
             "context": {"ticket_id": "cs_1"}}
    before = len(world.host.list_tasks(limit=500).tasks)
    response = world.client.post("/workflows/execute/batch", json={"requests": [own, other]}, headers=world.headers("execute"))
    assert response.status_code == 403 and response.json()["index"] == 1, response.text
    assert len(world.host.list_tasks(limit=500).tasks) == before


def test_a_child_in_another_namespace_is_a_link_only(tmp_path: Path) -> None:
    """customer_success's refund starts a payments child: a customer_success token sees the
    child's id and namespace, not its contents, and cannot follow the link."""
    from teamflow.errors import TaskNotFound

    host = _host(f"sqlite:///{tmp_path}/t.db")
    try:
        done = host.execute_sync(customer_success())
        assert done.status == "completed", done.error_summary
        principal = host.access.authenticate(host.create_token("cs", ["customer_success"], ["read"]).secret)
        view = host.task_view(done.id, _caller(principal))
        [child] = view.children
        assert child.namespace == "payments" and child.hidden
        assert child.name is None and child.version is None and child.status is None
        with pytest.raises(TaskNotFound):
            host.task_view(child.id, _caller(principal))
        assert not host.task_view(done.id).children[0].hidden  # the CLI sees everything
    finally:
        host.close()


# -- tokens ----------------------------------------------------------------------------------------


def test_a_token_is_stored_as_its_hash_and_listed_without_it(tmp_path: Path) -> None:
    host = _host(f"sqlite:///{tmp_path}/t.db")
    try:
        issued = host.create_token("ci", ["payments"], ["read", "execute"], identity="ci@example.test")
        secret = issued.secret
        assert secret.startswith("tf_") and len(secret) >= 3 + 22  # >= 128 bits, URL-safe
        raw = (tmp_path / "t.db").read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("t.db-*"))
        assert secret.encode() not in raw
        listed = host.list_tokens().tokens
        assert [t.name for t in listed] == ["ci"] and listed[0].state == "active"
        assert secret not in json.dumps(unstructure(host.list_tokens()))
        assert host.access.authenticate(secret) is not None
        assert host.access.authenticate(secret + "x") is None
    finally:
        host.close()


def test_rotation_keeps_the_old_secret_for_the_overlap_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from teamflow import access

    monkeypatch.setattr(access, "CACHE_S", 0.0)
    host = _host(f"sqlite:///{tmp_path}/t.db")
    try:
        old = host.create_token("ci", ["payments"], ["read"]).secret
        new = host.reissue_token("ci", overlap_s=1.0).secret
        assert host.access.authenticate(old) is not None and host.access.authenticate(new) is not None
        time.sleep(1.2)
        assert host.access.authenticate(old) is None and host.access.authenticate(new) is not None
        host.revoke_token("ci")
        assert host.access.authenticate(new) is None
    finally:
        host.close()


def test_repeated_failures_from_one_address_are_slowed_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from litestar.testing import TestClient

    from teamflow import access
    from teamflow.api.app import create_app

    FAILURES_ALLOWED = 5
    monkeypatch.setattr(access, "FAILURES_ALLOWED", FAILURES_ALLOWED)

    host = _host(f"sqlite:///{tmp_path}/t.db")
    good = host.create_token("reader", ["payments"], ["read"]).secret
    try:
        with TestClient(create_app(host)) as client:
            bad = {"Authorization": "Bearer tf_wrong"}
            statuses = [client.get("/tasks", headers=bad).status_code for _ in range(FAILURES_ALLOWED)]
            assert set(statuses) == {401}
            throttled = client.get("/tasks", headers={"Authorization": f"Bearer {good}"})
            assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1, throttled.text
        rows = host.audit(limit=10).rows
        refused = [r for r in rows if r.action == "refused" and r.detail == "status 401"]
        assert refused and refused[0].count == FAILURES_ALLOWED, rows  # one row per minute, counted
    finally:
        host.close()


def test_cli_tokens_create_list_revoke_and_audit(tmp_path: Path) -> None:
    env = _environment(tmp_path / "cli.db", {})

    def tf(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(teamflow_command(*args), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == code, done.stdout + done.stderr
        return done

    made = tf("tokens", "create", "--name", "ci", "--namespace", "payments", "--scope", "read", "--expires", "7d")
    secret = made.stdout.strip().splitlines()[-1]
    assert secret.startswith("tf_") and secret not in made.stderr
    listed = json.loads(tf("tokens", "list", "--json").stdout)["tokens"]
    assert listed[0]["name"] == "ci" and listed[0]["scopes"] == ["read"] and "secret" not in json.dumps(listed)
    lifetime = datetime.fromisoformat(listed[0]["expires_at"]) - datetime.fromisoformat(listed[0]["created_at"])
    assert 6.9 * 86400 < lifetime.total_seconds() <= 7 * 86400 + 5  # ISO 8601 with the zone: they subtract
    taken = tf("tokens", "create", "--name", "ci", "--namespace", "payments", "--scope", "read", code=2)
    assert "token_exists" in taken.stderr and "--rotate" in taken.stderr
    tf("tokens", "revoke", "ci")
    assert json.loads(tf("tokens", "list", "--json").stdout)["tokens"][0]["state"] == "revoked"
    rows = json.loads(tf("audit", "--json").stdout)["rows"]
    assert [r["action"] for r in rows] == ["token.revoke", "token.create"]
    assert all(r["actor"].startswith("cli:") for r in rows) and secret not in json.dumps(rows)
    bad = tf("tokens", "create", "--name", "x", "--namespace", "payments", "--scope", "read", "--expires", "soon", code=2)
    assert "invalid duration 'soon'" in bad.stderr


# -- approvals -------------------------------------------------------------------------------------


def test_approvals_refuse_what_cannot_be_trusted(tmp_path: Path) -> None:
    from teamflow.errors import ApprovalNotRequired, Forbidden, NotApproved, VersionNotFound

    host = _host(f"sqlite:///{tmp_path}/t.db")
    try:
        assert [w.reference for w in host.load_report().waiting_approval] == ["shared/notify@1.0.0"]
        with pytest.raises(ApprovalNotRequired, match="does not require approval"):
            host.approve("payments/process_refund@2.1.0", "sarah@example.test")
        with pytest.raises(NotApproved, match=r"mallory@example\.test is not an approver"):
            host.approve("shared/notify@1.0.0", "mallory@example.test")
        with pytest.raises(VersionNotFound):
            host.approve("shared/notify@9.9.9", "sarah@example.test")
        unlisted = host.access.authenticate(
            host.create_token("mallory", ["shared"], ["approve"], identity="mallory@example.test").secret
        )
        assert unlisted is not None
        with pytest.raises(NotApproved):
            host.approve("shared/notify@1.0.0", caller=_caller(unlisted))
        with pytest.raises(Forbidden, match=r"approves as mallory@example\.test, not as sarah"):
            host.approve("shared/notify@1.0.0", "sarah@example.test", caller=_caller(unlisted))
        assert host.version_view("shared", "notify", "1.0.0").approval.status == "waiting"

        done = host.approve("shared/notify@1.0.0", "sarah@example.test", caller=host.cli_caller())
        assert done.via.startswith("cli:") and done.verified
        state = host.version_view("shared", "notify", "1.0.0").approval
        assert state.status == "approved" and state.approvals[0].approver == "sarah@example.test"
        assert host.load_report().waiting_approval == []
        assert host.execute_sync(TaskRequest("notify", "shared", "1.0.0", {"who": "ops"})).status == "completed"
        actions = [(r.action, r.namespace) for r in host.audit().rows]
        assert ("approve", "shared") in actions and actions.count(("approve", "shared")) == 1  # refused ones: none
    finally:
        host.close()


def _caller(principal: Any) -> Any:
    from teamflow.tokens import Caller

    return Caller(principal.actor, principal, "127.0.0.1")


def test_an_approval_of_another_fingerprint_does_not_count(tmp_path: Path) -> None:
    """An approval binds a fingerprint: one recorded for an earlier definition (or recorded
    before identities were checked, shown as such) does not let the current one run."""
    from teamflow.errors import NotApproved

    host = _host(f"sqlite:///{tmp_path}/t.db")
    try:
        host.store.approve("shared", "notify", "1.0.0", "0" * 64, "sarah@example.test", via="cli:old@host")
        state = host.version_view("shared", "notify", "1.0.0").approval
        assert state.status == "waiting" and len(state.approvals) == 1 and not state.approvals[0].current
        assert [w.reference for w in host.load_report().waiting_approval] == ["shared/notify@1.0.0"]
        with pytest.raises(NotApproved, match="requires approval"):
            host.execute_async(TaskRequest("notify", "shared", "1.0.0", {}))
    finally:
        host.close()


def test_approval_over_http_uses_the_tokens_identity(world: World) -> None:
    listed = world.host.create_token("marcus", ["shared"], ["approve"], identity="marcus@example.test").secret
    refused = world.client.post("/workflows/shared/notify/1.0.0/approvals", headers={"Authorization": f"Bearer {listed}"})
    assert refused.status_code == 403 and "not an approver" in refused.json()["detail"], refused.text
    done = world.client.post("/workflows/shared/notify/1.0.0/approvals", headers=world.headers("approve"))
    assert done.status_code == 201 and done.json()["approver"] == "sarah@example.test", done.text
    assert done.json()["via"] == "token:approve"
    shown = world.client.get("/workflows/shared/notify/1.0.0", headers=world.headers("read")).json()
    assert shown["approval"]["status"] == "approved"


# -- audit ---------------------------------------------------------------------------------------


def test_operator_actions_are_audited_and_a_rolled_back_one_is_not(tmp_path: Path) -> None:
    from teamflow.errors import TaskStateError

    host = _host(f"sqlite:///{tmp_path}/t.db")
    try:
        task = host.execute_async(payments())
        host.resolve_step(task, "validate_payment_eligibility", {"ok": True}, caller=host.cli_caller())
        host.cancel(task, caller=host.cli_caller())
        with pytest.raises(TaskStateError):
            host.cancel(task, caller=host.cli_caller())  # already cancelled: nothing happened
        with pytest.raises(TaskStateError):
            host.retry(task, caller=host.cli_caller())  # not failed
        rows = [(r.action, r.target, r.namespace) for r in host.audit().rows]
        assert rows == [("task.cancel", f"task {task}", "payments"), ("step.resolve", f"task {task}", "payments")]
    finally:
        host.close()


def test_an_audit_row_is_written_in_the_actions_own_transaction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An action that fails at its commit leaves neither its change nor its audit row."""
    host = _host(f"sqlite:///{tmp_path}/t.db")
    try:
        task = host.execute_async(payments())
        store = host.store
        real = store._transition

        def broken(rows: Any) -> None:
            real(rows)
            raise RuntimeError("the database went away mid-transaction")

        monkeypatch.setattr(store, "_transition", broken)
        with pytest.raises(RuntimeError):
            host.cancel(task, caller=host.cli_caller())
        monkeypatch.setattr(store, "_transition", real)
        assert host.get_task(task).status == "pending"
        assert [r.action for r in host.audit().rows] == []
    finally:
        host.close()


# -- start-up safety and hosts -----------------------------------------------------------------


def test_serve_refuses_a_public_address_without_access_control(tmp_path: Path) -> None:
    env = _environment(tmp_path / "s.db", {})
    port = str(free_port())
    refused = subprocess.run(
        teamflow_command("serve", "--host", "0.0.0.0", "--port", port, "--workers", "0"),
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "--insecure" in refused.stderr and "teamflow tokens create" in refused.stderr

    process = subprocess.Popen(
        teamflow_command("serve", "--host", "0.0.0.0", "--port", port, "--workers", "0", "--insecure"),
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        poll(lambda: _ready(f"http://127.0.0.1:{port}"), bool, timeout=30)
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert "access control is OFF" in output, output


def _ready(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/health/ready", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.postgres
def test_a_revocation_on_one_host_is_honoured_by_another_within_5_s(tmp_path: Path, postgres_url: str) -> None:
    pg_url = postgres_url
    setup = Host(config=_config(pg_url), plugins=[("team-shared", SharedPlugin())], migrate=True)
    secret = setup.create_token("reader", ["payments"], ["read"]).secret
    env = {"TEAMFLOW_DATABASE_URL": pg_url}
    try:
        with live_server(tmp_path / "a", workers=0, env=env) as a, live_server(tmp_path / "b", workers=0, env=env) as b:
            auth = {"Authorization": f"Bearer {secret}"}
            with a.client() as ca, b.client() as cb:
                assert ca.get("/tasks", headers=auth).status_code == 200
                assert cb.get("/tasks", headers=auth).status_code == 200
                assert ca.post("/tokens/reader/revoke", headers=auth).status_code == 403  # read cannot revoke
                setup.revoke_token("reader")
                revoked_at = time.monotonic()
                for client in (ca, cb):
                    poll(lambda c=client: c.get("/tasks", headers=auth).status_code, lambda s: s == 401, timeout=5.0, every=0.1)
                assert time.monotonic() - revoked_at < 5.0
    finally:
        setup.close()


def test_python_api_callers_are_unrestricted(tmp_path: Path) -> None:
    """The Python API (and the CLI) act with the database's rights: no token is asked for."""
    host = _host(f"sqlite:///{tmp_path}/t.db")
    try:
        host.create_token("somebody", ["payments"], ["read"])
        task = host.execute_async(customer_success())
        assert host.task_view(task).namespace == "customer_success"
    finally:
        host.close()



def test_execute_with_wait_on_a_version_nobody_serves_answers_within_5_s(tmp_path: Path) -> None:
    """Issue 17 point 5 on HTTP: the task is stored, the answer says nobody runs it (503
    no_worker with the task's links) instead of holding the request until max_wait_s."""
    from litestar.testing import TestClient

    from teamflow.api.app import create_app

    url = f"sqlite:///{tmp_path}/t.db"
    plain = attrs.evolve(SHARED, requires_approval=False)
    Host(config=attrs.evolve(_config(url), namespaces={"shared": plain}), plugins=[("team-shared", SharedPlugin())]).close()
    elsewhere = Host(config=HostConfig(database_url=url))  # no shared plugin, no shared policy here
    try:
        with TestClient(create_app(elsewhere)) as client:
            started = time.monotonic()
            body = {"namespace": "shared", "name": "notify", "version": "1.0.0", "context": {}, "wait": True}
            response = client.post("/workflows/execute", json=body)
            assert time.monotonic() - started < 5.0
            assert response.status_code == 503 and response.json()["error"] == "no_worker", response.text
            task_id = response.json()["task_id"]
            assert response.json()["links"]["self"] == f"/tasks/{task_id}"
            assert client.get(f"/tasks/{task_id}").json()["status"] in ("pending", "in_progress")
    finally:
        elsewhere.close()


def test_resolving_a_step_the_task_does_not_have_is_step_not_found(world: World) -> None:
    task_id = world.fresh_task("own")
    response = world.client.post(
        f"/tasks/{task_id}/steps/nosuchstep/resolve", json={"result": None}, headers=world.headers("operate")
    )
    assert response.status_code == 404 and response.json()["error"] == "step_not_found", response.text
    assert "validate_payment_eligibility" in response.json()["steps"]
    assert not [r for r in world.host.audit(limit=500).rows if r.target == f"task {task_id}"], "nothing was done"
