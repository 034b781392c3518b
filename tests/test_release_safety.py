"""Release safety between teams: the registry export, ``teamflow check --against``, caller contracts.

The rules are proved in-process, with two releases of a team plugin loaded by two hosts
(``Host(plugins=[...])``): the old one's export against the new one's registry. Real
distributions (``distfactory``: wheels installed by pip, or written as an installer
leaves them) prove the same end to end through the ``teamflow`` command, including the
caller and the provider of a call being two distributions that release on their own.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
from conftest import host_config
from distfactory import DistFactory, plugin
from test_distributions import Teamflow

from teamflow import Call, Host, NamespacePolicy, Step, TaskRequest, Workflow, hookimpl
from teamflow.errors import ExportInvalid
from teamflow.registry.calls import read_calls
from teamflow.registry.fingerprint import fingerprint
from teamflow.serialization import canonical_json, unstructure
from teamflow.views import ReleaseReport

# ------------------------------------------------------------------------------------------
# Two releases of one team plugin, in process
# ------------------------------------------------------------------------------------------


def draft(ctx: Any) -> dict[str, Any]:
    return {"drafted": True}


def send(ctx: Any) -> dict[str, Any]:
    return {"sent": True}


HANDLERS = {"draft": draft, "send": send, "deliver": send, "archive": draft, "charge": draft}

POLICY = NamespacePolicy(
    "billing",
    "billing",
    "billing@growthcorp.example",
    requires_approval=True,
    approvers=("lead@growthcorp.example", "cfo@growthcorp.example"),
    allowed_callers=("shop", "payments"),
)
OPEN_POLICY = attrs.evolve(POLICY, requires_approval=False, approvers=())
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "customer": {"type": "string"},
        "amount": {"type": "integer", "minimum": 1},
        "note": {"type": "string", "maxLength": 10},
    },
    "required": ["customer", "amount"],
    "additionalProperties": False,
}


def schema(**changes: Any) -> dict[str, Any]:
    """SCHEMA with ``properties`` entries replaced (None drops one) and other keywords set."""
    properties = {k: v for k, v in {**SCHEMA["properties"], **changes.pop("properties", {})}.items() if v is not None}
    return {**SCHEMA, "properties": properties, **changes}


def invoice(version: str, context_schema: Any = SCHEMA, steps: Sequence[str] = ("draft", "send"), **more: Any) -> Workflow:
    chain = [Step(name, HANDLERS[name], depends_on=steps[i - 1] if i else ()) for i, name in enumerate(steps)]
    return Workflow("billing", "invoice", version, chain, context_schema=context_schema, **more)


class Team:
    """One release of a team plugin: its distribution version, policies and workflow versions."""

    def __init__(self, version: str, policies: Sequence[NamespacePolicy], workflows: Sequence[Workflow]) -> None:
        self.__version__, self.policies, self.workflows = version, policies, workflows

    @hookimpl
    def teamflow_namespaces(self) -> list[NamespacePolicy]:
        return list(self.policies)

    @hookimpl
    def teamflow_workflows(self) -> list[Workflow]:
        return list(self.workflows)


def billing(version: str, *workflows: Workflow, policy: NamespacePolicy = POLICY) -> tuple[str, Team]:
    return ("teamflow-billing", Team(version, [policy], list(workflows)))


OLD = billing("1.0.0", invoice("1.0.0"))

SHOP_POLICY = NamespacePolicy("shop", "shop", "shop@growthcorp.example")


def shop(version: str, *calls: str | Call, workflow_version: str = "1.0.0") -> tuple[str, Team]:
    checkout = Workflow("shop", "checkout", workflow_version, [Step("charge", draft, calls=calls)])
    return ("teamflow-shop", Team(version, [SHOP_POLICY], [checkout]))


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Any]:
    """``hosts(*plugins, db="name", strict=False)``: a host on its own SQLite file (by name)."""
    made: list[Host] = []

    def make(*plugins: object, db: str = "new", **overrides: Any) -> Host:
        config = host_config(f"sqlite:///{tmp_path}/{db}.db", **overrides)
        host = Host(config=config, plugins=plugins, discover=False, migrate=True)
        made.append(host)
        return host

    yield make
    for host in made:
        host.close()


def export_of(hosts: Any, *plugins: object, db: str = "old") -> dict[str, Any]:
    """The JSON document ``teamflow registry export`` writes, of a host holding ``plugins``."""
    return json.loads(json.dumps(unstructure(hosts(*plugins, db=db).export_registry())))


def against(hosts: Any, old: Sequence[object], new: Sequence[object], **overrides: Any) -> ReleaseReport:
    return hosts(*new, **overrides).check_against(export_of(hosts, *old))


def rules(report: ReleaseReport) -> set[tuple[str, str, bool]]:
    return {(f.rule, f.where, f.allowed) for f in report.findings}


# ------------------------------------------------------------------------------------------
# The export
# ------------------------------------------------------------------------------------------


def test_export_holds_policies_versions_steps_fingerprints_schemas_calls_and_distributions(hosts: Any) -> None:
    call = Call("billing/invoice@^1.0", examples=[{"customer": "c_1", "amount": 5}])
    data = export_of(hosts, OLD, shop("3.1.0", call))
    assert (data["format"], data["version"], data["namespace"]) == ("teamflow-registry-export", 1, None)
    billing_ns = next(ns for ns in data["namespaces"] if ns["name"] == "billing")
    assert billing_ns == {
        "name": "billing",
        "owner": "teamflow-billing",
        "owner_version": "1.0.0",
        "contributors": [],
        "policy": {
            "owner_team": "billing",
            "contact_email": "billing@growthcorp.example",
            "description": "",
            "requires_approval": True,
            "approvers": ["lead@growthcorp.example", "cfo@growthcorp.example"],
            "allowed_callers": ["shop", "payments"],
            "compatibility": "backward",
        },
    }
    [version] = [v for v in data["versions"] if v["namespace"] == "billing"]
    assert version["context_schema"] == SCHEMA
    assert (version["distribution"], version["distribution_version"]) == ("teamflow-billing", "1.0.0")
    assert [s["name"] for s in version["steps"]] == ["draft", "send"]
    assert version["steps"][1]["depends_on"] == ["draft"]
    assert version["steps"][0]["handler"] == "test_release_safety:draft"
    [checkout] = [v for v in data["versions"] if v["namespace"] == "shop"]
    assert checkout["steps"][0]["calls"] == [{"ref": "billing/invoice@^1.0", "examples": [{"customer": "c_1", "amount": 5}]}]
    assert {"name": "teamflow-shop", "version": "3.1.0", "namespaces": ["shop"], "workflows": ["shop/checkout@1.0.0"]} in (
        data["distributions"]
    )
    one = unstructure(hosts(OLD, db="one").export_registry("billing"))
    assert one["namespace"] == "billing" and [ns["name"] for ns in one["namespaces"]] == ["billing"]


def test_get_registry_export_answers_the_same_document_to_any_valid_token(hosts: Any) -> None:
    from litestar.testing import TestClient

    from teamflow.api.app import create_app

    host = hosts(OLD, shop("1.0.0"))
    secret = host.create_token("shop-ci", ["shop"], ["read"]).secret  # another team's namespace, least scope
    with TestClient(create_app(host)) as client:
        assert client.get("/registry/export").status_code == 401
        bearer = {"Authorization": f"Bearer {secret}"}
        answer = client.get("/registry/export", headers=bearer)
        assert answer.status_code == 200
        body = answer.json()
        assert {k: v for k, v in body.items() if k != "exported_at"} == {
            k: v for k, v in unstructure(host.export_registry()).items() if k != "exported_at"
        }
        one = client.get("/registry/export", params={"namespace": "billing"}, headers=bearer).json()
        assert [v["namespace"] for v in one["versions"]] == ["billing"]
        missing = client.get("/registry/export", params={"namespace": "ledger"}, headers=bearer)
        assert missing.status_code == 404 and missing.json()["error"] == "namespace_not_found"
        assert "/registry/export" in client.get("/openapi.json", headers=bearer).json()["paths"]
    assert host.check_against(body).ok


def test_a_malformed_call_or_compatibility_mode_is_refused_at_load_naming_the_fix(hosts: Any) -> None:
    bad_example = Workflow("shop", "checkout", "1.0.0", [Step("charge", draft, calls=[Call("billing/invoice@1.0.0", examples=["c_1"])])])
    fine = Workflow("shop", "refund", "1.0.0", [Step("charge", draft)])
    forward = attrs.evolve(POLICY, compatibility="forward")
    host = hosts(("teamflow-shop", Team("1.0.0", [SHOP_POLICY], [bad_example, fine])), ("teamflow-billing", Team("1.0.0", [forward], [])))
    by_subject = {r.subject: r for r in host.plugins.refusals}
    call = by_subject["shop/checkout@1.0.0"]
    assert (call.kind, call.step) == ("invalid_workflow", "charge")
    assert "example 0 is str, not a JSON object" in call.reason and "dict of JSON values" in call.fix
    policy = by_subject["billing"]
    assert "compatibility 'forward' is not one of 'backward', 'none'" in policy.reason
    assert host.registry.get("shop", "refund", "1.0.0") is not None


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"versions": []}, "is not a teamflow registry export"),
        ({"format": "teamflow-registry-export", "version": 2}, "format version 2, and this teamflow reads version 1"),
        ({"format": "teamflow-registry-export", "version": 1, "namespaces": "all"}, "$.namespaces: 'all' is not of type 'array'"),
    ],
    ids=["another format", "an unknown version", "a bad shape"],
)
def test_a_file_that_is_no_readable_export_is_refused_saying_why(hosts: Any, document: Any, expected: str) -> None:
    with pytest.raises(ExportInvalid) as refused:
        hosts(OLD).check_against(document, where="prod.json")
    assert refused.value.detail.startswith("prod.json is ")
    assert expected in refused.value.detail


def test_an_edited_export_is_refused_with_the_path_of_each_problem(hosts: Any) -> None:
    data = export_of(hosts, OLD)
    data["namespaces"][0]["policy"]["requires_approval"] = "false"  # no silent coercion to True
    with pytest.raises(ExportInvalid, match=re.escape("$.namespaces[0].policy.requires_approval: 'false' is not of type 'boolean'")):
        hosts(OLD).check_against(data, where="prod.json")
    data = export_of(hosts, OLD, db="again")
    data["versions"][0]["version"] = "1.0"
    with pytest.raises(ExportInvalid, match=re.escape("$.versions[0].version: ")) as refused:
        hosts(OLD).check_against(data, where="prod.json")
    assert "1.0.0" in refused.value.detail and "teamflow registry export -o FILE" in refused.value.detail


# ------------------------------------------------------------------------------------------
# What breaks: one case per rule
# ------------------------------------------------------------------------------------------

BREAKING = [
    (
        "a newly required property",
        billing("1.1.0", invoice("1.0.0"), invoice("1.1.0", schema(properties={"currency": {"type": "string"}}, required=["customer", "amount", "currency"]))),
        ("schema_incompatible", "context_schema #/required/currency", "'currency' is now required"),
    ),
    (
        "a narrowed type",
        billing("1.1.0", invoice("1.1.0", schema(properties={"customer": {"type": "integer"}}))),
        ("schema_incompatible", "context_schema #/properties/customer/type", "type"),
    ),
    (
        "a tightened limit",
        billing("1.0.1", invoice("1.0.1", schema(properties={"note": {"type": "string", "maxLength": 5}}))),
        ("schema_incompatible", "context_schema #/properties/note/maxLength", "maxLength 10 -> 5"),
    ),
    (
        "a keyword the checker cannot reason about",
        billing("1.1.0", invoice("1.1.0", schema(properties={"customer": {"type": "string", "format": "email"}}))),
        ("schema_incompatible", "context_schema #/properties/customer/format", "format added"),
    ),
    (
        "a remote $ref, never fetched",
        billing("1.1.0", invoice("1.1.0", schema(properties={"customer": {"$ref": "https://schemas.invalid/customer.json"}}))),
        ("schema_incompatible", "context_schema #/properties/customer/$ref", "the check cannot show that 1.1.0 accepts"),
    ),
    (
        "a step renamed in a minor release",
        billing("1.1.0", invoice("1.1.0", steps=("draft", "deliver"))),
        ("step_removed", "step 'send'", "removed or renamed; new steps: deliver"),
    ),
    (
        "a step removed in a patch release",
        billing("1.0.1", invoice("1.0.1", steps=("draft",))),
        ("step_removed", "step 'send'", "1.0.0 has it and 1.0.1 does not"),
    ),
    (
        "requires_approval dropped",
        billing("1.1.0", invoice("1.0.0"), policy=attrs.evolve(POLICY, requires_approval=False)),
        ("policy_loosened", "policy requires_approval", "requires_approval dropped"),
    ),
    (
        "an approver added",
        billing("1.0.1", invoice("1.0.0"), policy=attrs.evolve(POLICY, approvers=(*POLICY.approvers, "dev@growthcorp.example"))),
        ("policy_loosened", "policy approvers", "approvers changed"),
    ),
    (
        "allowed_callers opened to everyone",
        billing("1.1.0", invoice("1.0.0"), policy=attrs.evolve(POLICY, allowed_callers=("*",))),
        ("policy_loosened", "policy allowed_callers", "allowed_callers changed: [payments, shop] -> [*]"),
    ),
    (
        "compatibility set to none",
        billing("1.1.0", invoice("1.0.0"), policy=attrs.evolve(POLICY, compatibility="none")),
        ("policy_loosened", "policy compatibility", "'backward' -> 'none'"),
    ),
]


@pytest.mark.parametrize(("new", "expected"), [c[1:] for c in BREAKING], ids=[c[0] for c in BREAKING])
def test_breaking_change_is_reported_with_what_broke_and_the_fix(hosts: Any, new: Any, expected: tuple[str, str, str]) -> None:
    report = against(hosts, [OLD], [new])
    rule, where, what = expected
    found = [f for f in report.findings if (f.rule, f.where) == (rule, where)]
    assert found, report.findings
    [finding] = found
    assert what in finding.what
    assert finding.namespace == "billing" and not finding.allowed
    assert finding.fix
    assert finding.previous_distribution == "teamflow-billing 1.0.0"
    assert finding.distribution == f"teamflow-billing {new[1].__version__}"
    if rule != "policy_loosened":
        assert (finding.workflow, finding.previous, finding.current) == ("invoice", "1.0.0", new[1].workflows[-1].version)
        assert finding.message.startswith(f"billing/invoice 1.0.0 -> {finding.current} (teamflow-billing 1.0.0 -> ")
    assert not report.ok and report.breaking >= 1


def test_a_version_removed_while_its_tasks_are_unfinished_breaks_even_across_a_major(hosts: Any) -> None:
    old = billing("1.0.0", invoice("1.0.0"), policy=OPEN_POLICY)
    export = export_of(hosts, old, db="shared")
    hosts(old, db="shared").execute_async(TaskRequest("invoice", "billing", "1.0.0", {"customer": "c", "amount": 3}))
    new = billing("2.0.0", invoice("2.0.0"), policy=OPEN_POLICY)
    report = hosts(new, db="shared").check_against(export)
    [finding] = report.findings
    assert (finding.rule, finding.where, finding.allowed) == ("removed_with_tasks", "version 1.0.0", False)
    assert "1 unfinished task(s)" in finding.what and "even a major version bump" in finding.what
    assert "keep shipping billing/invoice@1.0.0 until its tasks have finished" in finding.fix
    # the same release on a database without those tasks breaks nothing
    assert hosts(new, db="fresh").check_against(export).findings == []


def test_a_version_removed_while_another_namespaces_call_resolves_only_to_it(hosts: Any) -> None:
    caller = shop("1.0.0", "billing/invoice@~1.0")
    export = export_of(hosts, OLD, caller)  # production: both teams
    report = hosts(billing("1.1.0", invoice("1.1.0"))).check_against(export)  # billing's CI: billing alone
    [finding] = [f for f in report.findings if f.rule == "removed_while_called"]
    assert (finding.workflow, finding.previous, finding.allowed) == ("invoice", "1.0.0", False)
    assert "shop/checkout@1.0.0 (teamflow-shop 1.0.0) step 'charge' calls billing/invoice@~1.0" in finding.what
    [call] = report.callers  # and the caller, read from the export, is named as broken
    assert (call.distribution, call.step, call.source, call.severity) == ("teamflow-shop", "charge", "export", "problem")
    # a call that still resolves (to the new minor) keeps the removal safe
    export = export_of(hosts, OLD, shop("1.0.0", "billing/invoice@^1.0"), db="old2")
    assert hosts(billing("1.1.0", invoice("1.1.0")), db="new2").check_against(export).ok


# ------------------------------------------------------------------------------------------
# Compatible changes: judged, not reported
# ------------------------------------------------------------------------------------------

COMPATIBLE = [
    ("an optional property added to a closed model", billing("1.1.0", invoice("1.0.0"), invoice("1.1.0", schema(properties={"po_number": {"type": "string"}})))),
    ("a widened type", billing("1.1.0", invoice("1.1.0", schema(properties={"amount": {"type": "number", "minimum": 1}})))),
    ("a relaxed limit", billing("1.0.1", invoice("1.0.1", schema(properties={"note": {"type": "string", "maxLength": 20}})))),
    ("a new minor version beside the old", billing("1.1.0", invoice("1.0.0"), invoice("1.1.0", steps=("draft", "send", "archive")))),
    ("approvers reordered", billing("1.0.1", invoice("1.0.1"), policy=attrs.evolve(POLICY, approvers=POLICY.approvers[::-1]))),
    ("a version removed that nothing runs or calls", billing("1.1.0", invoice("1.1.0"))),
]


@pytest.mark.parametrize("new", [c[1] for c in COMPATIBLE], ids=[c[0] for c in COMPATIBLE])
def test_compatible_change_is_judged_and_not_reported(hosts: Any, new: Any) -> None:
    report = against(hosts, [OLD], [new])
    assert report.findings == [] and report.callers == [] and report.ok, report
    newest = new[1].workflows[-1].version
    assert [(j.previous, j.current, j.major_bump) for j in report.judged] == [("1.0.0", newest, False)]


def test_with_compatibility_none_on_both_sides_schemas_are_not_compared(hosts: Any) -> None:
    loose = attrs.evolve(POLICY, compatibility="none")
    stricter = invoice("1.1.0", schema(required=["customer", "amount", "note"]))
    report = against(hosts, [billing("1.0.0", invoice("1.0.0"), policy=loose)], [billing("1.1.0", stricter, policy=loose)])
    assert report.ok and report.findings == []
    assert not against(hosts, [billing("1.0.0", invoice("1.0.0"))], [billing("1.1.0", stricter)]).ok


def test_each_version_is_judged_against_the_highest_lower_version_of_its_major_once(hosts: Any) -> None:
    optional = schema(properties={"po_number": {"type": "string"}})
    released = [billing("1.1.0", invoice("1.0.0"), invoice("1.1.0", optional, steps=("draft",)))]
    # 1.1.0 dropped a step against 1.0.0, but it shipped in the export: not judged again
    assert against(hosts, released, released).findings == []
    report = against(hosts, released, [billing("1.2.0", invoice("1.1.0", optional, steps=("draft",)), invoice("1.2.0", optional, steps=("draft",)))])
    assert [(j.previous, j.current) for j in report.judged] == [("1.1.0", "1.2.0")]
    assert report.findings == []


def test_a_major_bump_may_break_and_the_report_says_so(hosts: Any) -> None:
    major = billing(
        "2.0.0",
        invoice("2.0.0", schema(properties={"currency": {"type": "string"}}, required=["customer", "amount", "currency"]), steps=("draft", "deliver")),
        policy=attrs.evolve(POLICY, requires_approval=False),
    )
    report = against(hosts, [OLD], [major])
    assert report.ok and report.breaking == 0
    assert [(j.previous, j.current, j.major_bump) for j in report.judged] == [("1.0.0", "2.0.0", True)]
    assert rules(report) == {
        ("schema_incompatible", "context_schema #/required/currency", True),
        ("step_removed", "step 'send'", True),
        ("policy_loosened", "policy requires_approval", True),
    }
    assert all(f.message.endswith("(allowed: a major version bump may break)") for f in report.findings)


def test_only_namespaces_installed_here_are_judged(hosts: Any) -> None:
    """A team's CI installs its own plugin and checks it against the whole production export."""
    report = against(hosts, [OLD, shop("1.0.0")], [shop("1.0.1")])
    assert report.findings == [] and report.ok


