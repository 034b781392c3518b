"""The customer_success handlers: simulated systems, approvals and the call into payments."""

from __future__ import annotations

import pytest

from teamflow import PermanentError, RetryableError, TaskRequest, TaskResult
from teamflow_customer_success import handlers
from teamflow_customer_success.plugin import (
    escalate_ticket_2_2_0,
    generate_satisfaction_survey_1_0_0,
    generate_support_report_1_5_0,
    process_cancellation_1_1_0,
    process_refund_1_3_0,
)


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


def test_refund_from_ticket_id_alone_calls_payments_refund_2_1_0(run_workflow) -> None:
    requests: list[TaskRequest] = []
    results = run_workflow(process_refund_1_3_0(), {"ticket_id": "cs_456"}, requests=requests)
    amount = handlers.lookup_ticket("cs_456")["requested_amount"]
    (request,) = requests
    assert request == TaskRequest(
        name="process_refund",
        namespace="payments",
        version="2.1.0",
        context={
            "payment_id": "pay_456",
            "amount": amount,
            "reason": "customer_service_refund",
            "initiated_by": "customer_success",
            "cs_ticket_id": "cs_456",
        },
    )
    assert results["execute_payment_refund"] == {
        "payment_refund_id": "re_0123456789abcdef",
        "refund_amount": amount,
        "refunded_at": "2024-05-01T12:00:00+00:00",
        "payments_task_id": "task_child",
    }
    assert results["update_customer_record"]["ticket_status"] == "resolved"
    assert results["update_customer_record"]["refund_id"] == "re_0123456789abcdef"


def test_refund_uses_the_seed_customer_id_when_given(run_workflow) -> None:
    results = run_workflow(process_refund_1_3_0(), {"ticket_id": "cs_456", "customer_id": "cust_789"})
    assert results["update_customer_record"]["customer_id"] == "cust_789"


@pytest.mark.parametrize(("amount", "tier"), [(80.0, "auto"), (450.0, "manager")])
def test_ordinary_refunds_are_approved(make_ctx, amount: float, tier: str) -> None:
    ctx = make_ctx({"ticket_id": "cs_1"}, "get_manager_approval", _approval_results(amount, tier))
    approval = handlers.get_manager_approval(ctx)
    assert approval["approved"] is True
    assert approval["approved_amount"] == amount
    assert approval["payment_id"] == "pay_1"
    expected = ("refund_policy",) if tier == "auto" else handlers._MANAGERS
    assert approval["approved_by"] in expected


def test_refund_above_manager_limit_is_refused_without_override(make_ctx) -> None:
    results = _approval_results(500.01, "manager")
    with pytest.raises(PermanentError, match="exceeds the manager limit"):
        handlers.get_manager_approval(make_ctx({"ticket_id": "cs_1"}, "get_manager_approval", results))
    ctx = make_ctx({"ticket_id": "cs_1", "manager_override": True}, "get_manager_approval", results)
    assert handlers.get_manager_approval(ctx)["approved_by"] == "manager_override"


def test_policy_tier_follows_auto_approve_limit(make_ctx) -> None:
    for amount, tier in ((100.0, "auto"), (100.01, "manager")):
        results = {"validate_refund_request": {"refund_amount": amount}}
        assert (
            handlers.check_refund_policy(make_ctx({}, "check_refund_policy", results))["approval_tier"]
            == tier
        )


def _child(status: str, error: str | None = None):
    def answer(request: TaskRequest) -> TaskResult:
        return TaskResult("task_child", "payments", "process_refund", "2.1.0", status, error_summary=error)

    return answer


def test_failed_payments_child_is_retryable_and_named(make_ctx) -> None:
    results = {"get_manager_approval": {"payment_id": "pay_1", "approved_amount": 10.0}}
    child = _child("failed", "process_gateway_refund: gateway unavailable")
    ctx = make_ctx({"ticket_id": "cs_1"}, "execute_payment_refund", results, child=child)
    with pytest.raises(
        RetryableError, match=r"task_child .*failed: process_gateway_refund: gateway unavailable"
    ):
        handlers.execute_payment_refund(ctx)


