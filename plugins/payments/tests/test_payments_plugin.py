"""The payments hookimpls register what the README promises."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

import jsonschema
import pytest

from teamflow import NamespacePolicy, Workflow
from teamflow.testing import assert_plugin_loads
from teamflow_payments import handlers, plugin

GRAPHS = {
    ("process_refund", "2.0.0"): {
        "validate_payment_eligibility": (),
        "process_gateway_refund": ("validate_payment_eligibility",),
        "update_payment_records": ("process_gateway_refund",),
        "notify_customer": ("update_payment_records",),
    },
    ("process_refund", "2.1.0"): {
        "validate_payment_eligibility": (),
        "check_fraud_indicators": ("validate_payment_eligibility",),
        "process_gateway_refund": ("check_fraud_indicators",),
        "update_payment_records": ("process_gateway_refund",),
        "notify_stakeholders": ("update_payment_records",),
    },
    ("process_payment", "3.0.0"): {
        "validate_payment_request": (),
        "authorize_payment": ("validate_payment_request",),
        "score_payment_risk": ("validate_payment_request",),
        "capture_payment": ("authorize_payment", "score_payment_risk"),
        "send_payment_receipt": ("capture_payment",),
    },
    ("handle_chargeback", "1.2.0"): {
        "record_chargeback": (),
        "gather_evidence": ("record_chargeback",),
        "decide_dispute_strategy": ("gather_evidence",),
        "submit_dispute_response": ("decide_dispute_strategy",),
    },
    ("reconcile_transactions", "1.1.0"): {
        "load_period": (),
        "fetch_gateway_settlements": ("load_period",),
        "fetch_ledger_entries": ("load_period",),
        "match_transactions": ("fetch_gateway_settlements", "fetch_ledger_entries"),
        "report_discrepancies": ("match_transactions",),
    },
    ("generate_payment_report", "2.0.0"): {
        "collect_payment_volume": (),
        "collect_refund_volume": (),
        "compile_payment_report": ("collect_payment_volume", "collect_refund_volume"),
        "publish_payment_report": ("compile_payment_report",),
    },
}

WORKFLOWS = plugin.teamflow_workflows()
BY_KEY = {(w.name, w.version): w for w in WORKFLOWS}


def test_teamflow_namespaces_declares_payments_open_to_every_caller() -> None:
    assert plugin.teamflow_namespaces() == [
        NamespacePolicy(
            name="payments",
            owner_team="payments",
            contact_email="payments-team@growthcorp.example",
            description="Payment processing, refunds, and financial workflows",
            allowed_callers=("*",),
        )
    ]


def test_teamflow_workflows_ships_each_version_once_in_its_namespace() -> None:
    assert sorted(BY_KEY) == sorted(GRAPHS)
    assert len(WORKFLOWS) == len(GRAPHS)
    assert {w.namespace for w in WORKFLOWS} == {"payments"}


@pytest.mark.parametrize("key", sorted(GRAPHS), ids="@".join)
def test_step_graph(key: tuple[str, str]) -> None:
    workflow = BY_KEY[key]
    assert {s.name: s.depends_on for s in workflow.steps} == GRAPHS[key]
    assert all(s.description for s in workflow.steps)
    assert workflow.description


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda w: w.ref)
def test_handlers_are_module_level_functions_of_handlers_module(workflow: Workflow) -> None:
    for step in workflow.steps:
        assert step.handler.__module__ == "teamflow_payments.handlers"
        assert getattr(handlers, step.handler.__qualname__) is step.handler


def test_only_2_0_0_is_deprecated_and_points_to_2_1_0() -> None:
    assert BY_KEY["process_refund", "2.0.0"].deprecated == "use 2.1.0 (fraud screening)"
    assert [w.ref for w in WORKFLOWS if w.deprecated] == ["payments/process_refund@2.0.0"]


def test_gateway_refund_is_retried_and_time_limited() -> None:
    for version in ("2.0.0", "2.1.0"):
        step = next(s for s in BY_KEY["process_refund", version].steps if s.name == "process_gateway_refund")
        assert step.retryable and step.retry_limit == 5 and step.timeout_s == 10


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda w: w.ref)
def test_context_schema_is_valid_and_open(workflow: Workflow) -> None:
    schema = workflow.context_schema
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is True
    assert schema["required"]


@pytest.mark.parametrize("version", ["2.0.0", "2.1.0"])
@pytest.mark.parametrize(
    "context",
    [
        {"payment_id": "pay_123"},
        {"payment_id": "pay_123", "amount": 49.99},
        {"payment_id": "pay_9", "cs_ticket_id": "cs_9", "reason": "x", "initiated_by": "customer_success"},
        {"payment_id": "pay_1", "simulate_failure": {"step": "notify_customer", "mode": "permanent"}},
    ],
)
def test_refund_schema_accepts_seed_contexts(version: str, context: dict) -> None:
    jsonschema.validate(context, BY_KEY["process_refund", version].context_schema)


@pytest.mark.parametrize(
    "context",
    [
        {},
        {"amount": 10},
        {"payment_id": "ch_123"},
        {"payment_id": "pay_1", "amount": 0},
        {"payment_id": "pay_1", "amount": "12"},
        {"payment_id": "pay_1", "simulate_failure": {"step": "x", "mode": "sometimes"}},
    ],
)
def test_refund_schema_rejects_bad_contexts(context: dict) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(context, BY_KEY["process_refund", "2.1.0"].context_schema)


def test_plugin_loads_with_no_refusal_and_its_hookimpls_match_the_hookspecs() -> None:
    record = assert_plugin_loads("teamflow-payments").plugin("teamflow-payments")
    assert record.hooks == ("teamflow_namespaces", "teamflow_workflows")
    assert record.namespaces == ("payments",)
    assert len(record.workflows) == len(GRAPHS)


def test_entry_point_names_the_plugin_module() -> None:
    (ep,) = [ep for ep in entry_points(group="teamflow.plugins") if ep.name == "payments"]
    assert ep.value == "teamflow_payments.plugin"
    assert ep.load() is importlib.import_module("teamflow_payments.plugin")