# ------------------------------------------------------------------------------------------
# Caller contracts at load time
# ------------------------------------------------------------------------------------------

EXAMPLE = {"customer": "c_1", "amount": 5}


def test_a_call_whose_example_the_provider_refuses_is_a_problem_naming_step_and_example(hosts: Any) -> None:
    host = hosts(OLD, shop("1.0.0", Call("billing/invoice@^1.0", examples=[EXAMPLE, {"customer": "c_2"}])))
    [finding] = host.load_report().calls
    assert (finding.severity, finding.caller, finding.distribution, finding.step, finding.example) == (
        "problem", "shop/checkout@1.0.0", "teamflow-shop", "charge", 1
    )
    assert (finding.provider, finding.provider_distribution) == ("billing/invoice@1.0.0", "teamflow-billing")
    assert "does not accept example 1 {\"customer\": \"c_2\"}: $: 'amount' is a required property" in finding.reason
    assert "billing@growthcorp.example" in finding.fix
    assert not host.load_report().ok
    assert host.registry.get("shop", "checkout", "1.0.0") is not None  # it still loads


def test_strict_mode_refuses_the_caller_whose_call_does_not_hold(hosts: Any) -> None:
    host = hosts(OLD, shop("1.0.0", Call("billing/invoice@^1.0", examples=[{"customer": "c_2"}])), strict=True)
    assert host.registry.get("shop", "checkout", "1.0.0") is None
    [refusal] = [r for r in host.plugins.refusals if r.kind == "call_contract"]
    assert (refusal.distribution, refusal.subject, refusal.step) == ("teamflow-shop", "shop/checkout@1.0.0", "charge")
    assert host.load_report().calls[0].refused


