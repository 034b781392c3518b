"""The registry on its own: validation, ownership, conflicts, resolution, order independence."""

from __future__ import annotations

import itertools

import pytest
from flows import noop, policy
from hypothesis import given, settings
from hypothesis import strategies as st

from teamflow import Candidate, Conflict, Resolution, Step, Workflow
from teamflow.errors import NamespaceNotFound, VersionNotFound, WorkflowNotFound, WorkflowRefused
from teamflow.registry import (
    ConflictOutcome,
    Contribution,
    Drift,
    PlatformNamespace,
    Refusal,
    Rules,
    Source,
    build_registry,
)
from teamflow.serialization import structure, unstructure

PAY = Source("teamflow-payments", "1.0.0")
CS = Source("teamflow-customer-success", "1.0.0")
ROGUE = Source("teamflow-rogue", "6.6.6")


def wf(ns: str, name: str, version: str, steps: list[Step] | None = None, **kw: object) -> Workflow:
    return Workflow(ns, name, version, steps or [Step("s1", noop)], **kw)  # type: ignore[arg-type]


def contrib(source: Source, namespaces: list[str] = (), workflows: list[Workflow] = ()) -> Contribution:  # type: ignore[assignment]
    return Contribution(source, tuple(policy(n) for n in namespaces), tuple(workflows))


def kinds(registry) -> list[tuple[str, str, str]]:
    return [(r.kind, r.distribution, r.subject) for r in registry.refusals]


# -- validation ------------------------------------------------------------------------------


def test_partial_version_is_refused_with_the_fix_and_siblings_still_load() -> None:
    reg = build_registry(
        [contrib(PAY, ["payments"], [wf("payments", "refund", "2.1"), wf("payments", "refund", "2.0.0")])]
    )
    assert reg.get("payments", "refund", "2.0.0") is not None
    [refusal] = reg.refusals
    assert refusal.kind == "invalid_workflow"
    assert refusal.distribution == "teamflow-payments"
    assert refusal.subject == "payments/refund@2.1"
    assert "2.1.0" in refusal.reason


@pytest.mark.parametrize(
    ("steps", "step", "words"),
    [
        ([Step("a", noop, depends_on="b"), Step("b", noop, depends_on="a")], "a", "cycle"),
        ([Step("a", noop, depends_on="a")], "a", "depends on itself"),
        ([Step("a", noop, depends_on="ghost")], "a", "unknown step 'ghost'"),
        ([Step("a", noop), Step("a", noop)], "a", "duplicate step"),
        ([Step("Bad-Name", noop)], "Bad-Name", "must match"),
        ([Step("a", lambda ctx: 1)], "a", "lambda or closure"),
        ([Step("a", "flows:does_not_exist")], "a", "no attribute"),
        ([Step("a", "nowhere.module:fn")], "a", "cannot import"),
        ([Step("a", noop, retry_limit=-1)], "a", "retry_limit"),
        ([Step("a", noop, timeout_s=0)], "a", "timeout_s"),
        ([Step("a", noop, calls="not a ref")], "a", "calls entry"),
    ],
)
def test_bad_step_graphs_are_refused_naming_plugin_workflow_and_step(steps, step, words) -> None:
    reg = build_registry(
        [contrib(PAY, ["payments"], [wf("payments", "bad", "1.0.0", steps), wf("payments", "good", "1.0.0")])]
    )
    assert reg.get("payments", "good", "1.0.0") is not None
    [refusal] = reg.refusals
    assert (refusal.distribution, refusal.subject, refusal.step) == (
        "teamflow-payments",
        "payments/bad@1.0.0",
        step,
    )
    assert words in refusal.reason
    assert "teamflow-payments" in str(refusal) and "payments/bad@1.0.0" in str(refusal)


def test_import_string_handlers_resolve_and_invalid_schema_is_refused() -> None:
    good = wf("payments", "by_string", "1.0.0", [Step("a", "flows:noop")])
    bad_schema = wf("payments", "schema", "1.0.0", context_schema={"type": "not-a-type"})
    reg = build_registry([contrib(PAY, ["payments"], [good, bad_schema])])
    assert reg.get("payments", "by_string", "1.0.0").handlers["a"] is noop
    assert [r.subject for r in reg.refusals] == ["payments/schema@1.0.0"]
    assert "JSON Schema" in reg.refusals[0].reason


