"""A fresh virtual environment holding the host checkout, as a plugin author's would.

``python -m venv`` plus ``pip install`` of the checkout (built by its own backend, not
editable), so what is tested is what pip installs: the package data (the new-plugin
templates) included. Installs are slow on this machine: a test module makes one venv and
shares it (a ``scope="module"`` fixture).

Every command runs with the venv's ``bin`` first on ``PATH``, no ``PYTHONPATH`` unless a
call gives one, and no ``TEAMFLOW_*`` variable but the ones a call gives.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Venv:
    path: Path

    @property
    def bin(self) -> Path:
        return self.path / "bin"

    @property
    def python(self) -> str:
        return str(self.bin / "python")

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        keep = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("TEAMFLOW_") and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
        }
        return {**keep, "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}", **(extra or {})}

    def run(
        self,
        args: Sequence[str] | str,
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        expect: int | None = 0,
        timeout: float = 600,
        merged: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``args`` (a list, or one shell command line) and check its exit status;
        ``merged``: standard error into standard output, as a terminal shows them."""
        done = subprocess.run(
            args,
            shell=isinstance(args, str),
            cwd=cwd,
            env=self.env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merged else subprocess.PIPE,
            text=True,
            timeout=timeout,
        )
        shown = args if isinstance(args, str) else " ".join(args)
        if expect is not None:
            assert done.returncode == expect, (
                f"{shown} exited {done.returncode}, expected {expect}\n"
                f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr or ''}"
            )
        return done

    def pip(self, *args: str, cwd: Path = ROOT) -> None:
        self.run([self.python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args], cwd=cwd)


def make_venv(path: Path, *requirements: str) -> Venv:
    """A new venv at ``path`` with the host checkout and ``requirements`` installed."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, capture_output=True)
    venv = Venv(path)
    venv.pip(str(ROOT), "pytest", *requirements)
    return venv
