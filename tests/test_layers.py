"""The import contracts that keep the layers (``nox -s lint`` runs them) catch a planted import.

Each case copies the host's package, plants one import that crosses a layer, and runs
``lint-imports`` on the copy with the repository's contracts: the contract it breaks is
reported and the run fails. The unplanted copy keeps every contract.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _contracts() -> str:
    """The repository's [tool.importlinter] tables, as a pyproject.toml of their own."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    lines = ["[tool.importlinter]", f'root_package = "{config["root_package"]}"', "include_external_packages = true"]
    for contract in config["contracts"]:
        lines.append("\n[[tool.importlinter.contracts]]")
        for key, value in contract.items():
            lines.append(f"{key} = {value!r}".replace("'", '"').replace("True", "true"))
    return "\n".join(lines) + "\n"


def _lint(tmp_path: Path, plant: tuple[str, str] | None) -> subprocess.CompletedProcess[str]:
    shutil.copytree(ROOT / "core" / "teamflow", tmp_path / "teamflow", ignore=shutil.ignore_patterns("__pycache__"))
    if plant is not None:
        module, line = plant
        path = tmp_path / "teamflow" / module
        path.write_text(path.read_text() + f"\n{line}  # planted\n")
    (tmp_path / "pyproject.toml").write_text(_contracts())
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True)


@pytest.fixture(autouse=True)
def _needs_import_linter() -> None:
    if not LINT_IMPORTS.exists():
        pytest.fail(f"import-linter is not installed beside {sys.executable} (nox -s tests installs it)")


def test_the_unplanted_package_keeps_every_contract(tmp_path: Path) -> None:
    result = _lint(tmp_path, None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("plant", "contract"),
    [
        (("api/app.py", "import teamflow.store"), "Surfaces reach the data only through the host BROKEN"),
        (("cli.py", "import teamflow.engine.runner"), "Surfaces reach the data only through the host BROKEN"),
        (("api/admin.py", "from teamflow.store.records import TaskRow"), "Surfaces reach the data only"),
        (("registry/index.py", "import teamflow.store"), "import neither the store nor the engine BROKEN"),
        (("versions.py", "import teamflow.engine"), "import neither the store nor the engine BROKEN"),
        (("store/tasks.py", "import teamflow.host"), "The data path reads top to bottom BROKEN"),
        (("host.py", "import teamflow_payments"), "nothing in core imports a team plugin BROKEN"),
    ],
    ids=["api->store", "cli->engine", "admin->store records", "registry->store", "versions->engine",
         "store->host", "core->team plugin"],
)
def test_a_planted_import_breaks_its_contract(tmp_path: Path, plant: tuple[str, str], contract: str) -> None:
    result = _lint(tmp_path, plant)
    assert result.returncode == 1, result.stdout + result.stderr
    assert contract in result.stdout, result.stdout