def test_constructing_public_types_never_raises() -> None:
    Workflow("Bad NS", 3, None, steps=None)  # type: ignore[arg-type]
    Step(None, None, depends_on=5, retry_limit="x")  # type: ignore[arg-type]
    reg = build_registry(
        [
            contrib(
                PAY,
                ["payments"],
                [
                    Workflow("payments", "x", None, steps=None),  # type: ignore[arg-type]
                    "not a workflow",
                ],
            )
        ]
    )  # type: ignore[list-item]
    assert len(reg.refusals) == 2 and len(reg) == 0


# -- ownership --------------------------------------------------------------------------------


def test_workflow_in_undeclared_namespace_or_from_non_owner_is_refused() -> None:
    reg = build_registry(
        [
            contrib(PAY, ["payments"], [wf("payments", "refund", "1.0.0")]),
            contrib(ROGUE, [], [wf("payments", "steal", "1.0.0"), wf("nowhere", "x", "1.0.0")]),
        ]
    )
    assert sorted(kinds(reg)) == [
        ("not_owner", "teamflow-rogue", "payments/steal@1.0.0"),
        ("undeclared_namespace", "teamflow-rogue", "nowhere/x@1.0.0"),
    ]
    not_owner = next(r for r in reg.refusals if r.kind == "not_owner")
    assert "teamflow-payments" in not_owner.reason
    undeclared = next(r for r in reg.refusals if r.kind == "undeclared_namespace")
    # printed by `teamflow check` itself: the fix says what helps, never "see teamflow check"
    assert undeclared.fix == (
        "declare 'nowhere' with teamflow_namespaces() in teamflow-rogue, "
        "or register the workflow in a namespace teamflow-rogue owns"
    )


def test_a_workflow_in_a_blocked_namespace_says_to_settle_its_owner() -> None:
    reg = build_registry(
        [
            contrib(PAY, ["payments"]),
            contrib(ROGUE, ["payments"]),
            contrib(CS, [], [wf("payments", "x", "1.0.0")]),
        ]
    )
    [refusal] = [r for r in reg.refusals if r.kind == "undeclared_namespace"]
    assert refusal.reason.startswith("namespace 'payments' is blocked: ")
    assert refusal.fix.startswith("settle who owns 'payments' first: pin it in teamflow.toml ([owner_pins] payments")
    assert "teamflow check" not in refusal.fix


def test_two_declarations_without_pin_block_the_namespace() -> None:
    reg = build_registry(
        [
            contrib(PAY, ["payments"], [wf("payments", "refund", "2.1.0")]),
            contrib(ROGUE, ["payments"], [wf("payments", "refund", "2.1.0")]),
        ]
    )
    assert "payments" not in reg.namespaces and "payments" in reg.blocked
    [ns_conflict] = [c for c in reg.conflicts if c.conflict.kind == "namespace"]
    assert {c.distribution for c in ns_conflict.conflict.candidates} == {
        "teamflow-payments",
        "teamflow-rogue",
    }
    assert ns_conflict.resolution.kept is None
    assert len(reg) == 0
    with pytest.raises(NamespaceNotFound, match="blocked"):
        reg.resolve("payments", "refund")


def test_owner_pin_wins_and_key_conflict_keeps_the_owner() -> None:
    rules = Rules(owner_pins={"payments": "teamflow-payments"})
    reg = build_registry(
        [
            contrib(ROGUE, ["payments"], [wf("payments", "refund", "2.1.0", [Step("evil", noop)])]),
            contrib(PAY, ["payments"], [wf("payments", "refund", "2.1.0")]),
        ],
        rules,
    )
    assert reg.namespaces["payments"].owner == "teamflow-payments"
    assert reg.get("payments", "refund", "2.1.0").source == PAY
    key = next(c for c in reg.conflicts if c.conflict.kind == "workflow")
    assert key.conflict.key == "payments/refund@2.1.0"
    assert key.resolution.kept == Candidate("teamflow-payments", "1.0.0", "payments/refund@2.1.0")
    assert {r.kind for r in reg.refusals if r.distribution == "teamflow-rogue"} == {
        "namespace_conflict",
        "workflow_conflict",
    }


