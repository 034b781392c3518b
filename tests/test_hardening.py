"""Hostile input and faults (issue 14): one test (or more) per numbered item of the issue.

Item 1, the configuration, is tests/test_config.py (plus the CLI's options here); the chaos
run on PostgreSQL is in tests/test_postgres_scale.py.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import JSON, live_server, teamflow_command, wait_finished
from conftest import install_test_plugins, req, wait_for
from flows import AlphaPlugin, BetaPlugin
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from teamflow import Host, Step, TaskRequest, Workflow, hookimpl
from teamflow.errors import ConfigError, ContextInvalid, StoreError, TeamflowError
from teamflow.limits import MAX_DEPTH, MAX_ERROR_BYTES
from teamflow.serialization import encode_view

TEST_PLUGINS = (("team-alpha", AlphaPlugin()), ("team-beta", BetaPlugin()))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``teamflow serve`` with the test plugins (alpha/slow sleeps as long as it is told)."""
    work = tmp_path_factory.mktemp("hardening")
    env = install_test_plugins(work / "site")
    with live_server(work / "serve", workers=4, env={**env, "TEAMFLOW_MAX_WAIT_S": "20"}) as live:
        yield live


@pytest.fixture
def client(server: Any) -> Any:
    with server.client() as c:
        yield c


def post(client: httpx.Client, body: Any, path: str = "/workflows/execute", **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(path, content=content, headers={**JSON, **headers})


def alpha(name: str, **fields: Any) -> dict[str, Any]:
    return {"namespace": "alpha", "name": name, "version": "1.0.0", **fields}


# -- 1. the CLI's options are checked too --------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["worker", "--concurrency", "0"], "--concurrency"),
        (["serve", "--workers", "-1"], "--workers"),
        (["--log-level", "verbose", "plugins"], "--log-level"),
        (["--database-url", "mysql://x/y", "plugins"], "database_url"),
        (["--database-url", "sqlite:///:memory:", "plugins"], "in-memory"),
    ],
)
def test_item_1_cli_options_are_checked_not_coerced(tmp_path: Path, args: list[str], says: str) -> None:
    run = subprocess.run(teamflow_command(*args), cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run
    assert says in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_item_1_the_log_level_is_honoured(tmp_path: Path) -> None:
    env = {**install_test_plugins(tmp_path / "site"), "TEAMFLOW_DATABASE_URL": f"sqlite:///{tmp_path}/t.db"}
    runs = {
        level: subprocess.run(teamflow_command("run", "alpha/parent@1.0.0"), cwd=tmp_path, capture_output=True,
                              text=True, env={**env, "TEAMFLOW_LOG_LEVEL": level}, timeout=60)
        for level in ("error", "debug")
    }
    assert runs["error"].returncode == runs["debug"].returncode == 0, runs
    assert "parked waiting for child task" in runs["debug"].stderr  # a DEBUG line of the parked parent
    assert "parked waiting" not in runs["error"].stderr and "| INFO" not in runs["error"].stderr


# -- 2. waiting requests cannot starve the API ---------------------------------------------------------


def test_item_2_fifty_waiting_requests_starve_nothing(tmp_path: Path) -> None:
    env = install_test_plugins(tmp_path / "site")
    with live_server(tmp_path / "serve", workers=4, env={**env, "TEAMFLOW_MAX_WAIT_S": "5"}) as server:
        took = asyncio.run(_starve(server.url))
    assert all(seconds < 1.0 for seconds in took.values()), took


async def _starve(url: str) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=url, timeout=90) as c:
        body = json.dumps(alpha("slow", context={"sleep": 4})).encode()
        waiters = [asyncio.create_task(c.post("/workflows/execute", content=json.dumps(
            {**json.loads(body), "wait": True}).encode(), headers=JSON)) for _ in range(50)]
        await asyncio.sleep(1.0)  # the 50 are waiting now
        victim = (await c.post("/workflows/execute", content=body, headers=JSON)).json()["id"]
        took: dict[str, float] = {}
        for name, call in (
            ("GET /tasks", lambda: c.get("/tasks")),
            ("GET /health/ready", lambda: c.get("/health/ready")),
            ("POST cancel", lambda: c.post(f"/tasks/{victim}/cancel")),
            ("GET /tasks/{id}", lambda: c.get(f"/tasks/{victim}")),
        ):
            started = time.monotonic()
            response = await call()
            took[name] = time.monotonic() - started
            assert response.status_code < 500, (name, response.text)
        assert (await c.get(f"/tasks/{victim}")).json()["status"] == "cancelled"
        done = await asyncio.gather(*waiters)
        assert {r.status_code for r in done} <= {200, 202}
        return took


