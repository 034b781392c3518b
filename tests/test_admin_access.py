"""The admin pages under access control: sign-in sessions, scopes, namespaces and CSRF.

In process (Litestar's TestClient over ``create_app``), so the whole matrix runs in seconds.
``MATRIX`` holds, for every admin route, the status each kind of session gets on its own
namespace and on another team's; a route added to ``admin.ROUTES`` without a row fails
``test_every_admin_route_has_a_row``. Operator actions are checked for their effect too: an
allowed one leaves a transition by the session's token, a refused one leaves none.

``teamflow.access`` reuses a token lookup for ``CACHE_S`` seconds; these tests set it to 0
so a revocation or an expiry is seen at once.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import teamflow.access
from teamflow import Step, StepContext, TaskRequest, Workflow, hookimpl
from teamflow.api import admin
from teamflow.api.sessions import COOKIE, safe_next
from teamflow.config import HostConfig, NamespaceConfig
from teamflow.errors import NotApproved
from teamflow.host import Host

SARAH = "sarah@growthcorp.example"
MARCUS = "marcus@growthcorp.example"
OWN, OTHER = "own", "other"
# Tasks of the tokens' own namespace and of another team's; approvals likewise.
TASK_NAMESPACE = {OWN: "payments", OTHER: "inventory"}
APPROVAL_NAMESPACE = {OWN: "shared", OTHER: "restricted"}
FAIL_FIRST_STEP = {
    "payments": ("process_refund", "2.1.0", {"payment_id": "pay_admin"}, "validate_payment_eligibility"),
    "inventory": ("process_return", "1.4.0", {"return_id": "ret_admin"}, "validate_return_authorization"),
}
ORIGIN = "http://testserver.local"  # the TestClient's own origin


def notify(ctx: StepContext) -> dict[str, Any]:
    return {"notified": ctx.context.get("who", "everyone")}


class PlatformFlows:
    """Workflows in two platform namespaces that require approval (see ``_config``)."""

    @hookimpl
    def teamflow_workflows(self) -> list[Workflow]:
        return [Workflow(ns, "notify", "1.0.0", [Step("send", notify)]) for ns in APPROVAL_NAMESPACE.values()]


def _config(url: str, **overrides: Any) -> HostConfig:
    platform = {
        ns: NamespaceConfig(
            "platform", "platform@growthcorp.example", requires_approval=True, approvers=(SARAH, MARCUS),
            contributors=("team-platform",),
        )
        for ns in APPROVAL_NAMESPACE.values()
    }
    return HostConfig(database_url=url, namespaces=platform, retry_base_s=0.05, retry_max_s=0.2, **overrides)


def _host(url: str, **overrides: Any) -> Host:
    return Host(config=_config(url, **overrides), plugins=[("team-platform", PlatformFlows())], migrate=True)


# -- talking to the app ---------------------------------------------------------------------------


class Browser:
    """The TestClient with one cookie at a time, as one browser's session would send it."""

    def __init__(self, host: Host, client: Any) -> None:
        self.host = host
        self.client = client

    def send(
        self,
        method: str,
        path: str,
        sid: str | None = None,
        data: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        self.client.cookies.clear()
        sent = dict(headers or {})
        if sid:
            sent["Cookie"] = f"{COOKIE}={sid}"
        return self.client.request(method, path, data=data, headers=sent, follow_redirects=False, **kwargs)

    def sign_in(self, secret: str, next_path: str = "") -> Any:
        return self.send("POST", "/admin/sign-in", data={"secret": secret, "next": next_path})

    def session(self, secret: str) -> tuple[str, str]:
        """A new session of ``secret``'s token: its id (from the cookie) and its CSRF value."""
        response = self.sign_in(secret)
        assert response.status_code == 303, response.text
        sid = cookie_value(response)
        live = self.host.access.session(sid)
        assert live is not None
        return sid, live[1]


def cookie_value(response: Any) -> str:
    [header] = response.headers.get_list("set-cookie")
    match = re.match(rf"{COOKIE}=([^;]*);", header)
    assert match, header
    return match.group(1)


def failed_task(host: Host, namespace: str, marker: str = "") -> tuple[str, str]:
    """A task of ``namespace`` whose first step failed for good: its id and that step."""
    name, version, context, step = FAIL_FIRST_STEP[namespace]
    context = {**context, "simulate_failure": {"step": step, "mode": "permanent"}, "marker": marker}
    task = host.execute_sync(TaskRequest(name=name, namespace=namespace, version=version, context=context))
    assert task.status == "failed", task
    return task.id, step


def pending_task(host: Host, namespace: str) -> str:
    """A task stored for workers (there are none here: it stays pending)."""
    name, version, context, _ = FAIL_FIRST_STEP[namespace]
    return host.accept(TaskRequest(name=name, namespace=namespace, version=version, context=context)).id


def acted_by(host: Host, task_id: str, actor: str) -> bool:
    """Whether ``actor`` changed the task (an operator action leaves a transition in its name)."""
    return any(t.actor == actor for t in host.task_view(task_id).transitions)


# -- the tokens of the matrix ---------------------------------------------------------------------

LIVE_TOKENS: dict[str, dict[str, Any]] = {
    "execute": {"scopes": ["execute"]},
    "read": {"scopes": ["read"]},
    "operate": {"scopes": ["read", "operate"]},
    "approver": {"scopes": ["read", "approve"], "identity": SARAH},
    "admin": {"scopes": ["admin"], "namespaces": ["*"], "identity": MARCUS},
}
ROWS = ("none", "revoked", "expired", *LIVE_TOKENS)


class Matrix:
    """One host, its tokens, and for the revoked and expired ones a session that has died."""

    def __init__(self, browser: Browser, secrets: dict[str, str], dead: dict[str, str]) -> None:
        self.browser = browser
        self.host = browser.host
        self.secrets = secrets
        self.dead = dead

    def session(self, row: str) -> tuple[str | None, str]:
        """A session of the row's kind (a fresh one for a live token; sign-out ends it)."""
        if row == "none":
            return None, ""
        if row in self.dead:
            return self.dead[row], "dead-session-csrf"
        return self.browser.session(self.secrets[row])


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    from litestar.testing import TestClient

    from teamflow.api.app import create_app

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(teamflow.access, "CACHE_S", 0.0)
        host = _host(f"sqlite:///{tmp_path_factory.mktemp('matrix')}/teamflow.db")
        try:
            with TestClient(create_app(host)) as client:
                browser = Browser(host, client)
                secrets = {}
                for row, spec in LIVE_TOKENS.items():
                    secrets[row] = host.create_token(
                        row, spec.get("namespaces", ["payments", "shared"]), spec["scopes"],
                        identity=spec.get("identity"),
                    ).secret
                revoked = host.create_token("revoked", ["payments", "shared"], ["read", "operate"]).secret
                expired = host.create_token("expired", ["payments", "shared"], ["read", "operate"], expires_s=1.0)
                dead = {"revoked": browser.session(revoked)[0], "expired": browser.session(expired.secret)[0]}
                host.revoke_token("revoked")
                expires = expired.token.expires_at  # an instant: a datetime (epoch seconds before)
                until = expires.timestamp() if hasattr(expires, "timestamp") else float(expires or 0)
                time.sleep(max(0.0, until - time.time()) + 0.05)
                secrets |= {"revoked": revoked, "expired": expired.secret}
                yield Matrix(browser, secrets, dead)
        finally:
            host.close()


# -- the matrix -------------------------------------------------------------------------------------

def _row(dead: int, **live: int) -> dict[str, int]:
    """Statuses by session kind: ``dead`` for no session, a revoked and an expired one."""
    return {"none": dead, "revoked": dead, "expired": dead, **live}


def _same(statuses: dict[str, int]) -> dict[str, dict[str, int]]:
    return {OWN: statuses, OTHER: statuses}


EVERYONE_200 = dict.fromkeys(LIVE_TOKENS, 200)
OPERATOR = {"execute": 403, "read": 403, "approver": 403}  # lack scope operate: refused before any lookup

# (method, route) -> {own|other -> {session kind -> status}}
MATRIX: dict[tuple[str, str], dict[str, dict[str, int]]] = {
    ("GET", "/admin"): _same(_row(302, **dict.fromkeys(LIVE_TOKENS, 302))),
    ("GET", "/admin/sign-in"): _same(_row(200, **EVERYONE_200)),
    ("POST", "/admin/sign-in"): _same(_row(401, **dict.fromkeys(LIVE_TOKENS, 303))),
    ("POST", "/admin/sign-out"): _same(_row(303, **dict.fromkeys(LIVE_TOKENS, 303))),
    ("GET", "/admin/workflows"): _same(_row(303, **EVERYONE_200)),
    ("GET", "/admin/workflows/{namespace:str}"): _same(_row(303, **EVERYONE_200)),  # definitions: any token
    ("GET", "/admin/workflows/{namespace:str}/{name:str}/{version:str}"): _same(_row(303, **EVERYONE_200)),
    ("POST", "/admin/workflows/{namespace:str}/{name:str}/{version:str}/approve"): {
        OWN: _row(401, execute=403, read=403, operate=403, approver=303, admin=303),
        OTHER: _row(401, execute=403, read=403, operate=403, approver=403, admin=303),
    },
    ("GET", "/admin/tasks"): _same(_row(303, execute=403, read=200, operate=200, approver=200, admin=200)),
    ("GET", "/admin/audit"): _same(_row(303, execute=403, read=200, operate=200, approver=200, admin=200)),
    ("GET", "/admin/tasks/{task_id:str}"): {
        OWN: _row(303, execute=403, read=200, operate=200, approver=200, admin=200),
        OTHER: _row(303, execute=403, read=404, operate=404, approver=404, admin=200),
    },
    **{
        ("POST", route): {
            OWN: _row(401, **OPERATOR, operate=303, admin=303),
            OTHER: _row(401, **OPERATOR, operate=404, admin=303),
        }
        for route in (
            "/admin/tasks/{task_id:str}/cancel",
            "/admin/tasks/{task_id:str}/retry",
            "/admin/tasks/{task_id:str}/steps/{step:str}/resolve",
        )
    },
}
APPROVE_ROUTE = ("POST", "/admin/workflows/{namespace:str}/{name:str}/{version:str}/approve")


def _cells() -> Iterator[Any]:
    for (method, route), columns in MATRIX.items():
        for column, statuses in columns.items():
            for row in ROWS:
                yield pytest.param(method, route, column, row, statuses[row], id=f"{method} {route} {column} {row}")


class Cell:
    """One request of the matrix: the path to send, its form, and how to tell its effect."""

    def __init__(
        self, path: str, data: dict[str, Any] | None = None, effect: Callable[[], bool] | None = None
    ) -> None:
        self.path = path
        self.data = data
        self.effect = effect


def _cell(m: Matrix, method: str, route: str, column: str, row: str, csrf: str) -> Cell:
    """The request a matrix row makes on ``route`` for ``column`` (fresh targets for actions)."""
    host, ns, approval_ns = m.host, TASK_NAMESPACE[column], APPROVAL_NAMESPACE[column]
    actor = f"token:{row}"
    form = {"csrf": csrf}
    if route == "/admin/sign-in" and method == "POST":
        return Cell(route, {"secret": m.secrets.get(row, ""), "next": "/admin/tasks"})
    if route == "/admin/tasks":
        return Cell(f"/admin/tasks?namespace={ns}")
    if route == "/admin/audit":
        return Cell(f"/admin/audit?namespace={ns}")
    if route == "/admin/tasks/{task_id:str}":
        return Cell(f"/admin/tasks/{failed_task(host, ns)[0]}")
    if route.endswith("/cancel"):
        task_id = pending_task(host, ns)
        return Cell(f"/admin/tasks/{task_id}/cancel", form, lambda: acted_by(host, task_id, actor))
    if route.endswith("/retry"):
        task_id, _ = failed_task(host, ns)
        return Cell(f"/admin/tasks/{task_id}/retry", form, lambda: acted_by(host, task_id, actor))
    if route.endswith("/resolve"):
        task_id, step = failed_task(host, ns)
        return Cell(f"/admin/tasks/{task_id}/steps/{step}/resolve", {**form, "result": '{"by": "hand"}'},
                    lambda: acted_by(host, task_id, actor))
    if route == "/admin/workflows/{namespace:str}":
        return Cell(f"/admin/workflows/{ns}")
    if route.startswith("/admin/workflows/{namespace"):
        version_page = f"/admin/workflows/{approval_ns}/notify/1.0.0"
        return Cell(version_page + "/approve", form) if method == "POST" else Cell(version_page)
    return Cell(route, form if method == "POST" else None)


@pytest.mark.parametrize(("method", "route", "column", "row", "expected"), list(_cells()))
def test_admin_access_matrix(matrix: Matrix, method: str, route: str, column: str, row: str, expected: int) -> None:
    sid, csrf = matrix.session(row)
    cell = _cell(matrix, method, route, column, row, csrf)
    response = matrix.browser.send(method, cell.path, sid, data=cell.data, headers={"Origin": ORIGIN})
    assert response.status_code == expected, response.text
    location = response.headers.get("location", "")
    if expected == 303 and method == "GET":  # a page without a live session: to the sign-in form, and back
        assert urlsplit(location).path == "/admin/sign-in"
        assert parse_qs(urlsplit(location).query)["next"] == [cell.path]
    if expected == 303 and cell.effect is not None:  # an action: back to its task page, which shows the effect
        assert location == cell.path.rsplit("/", 3 if "/steps/" in cell.path else 1)[0]
    if cell.effect is not None:
        assert cell.effect() is (expected == 303), "an allowed action acts, a refused one changes nothing"
    if expected == 200:
        assert response.headers["content-type"].startswith("text/html")
        assert f"signed in as <strong class=\"token-name\">{row}</strong>" in response.text or route == "/admin/sign-in"
    assert "Traceback" not in response.text


def test_every_admin_route_has_a_row() -> None:
    routes = {(method, path) for handler in admin.ROUTES for path in handler.paths for method in handler.http_methods}
    assert routes == set(MATRIX), (
        f"admin routes without a row in MATRIX: {sorted(routes - set(MATRIX))}; rows without a route: "
        f"{sorted(set(MATRIX) - routes)}"
    )
    for columns in MATRIX.values():
        assert set(columns) == {OWN, OTHER} and all(set(statuses) == set(ROWS) for statuses in columns.values())


# -- one host per test ------------------------------------------------------------------------------


@pytest.fixture
def make_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Browser]]:
    """Apps over fresh hosts (``overrides``: HostConfig fields), closed afterwards."""
    from litestar.testing import TestClient

    from teamflow.api.app import create_app

    monkeypatch.setattr(teamflow.access, "CACHE_S", 0.0)
    opened: list[tuple[Host, Any]] = []

    def make(base_url: str = ORIGIN, **overrides: Any) -> Browser:
        host = _host(f"sqlite:///{tmp_path}/teamflow-{len(opened)}.db", **overrides)
        client = TestClient(create_app(host), base_url=base_url)
        client.__enter__()
        opened.append((host, client))
        return Browser(host, client)

    yield make
    for host, client in opened:
        client.__exit__(None, None, None)
        host.close()


