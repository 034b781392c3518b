"""The customer_success hookimpls register what the README promises."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

import jsonschema
import pytest

from teamflow import Call, NamespacePolicy, Workflow
from teamflow.testing import assert_plugin_loads
from teamflow_customer_success import handlers, plugin

GRAPHS = {
    ("process_refund", "1.3.0"): {
        "validate_refund_request": (),
        "check_refund_policy": ("validate_refund_request",),
        "get_manager_approval": ("check_refund_policy",),
        "execute_payment_refund": ("get_manager_approval",),
        "update_customer_record": ("execute_payment_refund",),
    },
    ("escalate_ticket", "2.2.0"): {
        "assess_ticket_severity": (),
        "notify_on_call_manager": ("assess_ticket_severity",),
        "gather_customer_history": ("assess_ticket_severity",),
        "assign_senior_agent": ("notify_on_call_manager", "gather_customer_history"),
        "update_ticket_status": ("assign_senior_agent",),
    },
    ("generate_satisfaction_survey", "1.0.0"): {
        "load_ticket_interaction": (),
        "select_survey_template": ("load_ticket_interaction",),
        "send_survey": ("select_survey_template",),
    },
    ("process_cancellation", "1.1.0"): {
        "validate_cancellation_request": (),
        "calculate_prorated_refund": ("validate_cancellation_request",),
        "cancel_subscription": ("calculate_prorated_refund",),
        "send_cancellation_confirmation": ("cancel_subscription",),
    },
    ("generate_support_report", "1.5.0"): {
        "collect_ticket_metrics": (),
        "collect_satisfaction_scores": (),
        "compile_support_report": ("collect_ticket_metrics", "collect_satisfaction_scores"),
        "publish_support_report": ("compile_support_report",),
    },
}

WORKFLOWS = plugin.teamflow_workflows()
BY_KEY = {(w.name, w.version): w for w in WORKFLOWS}


def test_teamflow_namespaces_declares_customer_success() -> None:
    assert plugin.teamflow_namespaces() == [
        NamespacePolicy(
            name="customer_success",
            owner_team="customer_success",
            contact_email="cs-team@growthcorp.example",
            description="Customer support and success workflows",
        )
    ]


def test_teamflow_workflows_ships_each_version_once_in_its_namespace() -> None:
    assert sorted(BY_KEY) == sorted(GRAPHS)
    assert len(WORKFLOWS) == len(GRAPHS)
    assert {w.namespace for w in WORKFLOWS} == {"customer_success"}
    assert not any(w.deprecated for w in WORKFLOWS)


@pytest.mark.parametrize("key", sorted(GRAPHS), ids="@".join)
def test_step_graph(key: tuple[str, str]) -> None:
    workflow = BY_KEY[key]
    assert {s.name: s.depends_on for s in workflow.steps} == GRAPHS[key]
    assert all(s.description for s in workflow.steps)
    assert workflow.description


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda w: w.ref)
def test_handlers_are_module_level_functions_of_handlers_module(workflow: Workflow) -> None:
    for step in workflow.steps:
        assert step.handler.__module__ == "teamflow_customer_success.handlers"
        assert getattr(handlers, step.handler.__qualname__) is step.handler


def test_only_execute_payment_refund_declares_a_cross_team_call() -> None:
    calls = {(w.ref, s.name): s.calls for w in WORKFLOWS for s in w.steps if s.calls}
    assert calls == {
        ("customer_success/process_refund@1.3.0", "execute_payment_refund"): (
            Call("payments/process_refund@2.1.0", examples=handlers.PAYMENTS_REFUND_EXAMPLES),
        )
    }


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda w: w.ref)
def test_context_schema_is_valid_and_open(workflow: Workflow) -> None:
    schema = workflow.context_schema
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is True
    assert schema["required"]


@pytest.mark.parametrize(
    "context",
    [
        {"ticket_id": "cs_456"},
        {"ticket_id": "cs_456", "customer_id": "cust_789"},
        {"ticket_id": "cs_1", "amount": 900, "manager_override": True},
        {
            "ticket_id": "cs_1",
            "payments_simulate_failure": {"step": "process_gateway_refund", "mode": "permanent"},
        },
    ],
)
def test_refund_schema_accepts_seed_contexts(context: dict) -> None:
    jsonschema.validate(context, BY_KEY["process_refund", "1.3.0"].context_schema)


@pytest.mark.parametrize(
    "context",
    [
        {},
        {"customer_id": "cust_789"},
        {"ticket_id": "456"},
        {"ticket_id": "cs_abc"},
        {"ticket_id": "cs_1", "amount": -5},
        {"ticket_id": "cs_1", "manager_override": "yes"},
        {"ticket_id": "cs_1", "simulate_failure": {"mode": "permanent"}},
    ],
)
def test_refund_schema_rejects_bad_contexts(context: dict) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(context, BY_KEY["process_refund", "1.3.0"].context_schema)


def test_plugin_loads_with_no_refusal_and_its_hookimpls_match_the_hookspecs() -> None:
    record = assert_plugin_loads("teamflow-customer-success").plugin("teamflow-customer-success")
    assert record.hooks == ("teamflow_namespaces", "teamflow_workflows")
    assert record.namespaces == ("customer_success",)
    assert len(record.workflows) == len(GRAPHS)


def test_entry_point_names_the_plugin_module() -> None:
    (ep,) = [ep for ep in entry_points(group="teamflow.plugins") if ep.name == "customer_success"]
    assert ep.value == "teamflow_customer_success.plugin"
    assert ep.load() is importlib.import_module("teamflow_customer_success.plugin")
