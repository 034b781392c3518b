"""The payments handlers are deterministic simulations; failures come only from explicit flags."""

from __future__ import annotations

import pytest

from teamflow import PermanentError, RetryableError
from teamflow_payments import handlers
from teamflow_payments.plugin import (
    generate_payment_report_2_0_0,
    handle_chargeback_1_2_0,
    process_payment_3_0_0,
    process_refund_2_0_0,
    process_refund_2_1_0,
    reconcile_transactions_1_1_0,
)


def test_ledger_is_deterministic_and_covers_seed_amounts() -> None:
    payment = handlers.lookup_payment("pay_123")
    assert payment == handlers.lookup_payment("pay_123")
    assert payment != handlers.lookup_payment("pay_124")
    for n in range(200):
        assert 250 <= handlers.lookup_payment(f"pay_{n}")["captured_amount"] < 1000


def test_refund_2_1_0_without_amount_refunds_what_was_captured(run_workflow) -> None:
    results = run_workflow(process_refund_2_1_0(), {"payment_id": "pay_123"})
    captured = handlers.lookup_payment("pay_123")["captured_amount"]
    refund = results["process_gateway_refund"]
    assert refund["amount"] == captured
    assert refund["refund_id"].startswith("re_")
    assert refund["gateway"] == "simgateway"
    assert refund["processed_at"]
    assert results["update_payment_records"]["payment_status"] == "refunded"
    assert results["update_payment_records"]["remaining_amount"] == 0


def test_refund_2_1_0_partial_amount(run_workflow) -> None:
    results = run_workflow(process_refund_2_1_0(), {"payment_id": "pay_123", "amount": 49.99})
    records = results["update_payment_records"]
    assert results["process_gateway_refund"]["amount"] == 49.99
    assert records["payment_status"] == "partially_refunded"
    assert records["remaining_amount"] == round(
        handlers.lookup_payment("pay_123")["captured_amount"] - 49.99, 2
    )


def test_refund_2_0_0_notifies_the_customer(run_workflow) -> None:
    results = run_workflow(process_refund_2_0_0(), {"payment_id": "pay_legacy_456"})
    customer = handlers.lookup_payment("pay_legacy_456")["customer_id"]
    assert results["notify_customer"]["recipient"] == f"{customer}@customers.example"
    assert "check_fraud_indicators" not in results


def test_gateway_refund_id_is_the_same_on_every_attempt(make_ctx) -> None:
    eligibility = {
        "validate_payment_eligibility": {"payment_id": "pay_1", "refund_amount": 5.0, "currency": "USD"}
    }
    first, retry, other = (
        handlers.process_gateway_refund(
            make_ctx(
                {"payment_id": "pay_1"}, "process_gateway_refund", eligibility, attempt=n, idempotency_key=key
            )
        )
        for n, key in ((1, "k1"), (2, "k1"), (1, "k2"))
    )
    assert first["refund_id"] == retry["refund_id"] != other["refund_id"]
    assert first["gateway_reference"] == "k1"


def test_refund_above_captured_amount_is_permanent(make_ctx) -> None:
    captured = handlers.lookup_payment("pay_1")["captured_amount"]
    ctx = make_ctx({"payment_id": "pay_1", "amount": captured + 0.01}, "validate_payment_eligibility")
    with pytest.raises(PermanentError, match="exceeds"):
        handlers.validate_payment_eligibility(ctx)


def test_fraud_score_is_deterministic_and_credits_support_tickets(make_ctx) -> None:
    eligibility = handlers.validate_payment_eligibility(make_ctx({"payment_id": "pay_7"}, "x"))
    results = {"validate_payment_eligibility": eligibility}
    direct = handlers.check_fraud_indicators(
        make_ctx({"payment_id": "pay_7"}, "check_fraud_indicators", results)
    )
    via_cs = handlers.check_fraud_indicators(
        make_ctx({"payment_id": "pay_7", "cs_ticket_id": "cs_7"}, "check_fraud_indicators", results)
    )
    assert direct == handlers.check_fraud_indicators(
        make_ctx({"payment_id": "pay_7"}, "check_fraud_indicators", results)
    )
    assert direct["fraud_score"] - via_cs["fraud_score"] == 15
    assert direct["review_required"] == (direct["fraud_score"] >= handlers.FRAUD_REVIEW_THRESHOLD)


def test_stakeholders_include_fraud_review_and_the_support_ticket(make_ctx) -> None:
    results = {
        "validate_payment_eligibility": {"customer_id": "cust_00001"},
        "check_fraud_indicators": {"review_required": True},
    }
    ctx = make_ctx({"payment_id": "pay_1", "cs_ticket_id": "cs_1"}, "notify_stakeholders", results)
    sent = handlers.notify_stakeholders(ctx)
    assert [n["recipient"] for n in sent["notifications"]] == [
        "cust_00001@customers.example",
        "#payments-ledger",
        "#fraud-review",
        "cs_1",
    ]


