"""The ``teamflow`` command, run for real as a subprocess.

Every command runs as ``python -m teamflow.cli`` in a working directory of its own (no
``teamflow.toml`` unless a test writes one), on a SQLite database there, discovering the
three team plugins from the venv plus the test plugins (team-alpha, team-beta) that
``install_test_plugins`` turns into real distributions. One site directory and one
database serve the whole module (each subprocess costs about half a second); tests that
need a configuration of their own get their own directory and database.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import install_test_plugins

pytestmark = pytest.mark.slow

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
TEAM_DISTRIBUTIONS = {"teamflow-payments", "teamflow-customer-success", "teamflow-inventory"}
TEST_DISTRIBUTIONS = {"team-alpha", "team-beta"}
REFUND_2_1_STEPS = [
    "validate_payment_eligibility",
    "check_fraud_indicators",
    "process_gateway_refund",
    "update_payment_records",
    "notify_stakeholders",
]
TERMINAL = {"completed", "failed", "cancelled"}


@dataclass
class Teamflow:
    """The ``teamflow`` command in one working directory, with one database."""

    cwd: Path
    env: dict[str, str]

    def with_dir(self, cwd: Path, *, extra_path: Iterable[Path] = ()) -> Teamflow:
        """The same command in another directory, on that directory's own database."""
        cwd.mkdir(parents=True, exist_ok=True)
        env = dict(self.env, TEAMFLOW_DATABASE_URL=f"sqlite:///{cwd / 't.db'}")
        env["PYTHONPATH"] = os.pathsep.join([*map(str, extra_path), env["PYTHONPATH"]])
        return Teamflow(cwd, env)

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "teamflow.cli", *args]

    def run(
        self, *args: str, expect: int = 0, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.command(*args),
            cwd=self.cwd,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == expect, (
            f"teamflow {' '.join(args)} exited {done.returncode}, expected {expect}\n"
            f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        )
        assert "Traceback" not in done.stderr, done.stderr
        assert "Traceback" not in done.stdout, done.stdout
        return done

    def json(self, *args: str, expect: int = 0, env: dict[str, str] | None = None) -> Any:
        return json.loads(self.run(*args, "--json", expect=expect, env=env).stdout)

    def error(self, *args: str, code: str) -> str:
        """Run a command that must fail with teamflow error ``code``: exit 2, one line on stderr."""
        done = self.run(*args, expect=2)
        assert done.stdout == ""
        assert f"error ({code}):" in done.stderr, done.stderr
        return done.stderr

    def usage_error(self, *args: str) -> str:
        """Run a command that click must refuse as a usage error (exit 2, no traceback)."""
        done = self.run(*args, expect=2)
        assert "Usage:" in done.stderr and "Error:" in done.stderr, done.stderr
        return done.stderr

    # -- tasks --------------------------------------------------------------------------------

    def statuses(self) -> dict[str, str]:
        return {t["id"]: t["status"] for t in self.json("tasks", "--limit", "500")["tasks"]}

    def wait_for(self, ids: Iterable[str], timeout: float = 30.0) -> dict[str, str | None]:
        """Poll ``tasks`` until every task in ``ids`` ended; return their statuses."""
        ids = set(ids)
        deadline = time.monotonic() + timeout
        while True:
            current = self.statuses()
            found = {i: current.get(i) for i in ids}
            if all(s in TERMINAL for s in found.values()) or time.monotonic() > deadline:
                return found
            time.sleep(0.2)

    # -- workers --------------------------------------------------------------------------------

    def start_worker(
        self, log: Path, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with open(log, "wb") as errors:
            return subprocess.Popen(
                self.command("worker", *args),
                cwd=self.cwd,
                env={**self.env, **(env or {})},
                stdout=subprocess.DEVNULL,
                stderr=errors,
            )


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> tuple[int | None, float]:
    """SIGTERM a worker; return its exit status and how long it took to exit."""
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None, time.monotonic() - started
    return proc.returncode, time.monotonic() - started


@pytest.fixture(scope="module")
def tf(tmp_path_factory: pytest.TempPathFactory) -> Teamflow:
    root = tmp_path_factory.mktemp("cli")
    env = install_test_plugins(root / "site")
    env = {k: v for k, v in env.items() if not k.startswith("TEAMFLOW_")}
    cwd = root / "work"
    cwd.mkdir()
    env.update(
        TEAMFLOW_DATABASE_URL=f"sqlite:///{cwd / 't.db'}",
        TEAMFLOW_RETRY_BASE_S="0.05",
        TEAMFLOW_POLL_INTERVAL_S="0.1",
        COLUMNS="200",  # rich tables and trees are not cut for the assertions below
    )
    return Teamflow(cwd, env)


@pytest.fixture
def worker_log(tmp_path: Path) -> Path:
    return tmp_path / "worker.log"


# ------------------------------------------------------------------------------------------
# The registry: plugins, workflows, show, check
# ------------------------------------------------------------------------------------------


def test_plugins_lists_the_team_and_test_distributions(tf: Teamflow) -> None:
    report = tf.json("plugins")
    assert report["ok"] is True
    assert report["problems"] == 0
    assert report["refusals"] == [] and report["conflicts"] == [] and report["drift"] == []
    by_dist = {p["distribution"]: p for p in report["plugins"]}
    assert set(by_dist) == TEAM_DISTRIBUTIONS | TEST_DISTRIBUTIONS
    assert all(p["status"] == "loaded" for p in by_dist.values())
    assert by_dist["teamflow-payments"]["namespaces"] == ["payments"]
    assert "payments/process_refund@2.1.0" in by_dist["teamflow-payments"]["workflows"]
    assert by_dist["team-alpha"]["entry_point"] == "alpha = flows:alpha_plugin"


def test_workflows_lists_namespaces_and_versions(tf: Teamflow) -> None:
    data = tf.json("workflows")
    names = [n["name"] for n in data["namespaces"]]
    assert names == ["alpha", "beta", "customer_success", "inventory", "payments"]
    payments = next(n for n in data["namespaces"] if n["name"] == "payments")
    assert payments["owner_distribution"] == "teamflow-payments"
    assert payments["contact_email"] == "payments-team@growthcorp.example"
    refund = next(
        w for w in data["workflows"] if (w["namespace"], w["name"]) == ("payments", "process_refund")
    )
    assert [v["version"] for v in refund["versions"]] == ["2.1.0", "2.0.0"]
    assert refund["latest"] == "2.1.0"
    deprecated = {v["version"]: v["deprecated"] for v in refund["versions"]}
    assert deprecated["2.1.0"] is None and deprecated["2.0.0"]
    assert {(w["namespace"], w["name"]) for w in data["workflows"]} >= {
        ("customer_success", "process_refund"),
        ("inventory", "process_return"),
        ("alpha", "chain"),
        ("beta", "leaf"),
    }

    text = tf.run("workflows", "payments").stdout
    assert "payments: team payments <payments-team@growthcorp.example>, teamflow-payments" in text
    for name in ("process_refund", "process_payment", "handle_chargeback", "reconcile_transactions"):
        assert name in text
    assert "2.0.0 (deprecated)" in text
    assert "customer_success" not in text and "alpha" not in text

    message = tf.error("workflows", "nosuch", code="namespace_not_found")
    assert "nosuch" in message
    assert "alpha, beta, customer_success, inventory, payments" in message


def test_show_a_version_and_resolve_references(tf: Teamflow) -> None:
    detail = tf.json("show", "payments/process_refund@2.1.0")
    assert detail["reference"] == "payments/process_refund@2.1.0"
    assert detail["distribution"] == "teamflow-payments"
    assert detail["owner_team"] == "payments"
    assert detail["contact_email"] == "payments-team@growthcorp.example"
    assert detail["owner_distribution"] == "teamflow-payments"
    assert HEX64.match(detail["fingerprint"])
    assert detail["deprecated"] is None
    assert [s["name"] for s in detail["steps"]] == REFUND_2_1_STEPS
    depends = {s["name"]: s["depends_on"] for s in detail["steps"]}
    assert depends == {
        "validate_payment_eligibility": [],
        "check_fraud_indicators": ["validate_payment_eligibility"],
        "process_gateway_refund": ["check_fraud_indicators"],
        "update_payment_records": ["process_gateway_refund"],
        "notify_stakeholders": ["update_payment_records"],
    }
    assert all(s["handler"].startswith("teamflow_payments.") for s in detail["steps"])
    assert detail["context_schema"]["required"] == ["payment_id"]
    assert {
        "caller": "customer_success/process_refund@1.3.0",
        "step": "execute_payment_refund",
        "call": "payments/process_refund@2.1.0",
    } in detail["called_by"]

    # a bare reference skips the deprecated 2.0.0; so does a caret constraint
    bare = tf.json("show", "payments/process_refund")
    assert (bare["version"], bare["fingerprint"]) == ("2.1.0", detail["fingerprint"])
    text = tf.run("show", "payments/process_refund@^2.0").stdout
    assert text.startswith("payments/process_refund@2.1.0 ")
    assert "owner: team payments <payments-team@growthcorp.example>" in text
    assert "shipped by: teamflow-payments" in text
    assert f"fingerprint: {detail['fingerprint']}" in text
    assert "check_fraud_indicators" in text and "validate_payment_eligibility" in text
    assert "called by customer_success/process_refund@1.3.0 step execute_payment_refund" in text

    for bad in ("payments", "Payments/x"):
        message = tf.error("show", bad, code="invalid_reference")
        assert f"invalid workflow reference {bad!r}" in message
        assert "namespace/name[@version]" in message
    message = tf.error("show", "payments/process_refund@9.0.0", code="version_not_found")
    assert "versions that exist: 2.1.0, 2.0.0" in message


def test_check_passes_on_the_clean_set_and_names_the_fix_when_broken(tf: Teamflow, tmp_path: Path) -> None:
    text = tf.run("check").stdout
    assert "ok: 5 plugin(s), 5 namespace(s)" in text

    broken = tf.with_dir(tmp_path / "pinned")
    (broken.cwd / "teamflow.toml").write_text('[owner_pins]\npayments = "somebody-else"\n')
    done = broken.run("check", expect=1)
    assert "REFUSED" in done.stdout
    assert "teamflow-payments" in done.stdout and "somebody-else" in done.stdout
    assert "fix: install somebody-else, or change [owner_pins] payments" in done.stdout
    report = broken.json("check", expect=1)
    assert report["ok"] is False
    namespace_refusal = next(r for r in report["refusals"] if r["kind"] == "namespace_conflict")
    assert (namespace_refusal["distribution"], namespace_refusal["subject"]) == (
        "teamflow-payments",
        "payments",
    )
    assert namespace_refusal["fix"] == "install somebody-else, or change [owner_pins] payments"
    blocked = {r["subject"] for r in report["refusals"] if r["kind"] == "undeclared_namespace"}
    assert "payments/process_refund@2.1.0" in blocked


# ------------------------------------------------------------------------------------------
# Running tasks
# ------------------------------------------------------------------------------------------


def test_run_the_payments_refund(tf: Teamflow) -> None:
    task = tf.json("run", "payments/process_refund@2.1.0", "--context", '{"payment_id": "pay_123"}')
    assert UUID.match(task["id"])
    assert task["reference"] == "payments/process_refund@2.1.0"
    assert task["status"] == "completed"
    assert task["error_summary"] is None
    assert task["context"] == {"payment_id": "pay_123"}
    assert [s["name"] for s in task["steps"]] == REFUND_2_1_STEPS
    assert {(s["status"], s["attempts"]) for s in task["steps"]} == {("completed", 1)}
    assert task["steps"][0]["result"]["payment_id"] == "pay_123"


def test_run_the_cross_namespace_refund_shows_the_child(tf: Teamflow) -> None:
    done = tf.run("run", "customer_success/process_refund@1.3.0", "--context", '{"ticket_id": "cs_456"}')
    first = done.stdout.splitlines()[0]
    assert first.startswith("customer_success/process_refund@1.3.0 ") and first.endswith(" completed")
    parent_id = first.split()[1]
    assert UUID.match(parent_id)

    parent = tf.json("task", parent_id)
    assert parent["status"] == "completed" and parent["parent_id"] is None
    steps = {s["name"]: s for s in parent["steps"]}
    assert list(steps) == [
        "validate_refund_request",
        "check_refund_policy",
        "get_manager_approval",
        "execute_payment_refund",
        "update_customer_record",
    ]
    assert all(s["status"] == "completed" for s in steps.values())
    [child_id] = steps["execute_payment_refund"]["children"]
    assert all(s["children"] == [] for n, s in steps.items() if n != "execute_payment_refund")
    assert steps["execute_payment_refund"]["result"]["payments_task_id"] == child_id
    assert any(t["to_status"] == "completed" and t["step"] is None for t in parent["transitions"])

    child = tf.json("task", child_id)
    assert child["reference"] == "payments/process_refund@2.1.0"
    assert child["status"] == "completed"
    assert (child["parent_id"], child["parent_step"]) == (parent_id, "execute_payment_refund")
    assert child["context"]["cs_ticket_id"] == "cs_456"
    assert [s["name"] for s in child["steps"]] == REFUND_2_1_STEPS

    lines = tf.run("task", parent_id).stdout.splitlines()
    assert lines[0] == f"customer_success/process_refund@1.3.0 {parent_id} completed"

    def at(needle: str) -> tuple[int, int]:
        """(line number, column) of the first line containing ``needle``."""
        for number, line in enumerate(lines):
            if needle in line:
                return number, line.index(needle)
        raise AssertionError(f"{needle!r} not in\n" + "\n".join(lines))

    step_line, step_col = at("execute_payment_refund completed attempts=1")
    child_line, child_col = at(f"child payments/process_refund@2.1.0 {child_id} completed")
    grandchild_line, grandchild_col = at("notify_stakeholders completed attempts=1")
    last_line, last_col = at("update_customer_record completed attempts=1")
    assert step_line < child_line < grandchild_line < last_line
    assert step_col < child_col < grandchild_col  # the child hangs under its step, its steps under it
    assert last_col == step_col
    assert "result:" in "\n".join(lines)


def test_run_in_a_terminal_shows_progress_while_it_waits(tf: Teamflow) -> None:
    """On a terminal, ``run`` shows which steps are done and which are running until the task ends."""
    import pty
    import select

    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        tf.command("run", "alpha/slow", "--context", '{"sleep": 0.7}'),
        cwd=tf.cwd, env=tf.env, stdin=secondary, stdout=secondary, stderr=secondary,
    )
    os.close(secondary)
    chunks = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if select.select([primary], [], [], 0.5)[0]:
            try:
                data = os.read(primary, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(primary)
    assert proc.wait(10) == 0
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode(errors="replace"))
    assert "alpha/slow@1.0.0 0/2 steps done; running: one" in screen
    assert "alpha/slow@1.0.0 1/2 steps done; running: two" in screen
    assert "completed" in screen and "Traceback" not in screen


def test_run_with_context_from_a_file(tf: Teamflow) -> None:
    (tf.cwd / "refund.json").write_text(json.dumps({"payment_id": "pay_789", "amount": 12.5}))
    task = tf.json("run", "payments/process_refund", "--context", "@refund.json")
    assert task["version"] == "2.1.0" and task["status"] == "completed"
    assert task["context"] == {"payment_id": "pay_789", "amount": 12.5}
    assert task["steps"][0]["result"]["refund_amount"] == 12.5


def test_run_refuses_bad_context_as_a_usage_error(tf: Teamflow) -> None:
    assert "--context: not JSON" in tf.usage_error("run", "alpha/chain", "--context", "{bad")
    assert "must be a JSON object" in tf.usage_error("run", "alpha/chain", "--context", "[1, 2]")
    assert "missing.json" in tf.usage_error("run", "alpha/chain", "--context", "@missing.json")


def test_run_refuses_a_context_that_breaks_the_schema_and_stores_nothing(tf: Teamflow) -> None:
    message = tf.error("run", "alpha/schema", "--context", '{"amount": "x"}', code="context_invalid")
    assert "alpha/schema@1.0.0" in message and "amount" in message
    message = tf.error("run", "alpha/schema", "--context", "{}", code="context_invalid")
    assert "'amount' is a required property" in message
    assert tf.json("tasks", "--namespace", "alpha", "--name", "schema")["tasks"] == []


def test_async_run_is_drained_by_a_worker_that_stops_on_sigterm_and_logs_json(
    tf: Teamflow, worker_log: Path
) -> None:
    pending = tf.json("run", "alpha/diamond", "--async", "--context", '{"sleep": 0.1}')
    assert UUID.match(pending["id"]) and pending["status"] == "pending"
    flaky_id = tf.run("run", "alpha/flaky", "--async", "--context", '{"fail_times": 1}').stdout.strip()
    assert UUID.match(flaky_id)

    proc = tf.start_worker(worker_log, "--concurrency", "2", env={"TEAMFLOW_LOG_FORMAT": "json"})
    try:
        ended = tf.wait_for([pending["id"], flaky_id])
    finally:
        status, took = stop(proc)
    assert status == 0, worker_log.read_text()
    assert took < 5, f"the worker took {took:.1f}s to stop after SIGTERM"
    assert ended == {pending["id"]: "completed", flaky_id: "completed"}

    diamond = tf.json("task", pending["id"])
    assert {s["name"]: s["status"] for s in diamond["steps"]} == dict.fromkeys(
        ("top", "left", "right", "bottom"), "completed"
    )
    flaky = tf.json("task", flaky_id)
    assert {s["name"]: s["attempts"] for s in flaky["steps"]} == {"first": 1, "flaky": 2}

    # TEAMFLOW_LOG_FORMAT=json: one JSON object per line on stderr, task fields bound inside a task
    lines = [line for line in worker_log.read_text().splitlines() if line.strip()]
    assert lines
    records = [json.loads(line)["record"] for line in lines]
    assert any("worker" in r["message"] and "serving" in r["message"] for r in records)
    retrying = [
        r for r in records if r["level"]["name"] == "WARNING" and r["extra"].get("task_id") == flaky_id
    ]
    assert retrying, lines
    extra = retrying[0]["extra"]
    assert extra["step"] == "flaky"
    assert (extra["namespace"], extra["workflow"], extra["version"]) == ("alpha", "flaky", "1.0.0")
    assert "retrying" in retrying[0]["message"]


def test_idempotency_key(tf: Teamflow) -> None:
    request = ("run", "beta/chain", "--async", "--idempotency-key", "order-42", "--context", '{"n": 1}')
    first = tf.run(*request).stdout.strip()
    assert UUID.match(first)
    assert tf.run(*request).stdout.strip() == first
    message = tf.error(
        "run",
        "beta/chain",
        "--async",
        "--idempotency-key",
        "order-42",
        "--context",
        '{"n": 2}',
        code="idempotency_conflict",
    )
    assert "order-42" in message and first in message
    task = tf.json("task", first)
    assert (task["idempotency_key"], task["context"], task["status"]) == ("order-42", {"n": 1}, "pending")
    # one task stored for the three requests (no other test runs beta/chain)
    assert [t["id"] for t in tf.json("tasks", "--namespace", "beta", "--name", "chain")["tasks"]] == [first]


def test_tasks_filters_and_pagination(tf: Teamflow) -> None:
    ids = {tf.run("run", "alpha/chain", "--async").stdout.strip() for _ in range(3)}

    everything = tf.json("tasks", "--limit", "500")
    assert everything["next_cursor"] is None
    all_ids = [t["id"] for t in everything["tasks"]]
    assert len(all_ids) == len(set(all_ids)) and ids <= set(all_ids)
    created_at = [t["created_at"] for t in everything["tasks"]]
    assert created_at == sorted(created_at, reverse=True)  # newest first

    payments = tf.json("tasks", "--namespace", "payments")["tasks"]
    assert payments and {t["namespace"] for t in payments} == {"payments"}
    completed = tf.json("tasks", "--status", "completed")["tasks"]
    assert completed and {t["status"] for t in completed} == {"completed"}
    pending = tf.json("tasks", "--namespace", "alpha", "--status", "pending")["tasks"]
    assert {t["status"] for t in pending} == {"pending"} and ids <= {t["id"] for t in pending}

    # pages of two over the pending alpha tasks visit each exactly once, in order
    expected = [t["id"] for t in pending]
    seen: list[str] = []
    args = ["tasks", "--namespace", "alpha", "--status", "pending", "--limit", "2"]
    page = tf.json(*args)
    human = tf.run(*args).stdout
    assert f"more: --cursor {page['next_cursor']}" in human
    while True:
        assert len(page["tasks"]) <= 2
        seen += [t["id"] for t in page["tasks"]]
        if page["next_cursor"] is None:
            break
        page = tf.json(*args, "--cursor", page["next_cursor"])
    assert seen == expected

    # only the message is checked: the code (task_not_found) does not fit a malformed cursor
    assert "invalid cursor 'garbage'" in tf.run("tasks", "--cursor", "garbage", expect=2).stderr


# ------------------------------------------------------------------------------------------
# Operators: cancel, retry, resolve
# ------------------------------------------------------------------------------------------


def test_cancel_a_pending_task(tf: Teamflow) -> None:
    task_id = tf.run("run", "alpha/slow", "--async").stdout.strip()
    assert tf.run("cancel", task_id).stdout.strip() == f"{task_id} cancelled"
    task = tf.json("task", task_id)
    assert task["status"] == "cancelled"
    assert {s["status"] for s in task["steps"]} == {"cancelled"}
    message = tf.error("cancel", task_id, code="invalid_task_state")
    assert "already cancelled" in message
    tf.error("cancel", "no-such-task", code="task_not_found")


def test_retry_and_resolve_then_a_worker_finishes(tf: Teamflow, tmp_path: Path, worker_log: Path) -> None:
    gate = tmp_path / "gate"
    gated = tf.json("run", "alpha/gated", "--context", json.dumps({"gate": str(gate)}), expect=1)
    assert gated["status"] == "failed"
    assert "gate" in gated["error_summary"] and "closed" in gated["error_summary"]
    assert {s["name"]: s["status"] for s in gated["steps"]} == {
        "first": "completed",
        "gate": "failed",
        "after": "cancelled",
    }
    gate.touch()
    reopened = tf.run("retry", gated["id"]).stdout
    assert f"re-opened gate, after of task {gated['id']}" in reopened
    assert "worker" in reopened
    assert "only failed tasks" in tf.error("retry", gated["id"], code="invalid_task_state")

    permanent = tf.json("run", "alpha/permanent", expect=1)
    assert permanent["status"] == "failed"
    assert "card declined" in permanent["error_summary"]
    resolved = tf.run(
        "resolve", permanent["id"], "charge", "--result", '{"manual": true}', "--by", "ops"
    ).stdout
    assert f"step charge of {permanent['id']} resolved" in resolved
    marked = tf.json("task", permanent["id"])
    steps = {s["name"]: s for s in marked["steps"]}
    assert (steps["charge"]["status"], steps["charge"]["resolved_by"]) == ("resolved", "ops")
    assert steps["charge"]["result"] == {"manual": True}
    assert steps["after"]["status"] == "pending"  # resolve only marks: a worker runs the successor
    assert "--result: not JSON" in tf.usage_error("resolve", permanent["id"], "after", "--result", "{oops")

    proc = tf.start_worker(worker_log, "--concurrency", "2")
    try:
        ended = tf.wait_for([gated["id"], permanent["id"]])
    finally:
        status, _ = stop(proc)
    assert status == 0, worker_log.read_text()
    assert ended == {gated["id"]: "completed", permanent["id"]: "completed"}

    retried = tf.json("task", gated["id"])
    assert {s["name"]: (s["status"], s["attempts"]) for s in retried["steps"]} == {
        "first": ("completed", 1),
        "gate": ("completed", 1),  # attempts reset by retry ...
        "after": ("completed", 1),
    }
    gate_history = [t["to_status"] for t in retried["transitions"] if t["step"] == "gate"]
    assert "failed" in gate_history and gate_history[-1] == "completed"  # ... history kept

    finished = tf.json("task", permanent["id"])
    steps = {s["name"]: s for s in finished["steps"]}
    assert finished["status"] == "completed"
    assert (steps["charge"]["status"], steps["charge"]["resolved_by"]) == ("resolved", "ops")
    assert (steps["after"]["status"], steps["after"]["attempts"]) == ("completed", 1)
    assert any(t["actor"] == "ops" for t in finished["transitions"] if t["step"] == "charge")
    text = tf.run("task", permanent["id"]).stdout
    assert "charge resolved" in text and "resolved by ops" in text
    assert "after completed attempts=1" in text


# ------------------------------------------------------------------------------------------
# Schema and approvals
# ------------------------------------------------------------------------------------------


def test_db_upgrade_is_idempotent(tf: Teamflow, tmp_path: Path) -> None:
    fresh = {"TEAMFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}"}
    first = tf.run("db", "upgrade", env=fresh).stdout
    match = re.match(r"schema at version (\d+) \(applied .+\)$", first.strip())
    assert match, first
    again = tf.run("db", "upgrade", env=fresh).stdout.strip()
    assert again == f"schema at version {match.group(1)} (current)"


SHARED_PLUGIN = """
from teamflow import Step, StepContext, Workflow, hookimpl


def notify(ctx: StepContext) -> dict:
    return {"notified": ctx.context.get("who", "everyone")}


@hookimpl
def teamflow_workflows() -> list:
    return [Workflow("shared", "notify", "1.0.0", [Step("send", notify)])]
"""

SHARED_CONFIG = """
[namespaces.shared]
owner_team = "platform"
contact_email = "platform@growthcorp.example"
requires_approval = true
approvers = ["sarah@growthcorp.example"]
contributors = ["team-shared"]
"""


def _shared_site(tmp_path: Path) -> Path:
    """A folder for PYTHONPATH holding the installed-looking distribution team-shared."""
    site = tmp_path / "shared-site"
    info = site / "team_shared-1.0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: team-shared\nVersion: 1.0.0\n")
    (info / "entry_points.txt").write_text("[teamflow.plugins]\nshared = cli_shared_flows\n")
    (info / "RECORD").write_text("")
    (site / "cli_shared_flows.py").write_text(SHARED_PLUGIN)
    return site


