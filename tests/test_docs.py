"""The documentation in docs/ (built by ``nox -s docs``) says what the host does.

- Every error code the host can report has its page, ``docs/errors/CODE.md``, in the
  navigation, and no page is left for a code that is gone.
- Every public name of ``teamflow``, every configuration key, every HTTP route of the
  OpenAPI document and the pages outside it (``GET /``, ``GET /api``) is documented.
- Every runnable sample runs. By its fence:

  - ``python``: run as a script of its own by a fresh venv's python (the host checkout as
    pip installs it, the three team plugins, pytest), in the page's working folder with
    ``TEAMFLOW_DATABASE_URL`` on a SQLite file there. One folder and one database per page,
    shared by its samples in order.
  - ``console``: each ``$ `` line is a command run in the same folder and environment
    (``$ cd DIR`` moves the page's folder, ``$ NAME=$(command)`` keeps what the command
    printed in ``$NAME`` for the page's later commands, and a line ending in ``\\`` goes on
    on the next). The
    lines after a command are lines it must print, in that order (spaces collapsed; ``...``
    matches anything). It must exit 0, or 2 when what is shown starts with ``error (``:
    teamflow's one line for a refused command.
  - a fence with ``title="PATH"`` is that file: if a command before it wrote PATH, the file
    must contain the text verbatim; otherwise the text is written to PATH.
  - ``json`` and ``toml`` samples must parse.

  Other fences (``bash``, ``text``) are shown, not run; the page says why near each.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import attrs
import pytest
import yaml
from hostvenv import ROOT, Venv, make_venv

import teamflow
from teamflow import Host
from teamflow.config import HostConfig

pytestmark = pytest.mark.slow

DOCS = ROOT / "docs"
CORE = ROOT / "core" / "teamflow"
PAGES = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
KEEP = re.compile(r"([A-Z_][A-Z0-9_]*)=\$\((.+)\)")
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)(?P<attrs>[^\n]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)


# -- error codes ----------------------------------------------------------------------------


def host_error_codes() -> set[str]:
    """Every ``error`` code the host can report, found in its source:

    - the ``code`` of each error class (``TeamflowError``'s subclasses, the API's request body error);
    - each ``"error": "..."`` the HTTP API writes itself (unknown route, method, a bug);
    - the code Litestar's own refusals get from their status (``_code``): the statuses the
      API raises as ``HTTPException`` and 413 past ``request_max_body_size``;
    - the codes the CLI prints itself in its ``error (code): ...`` line.
    """
    from teamflow.api.app import _code

    codes: set[str] = set()
    for path in CORE.rglob("*.py"):
        text = path.read_text()
        codes |= set(re.findall(r'^\s+code = "([a-z_]+)"', text, re.M))
        codes |= set(re.findall(r'"error": "([a-z_]+)"', text))
        codes |= {_code(int(s)) for s in re.findall(r"HTTPException\(\s*status_code=(\d+)", text)}
        if "request_max_body_size=" in text:
            codes.add(_code(413))
    codes |= set(re.findall(r'f?" \(([a-z_]+)\): ', (CORE / "cli.py").read_text()))
    return codes


CODES = sorted(host_error_codes())


def _nav_pages() -> set[str]:
    def walk(node: object) -> Iterator[str]:
        if isinstance(node, str):
            yield node
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)
        elif isinstance(node, dict):
            for item in node.values():
                yield from walk(item)

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    return set(walk(config["nav"]))


def test_the_codes_found_include_the_known_kinds() -> None:
    # each way of finding codes finds something, so a broken pattern cannot pass unseen
    assert {"context_invalid", "token_exists", "invalid_request", "method_not_allowed"} <= set(CODES)
    assert {"unsupported_media_type", "request_entity_too_large", "insecure", "namespace_taken"} <= set(CODES)


@pytest.mark.parametrize("code", CODES)
def test_every_error_code_has_its_page(code: str) -> None:
    page = DOCS / "errors" / f"{code}.md"
    assert page.is_file(), f"error code {code!r} has no page: write docs/errors/{code}.md (cause and fix)"
    text = page.read_text()
    assert text.startswith(f"# `{code}`\n"), f"{page} must start with '# `{code}`'"
    for section in ("## Cause", "## Fix"):
        assert section in text, f"{page} has no '{section}' section"
    assert f"errors/{code}.md" in _nav_pages(), f"add errors/{code}.md to the nav in mkdocs.yml"
    assert f"({code}.md)" in (DOCS / "errors" / "index.md").read_text(), f"list {code} in docs/errors/index.md"


def test_no_error_page_is_left_for_a_code_that_is_gone() -> None:
    pages = {p.stem for p in (DOCS / "errors").glob("*.md")} - {"index"}
    assert pages - set(CODES) == set(), "these pages document codes the host no longer reports"


# -- names, keys, routes ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(teamflow.__all__))
def test_every_public_name_is_in_the_python_reference(name: str) -> None:
    text = (DOCS / "reference" / "python.md").read_text()
    assert re.search(rf"^::: teamflow(\.\w+)*\.{name}$", text, re.M), f"add '::: teamflow.{name}' to the Python API page"


@pytest.mark.parametrize("key", sorted(f.name for f in attrs.fields(HostConfig) if f.name != "source"))
def test_every_configuration_key_is_documented(key: str) -> None:
    text = (DOCS / "reference" / "configuration.md").read_text()
    assert f"| `{key}` |" in text, f"add a row for `{key}` to docs/reference/configuration.md"


def _routes(database: Path) -> list[str]:
    from teamflow.api.app import create_app

    with Host(database_url=f"sqlite:///{database}", discover=False) as host:
        paths = create_app(host).openapi_schema.paths or {}
        return sorted(
            f"{method.upper()} {path}"
            for path, item in paths.items()
            for method in ("get", "post", "put", "patch", "delete")
            if getattr(item, method, None) is not None
        )


def _pages() -> list[str]:
    """The routes outside the OpenAPI document and the admin pages: ``GET /``, ``GET /api``."""
    from teamflow.api import pages

    return sorted(
        f"{method} {path}"
        for handler in pages.ROUTES
        for method in handler.http_methods
        for path in handler.paths
    )


def test_every_http_route_is_documented(tmp_path: Path) -> None:
    text = (DOCS / "reference" / "http.md").read_text()
    missing = [route for route in _routes(tmp_path / "t.db") + _pages() if f"`{route}`" not in text]
    assert missing == [], f"document these routes in docs/reference/http.md: {missing}"


# -- samples ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    page: str
    line: int
    lang: str
    title: str | None
    body: str

    def __str__(self) -> str:
        return f"docs/{self.page}:{self.line} ({self.lang or 'no language'})"


def samples(page: str) -> list[Sample]:
    text = (DOCS / page).read_text()
    found = []
    for match in FENCE.finditer(text):
        title = re.search(r'title="([^"]+)"', match["attrs"])
        body = "".join(line[len(match["indent"]):] + "\n" for line in match["body"].splitlines())
        line = text.count("\n", 0, match.start()) + 1
        found.append(Sample(page, line, match["lang"], title[1] if title else None, body))
    return found


RUNNABLE = [page for page in PAGES if samples(page)]


def test_the_pages_have_runnable_samples() -> None:
    assert {"first-plugin.md", "concepts.md", "reference/http.md", "access.md"} <= set(RUNNABLE)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    plugins = [str(ROOT / "plugins" / name) for name in ("payments", "customer_success", "inventory")]
    return make_venv(tmp_path_factory.mktemp("docs-venv") / "venv", *plugins)


def _expected(lines: list[str]) -> list[re.Pattern[str]]:
    def pattern(line: str) -> re.Pattern[str]:
        parts = [re.escape(" ".join(part.split())) for part in line.split("...")]
        return re.compile("^" + ".*".join(parts) + "$")

    return [pattern(line) for line in lines if line.strip()]


def _check_output(sample: Sample, command: str, shown: list[str], done: subprocess.CompletedProcess[str]) -> None:
    out = done.stdout  # standard error merged into it, in the order printed
    printed = [" ".join(line.split()) for line in out.splitlines()]
    expected_status = 2 if shown and shown[0].startswith("error (") else 0
    assert done.returncode == expected_status, (
        f"{sample}: `{command}` exited {done.returncode}, expected {expected_status}\n{out}"
    )
    at = 0
    for want in _expected(shown):
        while at < len(printed) and not want.match(printed[at]):
            at += 1
        assert at < len(printed), f"{sample}: `{command}` did not print {want.pattern!r} (in order)\n{out}"
        at += 1


def _commands(body: str) -> Iterator[tuple[str, list[str]]]:
    """(command, the lines shown after it) for each ``$ `` line of a console sample."""
    lines = body.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("$ "):
            raise AssertionError(f"console sample line {line!r} is neither a `$ ` command nor output of one")
        command = line[2:]
        while command.endswith("\\"):
            i += 1
            command = command[:-1] + lines[i]
        i += 1
        shown = []
        while i < len(lines) and not lines[i].startswith("$ "):
            shown.append(lines[i])
            i += 1
        yield command, shown


def _plugin_distributions(venv: Venv, cwd: Path) -> set[str]:
    code = "import importlib.metadata as m; print('\\n'.join(sorted({e.dist.name for e in m.entry_points(group='teamflow.plugins')})))"
    return set(venv.run([venv.python, "-c", code], cwd=cwd).stdout.split())


@pytest.mark.parametrize("page", RUNNABLE)
def test_every_sample_of_the_page_runs(page: str, venv: Venv, tmp_path: Path) -> None:
    cwd = tmp_path / "work"
    cwd.mkdir()
    # unbuffered, so that what a command prints on its two streams arrives in its order
    env = {"TEAMFLOW_DATABASE_URL": f"sqlite:///{cwd / 'teamflow.db'}", "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    installed = _plugin_distributions(venv, tmp_path)
    try:
        for sample in samples(page):
            if sample.title:
                target = cwd / sample.title
                if target.exists():
                    assert sample.body in target.read_text(), f"{sample}: {sample.title} does not hold this text"
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(sample.body)
            elif sample.lang == "python":
                # -c: the folder is on sys.path, as for a reader pasting it into `python`
                done = venv.run([venv.python, "-c", sample.body], cwd=cwd, env=env, expect=None, timeout=120, merged=True)
                assert done.returncode == 0, f"{sample} failed:\n{done.stdout}"
            elif sample.lang == "console":
                for command, shown in _commands(sample.body):
                    if command.startswith("cd "):
                        cwd = (cwd / shlex.split(command)[1]).resolve()
                        continue
                    if kept := KEEP.fullmatch(command):
                        done = venv.run(kept[2], cwd=cwd, env=env, expect=None, timeout=300)
                        _check_output(sample, kept[2], shown, done)
                        env[kept[1]] = done.stdout.strip()
                        continue
                    done = venv.run(command, cwd=cwd, env=env, expect=None, timeout=300, merged=True)
                    _check_output(sample, command, shown, done)
            elif sample.lang == "json":
                json.loads(sample.body)
            elif sample.lang == "toml":
                tomllib.loads(sample.body)
    finally:  # a page that installed a plugin leaves the venv as it found it
        for dist in sorted(_plugin_distributions(venv, tmp_path) - installed):
            venv.run([venv.python, "-m", "pip", "uninstall", "--yes", "--quiet", dist], cwd=tmp_path)