def operator(browser: Browser, name: str = "ops", **kwargs: Any) -> str:
    namespaces = kwargs.pop("namespaces", ["payments", "shared"])
    scopes = kwargs.pop("scopes", ["read", "operate"])
    return browser.host.create_token(name, namespaces, scopes, **kwargs).secret


def test_the_session_cookie_holds_only_a_new_id_for_admin_pages(make_app: Callable[..., Browser]) -> None:
    browser = make_app()
    secret = operator(browser)
    first, second = browser.sign_in(secret), browser.sign_in(secret)
    for response in (first, second):
        [header] = response.headers.get_list("set-cookie")
        attributes = [a.strip() for a in header.split(";")]
        assert attributes[1:] == ["HttpOnly", "SameSite=Strict", "Path=/admin/"], header  # no Secure over http
        assert secret not in header and secret.removeprefix("tf_") not in header
        assert response.headers["location"] == "/admin/workflows"
    assert cookie_value(first) != cookie_value(second), "each sign-in starts a new session"
    assert browser.host.access.session(cookie_value(first)) is not None

    # Signing in again from a browser that holds a session ends that one.
    third = browser.send("POST", "/admin/sign-in", cookie_value(first), data={"secret": secret})
    assert browser.host.access.session(cookie_value(first)) is None
    assert browser.host.access.session(cookie_value(third)) is not None

    secure = make_app(base_url="https://testserver.local")
    response = secure.sign_in(operator(secure))
    assert response.headers["set-cookie"].endswith("; Secure"), "over https the cookie is Secure"


