"""Every namespace has its own admin page (issue 17, point 4): ``/admin/workflows/{namespace}``
shows the namespace's owner and policy, every workflow with its versions (default,
deprecated, pre-release and approval state, unfinished tasks), links to each version's page
and to the namespace's tasks and audit rows. An unknown namespace is the registry's 404
naming those that exist, as a page. Everything a plugin wrote is escaped.

In process (Litestar's TestClient over ``create_app``); who may see the page under access
control is in ``test_admin_access``'s matrix.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import teamflow.access
from teamflow import Step, StepContext, TaskRequest, Workflow, hookimpl
from teamflow.api.sessions import COOKIE
from teamflow.config import HostConfig, NamespaceConfig
from teamflow.host import Host
from teamflow.models import NamespacePolicy

APPROVER = "sarah@growthcorp.example"
EVIL = "<script>alert('owned')</script>"
ESCAPED = "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt;"


def _done(ctx: StepContext) -> dict[str, Any]:
    return {}


class Lab:
    """``lab`` (its policy, with text to escape; compatibility off), with a workflow of three
    versions (deprecated, default, pre-release), one with only a pre-release (no default) and
    one with only a deprecated version (its default all the same); and two versions in
    the platform namespace ``common``, which it contributes to."""

    @hookimpl
    def teamflow_namespaces(self) -> list[NamespacePolicy]:
        return [
            NamespacePolicy(
                "lab", owner_team="<b>lab team</b>", contact_email="lab@example.test", description=f"Lab {EVIL}",
                allowed_callers=("payments",), approvers=("quinn@example.test",), compatibility="none",
            )
        ]

    @hookimpl
    def teamflow_workflows(self) -> list[Workflow]:
        steps = [Step("a", _done), Step("b", _done, depends_on=("a",))]
        return [
            Workflow("lab", "flow", "1.0.0", steps, description="the first", deprecated='use 1.1.0 "<now>"'),
            Workflow("lab", "flow", "1.1.0", steps, description=f"flow {EVIL}"),
            Workflow("lab", "flow", "2.0.0-rc.1", steps[:1], description="the next"),
            Workflow("lab", "preview", "0.1.0-alpha.1", steps[:1]),
            Workflow("lab", "retired", "1.0.0", steps[:1], deprecated="gone"),
            Workflow("common", "notify", "1.0.0", steps[:1]),
            Workflow("common", "notify", "1.1.0", steps[:1]),
        ]


def _config(url: str, **overrides: Any) -> HostConfig:
    common = NamespaceConfig(
        "platform", "platform@growthcorp.example", description="Shared utilities", requires_approval=True,
        approvers=(APPROVER,), contributors=("teamflow-lab",),
    )
    return HostConfig(database_url=url, namespaces={"common": common}, **overrides)


class Pages:
    """A host with the lab plugin (and the installed team plugins) and a client of its app."""

    def __init__(self, host: Host, client: Any) -> None:
        self.host = host
        self.client = client

    def get(self, path: str, sid: str | None = None) -> Any:
        self.client.cookies.clear()
        headers = {"Cookie": f"{COOKIE}={sid}"} if sid else {}
        return self.client.get(path, headers=headers, follow_redirects=False)

    def session(self, name: str, scopes: list[str], namespaces: tuple[str, ...] = ("lab",)) -> str:
        secret = self.host.create_token(name, list(namespaces), scopes).secret
        self.client.cookies.clear()
        response = self.client.post("/admin/sign-in", data={"secret": secret}, follow_redirects=False)
        assert response.status_code == 303, response.text
        match = re.match(rf"{COOKIE}=([^;]*);", response.headers["set-cookie"])
        assert match, response.headers["set-cookie"]
        return match.group(1)


@pytest.fixture
def pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pages]:
    from litestar.testing import TestClient

    from teamflow.api.app import create_app

    monkeypatch.setattr(teamflow.access, "CACHE_S", 0.0)
    host = Host(config=_config(f"sqlite:///{tmp_path}/t.db"), plugins=[("teamflow-lab", Lab())], migrate=True)
    try:
        with TestClient(create_app(host)) as client:
            yield Pages(host, client)
    finally:
        host.close()


def _rows(html: str) -> dict[str, str]:
    """Each version row of the page by its version page's path."""
    return {
        m.group(1): m.group(0)
        for m in re.finditer(r'<tr class="version">\s*<td><a href="([^"]+)">.*?</tr>', html, re.S)
    }


