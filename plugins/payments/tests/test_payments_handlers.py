"""The payments handlers are deterministic simulations; failures come only from explicit flags.

Workflows run to the end on a teamflow host holding this plugin alone (``teamflow_host``,
from ``teamflow.testing``); single handlers run with ``run_step``.
"""

from __future__ import annotations

import pytest

from teamflow import PermanentError, RetryableError
from teamflow.testing import TaskInfo, run_step, run_workflow
from teamflow_payments import handlers

REFUND = "payments/process_refund@2.1.0"


def test_ledger_is_deterministic_and_covers_seed_amounts() -> None:
    payment = handlers.lookup_payment("pay_123")
    assert payment == handlers.lookup_payment("pay_123")
    assert payment != handlers.lookup_payment("pay_124")
    for n in range(200):
        assert 250 <= handlers.lookup_payment(f"pay_{n}")["captured_amount"] < 1000


def test_refund_2_1_0_without_amount_refunds_what_was_captured(teamflow_host) -> None:
    task = run_workflow(teamflow_host, REFUND, {"payment_id": "pay_123"})
    assert task.status == "completed", task.error_summary
    captured = handlers.lookup_payment("pay_123")["captured_amount"]
    refund = task.step("process_gateway_refund").result
    assert refund["amount"] == captured
    assert refund["refund_id"].startswith("re_")
    assert refund["gateway"] == "simgateway"
    assert refund["processed_at"]
    assert task.step("update_payment_records").result["payment_status"] == "refunded"
    assert task.step("update_payment_records").result["remaining_amount"] == 0


def test_refund_2_1_0_partial_amount(teamflow_host) -> None:
    task = run_workflow(teamflow_host, REFUND, {"payment_id": "pay_123", "amount": 49.99})
    records = task.step("update_payment_records").result
    assert task.step("process_gateway_refund").result["amount"] == 49.99
    assert records["payment_status"] == "partially_refunded"
    assert records["remaining_amount"] == round(
        handlers.lookup_payment("pay_123")["captured_amount"] - 49.99, 2
    )


def test_refund_2_0_0_notifies_the_customer(teamflow_host) -> None:
    task = run_workflow(teamflow_host, "payments/process_refund@2.0.0", {"payment_id": "pay_legacy_456"})
    customer = handlers.lookup_payment("pay_legacy_456")["customer_id"]
    assert task.step("notify_customer").result["recipient"] == f"{customer}@customers.example"
    assert "check_fraud_indicators" not in [s.name for s in task.steps]


def test_gateway_refund_id_is_the_same_on_every_attempt() -> None:
    eligibility = {
        "validate_payment_eligibility": {"payment_id": "pay_1", "refund_amount": 5.0, "currency": "USD"}
    }
    first, retry, other = (
        run_step(
            handlers.process_gateway_refund,
            {"payment_id": "pay_1"},
            eligibility,
            attempt=n,
            task=TaskInfo(task_id, "payments", "process_refund", "2.1.0"),
        )
        for n, task_id in ((1, "t1"), (2, "t1"), (1, "t2"))
    )
    assert first["refund_id"] == retry["refund_id"] != other["refund_id"]
    assert first["gateway_reference"] == "t1:process_gateway_refund"  # ctx.idempotency_key


def test_refund_above_captured_amount_is_permanent() -> None:
    captured = handlers.lookup_payment("pay_1")["captured_amount"]
    with pytest.raises(PermanentError, match="exceeds"):
        run_step(handlers.validate_payment_eligibility, {"payment_id": "pay_1", "amount": captured + 0.01})


def test_fraud_score_is_deterministic_and_credits_support_tickets() -> None:
    eligibility = run_step(handlers.validate_payment_eligibility, {"payment_id": "pay_7"})
    results = {"validate_payment_eligibility": eligibility}
    direct = run_step(handlers.check_fraud_indicators, {"payment_id": "pay_7"}, results)
    via_cs = run_step(
        handlers.check_fraud_indicators, {"payment_id": "pay_7", "cs_ticket_id": "cs_7"}, results
    )
    assert direct == run_step(handlers.check_fraud_indicators, {"payment_id": "pay_7"}, results)
    assert direct["fraud_score"] - via_cs["fraud_score"] == 15
    assert direct["review_required"] == (direct["fraud_score"] >= handlers.FRAUD_REVIEW_THRESHOLD)


def test_stakeholders_include_fraud_review_and_the_support_ticket() -> None:
    results = {
        "validate_payment_eligibility": {"customer_id": "cust_00001"},
        "check_fraud_indicators": {"review_required": True},
    }
    sent = run_step(handlers.notify_stakeholders, {"payment_id": "pay_1", "cs_ticket_id": "cs_1"}, results)
    assert [n["recipient"] for n in sent["notifications"]] == [
        "cust_00001@customers.example",
        "#payments-ledger",
        "#fraud-review",
        "cs_1",
    ]