def test_a_call_that_resolves_to_nothing_in_a_known_namespace_is_a_problem(hosts: Any) -> None:
    [finding] = hosts(OLD, shop("1.0.0", "billing/invoice@^2.0")).load_report().calls
    assert finding.severity == "problem"
    assert "billing/invoice: no version matches ^2.0; versions that exist: 1.0.0" in finding.reason


def test_a_call_into_a_namespace_known_nowhere_is_a_warning_unless_strict(hosts: Any) -> None:
    host = hosts(shop("1.0.0", "ledger/post@^1.0"))
    [finding] = host.load_report().calls
    assert finding.severity == "warning" and host.load_report().ok
    strict = hosts(shop("1.0.0", "ledger/post@^1.0"), db="strict", strict=True)
    assert strict.load_report().calls[0].severity == "problem"
    assert strict.registry.get("shop", "checkout", "1.0.0") is not None  # nothing was checked: not refused


def test_an_example_that_needs_a_remote_schema_is_reported_unchecked_never_fetched(hosts: Any) -> None:
    remote = invoice("1.0.0", schema(properties={"customer": {"$ref": "https://schemas.invalid/customer.json"}}))
    [finding] = hosts(billing("1.0.0", remote), shop("1.0.0", Call("billing/invoice@1.0.0", examples=[EXAMPLE]))).load_report().calls
    assert finding.kind == "example_refused" and finding.severity == "problem"
    assert "'https://schemas.invalid/customer.json', which is never fetched (vendor it under $defs)" in finding.reason