def test_the_namespace_page_shows_its_policy(pages: Pages) -> None:
    page = pages.get("/admin/workflows/lab")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "<h1>Namespace lab" in html
    assert '<dd class="owner-team">&lt;b&gt;lab team&lt;/b&gt;</dd>' in html
    assert '<a href="mailto:lab@example.test">lab@example.test</a>' in html
    assert '<dd class="owner">teamflow-lab ' in html, "owned by the plugin's distribution"
    assert '<dd class="contributors">none: only the owner registers workflows here</dd>' in html
    assert '<dd class="approval">not required' in html
    assert '<dd class="approvers">quinn@example.test</dd>' in html
    assert '<dd class="callers">payments</dd>' in html
    assert '<dd class="compatibility">none: ' in html
    assert "platform</span>" not in html, "a plugin's namespace"


def test_a_platform_namespace_says_so_and_marks_each_versions_approval(pages: Pages) -> None:
    html = pages.get("/admin/workflows/common").text
    assert 'title="its policy comes from the host configuration, not from a plugin">platform</span>' in html
    assert '<dd class="owner">the host configuration (teamflow.toml): a platform namespace</dd>' in html
    assert '<dd class="contributors">teamflow-lab</dd>' in html
    assert f'<dd class="approval">each version needs approval by one of {APPROVER}</dd>' in html
    assert '<dd class="compatibility">backward: ' in html
    rows = _rows(html)
    assert set(rows) == {"/admin/workflows/common/notify/1.1.0", "/admin/workflows/common/notify/1.0.0"}
    assert all("waiting for approval" in row and ">approved<" not in row for row in rows.values())

    pages.host.approve("common/notify@1.1.0", APPROVER)
    rows = _rows(pages.get("/admin/workflows/common").text)
    assert ">approved<" in rows["/admin/workflows/common/notify/1.1.0"]
    assert "waiting for approval" in rows["/admin/workflows/common/notify/1.0.0"]
    assert "approved" not in "".join(_rows(pages.get("/admin/workflows/lab").text).values()), (
        "no approval state where the namespace requires none"
    )


def test_every_workflow_and_version_is_listed_with_its_state_and_linked(pages: Pages) -> None:
    html = pages.get("/admin/workflows/lab").text
    assert re.findall(r'<section class="card workflow" id="wf-([^"]+)">', html) == ["flow", "preview", "retired"]
    rows = _rows(html)
    assert list(rows) == [
        "/admin/workflows/lab/flow/2.0.0-rc.1",
        "/admin/workflows/lab/flow/1.1.0",
        "/admin/workflows/lab/flow/1.0.0",
        "/admin/workflows/lab/preview/0.1.0-alpha.1",
        "/admin/workflows/lab/retired/1.0.0",
    ], "newest first, as on the registry page"
    newest, default, old, preview, retired = rows.values()
    assert "pre-release" in newest and ">default<" not in newest
    assert '<span class="badge st-default">default</span>' in default and "deprecated" not in default
    assert "deprecated: use 1.1.0 &#34;&lt;now&gt;&#34;" in old and ">default<" not in old
    assert "pre-release" in preview and ">default<" not in preview
    assert "deprecated: gone" in retired and ">default<" in retired, "deprecated, yet what a request gets"
    assert '<span class="badge st-default">1.1.0</span>' in html, "the default named in the workflow's heading"
    assert "no default (all deprecated or pre-release)" in html, "preview has none"
    for path in rows:  # each link is the version's page
        assert pages.get(path).status_code == 200, path