def test_approval_gates_a_namespace_that_requires_it(tf: Teamflow, tmp_path: Path) -> None:
    site = _shared_site(tmp_path)
    platform = tf.with_dir(tmp_path / "platform", extra_path=[site])
    (platform.cwd / "teamflow.toml").write_text(SHARED_CONFIG)

    waiting = platform.run("check").stdout
    assert "waiting for approval: shared/notify@1.0.0" in waiting and "teamflow approve" in waiting
    strict = platform.run("check", env={"TEAMFLOW_STRICT": "true"}, expect=1)
    assert "WAITING FOR APPROVAL" in strict.stdout
    assert '"status": "waiting"' in platform.run("show", "shared/notify@1.0.0", "--json").stdout

    message = platform.error("run", "shared/notify@1.0.0", code="not_approved")
    assert "requires approval" in message and "sarah@growthcorp.example" in message
    assert "teamflow approve shared/notify@1.0.0 --approver" in message

    message = platform.error(
        "approve", "shared/notify@1.0.0", "--approver", "mallory@example.test", code="not_approved"
    )
    assert "mallory@example.test is not an approver" in message and "sarah@growthcorp.example" in message

    approved = platform.run("approve", "shared/notify@1.0.0", "--approver", "sarah@growthcorp.example").stdout
    assert approved.startswith("approved shared/notify@1.0.0 fingerprint ")
    assert "by sarah@growthcorp.example (via cli:" in approved
    shown = platform.run("show", "shared/notify@1.0.0").stdout
    assert "sarah@growthcorp.example approved the current fingerprint" in shown and "via cli:" in shown

    task = platform.json("run", "shared/notify@1.0.0", "--context", '{"who": "ops"}')
    assert task["status"] == "completed"
    assert task["steps"][0]["result"] == {"notified": "ops"}
    assert [t["id"] for t in platform.json("tasks")["tasks"]] == [
        task["id"]
    ]  # the refused run stored nothing


