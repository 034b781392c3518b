"""The customer_success handlers: simulated systems, approvals and the call into payments.

Workflows run to the end on a teamflow host holding this plugin and a stand-in for the
payments team's ``process_refund@2.1.0`` (``teamflow_host``, from ``teamflow.testing``),
never the payments plugin itself; single handlers run with ``run_step``, whose
``children`` answer the call into payments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from teamflow import (
    NamespacePolicy,
    PermanentError,
    RetryableError,
    Step,
    StepContext,
    StepResult,
    TaskRequest,
    TaskResult,
    Workflow,
    hookimpl,
)
from teamflow.testing import run_step, run_workflow
from teamflow_customer_success import handlers

REFUND = handlers.PAYMENTS_REFUND


def payments_refund(context: dict[str, Any]) -> dict[str, Any]:
    """What payments/process_refund@2.1.0's ``process_gateway_refund`` step returns."""
    return {
        "refund_id": "re_0123456789abcdef",
        "payment_id": context["payment_id"],
        "amount": context["amount"],
        "processed_at": "2024-05-01T12:00:00+00:00",
        "gateway": "simgateway",
    }


def process_gateway_refund(ctx: StepContext) -> dict[str, Any]:
    """The stand-in's one step."""
    return payments_refund(dict(ctx.context))


class PaymentsStandIn:
    """The payments namespace as this team relies on it: process_refund@2.1.0, one step."""

    @hookimpl
    def teamflow_namespaces(self) -> list[NamespacePolicy]:
        return [NamespacePolicy("payments", "payments", "payments-team@growthcorp.example")]

    @hookimpl
    def teamflow_workflows(self) -> list[Workflow]:
        return [
            Workflow(
                "payments",
                "process_refund",
                "2.1.0",
                [Step("process_gateway_refund", process_gateway_refund)],
            )
        ]


pytestmark = pytest.mark.teamflow_plugins(
    "teamflow-customer-success", ("payments-stand-in", PaymentsStandIn())
)


def completed_refund(request: TaskRequest) -> TaskResult:
    """What a finished payments/process_refund@2.1.0 child looks like to its caller."""
    refund = payments_refund(dict(request.context))
    return TaskResult(
        "task_child",
        "payments",
        "process_refund",
        "2.1.0",
        "completed",
        steps=(StepResult("process_gateway_refund", "completed", attempts=1, result=refund),),
    )


def recording(requests: list[TaskRequest]) -> Callable[[TaskRequest], TaskResult]:
    """A ``children`` answer that completes the refund and keeps each request."""

    def answer(request: TaskRequest) -> TaskResult:
        requests.append(request)
        return completed_refund(request)

    return answer


def _approval_results(amount: float, tier: str) -> dict:
    return {
        "validate_refund_request": {"ticket_id": "cs_1", "payment_id": "pay_1", "refund_amount": amount},
        "check_refund_policy": {"approval_tier": tier},
    }


def test_ticket_system_maps_tickets_to_payments_under_the_manager_limit() -> None:
    ticket = handlers.lookup_ticket("cs_456")
    assert ticket == handlers.lookup_ticket("cs_456")
    assert ticket["payment_id"] == "pay_456"
    for n in range(200):
        assert 15 <= handlers.lookup_ticket(f"cs_{n}")["requested_amount"] < handlers.MANAGER_LIMIT


def test_refund_from_ticket_id_alone_calls_payments_refund_2_1_0(teamflow_host) -> None:
    task = run_workflow(teamflow_host, "customer_success/process_refund@1.3.0", {"ticket_id": "cs_456"})
    assert task.status == "completed", task.error_summary
    amount = handlers.lookup_ticket("cs_456")["requested_amount"]
    (child_id,) = task.step("execute_payment_refund").children
    child = teamflow_host.get_task(child_id)
    assert (child.ref, child.parent_id) == (REFUND, task.id)
    assert child.context == {
        "payment_id": "pay_456",
        "amount": amount,
        "reason": "customer_service_refund",
        "initiated_by": "customer_success",
        "cs_ticket_id": "cs_456",
    }
    assert task.step("execute_payment_refund").result == {
        "payment_refund_id": "re_0123456789abcdef",
        "refund_amount": amount,
        "refunded_at": "2024-05-01T12:00:00+00:00",
        "payments_task_id": child.id,
    }
    assert task.step("update_customer_record").result["ticket_status"] == "resolved"
    assert task.step("update_customer_record").result["refund_id"] == "re_0123456789abcdef"


