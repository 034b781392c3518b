"""``teamflow new-plugin``: a new team plugin distribution, written from templates.

The distribution it writes installs with pip and passes its own tests unchanged: a
``pyproject.toml`` (hatchling, the ``teamflow.plugins`` entry point, a compatible range of
the installed teamflow), a package with the two registration hooks and the handlers of
one example workflow (two steps and a context schema), a test on teamflow's pytest plugin
(``teamflow.testing``) and a README. The templates are ``teamflow/plugin_template/*.jinja``.

What it refuses, each with a :class:`teamflow.errors.TeamflowError` whose ``code`` the
documentation explains: a NAME that is not a distribution name or whose package would not
be importable (``invalid_plugin_option``, like a namespace that is not a name, a blank team
or a contact that is not an e-mail address), a NAME that is installed already
(``distribution_taken``), a namespace another distribution owns (``namespace_taken``: the
caller says who owns what, e.g. ``Host.namespace_owner``), and a folder that is not empty
(``target_exists``).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import attrs
import importlib_metadata
from jinja2 import Environment, PackageLoader, StrictUndefined

from teamflow.config import normalize_distribution
from teamflow.errors import TeamflowError
from teamflow.refs import MAX_NAME, valid_name
from teamflow.registry import CONFIG_OWNER

# PEP 508's distribution name
_DISTRIBUTION = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

# Output path (``{package}`` stands for the package's name) -> template.
FILES = {
    "pyproject.toml": "pyproject.toml.jinja",
    "README.md": "README.md.jinja",
    "{package}/__init__.py": "__init__.py.jinja",
    "{package}/plugin.py": "plugin.py.jinja",
    "{package}/handlers.py": "handlers.py.jinja",
    "tests/test_{package}.py": "test_plugin.py.jinja",
}

EXAMPLE_WORKFLOW = "example"
EXAMPLE_VERSION = "1.0.0"
PLUGIN_VERSION = "0.1.0"


class InvalidPluginOption(TeamflowError):
    """``new-plugin`` was given a NAME, namespace, team or contact it cannot use."""

    code = "invalid_plugin_option"


class DistributionTaken(TeamflowError):
    """A distribution of that NAME is installed: installing the new one would replace it."""

    code = "distribution_taken"
    status = 409


class NamespaceTaken(TeamflowError):
    """Another distribution owns the namespace (installed here, pinned, or recorded in the store)."""

    code = "namespace_taken"
    status = 409


class TargetExists(TeamflowError):
    """The folder to write into exists and is not empty."""

    code = "target_exists"
    status = 409


@attrs.frozen
class PluginSpec:
    """What a new plugin is: its distribution, its namespace and who owns it."""

    distribution: str  # as given: "teamflow-billing"
    namespace: str
    owner_team: str
    contact: str
    host_requirement: str  # "teamflow>=0.1,<0.2"

    @property
    def package(self) -> str:
        """The import package: the normalised distribution name with underscores."""
        return normalize_distribution(self.distribution).replace("-", "_")

    @property
    def example(self) -> str:
        """The example workflow's reference."""
        return f"{self.namespace}/{EXAMPLE_WORKFLOW}@{EXAMPLE_VERSION}"


def compatible_range(version: str) -> str:
    """The requirement on teamflow for a plugin written against ``version``: the same minor
    release series before 1.0 (``0.1.0`` -> ``teamflow>=0.1,<0.2``), the same major after
    (``1.4.2`` -> ``teamflow>=1.4,<2``); a pre-release is itself the lower bound."""
    public = version.split("+", 1)[0]  # a local version has no place in a requirement
    match = re.match(r"^(\d+)\.(\d+)", public)
    if match is None:
        raise InvalidPluginOption(f"the installed teamflow's version {version!r} is not a release version")
    major, minor = int(match[1]), int(match[2])
    lower = f"{major}.{minor}" if re.fullmatch(r"\d+(\.\d+)*", public) else public
    upper = f"0.{minor + 1}" if major == 0 else f"{major + 1}"
    return f"teamflow>={lower},<{upper}"