def test_run_of_a_version_nobody_serves_says_so_within_5_s(tf: Teamflow, tmp_path: Path) -> None:
    """Another host published shared/notify@1.0.0 (it has the plugin); here nobody runs it:
    ``run`` stores the task, says why and exits 1 within 5 s instead of waiting forever."""
    site = _shared_site(tmp_path)
    publisher = tf.with_dir(tmp_path / "here", extra_path=[site])
    (publisher.cwd / "teamflow.toml").write_text(SHARED_CONFIG.replace("requires_approval = true", ""))
    publisher.run("workflows")  # publishes shared/notify@1.0.0 to the database
    elsewhere = tmp_path / "elsewhere"  # no teamflow.toml, no plugin of the namespace: the same database
    elsewhere.mkdir()
    here = Teamflow(elsewhere, dict(publisher.env, PYTHONPATH=tf.env["PYTHONPATH"]))
    started = time.monotonic()
    done = here.run("run", "shared/notify@1.0.0", expect=1)
    assert time.monotonic() - started < 5 + 3, "said so within 5 s (plus the CLI's start-up)"
    assert "no_worker" in done.stderr and "teamflow worker --namespace shared" in done.stderr, done.stderr
    [task] = here.json("tasks")["tasks"]
    detail = here.json("task", task["id"])
    assert [s["status"] for s in detail["steps"]] == ["pending"]  # stored, left for a worker

    waited = here.run("run", "shared/notify@1.0.0", "--timeout", "0.5", expect=1)
    assert "after 0.5 s; the workers go on: `teamflow task " in waited.stderr, waited.stderr


def test_task_ids_are_never_cut_at_80_columns(tf: Teamflow) -> None:
    """An id printed by `teamflow tasks` is one `teamflow task ID` takes, at 80 columns and piped."""
    task_id = tf.run("run", "payments/process_refund@2.1.0", "--context", '{"payment_id": "pay_80"}', "--async").stdout.strip()
    for env in ({"COLUMNS": "80"}, {"COLUMNS": "60"}):
        listing = tf.run("tasks", env=env).stdout
        assert task_id in listing, listing
    assert tf.json("task", task_id)["id"] == task_id