def test_recorded_owner_keeps_its_namespace_against_a_newcomer() -> None:
    rules = Rules(recorded_owners={"payments": "teamflow-payments"})
    reg = build_registry([contrib(PAY, ["payments"]), contrib(ROGUE, ["payments"])], rules)
    assert reg.namespaces["payments"].owner == "teamflow-payments"
    [refusal] = reg.refusals
    assert refusal.distribution == "teamflow-rogue" and "recorded" in refusal.reason
    # The recorded owner uninstalled: the newcomer still does not get it.
    reg = build_registry([contrib(ROGUE, ["payments"])], rules)
    assert "payments" not in reg.namespaces
    assert "owner_pins" in reg.refusals[0].fix


def test_platform_namespace_takes_policy_from_config_and_lists_contributors() -> None:
    shared = PlatformNamespace(
        policy("shared", requires_approval=True, approvers=("sarah@x",)), ("teamflow-customer-success",)
    )
    rules = Rules(platform_namespaces={"shared": shared})
    reg = build_registry(
        [
            contrib(CS, [], [wf("shared", "notify", "1.0.0")]),
            contrib(ROGUE, ["shared"], [wf("shared", "other", "1.0.0")]),
        ],
        rules,
    )
    assert reg.namespaces["shared"].policy.requires_approval
    assert reg.get("shared", "notify", "1.0.0") is not None
    assert sorted(kinds(reg)) == [
        ("not_owner", "teamflow-rogue", "shared"),
        ("not_owner", "teamflow-rogue", "shared/other@1.0.0"),
    ]


def test_same_key_twice_from_one_distribution_is_a_plugin_error() -> None:
    reg = build_registry(
        [contrib(PAY, ["payments"], [wf("payments", "r", "1.0.0"), wf("payments", "r", "1.0.0")])]
    )
    assert kinds(reg) == [("duplicate", "teamflow-payments", "payments/r@1.0.0")]
    assert reg.get("payments", "r", "1.0.0") is None


def test_resolver_decides_and_a_bad_resolution_is_ignored() -> None:
    contributions = [contrib(PAY, ["payments"]), contrib(ROGUE, ["payments"])]

    def platform(conflict: Conflict) -> tuple[Resolution | None, str]:
        keep = next(c for c in conflict.candidates if c.distribution == "teamflow-payments")
        return Resolution(keep, "platform decision"), "teamflow-platform"

    reg = build_registry(contributions, resolver=platform)
    assert reg.namespaces["payments"].owner == "teamflow-payments"
    assert reg.conflicts[0].resolution.decided_by == "teamflow-platform"

    def bogus(conflict: Conflict) -> tuple[Resolution | None, str]:
        return Resolution(Candidate("somebody-else", "1", "payments"), "mine"), "teamflow-platform"

    reg = build_registry(contributions, resolver=bogus)
    assert "payments" not in reg.namespaces
    assert any(r.kind == "bad_resolution" for r in reg.refusals)


def test_drift_is_reported_and_refused_in_strict_mode() -> None:
    first = build_registry([contrib(PAY, ["payments"], [wf("payments", "r", "1.0.0")])])
    recorded = {("payments", "r", "1.0.0"): first.get("payments", "r", "1.0.0").fingerprint}
    changed = [contrib(PAY, ["payments"], [wf("payments", "r", "1.0.0", [Step("s1", noop, retry_limit=9)])])]
    lax = build_registry(changed, Rules(recorded_fingerprints=recorded))
    assert [d.ref for d in lax.drift] == ["payments/r@1.0.0"] and lax.get(
        "payments", "r", "1.0.0"
    ) is not None
    strict = build_registry(changed, Rules(recorded_fingerprints=recorded, strict=True))
    assert strict.get("payments", "r", "1.0.0") is None and strict.refusals[0].kind == "drift"


