"""Discovery and conflict settling with real installed distributions, end to end.

Each test installs tiny team plugins (see ``distfactory``) into site directories of their
own, then runs the real ``teamflow`` command as a subprocess with those sites on
``PYTHONPATH``, in a fresh working directory with its own SQLite database and
``teamflow.toml``. The three team plugins installed in the dev venv are discovered too,
as they would be on a real host: the tests use ``teamflow-payments`` and
``teamflow-inventory`` as the owners that newcomers collide with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from distfactory import DistFactory, Plugin, plugin

pytestmark = pytest.mark.slow

TEAM_NAMESPACES = {"payments", "customer_success", "inventory"}

# ------------------------------------------------------------------------------------------
# The plugins under test: each is the source of one ``<package>.plugin`` module
# ------------------------------------------------------------------------------------------

ANALYTICS = plugin("teamflow-analytics", '''
    from teamflow import NamespacePolicy, Step, Workflow, hookimpl


    def extract(ctx):
        return {"rows": 3}


    def publish(ctx):
        return {"published": ctx.results["extract"]["rows"]}


    @hookimpl
    def teamflow_namespaces():
        return [NamespacePolicy("analytics", owner_team="analytics", contact_email="data@growthcorp.example")]


    @hookimpl
    def teamflow_workflows():
        return [
            Workflow("analytics", "daily_rollup", "1.0.0", description="Roll up yesterday's events", steps=[
                Step("extract", extract),
                Step("publish", publish, depends_on="extract", retry_limit=1),
            ]),
        ]
''')

_ROGUE = '''
    from teamflow import NamespacePolicy, Resolution, Step, Workflow, hookimpl


    def refund(ctx):
        return {"refunded_to": "the rogue"}


    @hookimpl
    def teamflow_namespaces():
        return [NamespacePolicy("payments", owner_team="payments", contact_email="rogue@growthcorp.example")]


    @hookimpl
    def teamflow_workflows():
        return [Workflow("payments", "process_refund", "2.1.0", steps=[Step("refund", refund)])]
'''

# Same distribution, plus a resolver that awards itself every conflict it is in.
ROGUE = plugin("teamflow-rogue", _ROGUE)
ROGUE_WITH_RESOLVER = plugin("teamflow-rogue", _ROGUE + '''

    @hookimpl
    def teamflow_resolve_conflict(conflict):
        for candidate in conflict.candidates:
            if candidate.distribution == "teamflow-rogue":
                return Resolution(candidate, "the rogue says it is the owner")
        return None
''')

# The platform team's resolver: payments for namespace conflicts; for workflow conflicts
# it answers with a distribution that is no candidate, which the host must ignore.
PLATFORM = plugin("teamflow-platform", '''
    from teamflow import Candidate, Resolution, hookimpl


    @hookimpl
    def teamflow_resolve_conflict(conflict):
        if conflict.kind == "namespace":
            for candidate in conflict.candidates:
                if candidate.distribution == "teamflow-payments":
                    return Resolution(candidate, "platform ruling: the payments team owns payments")
            return None
        return Resolution(Candidate("teamflow-nobody", "9.9.9", conflict.key), "made up")
''')

INTRUDER = plugin("teamflow-intruder", '''
    from teamflow import Step, Workflow, hookimpl


    def restock(ctx):
        return {}


    @hookimpl
    def teamflow_workflows():
        return [
            Workflow("inventory", "restock_shelf", "1.0.0", steps=[Step("restock", restock)]),
            Workflow("warehouse", "restock_shelf", "1.0.0", steps=[Step("restock", restock)]),
        ]
''')

BROKEN = plugin("teamflow-broken", '''
    from teamflow import hookimpl

    WAREHOUSE = "analytics warehouse unreachable"
    raise RuntimeError(WAREHOUSE)


    @hookimpl
    def teamflow_workflows():
        return []
''')
BROKEN_LINE = 5  # the ``raise`` above, counted in the dedented module

SLOPPY = plugin("teamflow-sloppy", '''
    from teamflow import NamespacePolicy, Step, Workflow, hookimpl


    def work(ctx):
        return {}


    @hookimpl
    def teamflow_namespaces():
        return [NamespacePolicy("sloppy", owner_team="sloppy", contact_email="sloppy@growthcorp.example")]


    @hookimpl
    def teamflow_workflows():
        return [
            Workflow("sloppy", "sound", "1.0.0", steps=[Step("work", work)]),
            Workflow("sloppy", "short_version", "2.1", steps=[Step("work", work)]),
            Workflow("sloppy", "cyclic", "1.0.0", steps=[
                Step("first", work, depends_on="second"),
                Step("second", work, depends_on="first"),
            ]),
            Workflow("sloppy", "dangling", "1.0.0", steps=[
                Step("start", work),
                Step("finish", work, depends_on=["start", "missing"]),
            ]),
            Workflow("sloppy", "anonymous", "1.0.0", steps=[
                Step("start", work),
                Step("compute", lambda ctx: {}, depends_on="start"),
            ]),
        ]
''')

HELPERS = plugin("teamflow-helpers", '''
    from teamflow import Step, Workflow, hookimpl


    def format_money(ctx):
        return {"text": f"{ctx.context['amount']:.2f}"}


    @hookimpl
    def teamflow_workflows():
        return [Workflow("shared", "format_money", "1.0.0", steps=[Step("format", format_money)])]
''')

OUTSIDER = plugin("teamflow-outsider", '''
    from teamflow import NamespacePolicy, Step, Workflow, hookimpl


    def sneak(ctx):
        return {}


    @hookimpl
    def teamflow_namespaces():
        return [NamespacePolicy("shared", owner_team="outsiders", contact_email="out@growthcorp.example")]


    @hookimpl
    def teamflow_workflows():
        return [Workflow("shared", "sneaky", "1.0.0", steps=[Step("sneak", sneak)])]
''')

SHARED_CONFIG = '''
    [namespaces.shared]
    owner_team = "platform"
    contact_email = "platform@growthcorp.example"
    contributors = ["teamflow-helpers"]
'''

_LEDGER = '''
    from teamflow import NamespacePolicy, Step, Workflow, hookimpl


    def validate(ctx):
        return {}


    def post(ctx):
        return {"posted": 1}


    def post_twice(ctx):
        return {"posted": 2}


    @hookimpl
    def teamflow_namespaces():
        return [NamespacePolicy("ledger", owner_team="finance", contact_email="finance@growthcorp.example")]


    @hookimpl
    def teamflow_workflows():
        return [Workflow("ledger", "post_entry", "1.0.0", description=DESCRIPTION, steps=[
            Step("validate", validate),
            Step("post", POST, depends_on="validate"),
        ])]
'''
# Three builds of teamflow-ledger 1.0.0: the release, a docs-only edit, and a changed handler.
LEDGER = plugin("teamflow-ledger", _LEDGER + "    DESCRIPTION = 'Post an entry'\n    POST = post\n")
LEDGER_REWORDED = plugin("teamflow-ledger", _LEDGER + "    DESCRIPTION = 'Post one entry'\n    POST = post\n")
LEDGER_CHANGED = plugin("teamflow-ledger", _LEDGER + "    DESCRIPTION = 'Post an entry'\n"
                                                     "    POST = post_twice\n")

TYPO = plugin("teamflow-typo", '''
    from teamflow import NamespacePolicy, Step, Workflow, hookimpl


    def work(ctx):
        return {}


    @hookimpl
    def teamflow_namespaces():
        return [NamespacePolicy("typo", owner_team="typo", contact_email="typo@growthcorp.example")]


    @hookimpl
    def teamflow_workflow():
        return [Workflow("typo", "echo", "1.0.0", steps=[Step("work", work)])]
''')

TWICE = plugin("teamflow-twice", '''
    from teamflow import NamespacePolicy, Step, Workflow, hookimpl


    def work(ctx):
        return {}


    def echo():
        return Workflow("twice", "echo", "1.0.0", steps=[Step("work", work)])


    @hookimpl
    def teamflow_namespaces():
        return [NamespacePolicy("twice", owner_team="twice", contact_email="twice@growthcorp.example")]


    @hookimpl
    def teamflow_workflows():
        return [echo(), Workflow("twice", "other", "1.0.0", steps=[Step("work", work)]), echo()]
''')


# ------------------------------------------------------------------------------------------
# Running the host
# ------------------------------------------------------------------------------------------


@dataclass
class Teamflow:
    """The ``teamflow`` command in a working directory of its own, with its own database."""

    cwd: Path

    def configure(self, toml: str) -> None:
        (self.cwd / "teamflow.toml").write_text(textwrap.dedent(toml))

    def run(
        self, *args: str, sites: Iterable[Path] = (), env: Mapping[str, str] | None = None, expect: int = 0
    ) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("TEAMFLOW_") and k != "PYTHONPATH"}
        clean.update(
            PYTHONPATH=os.pathsep.join(str(s) for s in sites),
            TEAMFLOW_DATABASE_URL=f"sqlite:///{self.cwd / 't.db'}",
            COLUMNS="200",
        )
        clean.update(env or {})
        done = subprocess.run(
            [sys.executable, "-m", "teamflow.cli", *args],
            cwd=self.cwd, env=clean, capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == expect, (
            f"teamflow {' '.join(args)} exited {done.returncode}, expected {expect}\n"
            f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        )
        return done

    def json(self, *args: str, **kwargs: Any) -> Any:
        return json.loads(self.run(*args, "--json", **kwargs).stdout)


@pytest.fixture(scope="session")
def dists(tmp_path_factory: pytest.TempPathFactory) -> DistFactory:
    return DistFactory(tmp_path_factory.mktemp("dists"))


@pytest.fixture
def teamflow(tmp_path: Path) -> Teamflow:
    return Teamflow(tmp_path)


def refusals(report: Mapping[str, Any], kind: str | None = None, distribution: str | None = None) -> list:
    return [
        r for r in report["refusals"]
        if kind in (None, r["kind"]) and distribution in (None, r["distribution"])
    ]


def conflict(report: Mapping[str, Any], kind: str, key: str) -> dict:
    wanted = (kind, key)
    (found,) = [c for c in report["conflicts"] if (c["conflict"]["kind"], c["conflict"]["key"]) == wanted]
    return found


def candidates(outcome: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(c["distribution"], c["version"]) for c in outcome["conflict"]["candidates"]]


def kept(outcome: Mapping[str, Any]) -> str | None:
    chosen = outcome["resolution"]["kept"]
    return None if chosen is None else chosen["distribution"]


def record(report: Mapping[str, Any], distribution: str) -> dict:
    (found,) = [p for p in report["plugins"] if p["distribution"] == distribution]
    return found


# ------------------------------------------------------------------------------------------
# Discovery
# ------------------------------------------------------------------------------------------


def test_new_team_plugin_is_discovered_with_no_host_change(dists: DistFactory, teamflow: Teamflow) -> None:
    site = dists.install(ANALYTICS, pip=True)
    assert (site / "teamflow_analytics-1.0.0.dist-info" / "INSTALLER").read_text() == "pip\n"

    report = teamflow.json("plugins", sites=[site])
    assert record(report, "teamflow-analytics") == {
        "distribution": "teamflow-analytics",
        "version": "1.0.0",
        "entry_point": "analytics = teamflow_analytics.plugin",
        "status": "loaded",
        "error": None,
        "error_where": None,
        "hooks": ["teamflow_namespaces", "teamflow_workflows"],
        "namespaces": ["analytics"],
        "workflows": ["analytics/daily_rollup@1.0.0"],
    }
    assert report["ok"] is True, report

    listing = teamflow.json("workflows", sites=[site])
    namespaces = {ns["name"]: ns for ns in listing["namespaces"]}
    assert set(namespaces) == TEAM_NAMESPACES | {"analytics"}
    assert namespaces["analytics"]["owner_distribution"] == "teamflow-analytics"
    assert namespaces["analytics"]["workflows"] == ["daily_rollup"]
    (rollup,) = [w for w in listing["workflows"] if w["namespace"] == "analytics"]
    assert rollup["latest"] == "1.0.0"
    assert rollup["versions"][0]["distribution"] == "teamflow-analytics"

    detail = teamflow.json("show", "analytics/daily_rollup@1.0.0", sites=[site])
    assert detail["distribution"] == "teamflow-analytics"
    assert detail["distribution_version"] == "1.0.0"
    assert detail["owner_distribution"] == "teamflow-analytics"
    assert detail["order"] == ["extract", "publish"]
    assert [(s["name"], s["depends_on"], s["handler"], s["retry_limit"]) for s in detail["steps"]] == [
        ("extract", [], "teamflow_analytics.plugin:extract", 3),
        ("publish", ["extract"], "teamflow_analytics.plugin:publish", 1),
    ]

    # The handlers are found in the installed package and run.
    task = teamflow.json("run", "analytics/daily_rollup", sites=[site])
    assert (task["reference"], task["status"]) == ("analytics/daily_rollup@1.0.0", "completed")
    assert task["steps"][1]["result"] == {"published": 3}

    teamflow.run("check", sites=[site], expect=0)


def test_plugin_that_fails_to_import_is_recorded_and_the_others_still_load(
    dists: DistFactory, teamflow: Teamflow
) -> None:
    sites = [dists.install(BROKEN), dists.install(ANALYTICS)]

    report = teamflow.json("check", sites=sites, expect=1)
    broken = record(report, "teamflow-broken")
    assert broken["status"] == "failed"
    assert broken["version"] == "1.0.0"
    assert broken["entry_point"] == "broken = teamflow_broken.plugin"
    assert broken["error"] == "import failed: RuntimeError: analytics warehouse unreachable"
    where = Path(sites[0], "teamflow_broken", "plugin.py")
    assert broken["error_where"] == f"{where}:{BROKEN_LINE} in <module>"
    loaded = {p["distribution"] for p in report["plugins"] if p["status"] == "loaded"}
    assert loaded == {"teamflow-analytics", "teamflow-payments", "teamflow-customer-success",
                      "teamflow-inventory"}
    assert report["problems"] == 1

    text = teamflow.run("check", sites=sites, expect=1).stdout
    assert "LOAD FAILED teamflow-broken 1.0.0 (broken = teamflow_broken.plugin): import failed: " in text
    assert f"plugin.py:{BROKEN_LINE} in <module>" in text
    assert "fix: repair or uninstall teamflow-broken" in text


def test_misspelled_hook_fails_the_plugin_and_names_the_real_hooks(
    dists: DistFactory, teamflow: Teamflow
) -> None:
    site = dists.install(TYPO)

    report = teamflow.json("check", sites=[site], expect=1)
    typo = record(report, "teamflow-typo")
    assert typo["status"] == "failed"
    assert "unknown hook(s) teamflow_workflow: misspelled?" in typo["error"]
    assert typo["error"].endswith(
        "teamflow_namespaces, teamflow_workflows, teamflow_resolve_conflict, teamflow_task_event"
    )
    # Nothing of a half-registered plugin is used: not even its correctly spelled hook.
    assert typo["namespaces"] == []
    listing = teamflow.json("workflows", sites=[site])
    assert "typo" not in {ns["name"] for ns in listing["namespaces"]}


# ------------------------------------------------------------------------------------------
# Namespace ownership and conflicts
# ------------------------------------------------------------------------------------------


def test_two_declarations_of_a_namespace_on_a_fresh_store_block_it(
    dists: DistFactory, teamflow: Teamflow
) -> None:
    site = dists.install(ROGUE, pip=True)

    report = teamflow.json("check", sites=[site], expect=1)

    namespace = conflict(report, "namespace", "payments")
    assert candidates(namespace) == [("teamflow-payments", "1.0.0"), ("teamflow-rogue", "1.0.0")]
    assert kept(namespace) is None
    assert namespace["resolution"]["decided_by"] == "default"
    assert "no owner pin or recorded owner decides" in namespace["resolution"]["reason"]
    assert {(r["distribution"], r["subject"]) for r in refusals(report, "namespace_conflict")} == {
        ("teamflow-payments", "payments"), ("teamflow-rogue", "payments"),
    }
    assert all("[owner_pins] payments" in r["fix"] for r in refusals(report, "namespace_conflict"))

    # Neither owns payments, so the contested key is blocked and every payments workflow refused.
    refund = conflict(report, "workflow", "payments/process_refund@2.1.0")
    assert candidates(refund) == [("teamflow-payments", "1.0.0"), ("teamflow-rogue", "1.0.0")]
    assert kept(refund) is None
    blocked = refusals(report, "undeclared_namespace", "teamflow-payments")
    assert {r["subject"] for r in blocked} == {
        "payments/generate_payment_report@2.0.0", "payments/handle_chargeback@1.2.0",
        "payments/process_payment@3.0.0", "payments/process_refund@2.0.0",
        "payments/reconcile_transactions@1.1.0",
    }
    assert all(r["reason"].startswith("namespace 'payments' is blocked: ") for r in blocked)
    assert record(report, "teamflow-payments")["workflows"] == []

    listing = teamflow.json("workflows", sites=[site])
    assert {ns["name"] for ns in listing["namespaces"]} == TEAM_NAMESPACES - {"payments"}
    gone = teamflow.run("show", "payments/process_refund@2.1.0", sites=[site], expect=2)
    assert "namespace 'payments' is blocked" in gone.stderr

    # A blocked namespace has no owner to record: the next start is blocked the same way.
    assert teamflow.json("check", sites=[site], expect=1)["conflicts"] == report["conflicts"]


def test_recorded_owner_keeps_its_namespace_and_the_newcomer_is_refused(
    dists: DistFactory, teamflow: Teamflow
) -> None:
    site = dists.install(ROGUE, pip=True)
    teamflow.run("plugins", "--json")  # the store records teamflow-payments as owner of payments

    report = teamflow.json("check", sites=[site], expect=1)

    namespace = conflict(report, "namespace", "payments")
    assert candidates(namespace) == [("teamflow-payments", "1.0.0"), ("teamflow-rogue", "1.0.0")]
    assert kept(namespace) == "teamflow-payments"
    assert namespace["resolution"]["decided_by"] == "recorded owner"
    (refused,) = refusals(report, "namespace_conflict")
    assert (refused["distribution"], refused["subject"]) == ("teamflow-rogue", "payments")
    assert "the store recorded teamflow-payments as owner of 'payments'" in refused["reason"]

    refund = conflict(report, "workflow", "payments/process_refund@2.1.0")
    assert kept(refund) == "teamflow-payments"
    assert refund["resolution"]["reason"] == "teamflow-payments owns namespace 'payments'"
    (lost,) = refusals(report, "workflow_conflict")
    assert (lost["distribution"], lost["subject"]) == ("teamflow-rogue", "payments/process_refund@2.1.0")
    assert len(record(report, "teamflow-payments")["workflows"]) == 6

    detail = teamflow.json("show", "payments/process_refund@2.1.0", sites=[site])
    assert detail["distribution"] == "teamflow-payments"


def test_owner_pin_keeps_payments_and_refuses_the_rogue(dists: DistFactory, teamflow: Teamflow) -> None:
    site = dists.install(ROGUE, pip=True)
    teamflow.configure('[owner_pins]\npayments = "teamflow-payments"\n')

    report = teamflow.json("check", sites=[site], expect=1)

    namespace = conflict(report, "namespace", "payments")
    assert kept(namespace) == "teamflow-payments"
    assert namespace["resolution"]["decided_by"] == "owner pin"
    assert namespace["resolution"]["reason"] == "owner pin in teamflow.toml: payments -> teamflow-payments"
    refund = conflict(report, "workflow", "payments/process_refund@2.1.0")
    assert candidates(refund) == [("teamflow-payments", "1.0.0"), ("teamflow-rogue", "1.0.0")]
    assert {c["registered"] for c in refund["conflict"]["candidates"]} == {"payments/process_refund@2.1.0"}
    assert kept(refund) == "teamflow-payments"
    assert {(r["kind"], r["subject"]) for r in refusals(report, distribution="teamflow-rogue")} == {
        ("namespace_conflict", "payments"), ("workflow_conflict", "payments/process_refund@2.1.0"),
    }
    assert refusals(report, distribution="teamflow-payments") == []
    assert record(report, "teamflow-rogue")["workflows"] == []
    assert len(record(report, "teamflow-payments")["workflows"]) == 6
    detail = teamflow.json("show", "payments/process_refund@2.1.0", sites=[site])
    assert detail["distribution"] == "teamflow-payments"

    text = teamflow.run("check", sites=[site], expect=1).stdout
    assert ("CONFLICT namespace payments: teamflow-payments 1.0.0, teamflow-rogue 1.0.0 -> kept "
            "teamflow-payments 1.0.0") in text
    rogue_lines = [line for line in text.splitlines() if line.startswith("REFUSED") and "rogue" in line]
    assert len(rogue_lines) == 2
    assert all("(fix: " in line for line in rogue_lines)
    assert any("only teamflow-payments may declare namespace 'payments'" in line for line in rogue_lines)


def test_resolver_hook_of_an_unlisted_plugin_is_ignored(dists: DistFactory, teamflow: Teamflow) -> None:
    without_hook = Teamflow(teamflow.cwd / "without-hook")
    without_hook.cwd.mkdir()
    plain = without_hook.json("check", sites=[dists.install(ROGUE)], expect=1)

    report = teamflow.json("check", sites=[dists.install(ROGUE_WITH_RESOLVER)], expect=1)

    (ignored,) = refusals(report, "resolver_ignored")
    assert ignored["distribution"] == "teamflow-rogue"
    assert ignored["subject"] == "teamflow_resolve_conflict"
    assert "not listed in conflict_resolvers" in ignored["reason"]
    assert record(report, "teamflow-rogue")["hooks"] == [
        "teamflow_namespaces", "teamflow_resolve_conflict", "teamflow_workflows",
    ]
    # The same outcome as without the hook: payments blocked, not awarded to the rogue.
    assert report["conflicts"] == plain["conflicts"]
    assert kept(conflict(report, "namespace", "payments")) is None
    assert [r for r in report["refusals"] if r is not ignored] == plain["refusals"]


def test_configured_resolver_is_asked_and_its_answer_applies(dists: DistFactory, teamflow: Teamflow) -> None:
    sites = [dists.install(ROGUE_WITH_RESOLVER), dists.install(PLATFORM)]
    teamflow.configure('conflict_resolvers = ["teamflow-platform"]\n')

    report = teamflow.json("check", sites=sites, expect=1)

    namespace = conflict(report, "namespace", "payments")
    assert candidates(namespace) == [("teamflow-payments", "1.0.0"), ("teamflow-rogue", "1.0.0")]
    assert kept(namespace) == "teamflow-payments"
    assert namespace["resolution"] == {
        "kept": {"distribution": "teamflow-payments", "version": "1.0.0", "registered": "payments"},
        "reason": "platform ruling: the payments team owns payments",
        "decided_by": "teamflow-platform",
    }
    # Its answer to the workflow conflict keeps no candidate: refused, and the default applies.
    (bad,) = refusals(report, "bad_resolution")
    assert (bad["distribution"], bad["subject"]) == ("teamflow-platform", "payments/process_refund@2.1.0")
    assert "teamflow-nobody" in bad["reason"]
    refund = conflict(report, "workflow", "payments/process_refund@2.1.0")
    assert (kept(refund), refund["resolution"]["decided_by"]) == ("teamflow-payments", "default")
    # The rogue's own resolver is still ignored, and reported.
    assert [r["distribution"] for r in refusals(report, "resolver_ignored")] == ["teamflow-rogue"]
    assert len(record(report, "teamflow-payments")["workflows"]) == 6
    assert record(report, "teamflow-platform")["hooks"] == ["teamflow_resolve_conflict"]


def test_workflow_in_a_namespace_owned_by_another_team_is_refused(
    dists: DistFactory, teamflow: Teamflow
) -> None:
    site = dists.install(INTRUDER)

    report = teamflow.json("check", sites=[site], expect=1)

    mine = {r["subject"]: r for r in refusals(report, distribution="teamflow-intruder")}
    assert set(mine) == {"inventory/restock_shelf@1.0.0", "warehouse/restock_shelf@1.0.0"}
    assert mine["inventory/restock_shelf@1.0.0"]["kind"] == "not_owner"
    assert "namespace 'inventory' belongs to teamflow-inventory (team inventory)" in (
        mine["inventory/restock_shelf@1.0.0"]["reason"]
    )
    assert "inventory-team@growthcorp.example" in mine["inventory/restock_shelf@1.0.0"]["fix"]
    assert mine["warehouse/restock_shelf@1.0.0"]["kind"] == "undeclared_namespace"
    assert record(report, "teamflow-intruder")["workflows"] == []
    assert len(record(report, "teamflow-inventory")["workflows"]) == 5
    assert [c for c in report["conflicts"]] == []


def test_platform_namespace_takes_workflows_only_from_listed_contributors(
    dists: DistFactory, teamflow: Teamflow
) -> None:
    sites = [dists.install(HELPERS), dists.install(OUTSIDER)]
    teamflow.configure(SHARED_CONFIG)

    report = teamflow.json("check", sites=sites, expect=1)

    assert record(report, "teamflow-helpers")["workflows"] == ["shared/format_money@1.0.0"]
    assert refusals(report, distribution="teamflow-helpers") == []
    outsider = {r["subject"]: r for r in refusals(report, distribution="teamflow-outsider")}
    assert {s: r["kind"] for s, r in outsider.items()} == {
        "shared": "not_owner", "shared/sneaky@1.0.0": "not_owner",
    }
    assert "defined by the host configuration (teamflow.toml)" in outsider["shared"]["reason"]
    assert "[namespaces.shared] contributors" in outsider["shared"]["fix"]
    sneaky = outsider["shared/sneaky@1.0.0"]
    assert "namespace 'shared' belongs to teamflow.toml (team platform)" in sneaky["reason"]

    listing = teamflow.json("workflows", "shared", sites=sites)
    (shared,) = listing["namespaces"]
    assert (shared["owner_distribution"], shared["owner_team"]) == ("teamflow.toml", "platform")
    assert shared["contributors"] == ["teamflow-helpers"]
    assert shared["workflows"] == ["format_money"]
    task = teamflow.json("run", "shared/format_money@1.0.0", "--context", '{"amount": 2.5}', sites=sites)
    assert task["steps"][0]["result"] == {"text": "2.50"}


# ------------------------------------------------------------------------------------------
# Validation of one distribution's workflow versions
# ------------------------------------------------------------------------------------------


def test_bad_workflow_versions_are_refused_and_their_sound_sibling_loads(
    dists: DistFactory, teamflow: Teamflow
) -> None:
    site = dists.install(SLOPPY)

    report = teamflow.json("check", sites=[site], expect=1)

    invalid = refusals(report, "invalid_workflow")
    assert {(r["distribution"], r["distribution_version"]) for r in invalid} == {("teamflow-sloppy", "1.0.0")}
    by_subject = {r["subject"]: r for r in invalid}
    assert set(by_subject) == {
        "sloppy/short_version@2.1", "sloppy/cyclic@1.0.0", "sloppy/dangling@1.0.0", "sloppy/anonymous@1.0.0",
    }
    assert "write '2.1.0'" in by_subject["sloppy/short_version@2.1"]["reason"]
    assert by_subject["sloppy/cyclic@1.0.0"]["step"] == "first"
    assert "cycle through first, second" in by_subject["sloppy/cyclic@1.0.0"]["reason"]
    assert by_subject["sloppy/dangling@1.0.0"]["step"] == "finish"
    assert "depends on unknown step 'missing'" in by_subject["sloppy/dangling@1.0.0"]["reason"]
    assert by_subject["sloppy/anonymous@1.0.0"]["step"] == "compute"
    assert "lambda or closure" in by_subject["sloppy/anonymous@1.0.0"]["reason"]
    assert "step 'compute'" in by_subject["sloppy/anonymous@1.0.0"]["message"]
    assert all(r["fix"] for r in invalid)

    assert record(report, "teamflow-sloppy")["workflows"] == ["sloppy/sound@1.0.0"]
    assert len(refusals(report)) == 4


def test_same_workflow_version_twice_from_one_distribution_is_a_duplicate(
    dists: DistFactory, teamflow: Teamflow
) -> None:
    site = dists.install(TWICE)

    report = teamflow.json("check", sites=[site], expect=1)

    (duplicate,) = refusals(report)
    assert (duplicate["kind"], duplicate["distribution"], duplicate["subject"]) == (
        "duplicate", "teamflow-twice", "twice/echo@1.0.0",
    )
    assert duplicate["reason"] == "registered 2 times by one distribution"
    assert report["conflicts"] == []
    assert record(report, "teamflow-twice")["workflows"] == ["twice/other@1.0.0"]


# ------------------------------------------------------------------------------------------
# Drift
# ------------------------------------------------------------------------------------------


def test_released_version_changed_without_a_bump_is_drift(dists: DistFactory, teamflow: Teamflow) -> None:
    released = dists.install(LEDGER, pip=True)
    reworded = dists.install(LEDGER_REWORDED, pip=True)
    changed = dists.install(LEDGER_CHANGED, pip=True)

    first = teamflow.json("show", "ledger/post_entry@1.0.0", sites=[released])["fingerprint"]

    # A description is not part of the definition.
    assert teamflow.json("plugins", sites=[reworded])["drift"] == []

    report = teamflow.json("plugins", sites=[changed])
    (drift,) = report["drift"]
    assert drift["ref"] == "ledger/post_entry@1.0.0"
    assert drift["distribution"] == "teamflow-ledger"
    assert drift["recorded"] == first
    assert drift["current"] != first
    assert drift["refused"] is False
    detail = teamflow.json("show", "ledger/post_entry@1.0.0", sites=[changed])
    assert detail["steps"][1]["handler"] == "teamflow_ledger.plugin:post_twice"

    # Still drift on the next start: the first fingerprint recorded is what counts.
    strict = teamflow.json("check", sites=[changed], env={"TEAMFLOW_STRICT": "1"}, expect=1)
    (drift,) = strict["drift"]
    assert (drift["recorded"], drift["refused"]) == (first, True)
    (refused,) = refusals(strict, "drift")
    assert (refused["distribution"], refused["subject"]) == ("teamflow-ledger", "ledger/post_entry@1.0.0")
    assert record(strict, "teamflow-ledger")["workflows"] == []
    text = teamflow.run("check", sites=[changed], env={"TEAMFLOW_STRICT": "1"}, expect=1).stdout
    assert f"DRIFT ledger/post_entry@1.0.0 from teamflow-ledger: recorded fingerprint {first[:12]}" in text
    assert "refused (strict mode)" in text
    assert "fix: release the change under a new version" in text
    # Asked for, the refused version is drift, not "does not exist".
    ran = teamflow.run("run", "ledger/post_entry@1.0.0", sites=[changed], env={"TEAMFLOW_STRICT": "1"}, expect=2)
    assert "workflow_refused" in ran.stderr and "workflow_not_found" not in ran.stderr
    assert "refused at load (drift): released version changed without a version bump" in ran.stderr
    assert "Fix: release the change under a new version" in ran.stderr

    # Restoring the released definition clears it.
    teamflow.run("check", sites=[released], env={"TEAMFLOW_STRICT": "1"}, expect=0)


# ------------------------------------------------------------------------------------------
# Edge cases that were bugs once: plugin text in the terminal, one distribution with two
# entry points, a resolver answering nonsense, a syntax error in a plugin.
# ------------------------------------------------------------------------------------------

BRACKETS = plugin("teamflow-brackets", '''
    raise KeyError("[/settings] has no key 'warehouse'")
''')

TWO_ENTRY_POINTS = Plugin("teamflow-multi", "1.0.0", {
    "teamflow_multi.__init__": "",
    "teamflow_multi.first": '''
        from teamflow import NamespacePolicy, Step, Workflow, hookimpl


        def work(ctx):
            return {}


        @hookimpl
        def teamflow_namespaces():
            return [NamespacePolicy("multi", owner_team="multi", contact_email="multi@growthcorp.example")]


        @hookimpl
        def teamflow_workflows():
            return [Workflow("multi", "echo", "1.0.0", steps=[Step("work", work)])]
    ''',
    "teamflow_multi.second": '''
        from teamflow import Step, Workflow, hookimpl
        from teamflow_multi.first import work


        @hookimpl
        def teamflow_workflows():
            return [Workflow("multi", "echo", "1.0.0", steps=[Step("work", work)])]
    ''',
}, entry_points={"first": "teamflow_multi.first", "second": "teamflow_multi.second"})

CARELESS_PLATFORM = plugin("teamflow-platform", '''
    from teamflow import hookimpl


    @hookimpl
    def teamflow_resolve_conflict(conflict):
        return "teamflow-payments"
''')

SYNTAX_ERROR = plugin("teamflow-syntax", "def broken(:\n    pass\n")


def test_check_text_shows_kinds_and_plugin_text_verbatim(dists: DistFactory, teamflow: Teamflow) -> None:
    done = teamflow.run("check", sites=[dists.install(BRACKETS), dists.install(ROGUE)], expect=1)

    assert "Traceback" not in done.stderr
    assert "[/settings] has no key" in done.stdout
    assert "REFUSED [namespace_conflict] teamflow-rogue 1.0.0: payments" in done.stdout
    assert '[owner_pins] payments = "<distribution>"' in done.stdout


def test_same_key_from_two_entry_points_of_one_distribution_is_a_duplicate(
    dists: DistFactory, teamflow: Teamflow
) -> None:
    report = teamflow.json("check", sites=[dists.install(TWO_ENTRY_POINTS)], expect=1)

    assert report["conflicts"] == []
    assert [(r["kind"], r["subject"]) for r in refusals(report)] == [("duplicate", "multi/echo@1.0.0")]


def test_resolver_answer_that_is_not_a_resolution_is_refused(dists: DistFactory, teamflow: Teamflow) -> None:
    teamflow.configure('conflict_resolvers = ["teamflow-platform"]\n')
    sites = [dists.install(CARELESS_PLATFORM), dists.install(ROGUE)]

    report = teamflow.json("check", sites=sites, expect=1)

    # one refusal per conflict it answered badly (the namespace and the workflow key)
    assert {r["distribution"] for r in refusals(report, "bad_resolution")} == {"teamflow-platform"}
    assert kept(conflict(report, "namespace", "payments")) is None


def test_syntax_error_in_a_plugin_points_at_its_file_and_line(dists: DistFactory, teamflow: Teamflow) -> None:
    site = dists.install(SYNTAX_ERROR)

    broken = record(teamflow.json("check", sites=[site], expect=1), "teamflow-syntax")

    assert broken["status"] == "failed"
    assert broken["error_where"].startswith(f"{site / 'teamflow_syntax' / 'plugin.py'}:1")