def test_pages_show_who_is_signed_in_and_a_sign_out_form(make_app: Callable[..., Browser]) -> None:
    browser = make_app()
    sid, csrf = browser.session(operator(browser, identity="olga@growthcorp.example"))
    html = browser.send("GET", "/admin/workflows", sid).text
    assert 'signed in as <strong class="token-name">ops</strong>' in html
    assert '<span class="identity">olga@growthcorp.example</span>' in html
    assert re.search(r'<form method="post" action="/admin/sign-out">\s*<input type="hidden" name="csrf" '
                     rf'value="{re.escape(csrf)}">', html)
    assert "access control is off" not in html


def test_sign_out_ends_the_session_and_needs_its_csrf(make_app: Callable[..., Browser]) -> None:
    browser = make_app()
    sid, csrf = browser.session(operator(browser))
    refused = browser.send("POST", "/admin/sign-out", sid, data={"csrf": "forged"})
    assert refused.status_code == 403 and browser.send("GET", "/admin/tasks", sid).status_code == 200
    response = browser.send("POST", "/admin/sign-out", sid, data={"csrf": csrf})
    assert response.status_code == 303 and response.headers["location"] == "/admin/sign-in"
    assert response.headers["set-cookie"].startswith(f"{COOKIE}=; ") and "Max-Age=0" in response.headers["set-cookie"]
    assert browser.host.access.session(sid) is None
    assert browser.send("GET", "/admin/tasks", sid).status_code == 303