@pytest.mark.parametrize("asked", ["1.0.0", "^1.0", None])
def test_a_version_refused_for_drift_is_reported_as_drift_not_as_missing(asked: str | None) -> None:
    first = build_registry([contrib(PAY, ["payments"], [wf("payments", "r", "1.0.0")])])
    recorded = {("payments", "r", "1.0.0"): first.get("payments", "r", "1.0.0").fingerprint}
    changed = [contrib(PAY, ["payments"], [wf("payments", "r", "1.0.0", [Step("s1", noop, retry_limit=9)])])]
    strict = build_registry(changed, Rules(recorded_fingerprints=recorded, strict=True))
    with pytest.raises(WorkflowRefused) as refused:
        strict.resolve("payments", "r", asked)
    assert refused.value.code == "workflow_refused" and refused.value.status == 404
    assert "payments/r@1.0.0 was registered by teamflow-payments" in refused.value.detail
    assert "refused at load (drift): released version changed without a version bump" in refused.value.detail
    assert refused.value.facts["fix"] == "release the change under a new version, or restore the released definition"
    assert refused.value.facts["runnable"] == []


def test_a_refused_version_beside_runnable_ones_is_named_only_when_asked_for() -> None:
    first = build_registry([contrib(PAY, ["payments"], [wf("payments", "r", "1.0.0")])])
    recorded = {("payments", "r", "1.0.0"): first.get("payments", "r", "1.0.0").fingerprint}
    changed = [contrib(PAY, ["payments"], [
        wf("payments", "r", "1.0.0", [Step("s1", noop, retry_limit=9)]), wf("payments", "r", "1.1.0"),
    ])]
    strict = build_registry(changed, Rules(recorded_fingerprints=recorded, strict=True))
    assert strict.resolve("payments", "r", "^1.0").version.text == "1.1.0"
    with pytest.raises(WorkflowRefused) as refused:
        strict.resolve("payments", "r", "1.0.0")
    assert refused.value.facts["runnable"] == ["1.1.0"]
    with pytest.raises(VersionNotFound):  # nothing refused matches: still "no version matches"
        strict.resolve("payments", "r", "2.0.0")
    with pytest.raises(WorkflowNotFound):
        strict.resolve("payments", "nothing")


def test_fingerprint_ignores_descriptions_and_deprecation_but_not_behaviour() -> None:
    def fp(**kw: object) -> str:
        steps = kw.pop("steps", [Step("s1", noop, description="x")])
        reg = build_registry([contrib(PAY, ["payments"], [wf("payments", "r", "1.0.0", steps, **kw)])])  # type: ignore[arg-type]
        return reg.get("payments", "r", "1.0.0").fingerprint

    base = fp()
    assert fp(description="other", deprecated="use 2") == base
    assert fp(steps=[Step("s1", noop, description="changed")]) == base
    assert fp(steps=[Step("s1", noop, timeout_s=5)]) != base
    assert fp(steps=[Step("s1", "flows:slow")]) != base
    assert fp(context_schema={"type": "object"}) != base


# -- messages and fixes -----------------------------------------------------------------------


def test_a_conflict_in_another_teams_namespace_names_the_owner_and_never_says_bump() -> None:
    reg = build_registry(
        [
            contrib(PAY, ["payments"], [wf("payments", "refund", "2.1.0")]),
            contrib(ROGUE, [], [wf("payments", "refund", "2.1.0", [Step("evil", noop)])]),
        ]
    )
    [outcome] = reg.conflicts
    assert outcome.message == (
        "workflow payments/refund@2.1.0: teamflow-payments 1.0.0, teamflow-rogue 6.6.6 -> kept "
        "teamflow-payments 1.0.0 (teamflow-payments owns namespace 'payments'; decided by default)"
    )
    [refusal] = reg.refusals
    assert refusal.kind == "workflow_conflict"
    for fix in (outcome.fix, refusal.fix):
        assert "bump" not in fix
        assert "belongs to teamflow-payments (team team-payments)" in fix
        assert "register it in a namespace teamflow-rogue owns" in fix
        assert "payments@example.test" in fix
    assert refusal.message == str(refusal) and f"(fix: {refusal.fix})" in refusal.message