def test_calls_are_checked_against_what_other_hosts_published(hosts: Any) -> None:
    hosts(billing("1.1.0", invoice("1.0.0"), invoice("1.1.0", schema(required=["customer", "amount", "note"]))), db="shared")
    caller = hosts(shop("1.0.0", Call("billing/invoice@^1.0", examples=[EXAMPLE])), db="shared")
    [finding] = caller.load_report().calls
    assert finding.provider == "billing/invoice@1.1.0" and "'note' is a required property" in finding.reason


def test_a_provider_host_reports_the_published_callers_it_breaks_but_not_stale_ones(hosts: Any) -> None:
    hosts(shop("1.0.0", Call("billing/invoice@1.0.0", examples=[EXAMPLE])), db="shared")
    # the caller's next release calls ^1.0; its 1.0.0 stays in the store, shipped by nobody now
    hosts(shop("1.1.0", Call("billing/invoice@^1.0", examples=[EXAMPLE]), workflow_version="1.1.0"), db="shared")
    provider = hosts(billing("1.1.0", invoice("1.1.0", schema(required=["customer", "amount", "note"]))), db="shared")
    [finding] = provider.load_report().calls
    assert (finding.caller, finding.distribution, finding.source, finding.example) == (
        "shop/checkout@1.1.0", "teamflow-shop", "published", 0
    )


