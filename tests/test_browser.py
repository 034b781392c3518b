"""The admin pages in a real browser: Playwright driving Debian's Chromium.

One ``teamflow serve`` with access control on (an admin token made by the CLI before it
starts, the others through the API), the three team plugins, and a test distribution
(written here) that contributes ``shared/notify`` to the platform's ``shared`` namespace,
which requires approval, and owns ``browser_lab``, whose ``gated`` workflow fails until a
file exists: so a retry can really succeed.

Skipped, with the reason, when ``/usr/bin/chromium`` or the ``playwright`` package is
missing, except in CI (``CI=true``), where that is a failure. Screenshots go to
``test-artifacts/`` at the top of the checkout.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import (
    CS_REFUND,
    JSON,
    LiveServer,
    _environment,
    live_server,
    poll,
    teamflow_command,
    wait_finished,
)

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
TEAMS = {"payments", "customer_success", "inventory"}
SARAH = "sarah@growthcorp.example"
LAB_PLUGIN = """
from pathlib import Path

from teamflow import NamespacePolicy, PermanentError, Step, Workflow, hookimpl


def check(ctx):
    gate = Path(ctx.context["gate"])
    if not gate.exists():
        raise PermanentError(f"the gate {gate} is closed: create the file, then retry")
    return {"gate": "open"}


def finish(ctx):
    return {"finished": True}


def notify(ctx):
    return {"notified": ctx.context.get("who", "everyone")}


@hookimpl
def teamflow_namespaces():
    return [NamespacePolicy(name="browser_lab", owner_team="qa", contact_email="qa@growthcorp.example")]


@hookimpl
def teamflow_workflows():
    return [
        Workflow("browser_lab", "gated", "1.0.0", [Step("check", check), Step("finish", finish, depends_on="check")]),
        Workflow("shared", "notify", "1.0.0", [Step("send", notify)]),
    ]