def test_a_blocked_workflow_key_says_no_candidate_owns_the_namespace() -> None:
    reg = build_registry(
        [
            contrib(PAY, ["payments"]),
            contrib(CS, [], [wf("payments", "x", "1.0.0")]),
            contrib(ROGUE, [], [wf("payments", "x", "1.0.0")]),
        ]
    )
    [outcome] = reg.conflicts
    assert outcome.resolution.kept is None and "all refused, key blocked" in outcome.message
    fixes = [outcome.fix] + [r.fix for r in reg.refusals if r.kind == "workflow_conflict"]
    assert len(fixes) == 3
    for fix in fixes:
        assert "bump" not in fix
        assert fix.startswith(
            "none of the candidates owns namespace 'payments'; it belongs to teamflow-payments"
        )
        assert "payments@example.test" in fix
    assert "each of teamflow-customer-success, teamflow-rogue" in outcome.fix


def test_a_key_in_an_undeclared_namespace_says_no_candidate_owns_it() -> None:
    reg = build_registry(
        [contrib(CS, [], [wf("nowhere", "x", "1.0.0")]), contrib(ROGUE, [], [wf("nowhere", "x", "1.0.0")])]
    )
    [outcome] = reg.conflicts
    assert outcome.fix.startswith(
        "none of the candidates owns namespace 'nowhere', which no distribution declares"
    )
    assert "bump" not in outcome.fix


def test_a_resolver_that_overrules_the_owner_is_named_in_the_owners_fix() -> None:
    def platform(conflict: Conflict) -> tuple[Resolution | None, str]:
        keep = next(c for c in conflict.candidates if c.distribution == "teamflow-rogue")
        return Resolution(keep, "platform decision"), "teamflow-platform"

    reg = build_registry(
        [
            contrib(PAY, ["payments"], [wf("payments", "refund", "2.1.0")]),
            contrib(ROGUE, [], [wf("payments", "refund", "2.1.0")]),
        ],
        resolver=platform,
    )
    [outcome] = reg.conflicts
    assert outcome.message.endswith(
        "-> kept teamflow-rogue 6.6.6 (platform decision; decided by teamflow-platform)"
    )
    owner_refusal = next(r for r in reg.refusals if r.kind == "workflow_conflict")
    assert owner_refusal.distribution == "teamflow-payments"
    for fix in (outcome.fix, owner_refusal.fix):
        assert fix.startswith(
            "the conflict resolver teamflow-platform kept teamflow-rogue over teamflow-payments"
        )
        assert "bump" not in fix


def test_a_namespace_conflict_says_to_pin_the_owner_or_uninstall_all_but_one() -> None:
    reg = build_registry([contrib(PAY, ["payments"]), contrib(ROGUE, ["payments"])])
    [outcome] = reg.conflicts
    assert outcome.message == (
        "namespace payments: teamflow-payments 1.0.0, teamflow-rogue 6.6.6 -> all refused, key blocked "
        "(2 distributions declare namespace 'payments' and no owner pin or recorded owner decides; "
        "decided by default)"
    )
    assert "[owner_pins] payments" in outcome.fix and "uninstall all but one" in outcome.fix
    assert {r.fix for r in reg.refusals} == {outcome.fix}

    pinned = build_registry(
        [contrib(PAY, ["payments"]), contrib(ROGUE, ["payments"])],
        Rules(owner_pins={"payments": "teamflow-payments"}),
    )
    assert pinned.conflicts[0].fix.startswith("namespace 'payments' is pinned to teamflow-payments")
    recorded = build_registry(
        [contrib(ROGUE, ["payments"])], Rules(recorded_owners={"payments": "teamflow-payments"})
    )
    assert recorded.conflicts[0].fix.startswith(
        "teamflow-payments, the recorded owner of namespace 'payments'"
    )