def test_refund_uses_the_seed_customer_id_when_given(teamflow_host) -> None:
    context = {"ticket_id": "cs_456", "customer_id": "cust_789"}
    task = run_workflow(teamflow_host, "customer_success/process_refund@1.3.0", context)
    assert task.step("update_customer_record").result["customer_id"] == "cust_789"


@pytest.mark.parametrize(("amount", "tier"), [(80.0, "auto"), (450.0, "manager")])
def test_ordinary_refunds_are_approved(amount: float, tier: str) -> None:
    approval = run_step(handlers.get_manager_approval, {"ticket_id": "cs_1"}, _approval_results(amount, tier))
    assert approval["approved"] is True
    assert approval["approved_amount"] == amount
    assert approval["payment_id"] == "pay_1"
    expected = ("refund_policy",) if tier == "auto" else handlers._MANAGERS
    assert approval["approved_by"] in expected


def test_refund_above_manager_limit_is_refused_without_override() -> None:
    results = _approval_results(500.01, "manager")
    with pytest.raises(PermanentError, match="exceeds the manager limit"):
        run_step(handlers.get_manager_approval, {"ticket_id": "cs_1"}, results)
    context = {"ticket_id": "cs_1", "manager_override": True}
    assert run_step(handlers.get_manager_approval, context, results)["approved_by"] == "manager_override"


def test_policy_tier_follows_auto_approve_limit() -> None:
    for amount, tier in ((100.0, "auto"), (100.01, "manager")):
        results = {"validate_refund_request": {"refund_amount": amount}}
        assert run_step(handlers.check_refund_policy, {}, results)["approval_tier"] == tier


def _child(status: str, error: str | None = None) -> TaskResult:
    return TaskResult("task_child", "payments", "process_refund", "2.1.0", status, error_summary=error)


def test_failed_payments_child_is_retryable_and_named() -> None:
    results = {"get_manager_approval": {"payment_id": "pay_1", "approved_amount": 10.0}}
    child = _child("failed", "process_gateway_refund: gateway unavailable")
    with pytest.raises(
        RetryableError, match=r"task_child .*failed: process_gateway_refund: gateway unavailable"
    ):
        run_step(handlers.execute_payment_refund, {"ticket_id": "cs_1"}, results, children={REFUND: child})


def test_unfinished_payments_child_is_retryable() -> None:
    results = {"get_manager_approval": {"payment_id": "pay_1", "approved_amount": 10.0}}
    with pytest.raises(RetryableError, match="ended as cancelled"):
        run_step(
            handlers.execute_payment_refund,
            {"ticket_id": "cs_1"},
            results,
            children={REFUND: _child("cancelled")},
        )


def test_payments_simulate_failure_is_passed_to_the_child() -> None:
    flag = {"step": "process_gateway_refund", "mode": "permanent"}
    results = {"get_manager_approval": {"payment_id": "pay_1", "approved_amount": 10.0}}
    requests: list[TaskRequest] = []
    context = {"ticket_id": "cs_1", "payments_simulate_failure": flag}
    run_step(handlers.execute_payment_refund, context, results, children={REFUND: recording(requests)})
    assert requests[0].context["simulate_failure"] == flag


def test_the_call_examples_declared_are_what_the_step_sends_to_payments() -> None:
    sent: list[TaskRequest] = []
    ticket = handlers.lookup_ticket("cs_456")
    approved = {"get_manager_approval": {"payment_id": ticket["payment_id"], "approved_amount": ticket["requested_amount"]}}
    run_step(handlers.execute_payment_refund, {"ticket_id": "cs_456"}, approved, children={REFUND: recording(sent)})
    flag = {"step": "process_gateway_refund", "mode": "permanent"}
    results = {"get_manager_approval": {"payment_id": "pay_1", "approved_amount": 10.0}}
    context = {"ticket_id": "cs_1", "payments_simulate_failure": flag}
    run_step(handlers.execute_payment_refund, context, results, children={REFUND: recording(sent)})
    assert tuple(dict(r.context) for r in sent) == handlers.PAYMENTS_REFUND_EXAMPLES