@pytest.mark.parametrize("times", [1, 3])
def test_simulated_retryable_failure_stops_after_times_attempts(make_ctx, times: int) -> None:
    flag = {"step": "validate_payment_eligibility", "mode": "retryable", "times": times}
    context = {"payment_id": "pay_1", "simulate_failure": flag}
    for attempt in range(1, times + 1):
        with pytest.raises(RetryableError, match="simulated transient failure"):
            handlers.validate_payment_eligibility(
                make_ctx(context, "validate_payment_eligibility", attempt=attempt)
            )
    assert handlers.validate_payment_eligibility(
        make_ctx(context, "validate_payment_eligibility", attempt=times + 1)
    )


def test_simulated_failure_defaults_to_one_retryable_attempt(make_ctx) -> None:
    context = {"payment_id": "pay_1", "simulate_failure": {"step": "validate_payment_eligibility"}}
    with pytest.raises(RetryableError):
        handlers.validate_payment_eligibility(make_ctx(context, "validate_payment_eligibility"))
    assert handlers.validate_payment_eligibility(make_ctx(context, "validate_payment_eligibility", attempt=2))


def test_simulated_permanent_failure_fails_every_attempt(make_ctx) -> None:
    context = {
        "payment_id": "pay_1",
        "simulate_failure": {"step": "process_gateway_refund", "mode": "permanent"},
    }
    results = {
        "validate_payment_eligibility": {"payment_id": "pay_1", "refund_amount": 1.0, "currency": "USD"}
    }
    with pytest.raises(PermanentError, match="simulated permanent failure in step process_gateway_refund"):
        handlers.process_gateway_refund(make_ctx(context, "process_gateway_refund", results, attempt=4))


def test_simulated_failure_only_hits_the_named_step(run_workflow) -> None:
    flag = {"step": "process_gateway_refund", "mode": "retryable", "times": 2}
    results = run_workflow(process_refund_2_1_0(), {"payment_id": "pay_1", "simulate_failure": flag})
    assert results["notify_stakeholders"]["count"] >= 2


def test_simulate_slow_s_sleeps_in_the_gateway_step(make_ctx, monkeypatch) -> None:
    slept = []
    monkeypatch.setattr(handlers.time, "sleep", slept.append)
    results = {
        "validate_payment_eligibility": {"payment_id": "pay_1", "refund_amount": 1.0, "currency": "USD"}
    }
    handlers.process_gateway_refund(make_ctx({"simulate_slow_s": 2.5}, "process_gateway_refund", results))
    handlers.process_gateway_refund(make_ctx({}, "process_gateway_refund", results))
    assert slept == [2.5]


def test_process_payment_captures_a_refundable_payment(run_workflow) -> None:
    context = {"order_id": "ord_1", "customer_id": "cust_1", "amount": 120.0}
    results = run_workflow(process_payment_3_0_0(), context)
    capture = results["capture_payment"]
    assert capture["payment_id"].startswith("pay_")
    assert capture["captured_amount"] == 120.0
    assert capture["authorization_id"] == results["authorize_payment"]["authorization_id"]
    assert results["send_payment_receipt"]["payment_id"] == capture["payment_id"]


def test_process_payment_refuses_unsupported_currency(make_ctx) -> None:
    ctx = make_ctx({"order_id": "ord_1", "customer_id": "cust_1", "amount": 1, "currency": "JPY"}, "x")
    with pytest.raises(PermanentError, match="JPY"):
        handlers.validate_payment_request(ctx)


@pytest.mark.parametrize("reason", ["fraudulent", "duplicate"])
def test_chargeback_decision_follows_evidence_and_reason(run_workflow, reason: str) -> None:
    context = {"chargeback_id": "cb_1", "payment_id": "pay_42", "reason_code": reason}
    results = run_workflow(handle_chargeback_1_2_0(), context)
    strength = results["gather_evidence"]["strength"]
    contest = strength >= 50 and reason != "duplicate"
    assert results["decide_dispute_strategy"]["decision"] == ("contest" if contest else "accept")
    assert results["submit_dispute_response"]["status"] == ("submitted" if contest else "accepted")


def test_reconciliation_accounts_for_every_transaction(run_workflow) -> None:
    outcomes = set()
    for day in range(1, 29):
        results = run_workflow(reconcile_transactions_1_1_0(), {"settlement_date": f"2024-02-{day:02d}"})
        match = results["match_transactions"]
        settled = len(results["fetch_gateway_settlements"]["transactions"])
        assert match["matched"] + len(match["amount_mismatches"]) + len(match["missing_in_ledger"]) == settled
        report = results["report_discrepancies"]
        outcomes.add(report["status"])
        assert (report["discrepancy_count"] == 0) == (report["status"] == "balanced")
    assert outcomes == {"balanced", "discrepancies_found"}


def test_payment_report_nets_refunds(run_workflow) -> None:
    results = run_workflow(generate_payment_report_2_0_0(), {"period": "2024-05"})
    report = results["compile_payment_report"]
    assert report["net_amount"] == round(report["gross_amount"] - report["refund_amount"], 2)
    assert results["publish_payment_report"]["report_id"] == "payrep_202405"
    again = run_workflow(generate_payment_report_2_0_0(), {"period": "2024-05"})
    assert again["compile_payment_report"] == report