def test_item_2_a_wait_ends_at_its_bound_with_202(client: httpx.Client) -> None:
    started = time.monotonic()
    response = post(client, alpha("slow", context={"sleep": 3}, wait=0.5))
    assert response.status_code == 202 and time.monotonic() - started < 2.5, response.text
    assert response.json()["links"]["self"] == f"/tasks/{response.json()['id']}"
    assert wait_finished(client, response.json()["id"])["status"] == "completed"  # the task went on


def test_item_2_wait_true_is_capped_by_max_wait_s(tmp_path: Path) -> None:
    env = install_test_plugins(tmp_path / "site")
    with live_server(tmp_path / "serve", env={**env, "TEAMFLOW_MAX_WAIT_S": "1"}) as live, live.client() as c:
        started = time.monotonic()
        response = post(c, alpha("slow", context={"sleep": 5}, wait=True))
        assert response.status_code == 202 and time.monotonic() - started < 3, response.text


# -- 3. an absurd version string is refused, never a crash ---------------------------------------------


def test_item_3_a_five_thousand_digit_version_is_a_4xx_everywhere(client: httpx.Client, tmp_path: Path) -> None:
    huge = "1" * 5000 + ".0.0"
    for response in (
        post(client, {"namespace": "alpha", "name": "chain", "version": huge}),
        client.get(f"/workflows/alpha/chain/{huge}"),
    ):
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "too_long" and response.json()["limit"] == 256
    run = subprocess.run(teamflow_command("show", f"alpha/chain@{huge}"), cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, env=install_test_plugins(tmp_path / "site"))
    assert run.returncode == 2 and "at most 256" in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_item_3_a_key_no_database_can_store_is_a_422_and_stores_nothing(client: httpx.Client) -> None:
    before = client.get("/tasks").json()["tasks"]
    for body in (alpha("chain", idempotency_key="k\u0000"), [alpha("chain"), alpha("chain", idempotency_key="\ud800")]):
        path = "/workflows/execute" if isinstance(body, dict) else "/workflows/execute/batch"
        response = post(client, body if isinstance(body, dict) else {"requests": body}, path)
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "invalid_text" and "idempotency key" in response.json()["detail"]
    assert client.get("/tasks").json()["tasks"] == before


class _AbsurdVersions:
    @hookimpl
    def teamflow_namespaces(self) -> list[Any]:
        return [AlphaPlugin().teamflow_namespaces()[0]]

    @hookimpl
    def teamflow_workflows(self) -> list[Any]:
        from flows import noop

        return [
            Workflow("alpha", "huge", "9" * 5000 + ".0.0", [Step("a", noop)]),
            Workflow("alpha", "huge", "1.0.0", [Step("a", noop)]),
        ]


def test_item_3_a_plugin_shipping_an_absurd_version_loses_only_that_version(make_sqlite_host) -> None:
    host = make_sqlite_host(("team-alpha", _AbsurdVersions()))
    assert [e.ref for e in host.registry.entries("alpha")] == ["alpha/huge@1.0.0"]
    [refusal] = host.plugins.refusals
    assert refusal.kind == "invalid_workflow" and "at most 256" in refusal.reason


# -- 4. a poisoned context or result never makes a task unreadable ------------------------------------


@pytest.mark.parametrize(
    ("context", "says"),
    [
        (b'{"bad": "\\ud800"}', "not valid Unicode"),
        (b'{"deep": ' + b"[" * 900 + b"]" * 900 + b"}", f"nested more than {MAX_DEPTH} levels"),
    ],
    ids=["lone surrogate", "900 levels deep"],
)
def test_item_4_a_context_that_cannot_be_read_back_is_refused_at_the_door(
    client: httpx.Client, context: bytes, says: str
) -> None:
    body = b'{"namespace": "alpha", "name": "chain", "version": "1.0.0", "context": ' + context + b"}"
    response = post(client, body)
    assert response.status_code == 422, response.text
    assert says in response.json()["detail"]