def test_simulated_failure_before_the_child_is_started() -> None:
    flag = {"step": "execute_payment_refund", "mode": "permanent"}
    results = {"get_manager_approval": {"payment_id": "pay_1", "approved_amount": 10.0}}
    requests: list[TaskRequest] = []
    context = {"ticket_id": "cs_1", "simulate_failure": flag}
    with pytest.raises(PermanentError, match="simulated permanent failure"):
        run_step(handlers.execute_payment_refund, context, results, children={REFUND: recording(requests)})
    assert requests == []


def test_simulated_retryable_failure_stops_after_times_attempts() -> None:
    context = {"ticket_id": "cs_1", "simulate_failure": {"step": "validate_refund_request", "times": 2}}
    for attempt in (1, 2):
        with pytest.raises(RetryableError, match="attempt"):
            run_step(handlers.validate_refund_request, context, attempt=attempt)
    assert run_step(handlers.validate_refund_request, context, attempt=3)


def test_simulate_slow_s_sleeps_in_the_ticket_lookup(monkeypatch) -> None:
    slept = []
    monkeypatch.setattr(handlers.time, "sleep", slept.append)
    run_step(handlers.validate_refund_request, {"ticket_id": "cs_1", "simulate_slow_s": 1.5})
    assert slept == [1.5]


def test_escalation_assigns_a_lead_for_sev1_or_vip(teamflow_host) -> None:
    roles = set()
    for n in range(40):
        task = run_workflow(teamflow_host, "customer_success/escalate_ticket@2.2.0", {"ticket_id": f"cs_{n}"})
        severity = task.step("assess_ticket_severity").result["severity"]
        lead = severity == "sev1" or task.step("gather_customer_history").result["vip"]
        role = task.step("assign_senior_agent").result["role"]
        assert role == ("team_lead" if lead else "senior_agent")
        assert task.step("update_ticket_status").result["status"] == "escalated"
        roles.add(role)
    assert roles == {"team_lead", "senior_agent"}


def test_survey_goes_to_the_ticket_customer(teamflow_host) -> None:
    task = run_workflow(
        teamflow_host, "customer_success/generate_satisfaction_survey@1.0.0", {"ticket_id": "cs_456"}
    )
    customer = handlers.lookup_ticket("cs_456")["customer_id"]
    survey = task.step("send_survey").result
    assert survey["recipient"] == f"{customer}@customers.example"
    assert survey["template"] in ("csat_short", "csat_detailed")


def test_cancellation_credits_unused_days(teamflow_host) -> None:
    task = run_workflow(
        teamflow_host, "customer_success/process_cancellation@1.1.0", {"customer_id": "cust_789"}
    )
    request = task.step("validate_cancellation_request").result
    credit = task.step("calculate_prorated_refund").result
    assert request["subscription_id"] == "sub_789"
    assert credit["credit_amount"] == round(request["monthly_price"] * (30 - request["days_used"]) / 30, 2)
    assert task.step("send_cancellation_confirmation").result["credit_amount"] == credit["credit_amount"]
    assert task.step("cancel_subscription").result["status"] == "cancelled"


def test_support_report_is_deterministic(teamflow_host) -> None:
    first = run_workflow(
        teamflow_host, "customer_success/generate_support_report@1.5.0", {"period": "2024-05"}
    )
    again = run_workflow(
        teamflow_host, "customer_success/generate_support_report@1.5.0", {"period": "2024-05"}
    )
    report = first.step("compile_support_report").result
    assert report == again.step("compile_support_report").result
    assert 0 < report["resolution_rate"] <= 1
    assert first.step("publish_support_report").result["report_id"] == "csrep_202405"