def test_revoking_the_token_ends_its_session(make_app: Callable[..., Browser]) -> None:
    browser = make_app()
    sid, csrf = browser.session(operator(browser))
    task_id, _ = failed_task(browser.host, "payments")
    assert browser.send("GET", f"/admin/tasks/{task_id}", sid).status_code == 200
    browser.host.revoke_token("ops")
    page = browser.send("GET", f"/admin/tasks/{task_id}", sid)
    assert page.status_code == 303 and page.headers["location"].startswith("/admin/sign-in?next=")
    action = browser.send("POST", f"/admin/tasks/{task_id}/retry", sid, data={"csrf": csrf})
    assert action.status_code == 401 and "sign in again" in action.text
    assert not acted_by(browser.host, task_id, "token:ops")


def test_an_idle_session_ends(make_app: Callable[..., Browser]) -> None:
    browser = make_app(session_idle_s=0.4)
    sid, _ = browser.session(operator(browser))
    assert browser.send("GET", "/admin/workflows", sid).status_code == 200
    time.sleep(0.6)
    response = browser.send("GET", "/admin/workflows", sid)
    assert response.status_code == 303 and response.headers["location"] == "/admin/sign-in?next=%2Fadmin%2Fworkflows"


@pytest.mark.parametrize(
    ("form", "headers"),
    [
        ({}, {}),
        ({"csrf": "not-this-sessions"}, {}),
        ({"csrf": ["", ""]}, {}),
        ("right", {"Origin": "https://evil.example"}),
        ("right", {"Origin": "null"}),
    ],
    ids=["missing", "wrong", "twice", "other-origin", "opaque-origin"],
)
def test_a_form_without_the_sessions_csrf_or_from_another_site_changes_nothing(
    make_app: Callable[..., Browser], form: Any, headers: dict[str, str]
) -> None:
    browser = make_app()
    sid, csrf = browser.session(operator(browser))
    task_id, step = failed_task(browser.host, "payments")
    before = browser.host.task_view(task_id)
    data = {"csrf": csrf} if form == "right" else form
    for path in (f"/admin/tasks/{task_id}/retry", f"/admin/tasks/{task_id}/steps/{step}/resolve"):
        response = browser.send("POST", path, sid, data={**data, "result": "{}"}, headers=headers)
        assert response.status_code == 403, response.text
        assert response.headers["content-type"].startswith("text/html")
    assert browser.host.task_view(task_id) == before, "a refused form changes nothing"
    assert not [r for r in browser.host.audit().rows if r.action in ("task.retry", "step.resolve")]
    # The same form from this server, with the session's value, acts.
    assert browser.send("POST", f"/admin/tasks/{task_id}/retry", sid, data={"csrf": csrf},
                        headers={"Origin": ORIGIN}).status_code == 303