def test_item_4_a_result_that_cannot_be_stored_fails_its_step_and_the_task_stays_readable(
    client: httpx.Client,
) -> None:
    response = post(client, alpha("surrogate_result", wait=True))
    assert response.status_code == 200, response.text
    task = response.json()
    assert task["status"] == "failed" and "cannot be stored" in task["steps"][0]["error"]
    assert client.get(f"/tasks/{task['id']}").status_code == 200
    assert client.get(f"/admin/tasks/{task['id']}").status_code == 200


# -- 5. a big error is stored once, cut ---------------------------------------------------------------


def test_item_5_a_huge_error_message_is_stored_cut_with_its_size(client: httpx.Client) -> None:
    task = post(client, alpha("huge_error", context={"mb": 20}, wait=True)).json()
    assert task["status"] == "failed"
    error = task["steps"][0]["error"]
    assert len(error.encode()) < MAX_ERROR_BYTES + 400 and "(cut: 20971520 bytes in all)" in error
    retried = [t for t in task["transitions"] if t["to_status"] == "retrying"]
    assert retried and all(len(t["detail"].encode()) < MAX_ERROR_BYTES + 200 for t in retried)
    listing = client.get("/tasks", params={"limit": 5})
    assert len(listing.content) < 100_000


# -- 6. logs leak no data ----------------------------------------------------------------------------