def test_drift_carries_its_message_and_fix() -> None:
    first = build_registry([contrib(PAY, ["payments"], [wf("payments", "r", "1.0.0")])])
    before = first.get("payments", "r", "1.0.0").fingerprint
    changed = [contrib(PAY, ["payments"], [wf("payments", "r", "1.0.0", [Step("s1", noop, retry_limit=9)])])]
    recorded = {("payments", "r", "1.0.0"): before}
    [lax] = build_registry(changed, Rules(recorded_fingerprints=recorded)).drift
    assert lax.message == (
        f"payments/r@1.0.0 from teamflow-payments: recorded fingerprint {before[:12]}, now {lax.current[:12]}: "
        "a released version changed without a version bump; loaded (set strict = true to refuse)"
    )
    assert lax.fix == "release the change under a new version, or restore the released definition"
    strict = build_registry(changed, Rules(recorded_fingerprints=recorded, strict=True))
    [drift] = strict.drift
    assert drift.message.endswith("; refused (strict mode)")
    assert strict.refusals[0].fix == drift.fix


def test_unstructured_records_carry_message_and_fix_and_structure_back() -> None:
    first = build_registry([contrib(PAY, ["payments"], [wf("payments", "r", "1.0.0")])])
    recorded = {("payments", "r", "1.0.0"): first.get("payments", "r", "1.0.0").fingerprint}
    reg = build_registry(
        [
            contrib(PAY, ["payments"], [wf("payments", "r", "1.0.0", [Step("s1", noop, retry_limit=9)])]),
            contrib(ROGUE, [], [wf("payments", "r", "1.0.0")]),
        ],
        Rules(recorded_fingerprints=recorded),
    )
    records = [reg.refusals[0], reg.conflicts[0], reg.drift[0]]
    assert [type(r) for r in records] == [Refusal, ConflictOutcome, Drift]
    for record in records:
        data = unstructure(record)
        assert (data["message"], data["fix"]) == (record.message, record.fix)
        assert data["message"] and data["fix"]
        # The HTTP API structures an unstructured load report back into these types.
        assert structure(data, type(record)) == record


# -- resolution -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def versioned():
    versions = [
        ("1.0.0", None),
        ("1.2.0", None),
        ("1.2.5", None),
        ("1.3.0-rc.1", None),
        ("2.0.0", None),
        ("2.1.0", "use 2.0.0"),
        ("2.2.0-beta.1", None),
        ("3.0.0", "use 2.0.0"),
    ]
    flows = [wf("payments", "refund", v, deprecated=d) for v, d in versions]
    return build_registry(
        [contrib(PAY, ["payments"], flows)], Rules(default_versions={"payments/refund": "^1.2"})
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("1.2.0", "1.2.0"),
        ("=1.2.0", "1.2.0"),
        ("^1.2", "1.2.5"),
        ("~1.2", "1.2.5"),
        ("~1.2.0", "1.2.5"),
        ("1.x", "1.2.5"),
        ("1.2.x", "1.2.5"),
        (">=1.0.0,<2.0.0", "1.2.5"),
        (">=1.0.0 <1.2.5", "1.2.0"),
        ("^2.0", "2.0.0"),  # 2.1.0 is deprecated: the newest non-deprecated match wins
        ("2.1.0", "2.1.0"),  # exact asks are honoured even when deprecated
        ("^3", "3.0.0"),  # only a deprecated one matches: it is chosen
        ("*", "2.0.0"),
        ("1.3.0-rc.1", "1.3.0-rc.1"),
        (">=1.3.0-rc.0 <1.4.0", "1.3.0-rc.1"),
        ("^1.3.0-rc.1", "1.3.0-rc.1"),
        ("2.2.0-beta.1", "2.2.0-beta.1"),
        ("1 - 1.2.0", "1.2.0"),
        ("<1.0.0 || ^2.0", "2.0.0"),
    ],
)
def test_resolve_constraints(versioned, spec: str, expected: str) -> None:
    assert versioned.resolve("payments", "refund", spec).version.text == expected