def test_unfinished_payments_child_is_retryable(make_ctx) -> None:
    results = {"get_manager_approval": {"payment_id": "pay_1", "approved_amount": 10.0}}
    ctx = make_ctx({"ticket_id": "cs_1"}, "execute_payment_refund", results, child=_child("cancelled"))
    with pytest.raises(RetryableError, match="ended as cancelled"):
        handlers.execute_payment_refund(ctx)


def test_payments_simulate_failure_is_passed_to_the_child(make_ctx) -> None:
    flag = {"step": "process_gateway_refund", "mode": "permanent"}
    results = {"get_manager_approval": {"payment_id": "pay_1", "approved_amount": 10.0}}
    ctx = make_ctx(
        {"ticket_id": "cs_1", "payments_simulate_failure": flag}, "execute_payment_refund", results
    )
    handlers.execute_payment_refund(ctx)
    assert ctx.requests[0].context["simulate_failure"] == flag


def test_simulated_failure_before_the_child_is_started(make_ctx) -> None:
    flag = {"step": "execute_payment_refund", "mode": "permanent"}
    results = {"get_manager_approval": {"payment_id": "pay_1", "approved_amount": 10.0}}
    ctx = make_ctx({"ticket_id": "cs_1", "simulate_failure": flag}, "execute_payment_refund", results)
    with pytest.raises(PermanentError, match="simulated permanent failure"):
        handlers.execute_payment_refund(ctx)
    assert ctx.requests == []


def test_simulated_retryable_failure_stops_after_times_attempts(make_ctx) -> None:
    context = {"ticket_id": "cs_1", "simulate_failure": {"step": "validate_refund_request", "times": 2}}
    for attempt in (1, 2):
        with pytest.raises(RetryableError, match="attempt"):
            handlers.validate_refund_request(make_ctx(context, "validate_refund_request", attempt=attempt))
    assert handlers.validate_refund_request(make_ctx(context, "validate_refund_request", attempt=3))


def test_simulate_slow_s_sleeps_in_the_ticket_lookup(make_ctx, monkeypatch) -> None:
    slept = []
    monkeypatch.setattr(handlers.time, "sleep", slept.append)
    handlers.validate_refund_request(make_ctx({"ticket_id": "cs_1", "simulate_slow_s": 1.5}, "x"))
    assert slept == [1.5]


def test_escalation_assigns_a_lead_for_sev1_or_vip(run_workflow) -> None:
    roles = set()
    for n in range(40):
        results = run_workflow(escalate_ticket_2_2_0(), {"ticket_id": f"cs_{n}"})
        severity = results["assess_ticket_severity"]["severity"]
        lead = severity == "sev1" or results["gather_customer_history"]["vip"]
        assert results["assign_senior_agent"]["role"] == ("team_lead" if lead else "senior_agent")
        assert results["update_ticket_status"]["status"] == "escalated"
        roles.add(results["assign_senior_agent"]["role"])
    assert roles == {"team_lead", "senior_agent"}


def test_survey_goes_to_the_ticket_customer(run_workflow) -> None:
    results = run_workflow(generate_satisfaction_survey_1_0_0(), {"ticket_id": "cs_456"})
    customer = handlers.lookup_ticket("cs_456")["customer_id"]
    assert results["send_survey"]["recipient"] == f"{customer}@customers.example"
    assert results["send_survey"]["template"] in ("csat_short", "csat_detailed")


def test_cancellation_credits_unused_days(run_workflow) -> None:
    results = run_workflow(process_cancellation_1_1_0(), {"customer_id": "cust_789"})
    request = results["validate_cancellation_request"]
    credit = results["calculate_prorated_refund"]
    assert request["subscription_id"] == "sub_789"
    assert credit["credit_amount"] == round(request["monthly_price"] * (30 - request["days_used"]) / 30, 2)
    assert results["send_cancellation_confirmation"]["credit_amount"] == credit["credit_amount"]
    assert results["cancel_subscription"]["status"] == "cancelled"


def test_support_report_is_deterministic(run_workflow) -> None:
    first = run_workflow(generate_support_report_1_5_0(), {"period": "2024-05"})
    again = run_workflow(generate_support_report_1_5_0(), {"period": "2024-05"})
    assert first["compile_support_report"] == again["compile_support_report"]
    assert 0 < first["compile_support_report"]["resolution_rate"] <= 1
    assert first["publish_support_report"]["report_id"] == "csrep_202405"