def test_a_failed_sign_in_is_counted_and_then_throttled(
    make_app: Callable[..., Browser], monkeypatch: pytest.MonkeyPatch
) -> None:
    browser = make_app()
    secret = operator(browser)
    monkeypatch.setattr(teamflow.access, "FAILURES_ALLOWED", 2)
    for _ in range(2):
        response = browser.sign_in("tf_" + "x" * 32, "/admin/tasks")
        assert response.status_code == 401 and "set-cookie" not in response.headers
        assert "unknown, revoked or expired" in response.text
        assert '<input type="hidden" name="next" value="/admin/tasks">' in response.text, "the form again"
    throttled = browser.sign_in(secret)
    assert throttled.status_code == 429 and "set-cookie" not in throttled.headers, "even a valid secret waits"
    assert int(throttled.headers["retry-after"]) >= 1
    browser.host.access.flush()
    refused = {(r.target, r.detail) for r in browser.host.audit().rows}
    assert ("POST /admin/sign-in", "status 401") in refused and ("POST /admin/sign-in", "status 429") in refused


def test_sign_in_goes_back_only_to_a_local_admin_page(make_app: Callable[..., Browser]) -> None:
    browser = make_app()
    secret = operator(browser)
    asked = browser.send("GET", "/admin/tasks?status=failed")
    assert asked.headers["location"] == "/admin/sign-in?next=%2Fadmin%2Ftasks%3Fstatus%3Dfailed"
    form = browser.send("GET", asked.headers["location"])
    assert form.status_code == 200
    assert '<input type="hidden" name="next" value="/admin/tasks?status=failed">' in form.text
    assert browser.sign_in(secret, "/admin/tasks?status=failed").headers["location"] == "/admin/tasks?status=failed"
    for hostile in ("https://evil.example/admin/", "//evil.example/admin/", "/\\evil.example", "/tasks",
                    "javascript:alert(1)", "/admin/sign-in", "/admin/\r\nSet-Cookie: x=1"):
        assert safe_next(hostile) == "/admin/workflows", hostile
        assert browser.sign_in(secret, hostile).headers["location"] == "/admin/workflows", hostile