def plugin_spec(
    name: str, namespace: str, owner_team: str, contact: str, *, host_version: str | None = None
) -> PluginSpec:
    """Check what ``new-plugin`` was given (nothing is looked up yet) and return the spec.

    :param host_version: the teamflow version the plugin is written against; default the
        installed one.
    """
    if not _DISTRIBUTION.fullmatch(name):
        raise InvalidPluginOption(
            f"{name!r} is not a distribution name: use letters, digits, '-', '_' and '.', starting and "
            "ending with a letter or digit, e.g. teamflow-billing",
            option="NAME",
            value=name,
        )
    package = normalize_distribution(name).replace("-", "_")
    if package == "teamflow":
        raise InvalidPluginOption(
            "teamflow is the host's own distribution: name the plugin after its team, e.g. teamflow-billing",
            option="NAME",
            value=name,
        )
    if not package.isidentifier() or package in sys.stdlib_module_names:
        why = "is not a Python identifier" if not package.isidentifier() else "would hide the standard library's"
        raise InvalidPluginOption(
            f"NAME {name!r} makes the package {package!r}, which {why}: start the name with a letter and "
            "prefix it, e.g. teamflow-billing",
            option="NAME",
            value=name,
        )
    if not valid_name(namespace):
        raise InvalidPluginOption(
            f"{namespace!r} is not a namespace name: write [a-z][a-z0-9_]* (at most {MAX_NAME} characters), "
            "e.g. billing",
            option="--namespace",
            value=namespace,
        )
    if not owner_team.strip() or not owner_team.isprintable():
        raise InvalidPluginOption(
            f"--owner-team {owner_team!r} is not a team name: give the owning team's name on one line, e.g. billing",
            option="--owner-team",
            value=owner_team,
        )
    if not _EMAIL.fullmatch(contact):
        raise InvalidPluginOption(
            f"--contact {contact!r} is not an e-mail address: give the address other teams write to, "
            "e.g. billing-team@example.com",
            option="--contact",
            value=contact,
        )
    version = host_version or importlib_metadata.version("teamflow")
    return PluginSpec(name, namespace, owner_team.strip(), contact, compatible_range(version))


def render(spec: PluginSpec) -> dict[str, str]:
    """Every file of the distribution: path relative to its folder -> text."""
    env = Environment(
        loader=PackageLoader("teamflow", "plugin_template"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # Python, TOML and Markdown: each value is quoted by the py or toml filter
    )
    # a JSON string is also a Python string literal and a TOML basic string, in double quotes
    env.filters["py"] = env.filters["toml"] = lambda value: json.dumps(value, ensure_ascii=False)
    values = {
        "distribution": spec.distribution,
        "package": spec.package,
        "namespace": spec.namespace,
        "owner_team": spec.owner_team,
        "contact": spec.contact,
        "host_requirement": spec.host_requirement,
        "version": PLUGIN_VERSION,
        "workflow": EXAMPLE_WORKFLOW,
        "workflow_version": EXAMPLE_VERSION,
        "example": spec.example,
    }
    return {
        path.format(package=spec.package): env.get_template(template).render(values)
        for path, template in FILES.items()
    }


def new_plugin(spec: PluginSpec, directory: Path, owner_of: Callable[[str], str | None]) -> list[Path]:
    """Write the distribution into ``directory`` (created; it must be absent or empty) and
    return the files written.

    :param owner_of: the distribution owning a namespace, or None when it is free
        (``Host.namespace_owner``: installed plugins, owner pins and the store's records).
    """
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise TargetExists(
            f"{directory} already exists and is not an empty folder: pass --dir with a new or empty folder",
            path=str(directory),
        )
    try:
        installed = importlib_metadata.distribution(spec.distribution)
    except importlib_metadata.PackageNotFoundError:
        pass
    else:
        raise DistributionTaken(
            f"a distribution named {normalize_distribution(installed.name)} {installed.version} is installed "
            "already, and installing the new plugin would replace it: choose another NAME",
            distribution=normalize_distribution(installed.name),
        )
    owner = owner_of(spec.namespace)
    if owner is not None and owner != normalize_distribution(spec.distribution):
        whose = "the host configuration (teamflow.toml)" if owner == CONFIG_OWNER else owner
        raise NamespaceTaken(
            f"namespace {spec.namespace!r} is owned by {whose}, and teamflow would refuse a second owner: "
            f"choose another --namespace, or ask its owner to ship your workflows",
            namespace=spec.namespace,
            owner=owner,
        )
    files = render(spec)
    written = []
    for relative, text in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