"""
SHARED_CONFIG = f"""
[namespaces.shared]
owner_team = "platform"
contact_email = "platform-team@growthcorp.example"
requires_approval = true
approvers = ["{SARAH}"]
contributors = ["team-browser-lab"]
"""


def _missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return (
            "the playwright package is not installed (pip install playwright; no `playwright install` needed)"
        )
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install -y chromium)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    problem = _missing()
    if problem:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class Site:
    """The running server, and the secrets of its tokens."""

    def __init__(self, live: LiveServer, secrets: dict[str, str]) -> None:
        self.live = live
        self.url = live.url
        self.secrets = secrets

    def api(self, token: str = "admin") -> httpx.Client:
        return self.live.client(headers={"Authorization": f"Bearer {self.secrets[token]}"})


def _lab_distribution(site: Path) -> None:
    info = site / "team_browser_lab-1.0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: team-browser-lab\nVersion: 1.0.0\n")
    (info / "entry_points.txt").write_text("[teamflow.plugins]\nbrowser_lab = browser_lab_flows\n")
    (info / "RECORD").write_text("")
    (site / "browser_lab_flows.py").write_text(LAB_PLUGIN)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    workdir = tmp_path_factory.mktemp("browser")
    _lab_distribution(workdir / "site")
    (workdir / "teamflow.toml").write_text(SHARED_CONFIG)
    extra = {"PYTHONPATH": os.pathsep.join(filter(None, [str(workdir / "site"), os.environ.get("PYTHONPATH")]))}
    created = subprocess.run(
        teamflow_command("tokens", "create", "--name", "admin", "--namespace", "*", "--scope", "admin", "--json"),
        cwd=workdir, env=_environment(workdir / "teamflow.db", extra), capture_output=True, text=True, timeout=60,
    )
    assert created.returncode == 0, created.stderr
    secrets = {"admin": json.loads(created.stdout)["secret"]}
    with live_server(workdir, env=extra) as live:
        site = Site(live, secrets)
        with site.api() as admin:
            for name, namespaces, scopes, identity in (
                ("operator", ["payments", "browser_lab"], ["read", "execute", "operate"], "olga@growthcorp.example"),
                ("approver", ["shared"], ["read", "execute", "approve"], SARAH),
            ):
                body = {"namespaces": namespaces, "scopes": scopes, "identity": identity}
                response = admin.put(f"/tokens/{name}", content=json.dumps(body), headers=JSON)
                assert response.status_code == 201, response.text
                secrets[name] = response.json()["secret"]
        yield site


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        yield page
    finally:
        context.close()


def _screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def sign_in(page: Any, server: Site, token: str, start: str = "/admin") -> None:
    """Open ``start``, which sends an anonymous browser to the sign-in form, and sign in there."""
    page.goto(f"{server.url}{start}")
    page.wait_for_url("**/admin/sign-in?next=*")
    page.fill("#secret", server.secrets[token])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("#signed-in")


def _execute(client: httpx.Client, namespace: str, name: str, context: dict[str, Any]) -> httpx.Response:
    body = {"namespace": namespace, "name": name, "version": "1.0.0", "context": context, "wait": True}
    return client.post("/workflows/execute", content=json.dumps(body), headers=JSON)


def _status(page: Any, server: Site, task_id: str, want: str) -> str:
    """Reload the task page until its status is ``want`` (the workers finish in the background)."""
    def fetch() -> str:
        page.goto(f"{server.url}/admin/tasks/{task_id}")
        return str(page.locator("#task-status").inner_text())

    return str(poll(fetch, lambda status: status == want, timeout=30, every=0.2))


@pytest.mark.slow
def test_registry_version_dag_and_task_pages(server: Site, page: Any) -> None:
    with server.api() as client:
        cs_id = client.post("/workflows/execute", content=CS_REFUND, headers=JSON).json()["id"]
        assert wait_finished(client, cs_id)["status"] == "completed"

    # The registry lists the three teams (and the lab and the platform's shared namespace).
    sign_in(page, server, "admin")
    assert page.url.endswith("/admin/workflows")
    assert set(page.locator("dd.owner-team").all_inner_texts()) == TEAMS | {"qa", "platform"}
    assert page.locator(".problems").count() == 0
    _screenshot(page, "admin-workflows.png")

    # A click opens a workflow version with its DAG.
    row = page.locator("#ns-customer_success tr", has_text="process_refund")
    row.get_by_role("link", name="1.3.0", exact=True).click()
    page.wait_for_url("**/admin/workflows/customer_success/process_refund/1.3.0")
    assert page.locator("h1").inner_text().startswith("customer_success/process_refund@1.3.0")
    dag = page.locator("svg.dag")
    assert dag.is_visible()
    assert dag.locator("g.node").count() == 5
    assert dag.locator("path.edge").count() >= 4
    assert "execute_payment_refund" in dag.locator("text").all_text_contents()
    _screenshot(page, "admin-version.png")

    # From the version to its tasks, then to the completed task and its steps.
    page.get_by_role("link", name="recent tasks of this version").click()
    page.locator(f'a[href="/admin/tasks/{cs_id}"]').click()
    page.wait_for_url(f"**/admin/tasks/{cs_id}")
    assert page.locator("#task-status").inner_text() == "completed"
    steps = page.locator("tr.step")
    assert steps.count() == 5
    for i in range(5):
        assert "completed" in steps.nth(i).locator("td").nth(1).inner_text()
    assert page.locator("svg.dag g.node").count() == 5
    _screenshot(page, "admin-task.png")

    # The cross-team child task is linked, and links back to its parent.
    page.locator("#step-execute_payment_refund a", has_text="payments/process_refund@2.1.0").click()
    page.wait_for_url("**/admin/tasks/*")
    assert page.get_by_role("link", name=cs_id).is_visible()
    assert page.locator("#task-status").inner_text() == "completed"


@pytest.mark.slow
def test_an_operator_signs_in_retries_and_resolves(server: Site, page: Any, tmp_path: Path) -> None:
    sign_in(page, server, "operator", start="/admin/tasks")
    assert page.url.endswith("/admin/tasks"), "back to the page asked for"
    assert page.locator("#signed-in .token-name").inner_text() == "operator"
    assert page.locator("#signed-in .identity").inner_text() == "olga@growthcorp.example"
    _screenshot(page, "admin-signed-in.png")

    gate = tmp_path / "gate"
    with server.api("operator") as client:
        retried = _execute(client, "browser_lab", "gated", {"gate": str(gate)}).json()
        resolved = _execute(client, "browser_lab", "gated", {"gate": str(tmp_path / "never")}).json()
    assert retried["status"] == resolved["status"] == "failed"

    # Retry: the gate is open now, so the failed step passes and the task completes.
    gate.touch()
    page.goto(f"{server.url}/admin/tasks/{retried['id']}")
    _screenshot(page, "admin-task-failed.png")
    page.locator("#retry").click()
    page.wait_for_url(f"**/admin/tasks/{retried['id']}")
    assert _status(page, server, retried["id"], "completed") == "completed"
    assert "token:operator" in page.locator("table.transitions").inner_text()

    # Resolve: the gate stays closed; the operator gives the step's result by hand.
    page.goto(f"{server.url}/admin/tasks/{resolved['id']}")
    page.fill("#result-check", '{"gate": "opened by hand"}')
    page.locator("#step-check").get_by_role("button", name="Resolve step").click()
    page.wait_for_url(f"**/admin/tasks/{resolved['id']}")
    assert _status(page, server, resolved["id"], "completed") == "completed"
    check = page.locator("#step-check")
    assert "resolved" in check.inner_text() and "by token:operator" in check.inner_text()
    assert json.loads(check.locator("pre.result").inner_text()) == {"gate": "opened by hand"}

    # Signing out ends the session: the pages ask for a sign-in again.
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/admin/sign-in")
    page.goto(f"{server.url}/admin/tasks")
    assert "/admin/sign-in?next=" in page.url


@pytest.mark.slow
def test_a_form_posted_from_another_site_is_refused(server: Site, page: Any, tmp_path: Path) -> None:
    with server.api("operator") as client:
        task = _execute(client, "browser_lab", "gated", {"gate": str(tmp_path / "closed")}).json()
    assert task["status"] == "failed"
    sign_in(page, server, "operator")
    with server.api("operator") as client:
        before = client.get(f"/tasks/{task['id']}").json()

    # A page of another origin posts the retry form without the session's CSRF value.
    attack = (
        f'<form method="post" action="{server.url}/admin/tasks/{task["id"]}/retry">'
        '<button id="go" type="submit">Win a prize</button></form>'
    )
    page.route("http://attacker.test/**", lambda route: route.fulfill(body=attack, content_type="text/html"))
    page.goto("http://attacker.test/prize")
    with page.expect_response(f"{server.url}/admin/tasks/{task['id']}/retry") as answer:
        page.locator("#go").click()
    assert answer.value.status == 403
    assert "not from this server" in page.locator("main").inner_text()
    with server.api("operator") as client:
        after = client.get(f"/tasks/{task['id']}").json()
    assert after == before, "nothing changed"


@pytest.mark.slow
def test_a_context_holding_script_is_shown_escaped(server: Site, page: Any) -> None:
    evil = "<script>window.__owned = 1</script><img src=x onerror=\"window.__owned = 2\">"
    with server.api("operator") as client:
        body = {"namespace": "payments", "name": "process_refund", "version": "2.1.0", "wait": True,
                "context": {"payment_id": "pay_browser", "reason": evil}}
        task = client.post("/workflows/execute", content=json.dumps(body), headers=JSON).json()
    sign_in(page, server, "operator")
    page.goto(f"{server.url}/admin/tasks/{task['id']}")
    assert json.loads(page.locator("pre.context").inner_text())["reason"] == evil, "shown as text"
    assert page.locator("main script, main img").count() == 0, "never as markup"
    assert page.evaluate("typeof window.__owned") == "undefined"


@pytest.mark.slow
def test_an_approver_approves_a_waiting_shared_version(server: Site, page: Any) -> None:
    with server.api("approver") as client:
        waiting = _execute(client, "shared", "notify", {"who": "ops"})
        assert waiting.status_code == 403 and waiting.json()["error"] == "not_approved", waiting.text
    sign_in(page, server, "approver", start="/admin/workflows/shared/notify/1.0.0")
    page.get_by_role("button", name="Approve shared/notify@1.0.0").click()
    page.wait_for_url("**/admin/workflows/shared/notify/1.0.0")
    assert page.locator("h1").inner_text().startswith("shared/notify@1.0.0")
    with server.api("approver") as client:
        ran = _execute(client, "shared", "notify", {"who": "ops"})
    assert ran.status_code == 200 and ran.json()["status"] == "completed", ran.text