def test_calls_published_before_examples_existed_are_still_read() -> None:
    assert read_calls(["billing/invoice@1.0.0", {"ref": "billing/invoice@^1.0", "examples": [EXAMPLE]}]) == (
        Call("billing/invoice@1.0.0"),
        Call("billing/invoice@^1.0", examples=[EXAMPLE]),
    )


def test_plain_string_calls_keep_their_fingerprint_and_examples_do_not_enter_it() -> None:
    refs = {"charge": "test_release_safety:draft"}
    digest = fingerprint([Step("charge", draft, calls="billing/invoice@1.0.0")], refs, SCHEMA)
    before_calls_had_examples = hashlib.sha256(
        canonical_json(
            {
                "steps": [
                    {"name": "charge", "depends_on": [], "handler": refs["charge"], "retry_limit": 3, "retryable": True,
                     "timeout_s": None, "calls": ["billing/invoice@1.0.0"]}
                ],
                "context_schema": SCHEMA,
            }
        ).encode()
    ).hexdigest()
    assert digest == before_calls_had_examples
    with_examples = Step("charge", draft, calls=[Call("billing/invoice@1.0.0", examples=[EXAMPLE])])
    assert fingerprint([with_examples], refs, SCHEMA) == digest


# ------------------------------------------------------------------------------------------
# End to end: real distributions and the `teamflow` command
# ------------------------------------------------------------------------------------------