def test_item_6_a_traceback_in_the_log_shows_no_values(tmp_path: Path) -> None:
    script = (
        "from teamflow.logs import configure_logging\n"
        "from loguru import logger\n"
        "configure_logging('text', 'INFO')\n"
        "def handler(context):\n"
        "    secret_card = context['card']\n"
        "    raise ValueError('refused')\n"
        "try:\n"
        "    handler({'card': '4111-1111-1111-1111'})\n"
        "except ValueError:\n"
        "    logger.exception('step failed')\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "ValueError: refused" in run.stderr and "4111-1111" not in run.stderr, run.stderr


# -- 7. faults that cost nothing -----------------------------------------------------------------------


def test_item_7_a_database_error_while_a_step_is_prepared_costs_no_attempt(
    make_sqlite_host, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = make_sqlite_host()
    host.start_worker(concurrency=1)
    store, failures = host.store, []

    def blip(task_ids: Any) -> Any:
        if not failures:
            failures.append(list(task_ids))
            raise StoreError("database error on test: server closed the connection unexpectedly")
        return real(task_ids)

    real = store.task_rows
    monkeypatch.setattr(store, "task_rows", blip)  # a claimed step's task is read when it is prepared
    task = host.execute_async(req("chain"))
    done = host.wait(task, timeout=30)
    assert done.status == "completed" and failures == [[task]]
    assert all(s.attempts == 1 for s in done.steps), [(s.name, s.attempts) for s in done.steps]
    history = host.task_view(task).transitions
    assert any(t.detail and "the database failed" in t.detail for t in history)


def test_item_7_sigterm_stops_a_worker_within_its_grace_when_a_handler_hangs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/teamflow.db"
    env = {**install_test_plugins(tmp_path / "site"), "TEAMFLOW_DATABASE_URL": url, "TEAMFLOW_SHUTDOWN_GRACE_S": "2"}
    host = Host(database_url=url, plugins=TEST_PLUGINS, discover=False, migrate=True)
    worker = subprocess.Popen(teamflow_command("worker", "--concurrency", "1"), env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        task = host.execute_async(req("timeout", sleep=120))  # times out at 0.3 s, its thread hangs 120 s
        wait_for(lambda: host.get_task(task).step("sleepy").attempts >= 1, 30, "the handler started")
        time.sleep(0.5)
        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        assert time.monotonic() - started < 2 + 6, "the worker overstayed its grace"
        assert worker.returncode == 0
    finally:
        if worker.poll() is None:
            worker.kill()
        host.close()


def test_item_7_readiness_says_when_the_database_refuses_writes(tmp_path: Path) -> None:
    if shutil.which("chattr") is None:
        pytest.fail("chattr (e2fsprogs) is needed to make a file read-only for root")
    db = tmp_path / "teamflow.db"
    Host(database_url=f"sqlite:///{db}", plugins=TEST_PLUGINS, discover=False, migrate=True).close()
    files = [str(p) for p in tmp_path.iterdir() if p.name.startswith("teamflow.db")]
    subprocess.run(["chattr", "+i", *files], check=True)  # root ignores file modes, not this flag
    try:
        # It starts (it has nothing new to record), but it cannot run a task: it is not ready.
        host = Host(database_url=f"sqlite:///{db}", plugins=TEST_PLUGINS, discover=False, migrate=True)
        try:
            health = host.readiness()
            assert health.status == "unavailable"
            assert any("refuses writes" in r for r in health.reasons), health.reasons
        finally:
            host.close()
    finally:
        subprocess.run(["chattr", "-i", *files], check=True)


@pytest.mark.parametrize(
    ("content", "says"),
    [(b"this is not a database" * 100, "is not a SQLite database"), (None, "of something else")],
    ids=["not a database", "another application's database"],
)
def test_item_7_a_file_that_is_not_a_teamflow_database_is_refused_at_start(
    tmp_path: Path, content: bytes | None, says: str
) -> None:
    db = tmp_path / "other.db"
    if content is None:
        import sqlite3

        sqlite3.connect(db).execute("CREATE TABLE invoices (id INTEGER)").connection.close()
    else:
        db.write_bytes(content)
    with pytest.raises(StoreError, match=says):
        Host(database_url=f"sqlite:///{db}", plugins=TEST_PLUGINS, discover=False, migrate=True)


def test_item_7_an_in_memory_database_is_refused_at_start() -> None:
    with pytest.raises((StoreError, ConfigError), match="in-memory"):
        Host(database_url="sqlite:///:memory:", plugins=TEST_PLUGINS, discover=False, migrate=True)


# -- 8. query parameters and bodies are held to their shape ---------------------------------------------


@pytest.mark.parametrize(
    "query",
    ["namespace[]=alpha", "namespace=alpha&namespace=beta", "nmespace=alpha"],
    ids=["list syntax", "repeated", "misspelt"],
)
def test_item_8_a_query_parameter_the_route_does_not_take_is_a_400(client: httpx.Client, query: str) -> None:
    response = client.get(f"/tasks?{query}")
    assert response.status_code == 400 and response.json()["error"] == "invalid_request", response.text


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (json.dumps(alpha("chain")).encode(), "text/plain"),
        (json.dumps(alpha("chain")).encode("utf-16"), "application/json"),
        (json.dumps(alpha("chain")).encode(), "application/json; charset=utf-16"),
    ],
    ids=["text/plain", "UTF-16 body", "UTF-16 charset"],
)
def test_item_8_a_body_must_be_utf8_json(client: httpx.Client, body: bytes, content_type: str) -> None:
    response = client.post("/workflows/execute", content=body, headers={"Content-Type": content_type})
    assert response.status_code in (400, 415), response.text
    assert response.json()["error"] in ("invalid_request", "unsupported_media_type")


# -- fuzz: generated contexts through both databases -----------------------------------------------------

_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**5000), max_value=10**5000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=20),  # surrogates included
)
_values = st.recursive(_leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                       max_leaves=30)


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def test_fuzz_every_generated_context_is_refused_in_shape_or_stored_readable(make_host) -> None:
    host = make_host()

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(context=st.dictionaries(st.text(max_size=8), _values, max_size=4), depth=st.integers(0, 120))
    def check(context: dict[str, Any], depth: int) -> None:
        context = {**context, "deep": _nested(depth)}
        try:
            task_id = host.execute_async(TaskRequest(name="chain", namespace="alpha", version="1.0.0", context=context))
        except TeamflowError as exc:
            assert isinstance(exc, ContextInvalid) or exc.status == 413, exc
            return
        view = host.task_view(task_id)  # readable, and encodable as the API sends it
        assert json.loads(encode_view(view))["id"] == task_id

    check()


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 5_000])  # walked; past Python's own recursion limit
def test_a_value_nested_too_deep_is_refused_however_deep(levels: int) -> None:
    from teamflow.limits import Unstorable, encode

    nested: Any = "leaf"
    for _ in range(levels):
        nested = [nested]
    with pytest.raises(Unstorable, match=f"nested more than {MAX_DEPTH} levels"):
        encode(nested, max_bytes=10**9)
    shallow: Any = "[{" * 40  # brackets inside text are not nesting
    for _ in range(MAX_DEPTH):
        shallow = {"k": shallow}
    assert encode(shallow, max_bytes=10**9).count("{") > MAX_DEPTH
