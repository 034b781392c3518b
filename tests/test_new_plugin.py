"""``teamflow new-plugin``: the distribution it writes installs and passes its own tests
unchanged, in a fresh venv with the host checkout (and installed with ``--target`` where
only teamflow and pytest are importable); it refuses a namespace another distribution
owns, installed or recorded in the store, naming that distribution, and names it cannot use.

The rules (names, owners) are checked in-process; the distribution itself in one venv
made for this module, since installs are slow here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hostvenv import ROOT, Venv, make_venv

from teamflow import Host, NamespacePolicy, Step, Workflow, hookimpl
from teamflow.cli import main
from teamflow.config import HostConfig, NamespaceConfig
from teamflow.scaffold import compatible_range

TEAM = ["--owner-team", "billing", "--contact", "billing-team@example.com"]


def work(ctx: object) -> dict:
    return {}


class Declares:
    """An in-process plugin declaring one namespace with one workflow."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    @hookimpl
    def teamflow_namespaces(self) -> list[NamespacePolicy]:
        return [NamespacePolicy(self.namespace, "a team", "team@example.com")]

    @hookimpl
    def teamflow_workflows(self) -> list[Workflow]:
        return [Workflow(self.namespace, "job", "1.0.0", [Step("work", work)])]


# -- the rules, in-process -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["billing-", "--namespace", "billing"], "is not a distribution name"),
        (["teamflow billing", "--namespace", "billing"], "is not a distribution name"),
        (["Teamflow", "--namespace", "billing"], "teamflow is the host's own distribution"),
        (["2fa", "--namespace", "billing"], "which is not a Python identifier"),
        (["json", "--namespace", "billing"], "would hide the standard library's"),
        (["teamflow-billing", "--namespace", "Billing"], "is not a namespace name"),
        (["teamflow-billing", "--namespace", "bill-ing"], "write [a-z][a-z0-9_]*"),
        (["teamflow-billing", "--namespace", "9lives"], "is not a namespace name"),
    ],
)
def test_names_it_cannot_use_are_refused_before_anything_is_written(
    args: list[str], says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TEAMFLOW_DATABASE_URL", f"sqlite:///{tmp_path}/t.db")
    result = CliRunner().invoke(main, ["new-plugin", *args, *TEAM])
    assert result.exit_code == 2, result.output
    assert "error (invalid_plugin_option):" in result.stderr
    assert says in result.stderr
    assert list(tmp_path.iterdir()) == []  # not even the database: names are checked first


@pytest.mark.parametrize(
    ("team", "contact", "says"),
    [(" ", "billing@example.com", "--owner-team ' ' is not a team name"), ("billing", "billing", "not an e-mail address")],
)
def test_a_blank_team_or_a_contact_that_is_no_address_is_refused(
    team: str, contact: str, says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["new-plugin", "teamflow-billing", "--namespace", "billing", "--owner-team", team, "--contact", contact]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "error (invalid_plugin_option)" in result.stderr and says in result.stderr


def test_a_folder_that_is_not_empty_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TEAMFLOW_DATABASE_URL", f"sqlite:///{tmp_path}/t.db")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    result = CliRunner().invoke(main, ["new-plugin", "teamflow-billing", "--namespace", "billing", *TEAM, "--dir", "taken"])
    assert result.exit_code == 2
    assert "error (target_exists): taken already exists and is not an empty folder" in result.stderr
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["notes.txt"]


def test_an_installed_distribution_name_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TEAMFLOW_DATABASE_URL", f"sqlite:///{tmp_path}/t.db")
    result = CliRunner().invoke(main, ["new-plugin", "teamflow_inventory", "--namespace", "stock", *TEAM])
    assert result.exit_code == 2
    assert "error (distribution_taken): a distribution named teamflow-inventory 1." in result.stderr
    assert not (tmp_path / "teamflow_inventory").exists()


def test_the_code_it_writes_passes_ruff_with_its_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TEAMFLOW_DATABASE_URL", f"sqlite:///{tmp_path}/t.db")
    owner = ["--owner-team", "loyalty and rewards", "--contact", "o'brien@example.com"]  # quotes in values
    result = CliRunner().invoke(main, ["new-plugin", "teamflow-loyalty", "--namespace", "loyalty", *owner])
    assert result.exit_code == 0, result.output
    project = tmp_path / "teamflow-loyalty"
    ruff = [sys.executable, "-m", "ruff"]
    rules = ["--select", "E,F,W,I,B,UP,SIM,RUF"]
    for command in ([*ruff, "check", "--isolated", *rules, "."], [*ruff, "format", "--isolated", "--check", "."]):
        done = subprocess.run(command, cwd=project, capture_output=True, text=True)
        assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}{done.stderr}"
    assert tomllib.loads((project / "pyproject.toml").read_text())["project"]["authors"] == [
        {"name": "loyalty and rewards team", "email": "o'brien@example.com"}
    ]


def test_dir_is_the_folder_it_writes_and_the_next_steps_name_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TEAMFLOW_DATABASE_URL", f"sqlite:///{tmp_path}/t.db")
    (tmp_path / "plugins" / "loyalty").mkdir(parents=True)  # an empty folder is fine
    args = ["new-plugin", "teamflow-loyalty", "--namespace", "loyalty", *TEAM, "--dir", "plugins/loyalty"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    written = sorted(p.relative_to(tmp_path / "plugins" / "loyalty").as_posix() for p in tmp_path.rglob("*.*") if "plugins" in p.parts)
    assert written == [
        "README.md",
        "pyproject.toml",
        "teamflow_loyalty/__init__.py",
        "teamflow_loyalty/handlers.py",
        "teamflow_loyalty/plugin.py",
        "tests/test_teamflow_loyalty.py",
    ]
    assert "pip install -e 'plugins/loyalty[test]'" in result.stdout
    assert "teamflow run loyalty/example@1.0.0 --context" in result.stdout


@pytest.mark.parametrize(
    ("version", "requirement"),
    [
        ("0.1.0", "teamflow>=0.1,<0.2"),
        ("0.12.3", "teamflow>=0.12,<0.13"),
        ("1.4.2", "teamflow>=1.4,<2"),
        ("2.0.0+local.3", "teamflow>=2.0,<3"),
        ("0.2.0rc1", "teamflow>=0.2.0rc1,<0.3"),  # a pre-release must satisfy its own range
    ],
)
def test_the_host_requirement_is_a_compatible_range(version: str, requirement: str) -> None:
    assert compatible_range(version) == requirement


def _host(tmp_path: Path, *plugins: object, **config: Any) -> Host:
    settings = HostConfig(database_url=f"sqlite:///{tmp_path}/t.db", **config)
    return Host(config=settings, plugins=plugins, discover=False, migrate=True)


def test_namespace_owner_names_the_loaded_pinned_configured_blocked_or_recorded_owner(tmp_path: Path) -> None:
    with _host(tmp_path, ("teamflow-ledger", Declares("ledger"))) as host:
        assert host.namespace_owner("ledger") == "teamflow-ledger"
        assert host.namespace_owner("billing") is None
    # the ledger's plugin is gone; the store remembers who owns its namespace
    with _host(tmp_path) as host:
        assert host.namespace_owner("ledger") == "teamflow-ledger"
    with _host(tmp_path, owner_pins={"loyalty": "teamflow-loyalty"}) as host:
        assert host.namespace_owner("loyalty") == "teamflow-loyalty"
    platform = {"shared": NamespaceConfig(owner_team="platform", contact_email="platform@example.com")}
    with _host(tmp_path, namespaces=platform) as host:
        assert host.namespace_owner("shared") == "teamflow.toml"
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with _host(fresh, ("teamflow-one", Declares("rivals")), ("teamflow-two", Declares("rivals"))) as host:
        assert "rivals" not in host.registry.namespaces  # two declarations block it...
        assert host.namespace_owner("rivals") == "teamflow-one and teamflow-two"  # ...and both own it


def test_a_namespace_the_host_configuration_defines_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "teamflow.toml").write_text(
        f'database_url = "sqlite:///{tmp_path}/t.db"\n'
        '[namespaces.shared]\nowner_team = "platform"\ncontact_email = "platform@example.com"\n'
    )
    result = CliRunner().invoke(main, ["new-plugin", "teamflow-billing", "--namespace", "shared", *TEAM])
    assert result.exit_code == 2
    assert (
        "error (namespace_taken): namespace 'shared' is owned by the host configuration (teamflow.toml)"
        in result.stderr
    )
    assert not (tmp_path / "teamflow-billing").exists()


# -- the distribution, in a fresh venv -------------------------------------------------------


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """teamflow (this checkout, as pip builds it) and pytest, nothing else."""
    return make_venv(tmp_path_factory.mktemp("venv") / "venv")


@pytest.fixture(scope="module")
def payments_site(venv: Venv, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """teamflow-payments installed into a folder of its own (on PYTHONPATH when a test says)."""
    site = tmp_path_factory.mktemp("payments-site")
    venv.pip("--no-deps", "--target", str(site), str(ROOT / "plugins" / "payments"))
    return site


def _new_plugin(
    venv: Venv, cwd: Path, name: str, namespace: str, env: dict[str, str], expect: int = 0
) -> subprocess.CompletedProcess[str]:
    return venv.run(["teamflow", "new-plugin", name, "--namespace", namespace, *TEAM], cwd=cwd, env=env, expect=expect)


def _db(path: Path) -> dict[str, str]:
    return {"TEAMFLOW_DATABASE_URL": f"sqlite:///{path}"}


def _plugins_installed(venv: Venv, cwd: Path) -> list[str]:
    code = (
        "import importlib.metadata as m, json; "
        "print(json.dumps(sorted(e.value for e in m.entry_points(group='teamflow.plugins'))))"
    )
    return json.loads(venv.run([venv.python, "-c", code], cwd=cwd).stdout)


@pytest.mark.slow
def test_installed_with_target_its_tests_pass_where_only_teamflow_and_pytest_are_importable(
    venv: Venv, tmp_path: Path
) -> None:
    _new_plugin(venv, tmp_path, "teamflow-ledger", "ledger", env=_db(tmp_path / "t.db"))
    site = tmp_path / "site"
    venv.pip("--no-deps", "--target", str(site), str(tmp_path / "teamflow-ledger"))
    # the tests and the project's pyproject.toml, without the source package: the installed copy is tested
    project = tmp_path / "tested"
    shutil.copytree(tmp_path / "teamflow-ledger" / "tests", project / "tests")
    shutil.copy(tmp_path / "teamflow-ledger" / "pyproject.toml", project)
    assert _plugins_installed(venv, project) == []  # the venv holds no plugin: only teamflow and pytest
    done = venv.run([venv.python, "-m", "pytest", "-p", "no:cacheprovider"], cwd=project, env={"PYTHONPATH": str(site)})
    assert "4 passed" in done.stdout, done.stdout


@pytest.fixture
def billing(venv: Venv, tmp_path: Path) -> Iterator[Path]:
    """teamflow-billing written by new-plugin and pip-installed into the venv (uninstalled after)."""
    _new_plugin(venv, tmp_path, "teamflow-billing", "billing", env=_db(tmp_path / "scaffold.db"))
    project = tmp_path / "teamflow-billing"
    venv.pip(str(project))
    yield project
    venv.run([venv.python, "-m", "pip", "uninstall", "--yes", "--quiet", "teamflow-billing"], cwd=tmp_path)


@pytest.mark.slow
def test_the_new_plugin_installs_passes_its_tests_and_runs(venv: Venv, billing: Path, tmp_path: Path) -> None:
    pyproject = (billing / "pyproject.toml").read_text()
    assert 'dependencies = ["teamflow>=0.1,<0.2"]' in pyproject
    assert 'billing = "teamflow_billing.plugin"' in pyproject
    done = venv.run([venv.python, "-m", "pytest", "-p", "no:cacheprovider"], cwd=billing)
    assert "4 passed" in done.stdout, done.stdout

    db = _db(tmp_path / "host.db")
    listed = json.loads(venv.run(["teamflow", "workflows", "billing", "--json"], cwd=tmp_path, env=db).stdout)
    assert [(ns["name"], ns["owner_team"], ns["owner_distribution"]) for ns in listed["namespaces"]] == [
        ("billing", "billing", "teamflow-billing")
    ]
    assert [(w["name"], [v["version"] for v in w["versions"]]) for w in listed["workflows"]] == [
        ("example", ["1.0.0"])
    ]
    run = venv.run(
        ["teamflow", "run", "billing/example@1.0.0", "--context", '{"item": "widget", "quantity": 3}', "--json"],
        cwd=tmp_path,
        env=db,
    )
    task = json.loads(run.stdout)
    assert task["status"] == "completed"
    assert [(s["name"], s["status"]) for s in task["steps"]] == [
        ("check_request", "completed"),
        ("process_request", "completed"),
    ]
    assert task["steps"][1]["result"]["quantity"] == 3
    venv.run(["teamflow", "check"], cwd=tmp_path, env=db)


@pytest.mark.slow
def test_a_namespace_an_installed_plugin_owns_is_refused_naming_it(
    venv: Venv, payments_site: Path, tmp_path: Path
) -> None:
    env = {**_db(tmp_path / "t.db"), "PYTHONPATH": str(payments_site)}
    done = _new_plugin(venv, tmp_path, "teamflow-refunds", "payments", env=env, expect=2)
    assert (
        "error (namespace_taken): namespace 'payments' is owned by teamflow-payments" in done.stderr
    )
    assert not (tmp_path / "teamflow-refunds").exists()


@pytest.mark.slow
def test_a_namespace_the_store_recorded_is_refused_naming_its_owner(
    venv: Venv, payments_site: Path, tmp_path: Path
) -> None:
    recorded = _db(tmp_path / "recorded.db")
    # a host that had teamflow-payments installed recorded it as the owner of payments...
    venv.run(["teamflow", "plugins"], cwd=tmp_path, env={**recorded, "PYTHONPATH": str(payments_site)})
    # ...so without the plugin installed, that database still refuses the namespace to a newcomer
    done = _new_plugin(venv, tmp_path, "teamflow-refunds", "payments", env=recorded, expect=2)
    assert "namespace 'payments' is owned by teamflow-payments" in done.stderr
    assert not (tmp_path / "teamflow-refunds").exists()
    # a database that never saw teamflow-payments does not
    _new_plugin(venv, tmp_path, "teamflow-refunds", "payments", env=_db(tmp_path / "fresh.db"))
    assert (tmp_path / "teamflow-refunds" / "teamflow_refunds" / "plugin.py").is_file()