_BILLING = '''
    from teamflow import NamespacePolicy, Step, Workflow, hookimpl


    def draft(ctx):
        return {}


    def send(ctx):
        return {}


    SCHEMA = {
        "type": "object",
        "properties": {"customer": {"type": "string"}, "amount": {"type": "integer"}, "note": {"type": "string", "maxLength": 10}},
        "required": ["customer", "amount"],
        "additionalProperties": False,
    }


    @hookimpl
    def teamflow_namespaces():
        return [NamespacePolicy("billing", "billing", "billing@growthcorp.example", requires_approval=APPROVAL,
                                approvers=("lead@growthcorp.example",))]


    @hookimpl
    def teamflow_workflows():
        return [
            Workflow("billing", "invoice", version, [Step(first, draft), Step(second, send, depends_on=first)],
                     context_schema=context)
            for version, first, second, context in VERSIONS
        ]
'''


def billing_release(version: str, approval: bool, versions: str) -> Any:
    return plugin("teamflow-billing", _BILLING + f"\n    APPROVAL = {approval}\n    VERSIONS = {versions}\n", version=version)


BILLING_OLD = billing_release("1.0.0", True, '[("1.0.0", "draft", "send", SCHEMA)]')
BILLING_BREAKING = billing_release(
    "1.1.0", False, '[("1.1.0", "draft", "deliver", {**SCHEMA, "required": ["customer", "amount", "note"]})]'
)
BILLING_COMPATIBLE = billing_release(
    "1.1.0", True,
    '[("1.0.0", "draft", "send", SCHEMA), '
    '("1.1.0", "draft", "send", {**SCHEMA, "properties": {**SCHEMA["properties"], "amount": {"type": "number"}, '
    '"note": {"type": "string", "maxLength": 20}, "po_number": {"type": "string"}}})]',
)
BILLING_MAJOR = billing_release(
    "2.0.0", False, '[("2.0.0", "draft", "deliver", {**SCHEMA, "required": ["customer", "amount", "note"]})]'
)


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> DistFactory:
    return DistFactory(tmp_path_factory.mktemp("release-dists"))