@pytest.mark.parametrize("times", [1, 3])
def test_simulated_retryable_failure_stops_after_times_attempts(times: int) -> None:
    flag = {"step": "validate_payment_eligibility", "mode": "retryable", "times": times}
    context = {"payment_id": "pay_1", "simulate_failure": flag}
    for attempt in range(1, times + 1):
        with pytest.raises(RetryableError, match="simulated transient failure"):
            run_step(handlers.validate_payment_eligibility, context, attempt=attempt)
    assert run_step(handlers.validate_payment_eligibility, context, attempt=times + 1)


def test_simulated_failure_defaults_to_one_retryable_attempt() -> None:
    context = {"payment_id": "pay_1", "simulate_failure": {"step": "validate_payment_eligibility"}}
    with pytest.raises(RetryableError):
        run_step(handlers.validate_payment_eligibility, context)
    assert run_step(handlers.validate_payment_eligibility, context, attempt=2)


def test_simulated_permanent_failure_fails_every_attempt() -> None:
    context = {
        "payment_id": "pay_1",
        "simulate_failure": {"step": "process_gateway_refund", "mode": "permanent"},
    }
    results = {
        "validate_payment_eligibility": {"payment_id": "pay_1", "refund_amount": 1.0, "currency": "USD"}
    }
    with pytest.raises(PermanentError, match="simulated permanent failure in step process_gateway_refund"):
        run_step(handlers.process_gateway_refund, context, results, attempt=4)


def test_simulated_failure_only_hits_the_named_step(teamflow_host) -> None:
    flag = {"step": "process_gateway_refund", "mode": "retryable", "times": 2}
    task = run_workflow(teamflow_host, REFUND, {"payment_id": "pay_1", "simulate_failure": flag})
    assert task.step("notify_stakeholders").result["count"] >= 2
    assert task.step("process_gateway_refund").attempts == 3
    assert {s.attempts for s in task.steps if s.name != "process_gateway_refund"} == {1}


def test_simulate_slow_s_sleeps_in_the_gateway_step(monkeypatch) -> None:
    slept = []
    monkeypatch.setattr(handlers.time, "sleep", slept.append)
    results = {
        "validate_payment_eligibility": {"payment_id": "pay_1", "refund_amount": 1.0, "currency": "USD"}
    }
    run_step(handlers.process_gateway_refund, {"simulate_slow_s": 2.5}, results)
    run_step(handlers.process_gateway_refund, {}, results)
    assert slept == [2.5]


def test_process_payment_captures_a_refundable_payment(teamflow_host) -> None:
    context = {"order_id": "ord_1", "customer_id": "cust_1", "amount": 120.0}
    task = run_workflow(teamflow_host, "payments/process_payment@3.0.0", context)
    capture = task.step("capture_payment").result
    assert capture["payment_id"].startswith("pay_")
    assert capture["captured_amount"] == 120.0
    assert capture["authorization_id"] == task.step("authorize_payment").result["authorization_id"]
    assert task.step("send_payment_receipt").result["payment_id"] == capture["payment_id"]


def test_process_payment_refuses_unsupported_currency() -> None:
    context = {"order_id": "ord_1", "customer_id": "cust_1", "amount": 1, "currency": "JPY"}
    with pytest.raises(PermanentError, match="JPY"):
        run_step(handlers.validate_payment_request, context)


@pytest.mark.parametrize("reason", ["fraudulent", "duplicate"])
def test_chargeback_decision_follows_evidence_and_reason(teamflow_host, reason: str) -> None:
    context = {"chargeback_id": "cb_1", "payment_id": "pay_42", "reason_code": reason}
    task = run_workflow(teamflow_host, "payments/handle_chargeback@1.2.0", context)
    strength = task.step("gather_evidence").result["strength"]
    contest = strength >= 50 and reason != "duplicate"
    assert task.step("decide_dispute_strategy").result["decision"] == ("contest" if contest else "accept")
    assert task.step("submit_dispute_response").result["status"] == ("submitted" if contest else "accepted")


def test_reconciliation_accounts_for_every_transaction(teamflow_host) -> None:
    outcomes = set()
    for day in range(1, 29):
        context = {"settlement_date": f"2024-02-{day:02d}"}
        task = run_workflow(teamflow_host, "payments/reconcile_transactions@1.1.0", context)
        match = task.step("match_transactions").result
        settled = len(task.step("fetch_gateway_settlements").result["transactions"])
        assert match["matched"] + len(match["amount_mismatches"]) + len(match["missing_in_ledger"]) == settled
        report = task.step("report_discrepancies").result
        outcomes.add(report["status"])
        assert (report["discrepancy_count"] == 0) == (report["status"] == "balanced")
    assert outcomes == {"balanced", "discrepancies_found"}


def test_payment_report_nets_refunds(teamflow_host) -> None:
    task = run_workflow(teamflow_host, "payments/generate_payment_report@2.0.0", {"period": "2024-05"})
    report = task.step("compile_payment_report").result
    assert report["net_amount"] == round(report["gross_amount"] - report["refund_amount"], 2)
    assert task.step("publish_payment_report").result["report_id"] == "payrep_202405"
    again = run_workflow(teamflow_host, "payments/generate_payment_report@2.0.0", {"period": "2024-05"})
    assert again.step("compile_payment_report").result == report