def test_links_to_the_namespaces_tasks_and_the_unfinished_count(pages: Pages) -> None:
    task_id = pages.host.accept(TaskRequest("flow", "lab", "1.1.0")).id  # no workers here: it stays pending
    pages.host.accept(TaskRequest("process_refund", "payments", "2.1.0", {"payment_id": "pay_1"}))
    html = pages.get("/admin/workflows/lab").text
    assert '<a class="tasks-link" href="/admin/tasks?namespace=lab">' in html
    assert 'href="/admin/tasks?namespace=lab&amp;status=failed"' in html
    assert 'href="/admin/audit?namespace=lab"' in html
    assert 'href="/admin/tasks?namespace=lab&amp;name=flow"' in html
    rows = _rows(html)
    assert re.search(r'<td class="unfinished">1\b', rows["/admin/workflows/lab/flow/1.1.0"])
    assert re.search(r'<td class="unfinished">0\b', rows["/admin/workflows/lab/flow/1.0.0"])

    listing = pages.get("/admin/tasks?namespace=lab").text
    assert f'href="/admin/tasks/{task_id}"' in listing, "the link lists the namespace's tasks"
    assert '<option value="lab" selected>' in listing
    assert "payments/process_refund" not in listing, "only the namespace's tasks"
    assert "payments/process_refund" in pages.get("/admin/tasks").text


def test_the_registry_page_links_each_namespace_heading_to_its_page(pages: Pages) -> None:
    html = pages.get("/admin/workflows").text
    headings = re.findall(r'<h2><a class="namespace-link" href="/admin/workflows/([^"]+)">([^<]+)</a></h2>', html)
    names = sorted(pages.host.registry.namespaces)
    assert [h[0] for h in headings] == names and [h[1] for h in headings] == names
    for name in names:
        assert pages.get(f"/admin/workflows/{name}").status_code == 200, name
    version_page = pages.get("/admin/workflows/lab/flow/1.1.0").text
    assert '<a href="/admin/workflows/lab">lab</a> / flow' in version_page, "the version page leads back to it"


@pytest.mark.parametrize("asked", ["nope", "Lab", "lab%20", "%3Cscript%3E"])
def test_an_unknown_namespace_is_a_404_page_naming_those_that_exist(pages: Pages, asked: str) -> None:
    response = pages.get(f"/admin/workflows/{asked}")
    assert response.status_code == 404, response.text
    html = response.text
    assert response.headers["content-type"].startswith("text/html") and "Traceback" not in html
    assert "namespace_not_found" in html
    known = ", ".join(sorted(pages.host.registry.namespaces))
    assert f"is unknown; namespaces: {known}</p>" in html
    assert "<script" not in html.lower()


def test_under_access_control_any_signed_in_token_sees_it(pages: Pages) -> None:
    sid = pages.session("reader", ["read"])
    assert pages.get("/admin/workflows/lab").status_code == 303, "the cookie was cleared: sign in first"
    page = pages.get("/admin/workflows/lab", sid)
    assert page.status_code == 200 and 'signed in as <strong class="token-name">reader</strong>' in page.text
    assert "cannot read the tasks" not in page.text

    starter = pages.session("starter", ["execute"])
    page = pages.get("/admin/workflows/lab", starter)
    assert page.status_code == 200, "definitions are readable by any valid token"
    assert "This session's token cannot read the tasks of lab" in page.text
    assert pages.get("/admin/workflows/inventory", sid).status_code == 200, "another team's definitions too"
    missing = pages.get("/admin/workflows/nope", sid)
    assert missing.status_code == 404 and 'signed in as <strong class="token-name">reader</strong>' in missing.text

    anonymous = pages.get("/admin/workflows/nope")
    assert anonymous.status_code == 303, "nothing is looked up before a session: not even whether it exists"
    assert anonymous.headers["location"] == "/admin/sign-in?next=%2Fadmin%2Fworkflows%2Fnope"


def test_plugin_text_is_escaped(pages: Pages) -> None:
    for path in ("/admin/workflows/lab", "/admin/workflows"):
        html = pages.get(path).text
        assert "<script" not in html.lower(), path
        assert f"Lab {ESCAPED}" in html, path
        assert "<b>lab team</b>" not in html, path
    assert f"<td>flow {ESCAPED}</td>" in pages.get("/admin/workflows/lab").text


def test_a_namespace_without_runnable_versions_says_so(tmp_path: Path) -> None:
    """A namespace whose plugin registers no workflow still has its page."""
    from litestar.testing import TestClient

    from teamflow.api.app import create_app

    host = Host(config=_config(f"sqlite:///{tmp_path}/t.db"), migrate=True)  # nothing contributes to common
    try:
        with TestClient(create_app(host)) as client:
            page = client.get("/admin/workflows/common")
            assert page.status_code == 200 and "No workflow versions registered." in page.text
    finally:
        host.close()