def _release(report: dict[str, Any]) -> dict[str, Any]:
    release: dict[str, Any] = report["release"]
    return release


@pytest.mark.slow
def test_check_against_the_last_release_end_to_end(dists: DistFactory, tmp_path: Path) -> None:
    old, breaking = dists.install(BILLING_OLD, pip=True), dists.install(BILLING_BREAKING, pip=True)
    prod = Teamflow(tmp_path / "prod")
    prod.cwd.mkdir()
    prod.run("registry", "export", "-o", "release-1.0.0.json", sites=[old])
    export = prod.cwd / "release-1.0.0.json"
    assert json.loads(export.read_text())["distributions"]
    only = json.loads(prod.run("registry", "export", "--namespace", "billing", sites=[old]).stdout)
    assert [d["name"] for d in only["distributions"]] == ["teamflow-billing"]
    prod.run("approve", "billing/invoice@1.0.0", "--approver", "lead@growthcorp.example", sites=[old])
    prod.run("run", "billing/invoice@1.0.0", "--context", '{"customer": "c", "amount": 2}', "--async", sites=[old])

    # the new release on the production database: the unfinished task is seen
    report = prod.json("check", "--against", str(export), sites=[breaking], expect=1)
    assert "plugins" in report and "refusals" in report  # check's own JSON shape, with the release beside it
    found = {(f["rule"], f["where"]): f for f in _release(report)["findings"]}
    assert set(found) == {
        ("removed_with_tasks", "version 1.0.0"),
        ("policy_loosened", "policy requires_approval"),
        ("schema_incompatible", "context_schema #/required/note"),
        ("step_removed", "step 'send'"),
    }
    step = found[("step_removed", "step 'send'")]
    assert (step["namespace"], step["workflow"], step["previous"], step["current"]) == ("billing", "invoice", "1.0.0", "1.1.0")
    assert (step["previous_distribution"], step["distribution"]) == ("teamflow-billing 1.0.0", "teamflow-billing 1.1.0")
    assert all(f["fix"] and not f["allowed"] for f in found.values())
    text = prod.run("check", "--against", str(export), sites=[breaking], expect=1).stdout
    assert "BREAKING [schema_incompatible] billing/invoice 1.0.0 -> 1.1.0 (teamflow-billing 1.0.0 -> teamflow-billing 1.1.0)" in text
    assert "fix: give the new field no requirement" in text

    ci = Teamflow(tmp_path / "ci")
    ci.cwd.mkdir()
    compatible = ci.json("check", "--against", str(export), sites=[dists.install(BILLING_COMPATIBLE)])
    assert _release(compatible)["findings"] == [] and _release(compatible)["ok"] is True
    assert [(j["previous"], j["current"]) for j in _release(compatible)["judged"]] == [("1.0.0", "1.1.0")]

    major = ci.run("check", "--against", str(export), sites=[dists.install(BILLING_MAJOR)])
    assert "ALLOWED [step_removed] billing/invoice 1.0.0 -> 2.0.0" in major.stdout
    assert "(allowed: a major version bump may break)" in major.stdout and "BREAKING" not in major.stdout

    (ci.cwd / "bad.json").write_text('{"format": "teamflow-registry-export", "version": 9}')
    refused = ci.run("check", "--against", "bad.json", sites=[old], expect=2)
    assert "bad.json is in registry export format version 9, and this teamflow reads version 1 only" in refused.stderr


