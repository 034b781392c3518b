"""The admin pages in a real browser: Playwright driving Debian's Chromium.

Skipped, with the reason, when ``/usr/bin/chromium`` or the ``playwright`` package is
missing, except in CI (``CI=true``), where that is a failure. Screenshots go to
``test-artifacts/`` at the top of the checkout.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_support import CS_REFUND, JSON, LiveServer, live_server, wait_finished

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
TEAMS = {"payments", "customer_success", "inventory"}


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


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("browser")) as live:
        yield live


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


@pytest.mark.slow
def test_registry_version_dag_and_task_pages(server: LiveServer, page: Any) -> None:
    with server.client() as client:
        cs_id = client.post("/workflows/execute", content=CS_REFUND, headers=JSON).json()["id"]
        assert wait_finished(client, cs_id)["status"] == "completed"

    # The registry lists the three teams.
    page.goto(f"{server.url}/admin")
    assert page.url.endswith("/admin/workflows")
    assert set(page.locator("dd.owner-team").all_inner_texts()) == TEAMS
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
