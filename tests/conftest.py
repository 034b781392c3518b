"""Shared fixtures: hosts with in-process test plugins, on SQLite and on PostgreSQL.

PostgreSQL tests run when ``TEAMFLOW_TEST_POSTGRES_URL`` is set (each test in its own
schema); with ``CI=true`` an unreachable server fails the run instead of skipping.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from flows import AlphaPlugin, BetaPlugin

from teamflow import Host, TaskRequest
from teamflow.config import HostConfig

TESTS = Path(__file__).parent
PG_URL = os.environ.get("TEAMFLOW_TEST_POSTGRES_URL")
IN_CI = os.environ.get("CI", "").lower() == "true"
_pg_checked: dict[str, str | None] = {}


def _pg_problem() -> str | None:
    if "problem" in _pg_checked:
        return _pg_checked["problem"]
    problem = None
    if not PG_URL:
        problem = "PostgreSQL tests need TEAMFLOW_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test"
    else:
        try:
            import psycopg2

            psycopg2.connect(PG_URL, connect_timeout=3).close()
        except Exception as exc:
            problem = f"PostgreSQL at {PG_URL} unreachable: {exc}"
    _pg_checked["problem"] = problem
    return problem


def pg_schema_url() -> Iterator[str]:
    import psycopg2

    def run(sql: str) -> None:
        # a fresh connection each time: a test may have restarted the server meanwhile
        conn = psycopg2.connect(PG_URL)
        conn.autocommit = True
        try:
            conn.cursor().execute(sql)
        finally:
            conn.close()

    schema = f"t_{uuid.uuid4().hex[:12]}"
    run(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_URL else "?"  # type: ignore[operator]
    try:
        yield f"{PG_URL}{sep}schema={schema}"
    finally:
        run(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """One conformance suite, two backends."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/teamflow.db"
        return
    yield from _postgres()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A schema of its own on the test PostgreSQL (a failure on CI when it is unreachable)."""
    yield from _postgres()


def _postgres() -> Iterator[str]:
    problem = _pg_problem()
    if problem:
        if IN_CI:
            pytest.fail(problem)
        pytest.skip(problem)
    yield from pg_schema_url()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/teamflow.db"


def host_config(database_url: str, **overrides: Any) -> HostConfig:
    base = HostConfig(
        database_url=database_url, retry_base_s=0.05, retry_max_s=0.2, poll_interval_s=0.1, lease_s=5.0
    )
    return attrs.evolve(base, **overrides)


def _hosts(url: str) -> Iterator[Callable[..., Host]]:
    """A factory of hosts on ``url`` (the test plugins by default), closed afterwards."""
    hosts: list[Host] = []

    def make(*plugins: object, config: HostConfig | None = None, **overrides: Any) -> Host:
        chosen = plugins or (("team-alpha", AlphaPlugin()), ("team-beta", BetaPlugin()))
        host = Host(
            config=config or host_config(url, **overrides),
            plugins=chosen,
            discover=False,
            migrate=True,
        )
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        host.close()


@pytest.fixture
def make_host(database_url: str) -> Iterator[Callable[..., Host]]:
    """Hosts on each backend (the conformance suite)."""
    yield from _hosts(database_url)


@pytest.fixture
def make_sqlite_host(sqlite_url: str) -> Iterator[Callable[..., Host]]:
    """Hosts on SQLite only, for what only SQLite does."""
    yield from _hosts(sqlite_url)


@pytest.fixture
def record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """File every test handler appends its executions to (see flows.record)."""
    path = tmp_path / "executions.log"
    path.touch()
    monkeypatch.setenv("TEAMFLOW_TEST_RECORD", str(path))
    return path


def req(name: str, ns: str = "alpha", version: str | None = "1.0.0", **context: object) -> TaskRequest:
    """A request for a test workflow, with ``context`` as keyword arguments."""
    return TaskRequest(name=name, namespace=ns, version=version, context=context)


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition", every: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something true, and return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what}: not met within {timeout} s")


def executions(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()]


PLUGIN_ENTRY_POINTS = {
    "alpha": ("team-alpha", "alpha = flows:alpha_plugin"),
    "alpha-v2": ("team-alpha", "alpha = flows:alpha_plugin_v2"),
    "beta": ("team-beta", "beta = flows:beta_plugin"),
}


def install_test_plugins(site: Path, which: tuple[str, ...] = ("alpha", "beta")) -> dict[str, str]:
    """Make the test plugins real distributions (dist-info + entry points) in ``site``.

    Returns the environment for a subprocess that should discover them (and, through
    the venv, the three team plugins).
    """
    for key in which:
        dist, ep = PLUGIN_ENTRY_POINTS[key]
        info = site / f"{dist.replace('-', '_')}-1.0.0.dist-info"
        info.mkdir(parents=True, exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0.0\n")
        (info / "entry_points.txt").write_text(f"[teamflow.plugins]\n{ep}\n")
        (info / "RECORD").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEAMFLOW_") or k == "TEAMFLOW_TEST_RECORD"}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(TESTS), env.get("PYTHONPATH", "")])
    return env


PYTHON = sys.executable