def test_the_api_takes_only_the_header_and_the_pages_only_the_cookie(make_app: Callable[..., Browser]) -> None:
    browser = make_app()
    secret = operator(browser)
    sid, _ = browser.session(secret)
    bearer = {"Authorization": f"Bearer {secret}"}
    assert browser.send("GET", "/tasks", sid).status_code == 401, "the JSON API ignores the session cookie"
    assert browser.send("GET", "/tasks", headers=bearer).status_code == 200
    page = browser.send("GET", "/admin/tasks", headers=bearer)
    assert page.status_code == 303, "the admin pages ignore the Authorization header"


def test_task_pages_show_only_the_sessions_namespaces(make_app: Callable[..., Browser]) -> None:
    browser = make_app()
    host = browser.host
    own, _ = failed_task(host, "payments", "own")
    other, _ = failed_task(host, "inventory", "other")
    parent = host.execute_sync(TaskRequest(namespace="customer_success", name="process_refund", version="1.3.0",
                                           context={"ticket_id": "cs_789"}))
    assert parent.status == "completed", parent
    [child] = host.task_view(parent.id).children

    sid, _ = browser.session(operator(browser, "pay", scopes=["read"]))
    listing = browser.send("GET", "/admin/tasks", sid).text
    listed = set(re.findall(r'<td class="mono"><a href="/admin/tasks/[^"]+">([^<…]+)</a></td>', listing))
    assert listed == {own, child.id}, "payments tasks only (the child's parent is linked, not listed)"
    assert '<option value="inventory"' not in listing, "the filter offers only the token's namespaces"
    assert "No tasks" in browser.send("GET", "/admin/tasks?namespace=inventory", sid).text
    missing = browser.send("GET", f"/admin/tasks/{other}", sid)
    assert missing.status_code == 404 and "task_not_found" in missing.text and "inventory" not in missing.text

    # A customer success token sees its task; the payments child only as a link it may not follow.
    cs_sid, _ = browser.session(operator(browser, "cs", namespaces=["customer_success"], scopes=["read"]))
    html = browser.send("GET", f"/admin/tasks/{parent.id}", cs_sid).text
    assert f'<a class="mono child hidden" href="/admin/tasks/{child.id}">{child.id}</a>' in html
    assert "payments/process_refund@2.1.0" not in html
    assert browser.send("GET", f"/admin/tasks/{child.id}", cs_sid).status_code == 404


def test_forms_are_offered_only_where_the_scope_allows(make_app: Callable[..., Browser]) -> None:
    browser = make_app()
    host = browser.host
    failed, step = failed_task(host, "payments")
    pending = pending_task(host, "payments")
    reader, _ = browser.session(operator(browser, "reader", scopes=["read"]))
    ops, csrf = browser.session(operator(browser, "ops"))
    approver, _ = browser.session(operator(browser, "approver", scopes=["read", "approve"], identity=SARAH))

    for sid in (reader, approver):
        for task_id in (failed, pending):
            assert 'method="post" action="/admin/tasks/' not in browser.send("GET", f"/admin/tasks/{task_id}", sid).text
    failed_html = browser.send("GET", f"/admin/tasks/{failed}", ops).text
    assert f'action="/admin/tasks/{failed}/retry"' in failed_html
    assert f'action="/admin/tasks/{failed}/steps/{step}/resolve"' in failed_html
    assert f'action="/admin/tasks/{failed}/cancel"' not in failed_html, "a failed task has ended"
    assert failed_html.count(f'name="csrf" value="{csrf}"') == 1 + 1 + failed_html.count('class="resolve"')
    pending_html = browser.send("GET", f"/admin/tasks/{pending}", ops).text
    assert f'action="/admin/tasks/{pending}/cancel"' in pending_html
    assert f'action="/admin/tasks/{pending}/retry"' not in pending_html

    approve_form = 'action="/admin/workflows/shared/notify/1.0.0/approve"'
    assert approve_form in browser.send("GET", "/admin/workflows/shared/notify/1.0.0", approver).text
    assert approve_form not in browser.send("GET", "/admin/workflows/shared/notify/1.0.0", ops).text
    no_approval = browser.send("GET", "/admin/workflows/payments/process_refund/2.1.0", approver).text
    assert "/approve" not in no_approval, "payments needs no approval"


