"""Every developer task: `nox -s tests`, `lint`, `typing`, `docs`, `serve`, `bench`."""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "typing", "tests", "docs"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).parent
PLUGINS = ["payments", "customer_success", "inventory"]
PYTEST_FLAGS = ["--strict-markers", "--strict-config", "-p", "no:cacheprovider"]


def _install_checkout(session: nox.Session, *extras: str) -> None:
    """Editable installs of the host and the three plugins, so tests run against this checkout."""
    session.install("-e", ".[postgres]", *extras)
    for plugin in PLUGINS:
        session.install("-e", f"plugins/{plugin}")


def _pytest(session: nox.Session, *args: str) -> None:
    session.run("python", "-m", "pytest", *PYTEST_FLAGS, *args, *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """Host, cross-plugin and integration tests, then each plugin's own tests on their own."""
    _install_checkout(
        session, "pytest", "pytest-timeout", "hypothesis", "httpx", "pip", "build", "schemathesis", "playwright",
        "import-linter", "pyyaml", "ruff",
    )
    session.run("python", "-c", "import teamflow, pathlib, sys; "
                "p = pathlib.Path(teamflow.__file__).resolve(); "
                "sys.exit(0 if 'core/teamflow' in p.as_posix() else f'stale teamflow installed at {p}')")
    _pytest(session, "tests")
    for plugin in PLUGINS:
        with session.chdir(ROOT / "plugins" / plugin):
            _pytest(session, "tests")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, and the import contracts that keep the layers (pyproject.toml [tool.importlinter])."""
    session.install("ruff", "import-linter")
    session.install("-e", ".")
    session.run("ruff", "check", "core", "plugins", "tests", "benchmarks", "noxfile.py")
    session.run("lint-imports")


@nox.session
def typing(session: nox.Session) -> None:
    session.install("mypy", "types-jsonschema", "pytest")
    _install_checkout(session)
    session.run("mypy", "core/teamflow")


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site (mkdocs.yml, docs/) into site/, built with --strict: a broken link,
    a page left out of the navigation or a reference to a name that does not exist fails it."""
    session.install(
        "mkdocs>=1.6,<2", "mkdocs-material>=9.5,<10", "mkdocstrings[python]>=0.26", "mkdocs-click>=0.8", "griffe-fieldz", "ruff",
        "click<8.3",  # mkdocs-click 0.9 shows click 8.3's unset defaults as "Sentinel.UNSET"
    )  # griffe-fieldz: the fields of the attrs classes; ruff formats the signatures shown
    session.install("-e", ".")  # mkdocs-click imports teamflow.cli to read its commands
    # NO_MKDOCS_2_WARNING: Material's banner about MkDocs 2.0, which the pin above keeps out
    session.run("mkdocs", "build", "--strict", *session.posargs, env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session
def serve(session: nox.Session) -> None:
    """The demo: the host and the three team plugins on SQLite, on http://127.0.0.1:3000."""
    _install_checkout(session)
    env = {"TEAMFLOW_DATABASE_URL": os.environ.get("TEAMFLOW_DATABASE_URL", "sqlite:///teamflow.db")}
    session.run("teamflow", "serve", *session.posargs, env=env)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks; prints the figures (sections and options: benchmarks/run.py)."""
    # the peers measured against on the same PostgreSQL (see benchmarks/peers_pg.py)
    _install_checkout(session, "httpx", "dbos==3.4.0", "procrastinate==3.10.0", "psycopg[binary]==3.3.9")
    session.run("python", "benchmarks/run.py", *session.posargs)