def test_prereleases_only_when_named_and_default_pin(versioned) -> None:
    assert versioned.resolve("payments", "refund", "^1.2").version.text == "1.2.5"  # 1.3.0-rc.1 not taken
    assert (
        versioned.resolve("payments", "refund", ">=2.0.0").version.text == "2.0.0"
    )  # 2.2.0-beta.1 not taken
    assert versioned.resolve("payments", "refund").version.text == "1.2.5"  # the configured default pin
    unpinned = build_registry(
        [contrib(PAY, ["payments"], [wf("payments", "r", v) for v in ("1.0.0", "1.1.0-rc.1")])]
    )
    assert unpinned.resolve("payments", "r").version.text == "1.0.0"


def test_resolution_errors_list_what_exists(versioned) -> None:
    with pytest.raises(VersionNotFound) as exc:
        versioned.resolve("payments", "refund", "^4")
    assert "1.0.0" in exc.value.detail and "3.0.0" in exc.value.detail
    with pytest.raises(WorkflowNotFound, match="refund"):
        versioned.resolve("payments", "nope")
    with pytest.raises(NamespaceNotFound, match="payments"):
        versioned.resolve("nope", "refund")


# -- order independence ---------------------------------------------------------------------

DISTS = [Source(f"dist-{c}", "1.0.0") for c in "abcd"]
registration = st.tuples(
    st.sampled_from(DISTS),
    st.lists(st.sampled_from(["ns1", "ns2", "ns3"]), max_size=2),
    st.lists(
        st.tuples(
            st.sampled_from(["ns1", "ns2", "ns3", "ns4"]),
            st.sampled_from(["w1", "w2"]),
            st.sampled_from(["1.0.0", "1.1.0", "2.0", "1.0.0-rc.1"]),
            st.booleans(),
        ),
        max_size=4,
    ),
)


def outcome(registry) -> tuple:
    runnable = sorted((e.ref, e.source.distribution, e.fingerprint) for e in registry.entries())
    owners = sorted((n, ns.owner) for n, ns in registry.namespaces.items())
    refused = sorted((r.kind, r.distribution, r.subject, r.reason, r.step or "") for r in registry.refusals)
    conflicts = sorted(
        (c.conflict.key, c.resolution.kept.distribution if c.resolution.kept else "")
        for c in registry.conflicts
    )
    return runnable, owners, refused, conflicts


@settings(max_examples=60, deadline=None)
@given(st.lists(registration, min_size=1, max_size=5), st.data())
def test_outcome_is_identical_for_every_load_order(regs, data) -> None:
    contributions = []
    for source, namespaces, workflows in regs:
        flows = [
            wf(ns, name, version, [Step("s1", noop)] if good else [Step("s1", noop, depends_on="s1")])
            for ns, name, version, good in workflows
        ]
        contributions.append(contrib(source, namespaces, flows))
    pins = data.draw(
        st.dictionaries(
            st.sampled_from(["ns1", "ns2"]), st.sampled_from([d.distribution for d in DISTS]), max_size=1
        )
    )
    rules = Rules(owner_pins=pins)
    expected = outcome(build_registry(contributions, rules))
    orders = (
        list(itertools.permutations(contributions))
        if len(contributions) <= 4
        else [data.draw(st.permutations(contributions)) for _ in range(10)]
    )
    for order in orders:
        assert outcome(build_registry(order, rules)) == expected


@settings(max_examples=30, deadline=None)
@given(st.lists(registration, min_size=1, max_size=4))
def test_messages_and_fixes_are_identical_for_every_load_order(regs) -> None:
    contributions = [
        contrib(source, namespaces, [wf(ns, name, version) for ns, name, version, _ in workflows])
        for source, namespaces, workflows in regs
    ]

    def texts(registry) -> tuple:
        return (
            sorted((r.message, r.fix) for r in registry.refusals),
            [(c.message, c.fix) for c in registry.conflicts],
        )

    expected = texts(build_registry(contributions))
    for order in itertools.permutations(contributions):
        assert texts(build_registry(order)) == expected