_TAX = '''
    from teamflow import NamespacePolicy, Step, Workflow, hookimpl


    def assess(ctx):
        return {"tax": round(ctx.context["amount"] * 0.2, 2)}


    def schema(*required):
        return {"type": "object", "properties": {"amount": {"type": "number"}, "region": {"type": "string"}},
                "required": ["amount", *required]}


    @hookimpl
    def teamflow_namespaces():
        return [NamespacePolicy("tax", "tax", "tax-team@growthcorp.example")]


    @hookimpl
    def teamflow_workflows():
        return [Workflow("tax", "assess", v, [Step("assess", assess)], context_schema=schema(*r)) for v, r in VERSIONS]
'''
TAX_1 = plugin("teamflow-tax", _TAX + '    VERSIONS = [("1.0.0", ())]\n', version="1.0.0")
TAX_2 = plugin("teamflow-tax", _TAX + '    VERSIONS = [("1.0.0", ()), ("1.1.0", ("region",))]\n', version="1.1.0")
TAX_3 = plugin("teamflow-tax", _TAX + '    VERSIONS = [("1.0.0", ()), ("1.2.0", ())]\n', version="1.2.0")
SHOP = plugin("teamflow-shop", '''
    from teamflow import Call, NamespacePolicy, Step, Workflow, hookimpl


    def charge(ctx):
        return {"charged": True}


    @hookimpl
    def teamflow_namespaces():
        return [NamespacePolicy("shop", "shop", "shop-team@growthcorp.example")]


    @hookimpl
    def teamflow_workflows():
        return [Workflow("shop", "checkout", "1.0.0", [
            Step("charge", charge, calls=[Call("tax/assess@^1.0", examples=[{"amount": 12.5}])]),
        ])]
''')


def _broken_by_tax(findings: list[dict[str, Any]], source: str) -> dict[str, Any]:
    [finding] = [f for f in findings if f["provider"] == "tax/assess@1.1.0"]
    assert (finding["distribution"], finding["step"], finding["example"], finding["source"]) == (
        "teamflow-shop", "charge", 0, source
    )
    assert 'does not accept example 0 {"amount": 12.5}: $: \'region\' is a required property' in finding["reason"]
    return finding


@pytest.mark.slow
def test_a_provider_release_that_breaks_a_caller_fails_both_checks_until_it_is_fixed(dists: DistFactory, tmp_path: Path) -> None:
    shop_site, tax1, tax2, tax3 = (dists.install(p) for p in (SHOP, TAX_1, TAX_2, TAX_3))
    places = {}
    for name in ("prod", "ci", "staging", "caller"):
        places[name] = Teamflow(tmp_path / name)
        places[name].cwd.mkdir()
    prod, ci, staging, caller = places.values()
    prod.run("registry", "export", "-o", "prod.json", sites=[shop_site, tax1])
    export = str(prod.cwd / "prod.json")

    # the provider's CI: its new release alone, against the production export
    report = ci.json("check", "--against", export, sites=[tax2], expect=1)
    _broken_by_tax(_release(report)["callers"], "export")
    text = ci.run("check", "--against", export, sites=[tax2], expect=1).stdout
    assert "CALLER teamflow-shop 1.0.0: shop/checkout@1.0.0 (in the export) step 'charge' calls tax/assess@^1.0" in text

    # ... or against what the caller's hosts published to a shared database
    assert staging.json("check", sites=[shop_site])["calls"][0]["severity"] == "warning"  # tax is known nowhere yet
    _broken_by_tax(staging.json("check", sites=[tax2], expect=1)["calls"], "published")

    # the caller's own check fails too: with the provider installed, or only published
    _broken_by_tax(caller.json("check", sites=[shop_site, tax2], expect=1)["calls"], "loaded")
    _broken_by_tax(staging.json("check", sites=[shop_site], expect=1)["calls"], "loaded")

    # the provider ships a compatible version: both pass
    fixed = ci.json("check", "--against", export, sites=[tax3])
    assert _release(fixed)["ok"] is True and _release(fixed)["callers"] == []
    assert Teamflow(tmp_path).json("check", sites=[shop_site, tax3])["calls"] == []