def test_operator_forms_act_as_the_sessions_token(make_app: Callable[..., Browser]) -> None:
    browser = make_app()
    host = browser.host
    sid, csrf = browser.session(operator(browser))
    task_id, step = failed_task(host, "payments")
    response = browser.send("POST", f"/admin/tasks/{task_id}/steps/{step}/resolve", sid,
                            data={"csrf": csrf, "result": '{"eligible": true, "note": "<checked>"}'})
    assert response.status_code == 303 and response.headers["location"] == f"/admin/tasks/{task_id}"
    resolved = host.get_task(task_id).step(step)
    assert resolved.status == "resolved" and resolved.result == {"eligible": True, "note": "<checked>"}
    assert host.task_view(task_id).steps[0].resolved_by == "token:ops"
    page = browser.send("GET", response.headers["location"], sid).text
    assert "by token:ops" in page and "&lt;checked&gt;" in page

    pending = pending_task(host, "payments")
    assert browser.send("POST", f"/admin/tasks/{pending}/cancel", sid, data={"csrf": csrf}).status_code == 303
    assert host.get_task(pending).status == "cancelled"
    again = browser.send("POST", f"/admin/tasks/{pending}/cancel", sid, data={"csrf": csrf})
    assert again.status_code == 409 and "already cancelled" in again.text
    audit = {(r.action, r.actor, r.target) for r in host.audit().rows}
    assert ("step.resolve", "token:ops", f"task {task_id}") in audit
    assert ("task.cancel", "token:ops", f"task {pending}") in audit


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        ("result=%7Bnot+json", "application/x-www-form-urlencoded", 400),
        ("result=" + "%5B" * 100_000, "application/x-www-form-urlencoded", 400),
        ("result=1&result=2", "application/x-www-form-urlencoded", 400),
        ('{"result": 1}', "application/json", 415),
        ("--b\r\nContent-Disposition: form-data; name=\"result\"\r\n\r\n1\r\n--b--\r\n",
         "multipart/form-data; boundary=b", 415),
        ("result=1", "application/x-www-form-urlencoded; charset=latin-1", 415),
    ],
    ids=["not-json", "too-deep", "twice", "json-body", "multipart", "latin-1"],
)
def test_bad_form_input_is_a_4xx_page(
    make_app: Callable[..., Browser], body: str, content_type: str, status: int
) -> None:
    browser = make_app()
    sid, csrf = browser.session(operator(browser))
    task_id, step = failed_task(browser.host, "payments")
    separator = "&" if "urlencoded" in content_type else ""
    content = (body + (f"{separator}csrf={csrf}" if separator else "")).encode()
    browser.client.cookies.clear()
    response = browser.client.post(
        f"/admin/tasks/{task_id}/steps/{step}/resolve",
        content=content,
        headers={"Content-Type": content_type, "Cookie": f"{COOKIE}={sid}"},
        follow_redirects=False,
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html") and "Traceback" not in response.text
    assert browser.host.get_task(task_id).step(step).status == "failed"


def test_unknown_targets_are_pages_not_500s(make_app: Callable[..., Browser]) -> None:
    browser = make_app()
    sid, csrf = browser.session(operator(browser))
    task_id, _ = failed_task(browser.host, "payments")
    cases = [
        ("POST", "/admin/tasks/nope/retry", 404),
        ("POST", f"/admin/tasks/{task_id}/steps/no_such_step/resolve", 404),  # step_not_found
        ("POST", f"/admin/tasks/{task_id}/cancel", 409),
        ("GET", "/admin/workflows/payments/nope/1.0.0", 404),
        ("GET", f"/admin/tasks/{task_id}/retry", 405),
        ("POST", f"/admin/tasks/{task_id}/retry?x=1", 400),
    ]
    for method, path, status in cases:
        response = browser.send(method, path, sid, data={"csrf": csrf} if method == "POST" else None)
        assert response.status_code == status, (path, response.text)
        assert response.headers["content-type"].startswith("text/html"), path


def test_user_text_is_escaped_on_the_task_page(make_app: Callable[..., Browser]) -> None:
    browser = make_app()
    sid, _ = browser.session(operator(browser))
    evil = "<script>alert('owned')</script>"
    task = browser.host.execute_sync(TaskRequest(namespace="payments", name="process_refund", version="2.1.0",
                                                 context={"payment_id": "pay_evil", "reason": evil}))
    html = browser.send("GET", f"/admin/tasks/{task.id}", sid).text
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt;" in html


def test_without_access_control_the_pages_are_open_and_read_only(make_app: Callable[..., Browser]) -> None:
    browser = make_app()
    task_id, _ = failed_task(browser.host, "payments")
    page = browser.send("GET", f"/admin/tasks/{task_id}")
    assert page.status_code == 200 and "access control is off" in page.text
    assert 'method="post"' not in page.text and "signed in as" not in page.text
    assert browser.send("GET", "/admin/sign-in?next=%2Fadmin%2Ftasks").headers["location"] == "/admin/tasks"
    response = browser.send("POST", f"/admin/tasks/{task_id}/retry", data={"csrf": ""})
    assert response.status_code == 403 and "read-only" in response.text
    assert browser.host.get_task(task_id).status == "failed"
    assert browser.send("GET", "/admin/workflows").status_code == 200


def test_the_approve_form_approves_as_the_tokens_identity(make_app: Callable[..., Browser]) -> None:
    browser = make_app()
    host = browser.host
    request = TaskRequest(namespace="shared", name="notify", version="1.0.0", context={"who": "ops"})
    with pytest.raises(NotApproved):
        host.accept(request)
    sid, csrf = browser.session(operator(browser, "sarah", scopes=["read", "approve"], identity=SARAH))
    response = browser.send("POST", "/admin/workflows/shared/notify/1.0.0/approve", sid, data={"csrf": csrf})
    assert response.status_code == 303 and response.headers["location"] == "/admin/workflows/shared/notify/1.0.0"
    assert host.execute_sync(request).status == "completed", "the approved version runs"

    # An approve-scoped token whose identity is no approver is refused by the host, as a page.
    sid, csrf = browser.session(operator(browser, "mallory", namespaces=["restricted"], scopes=["approve"], identity="mallory@example.test"))
    refused = browser.send("POST", "/admin/workflows/restricted/notify/1.0.0/approve", sid, data={"csrf": csrf})
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"].startswith("text/html") and "mallory@example.test" in refused.text
    with pytest.raises(NotApproved):
        host.accept(TaskRequest(namespace="restricted", name="notify", version="1.0.0"))


def test_json_result_of_resolve_round_trips(make_app: Callable[..., Browser]) -> None:
    """A blank result is null, a quoted text a string: what the form says."""
    browser = make_app()
    sid, csrf = browser.session(operator(browser))
    for text, expected in (("", None), ('"done"', "done"), ("[1, 2]", [1, 2])):
        task_id, step = failed_task(browser.host, "payments", marker=json.dumps(text))
        path = f"/admin/tasks/{task_id}/steps/{step}/resolve"
        assert browser.send("POST", path, sid, data={"csrf": csrf, "result": text}).status_code == 303
        assert browser.host.get_task(task_id).step(step).result == expected


def test_the_audit_page_shows_the_sessions_namespaces_only(matrix: Matrix) -> None:
    """An operator's cancel is on the audit page of its namespace's readers, and not on
    the page of a token of another namespace; an admin sees every row."""
    sid, csrf = matrix.session("operate")
    task_id = pending_task(matrix.host, TASK_NAMESPACE[OWN])
    done = matrix.browser.send("POST", f"/admin/tasks/{task_id}/cancel", sid, data={"csrf": csrf},
                               headers={"Origin": ORIGIN})
    assert done.status_code == 303, done.text
    own = matrix.browser.send("GET", "/admin/audit", matrix.session("read")[0]).text
    assert f"task {task_id}" in own and "task.cancel" in own
    everything = matrix.browser.send("GET", "/admin/audit", matrix.session("admin")[0]).text
    assert f"task {task_id}" in everything
    other = matrix.browser.send("GET", f"/admin/audit?namespace={TASK_NAMESPACE[OTHER]}", matrix.session("read")[0])
    assert other.status_code == 200 and f"task {task_id}" not in other.text
