"""Property-based tests of the live API from its own OpenAPI document (schemathesis).

Every check except ``positive_data_acceptance`` runs: a request can match the schema and
still be refused for business reasons the schema cannot carry (the workflow version's
context schema, the version constraint grammar, which namespaces are installed), and
those refusals are 4xx answers in the documented error shape, which the other checks
verify. No answer may be a 500, and every answer must match the document.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from api_support import JSON, PAYMENTS_REFUND, live_server

IN_CI = os.environ.get("CI", "").lower() == "true"
MAX_EXAMPLES = 25


def _schemathesis() -> list[str]:
    script = Path(sys.executable).with_name("st")
    if script.exists():
        return [str(script)]
    if shutil.which("st"):
        return ["st"]
    problem = "schemathesis is not installed (pip install schemathesis)"
    if IN_CI:
        pytest.fail(problem)
    pytest.skip(problem)


@pytest.mark.slow
def test_api_conforms_to_its_openapi_document(tmp_path: Path) -> None:
    command = _schemathesis()
    with live_server(tmp_path / "serve") as live, live.client() as client:
        # Some history, so the listing routes return rows and not only empty pages.
        assert client.post("/workflows/execute", content=PAYMENTS_REFUND, headers=JSON).status_code == 202
        # fmt: off
        run = subprocess.run(
            [
                *command, "run", f"{live.url}/openapi.json",
                "--checks", "all",
                "--exclude-checks", "positive_data_acceptance",
                "--max-examples", str(MAX_EXAMPLES),
                "--workers", "1",
                "--request-timeout", "20",
                "--generation-database", "none",
                "--no-color",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=170,
        )
        # fmt: on
        report = run.stdout[-6000:] + run.stderr[-2000:]
        assert run.returncode == 0, (
            f"schemathesis found problems:\n{report}\nserver log:\n{live.output()[-4000:]}"
        )
        operations = sum(len(item) for item in client.get("/openapi.json").json()["paths"].values())
        assert "API Operations:" in run.stdout and f"Tested: {operations}" in run.stdout, report
        assert "ERROR" not in live.output(), live.output()
