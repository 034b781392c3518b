"""Real installed distributions of tiny team plugins, made on the fly for integration tests.

A :class:`Plugin` is a distribution's name, version and module sources. It becomes a
real distribution in one of two ways, both read by ``importlib.metadata`` exactly as an
installed package is:

- :func:`pip_install`: a wheel is written (a zip with the package, ``METADATA``,
  ``entry_points.txt``, ``WHEEL`` and a hashed ``RECORD``) and installed with
  ``python -m pip install --no-deps --no-index --target SITE``. No build backend runs:
  the venv has setuptools without ``wheel`` and no hatchling, and building a project
  is pip's and the backend's business, not the host's.
- :func:`write_installed`: the package and its ``.dist-info`` are written straight into
  the site directory, as an installer leaves them. Much faster; used for the bulk.

Each distribution goes into a site directory of its own, cached for the session by
content, so a test composes the plugins it needs as a ``PYTHONPATH`` of several sites.
"""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ENTRY_POINT_GROUP = "teamflow.plugins"


def normalize(name: str) -> str:
    """PEP 503 normalisation, as the host reports distribution names."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Plugin:
    """A team plugin distribution: ``modules`` maps a dotted module path to its source.

    ``entry_points`` maps entry point names to targets in the ``teamflow.plugins``
    group; by default one entry point named after the package's last word, pointing at
    ``<package>.plugin``.
    """

    distribution: str
    version: str
    modules: Mapping[str, str]
    entry_points: Mapping[str, str] = field(default_factory=dict)

    @property
    def package(self) -> str:
        return normalize(self.distribution).replace("-", "_")

    @property
    def dist_info(self) -> str:
        return f"{self.package}-{self.version}.dist-info"

    def files(self) -> dict[str, bytes]:
        """Every file the distribution installs, by path relative to the site directory."""
        out: dict[str, bytes] = {}
        for module, source in sorted(self.modules.items()):
            parts = module.split(".")
            for depth in range(1, len(parts)):
                out.setdefault("/".join(parts[:depth]) + "/__init__.py", b"")
            out["/".join(parts) + ".py"] = textwrap.dedent(source).encode()
        points = self.entry_points or {self.package.rsplit("_", 1)[-1]: f"{self.package}.plugin"}
        out[f"{self.dist_info}/METADATA"] = (
            f"Metadata-Version: 2.1\nName: {self.distribution}\nVersion: {self.version}\n"
            "Requires-Dist: teamflow<0.2,>=0.1\n"
        ).encode()
        out[f"{self.dist_info}/entry_points.txt"] = (
            f"[{ENTRY_POINT_GROUP}]\n" + "".join(f"{name} = {target}\n" for name, target in points.items())
        ).encode()
        return out

    def digest(self) -> str:
        h = hashlib.sha256()
        for path, data in sorted(self.files().items()):
            h.update(path.encode() + b"\0" + data + b"\0")
        return h.hexdigest()


def plugin(distribution: str, source: str, version: str = "1.0.0", **modules: str) -> Plugin:
    """A one-module plugin: ``source`` becomes ``<package>.plugin``, the entry point target."""
    package = normalize(distribution).replace("-", "_")
    extra = {f"{package}.{name}": text for name, text in modules.items()}
    return Plugin(distribution, version, {f"{package}.plugin": source, f"{package}.__init__": "", **extra})


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def write_wheel(spec: Plugin, directory: Path) -> Path:
    """Write ``spec`` as a pure-Python wheel into ``directory`` and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    files = spec.files()
    files[f"{spec.dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: distfactory\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = [_record_line(path, data) for path, data in files.items()] + [f"{spec.dist_info}/RECORD,,"]
    files[f"{spec.dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = directory / f"{spec.package}-{spec.version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


def pip_install(wheel: Path, site: Path) -> None:
    """Install ``wheel`` into ``site`` with pip, as a deployment would (minus dependencies)."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--no-compile",
         "--disable-pip-version-check", "--quiet", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pip could not install {wheel.name} into {site}:\n{done.stdout}{done.stderr}")


def write_installed(spec: Plugin, site: Path) -> None:
    """Write ``spec``'s files and ``.dist-info`` into ``site`` as an installer would."""
    files = spec.files()
    files[f"{spec.dist_info}/INSTALLER"] = b"distfactory\n"
    record = [_record_line(path, data) for path, data in files.items()] + [f"{spec.dist_info}/RECORD,,"]
    files[f"{spec.dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    for path, data in files.items():
        target = site / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


class DistFactory:
    """Installs each distinct plugin once per session, each into a site directory of its own."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._sites: dict[tuple[str, bool], Path] = {}

    def install(self, spec: Plugin, *, pip: bool = False) -> Path:
        """Return a site directory holding ``spec`` installed (by pip, or written directly)."""
        key = (spec.digest(), pip)
        site = self._sites.get(key)
        if site is None:
            site = self.root / f"{spec.package}-{spec.version}-{'pip' if pip else 'direct'}-{key[0][:10]}"
            if pip:
                pip_install(write_wheel(spec, self.root / "wheels" / key[0][:10]), site)
            else:
                write_installed(spec, site)
            self._sites[key] = site
        return site
