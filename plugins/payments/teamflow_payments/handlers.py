"""Step handlers of the ``payments`` namespace.

Each handler is a module-level function ``handler(ctx) -> dict``: the host finds it by
``module:qualname`` and stores what it returns as JSON. The payment ledger, the gateway
and the notification service are deterministic simulations, so a demo or a test gives
the same answers on every machine. A step fails only when the task's context asks for
it with ``simulate_failure`` (or when the request itself breaks a business rule, such
as refunding more than was captured); see the README.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from typing import Any

from teamflow import PermanentError, RetryableError

GATEWAY = "simgateway"
FRAUD_REVIEW_THRESHOLD = 60
SUPPORTED_CURRENCIES = ("USD", "EUR", "GBP")


# -------------------------------------------------------------------------
# Demo switches. Every team plugin carries its own copy on purpose: the plugins
# release independently and must not import each other.
# -------------------------------------------------------------------------


def simulate_failure(ctx: Any) -> None:
    """Fail this step when the context's ``simulate_failure`` names it."""
    spec = ctx.context.get("simulate_failure")
    if not isinstance(spec, dict) or spec.get("step") != ctx.step:
        return
    if spec.get("mode", "retryable") == "permanent":
        raise PermanentError(f"simulated permanent failure in step {ctx.step}")
    if ctx.attempt <= int(spec.get("times", 1)):
        raise RetryableError(f"simulated transient failure in step {ctx.step} (attempt {ctx.attempt})")


def simulate_latency(ctx: Any) -> None:
    """Sleep ``simulate_slow_s`` seconds, so a demo can push a step past its ``timeout_s``."""
    delay = ctx.context.get("simulate_slow_s")
    if delay:
        time.sleep(float(delay))


# -------------------------------------------------------------------------
# Simulated systems: ledger, gateway, notifications
# -------------------------------------------------------------------------


def _digest(*parts: object) -> int:
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:12], 16)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def lookup_payment(payment_id: str) -> dict[str, Any]:
    """The simulated ledger: every ``pay_...`` id is a captured card payment of 250.00-999.99."""
    d = _digest("payment", payment_id)
    return {
        "payment_id": payment_id,
        "customer_id": f"cust_{d % 100_000:05d}",
        "captured_amount": round(250 + (d >> 20) % 75_000 / 100, 2),
        "currency": "USD",
        "card_last4": f"{(d >> 40) % 10_000:04d}",
        "status": "captured",
    }


def _customer_email(customer_id: str) -> str:
    return f"{customer_id}@customers.example"


def _gateway_id(prefix: str, reference: str) -> str:
    """Gateway object ids derive from the caller's reference: a retried call gets the same id."""
    return f"{prefix}_{hashlib.sha256(reference.encode()).hexdigest()[:16]}"


def _notify(channel: str, recipient: str, template: str, reference: str) -> dict[str, Any]:
    return {
        "channel": channel,
        "recipient": recipient,
        "template": template,
        "message_id": _gateway_id("msg", f"{reference}:{recipient}"),
    }


# -------------------------------------------------------------------------
# process_refund 2.0.0 and 2.1.0
# -------------------------------------------------------------------------


def validate_payment_eligibility(ctx: Any) -> dict[str, Any]:
    """Look the payment up in the ledger and check the refund fits what was captured."""
    simulate_failure(ctx)
    payment = lookup_payment(ctx.context["payment_id"])
    amount = round(float(ctx.context.get("amount", payment["captured_amount"])), 2)
    if amount > payment["captured_amount"]:
        raise PermanentError(
            f"refund of {amount:.2f} exceeds the {payment['captured_amount']:.2f} captured on "
            f"{payment['payment_id']}; request at most the captured amount"
        )
    return {
        **payment,
        "refund_amount": amount,
        "full_refund": amount == payment["captured_amount"],
        "reason": ctx.context.get("reason", "requested_by_customer"),
        "eligible": True,
    }


def check_fraud_indicators(ctx: Any) -> dict[str, Any]:
    """Score the refund from account velocity, refund ratio and whether support is involved."""
    simulate_failure(ctx)
    payment = ctx.results["validate_payment_eligibility"]
    signals = {
        "account_velocity": _digest("velocity", payment["customer_id"]) % 30,
        "refund_ratio": round(30 * payment["refund_amount"] / payment["captured_amount"]),
        "no_support_ticket": 0 if ctx.context.get("cs_ticket_id") else 15,
    }
    score = sum(signals.values())
    review = score >= FRAUD_REVIEW_THRESHOLD
    return {
        "fraud_score": score,
        "signals": signals,
        "risk_level": "elevated" if review else "low" if score < 30 else "medium",
        "decision": "approve_with_review" if review else "approve",
        "review_required": review,
    }


def process_gateway_refund(ctx: Any) -> dict[str, Any]:
    """Refund through the gateway; the idempotency key is the gateway reference."""
    simulate_failure(ctx)
    simulate_latency(ctx)
    payment = ctx.results["validate_payment_eligibility"]
    refund = {
        "refund_id": _gateway_id("re", ctx.idempotency_key),
        "payment_id": payment["payment_id"],
        "amount": payment["refund_amount"],
        "currency": payment["currency"],
        "status": "succeeded",
        "gateway": GATEWAY,
        "gateway_reference": ctx.idempotency_key,
        "processed_at": _now(),
    }
    ctx.log.info("refunded {} on {} as {}", refund["amount"], refund["payment_id"], refund["refund_id"])
    return refund


def update_payment_records(ctx: Any) -> dict[str, Any]:
    """Record the refund against the payment in the ledger."""
    simulate_failure(ctx)
    payment = ctx.results["validate_payment_eligibility"]
    refund = ctx.results["process_gateway_refund"]
    remaining = round(payment["captured_amount"] - refund["amount"], 2)
    return {
        "payment_id": payment["payment_id"],
        "payment_status": "refunded" if remaining == 0 else "partially_refunded",
        "refunded_amount": refund["amount"],
        "remaining_amount": remaining,
        "ledger_entry_id": refund["refund_id"].replace("re_", "le_", 1),
        "reason": payment["reason"],
        "initiated_by": ctx.context.get("initiated_by", "payments"),
    }


def notify_customer(ctx: Any) -> dict[str, Any]:
    """Email the customer a refund confirmation (2.0.0)."""
    simulate_failure(ctx)
    payment = ctx.results["validate_payment_eligibility"]
    return _notify(
        "email", _customer_email(payment["customer_id"]), "refund_confirmation", ctx.idempotency_key
    )


def notify_stakeholders(ctx: Any) -> dict[str, Any]:
    """Notify the customer, finance, and fraud review or customer success when involved (2.1.0)."""
    simulate_failure(ctx)
    payment = ctx.results["validate_payment_eligibility"]
    fraud = ctx.results["check_fraud_indicators"]
    key = ctx.idempotency_key
    sent = [
        _notify("email", _customer_email(payment["customer_id"]), "refund_confirmation", key),
        _notify("slack", "#payments-ledger", "refund_posted", key),
    ]
    if fraud["review_required"]:
        sent.append(_notify("slack", "#fraud-review", "refund_review", key))
    if ctx.context.get("cs_ticket_id"):
        sent.append(_notify("ticket", ctx.context["cs_ticket_id"], "refund_completed", key))
    return {"notifications": sent, "count": len(sent)}


# -------------------------------------------------------------------------
# process_payment 3.0.0
# -------------------------------------------------------------------------


def validate_payment_request(ctx: Any) -> dict[str, Any]:
    """Normalise the order's payment request."""
    simulate_failure(ctx)
    currency = ctx.context.get("currency", "USD")
    if currency not in SUPPORTED_CURRENCIES:
        raise PermanentError(
            f"currency {currency} is not supported; use one of {', '.join(SUPPORTED_CURRENCIES)}"
        )
    return {
        "order_id": ctx.context["order_id"],
        "customer_id": ctx.context["customer_id"],
        "amount": round(float(ctx.context["amount"]), 2),
        "currency": currency,
        "payment_method": ctx.context.get("payment_method", "card"),
    }


def authorize_payment(ctx: Any) -> dict[str, Any]:
    """Place an authorisation hold with the gateway."""
    simulate_failure(ctx)
    request = ctx.results["validate_payment_request"]
    return {
        "authorization_id": _gateway_id("auth", ctx.idempotency_key),
        "amount": request["amount"],
        "auth_code": f"{_digest('auth', ctx.idempotency_key) % 1_000_000:06d}",
        "gateway": GATEWAY,
        "status": "authorized",
    }


def score_payment_risk(ctx: Any) -> dict[str, Any]:
    """Score the charge from its amount and the customer's history, in parallel with the hold."""
    simulate_failure(ctx)
    request = ctx.results["validate_payment_request"]
    score = min(100, _digest("risk", request["customer_id"]) % 40 + int(request["amount"] // 250))
    return {"risk_score": score, "review_required": score >= FRAUD_REVIEW_THRESHOLD}


def capture_payment(ctx: Any) -> dict[str, Any]:
    """Capture the authorised amount; the payment id is what refunds later refer to."""
    simulate_failure(ctx)
    auth = ctx.results["authorize_payment"]
    risk = ctx.results["score_payment_risk"]
    return {
        "payment_id": f"pay_{_digest('capture', ctx.idempotency_key) % 10**9}",
        "authorization_id": auth["authorization_id"],
        "captured_amount": auth["amount"],
        "held_for_review": risk["review_required"],
        "captured_at": _now(),
    }


def send_payment_receipt(ctx: Any) -> dict[str, Any]:
    """Email the customer a receipt."""
    simulate_failure(ctx)
    request = ctx.results["validate_payment_request"]
    capture = ctx.results["capture_payment"]
    receipt = _notify(
        "email", _customer_email(request["customer_id"]), "payment_receipt", ctx.idempotency_key
    )
    return {**receipt, "payment_id": capture["payment_id"], "order_id": request["order_id"]}


# -------------------------------------------------------------------------
# handle_chargeback 1.2.0
# -------------------------------------------------------------------------

_EVIDENCE = ("delivery_confirmation", "customer_communication", "ip_address_match", "signed_terms")


def record_chargeback(ctx: Any) -> dict[str, Any]:
    """Record the dispute against the original payment."""
    simulate_failure(ctx)
    payment = lookup_payment(ctx.context["payment_id"])
    return {
        "chargeback_id": ctx.context["chargeback_id"],
        "payment_id": payment["payment_id"],
        "customer_id": payment["customer_id"],
        "disputed_amount": round(float(ctx.context.get("amount", payment["captured_amount"])), 2),
        "reason_code": ctx.context.get("reason_code", "general"),
        "respond_within_days": 7 + _digest("due", ctx.context["chargeback_id"]) % 14,
    }


def gather_evidence(ctx: Any) -> dict[str, Any]:
    """Collect the evidence the ledger and order systems hold for the payment."""
    simulate_failure(ctx)
    chargeback = ctx.results["record_chargeback"]
    d = _digest("evidence", chargeback["payment_id"])
    items = [name for i, name in enumerate(_EVIDENCE) if d >> i & 1]
    return {"evidence": items, "strength": 25 * len(items)}


def decide_dispute_strategy(ctx: Any) -> dict[str, Any]:
    """Contest when the evidence is strong enough, else accept the loss."""
    simulate_failure(ctx)
    chargeback = ctx.results["record_chargeback"]
    strength = ctx.results["gather_evidence"]["strength"]
    contest = strength >= 50 and chargeback["reason_code"] != "duplicate"
    return {"decision": "contest" if contest else "accept", "evidence_strength": strength}


def submit_dispute_response(ctx: Any) -> dict[str, Any]:
    """Send the response to the gateway (idempotent by the step's key)."""
    simulate_failure(ctx)
    chargeback = ctx.results["record_chargeback"]
    decision = ctx.results["decide_dispute_strategy"]["decision"]
    return {
        "response_id": _gateway_id("dr", ctx.idempotency_key),
        "chargeback_id": chargeback["chargeback_id"],
        "decision": decision,
        "status": "submitted" if decision == "contest" else "accepted",
        "amount_at_risk": chargeback["disputed_amount"],
        "gateway": GATEWAY,
    }


# -------------------------------------------------------------------------
# reconcile_transactions 1.1.0: load_period -> (gateway, ledger) -> match -> report
# -------------------------------------------------------------------------


def _settled_transactions(date: str) -> list[dict[str, Any]]:
    day = date.replace("-", "")
    count = 8 + _digest("volume", date) % 8
    return [
        {
            "transaction_id": f"txn_{day}_{i:03d}",
            "amount": round(5 + _digest("txn", day, i) % 50_000 / 100, 2),
        }
        for i in range(count)
    ]


def load_period(ctx: Any) -> dict[str, Any]:
    """Fix the settlement day to reconcile."""
    simulate_failure(ctx)
    date = ctx.context["settlement_date"]
    return {"settlement_date": date, "batch_id": f"recon_{date.replace('-', '')}"}


def fetch_gateway_settlements(ctx: Any) -> dict[str, Any]:
    """Download the gateway's settlement file for the day."""
    simulate_failure(ctx)
    date = ctx.results["load_period"]["settlement_date"]
    return {"source": GATEWAY, "transactions": _settled_transactions(date)}


def fetch_ledger_entries(ctx: Any) -> dict[str, Any]:
    """Read the ledger's entries for the day (the simulation drops or skews a few)."""
    simulate_failure(ctx)
    date = ctx.results["load_period"]["settlement_date"]
    entries = []
    for txn in _settled_transactions(date):
        d = _digest("ledger", txn["transaction_id"])
        if d % 11 == 0:
            continue  # never booked
        skew = (d % 500) / 100 if d % 13 == 0 else 0
        entries.append({**txn, "amount": round(txn["amount"] + skew, 2)})
    if _digest("manual", date) % 4 == 0:
        entries.append({"transaction_id": f"txn_{date.replace('-', '')}_manual", "amount": 12.5})
    return {"source": "ledger", "transactions": entries}


def match_transactions(ctx: Any) -> dict[str, Any]:
    """Match settlements to ledger entries by transaction id and amount."""
    simulate_failure(ctx)
    gateway = {
        t["transaction_id"]: t["amount"] for t in ctx.results["fetch_gateway_settlements"]["transactions"]
    }
    ledger = {t["transaction_id"]: t["amount"] for t in ctx.results["fetch_ledger_entries"]["transactions"]}
    mismatched = sorted(t for t in gateway.keys() & ledger.keys() if gateway[t] != ledger[t])
    return {
        "matched": len(gateway.keys() & ledger.keys()) - len(mismatched),
        "missing_in_ledger": sorted(gateway.keys() - ledger.keys()),
        "missing_at_gateway": sorted(ledger.keys() - gateway.keys()),
        "amount_mismatches": [
            {"transaction_id": t, "gateway": gateway[t], "ledger": ledger[t]} for t in mismatched
        ],
    }


def report_discrepancies(ctx: Any) -> dict[str, Any]:
    """File the reconciliation outcome; finance is told when anything is off."""
    simulate_failure(ctx)
    match = ctx.results["match_transactions"]
    count = (
        len(match["missing_in_ledger"]) + len(match["missing_at_gateway"]) + len(match["amount_mismatches"])
    )
    return {
        "batch_id": ctx.results["load_period"]["batch_id"],
        "status": "discrepancies_found" if count else "balanced",
        "matched": match["matched"],
        "discrepancy_count": count,
        "escalated_to": "finance-ops@growthcorp.example" if count else None,
    }


# -------------------------------------------------------------------------
# generate_payment_report 2.0.0
# -------------------------------------------------------------------------


def collect_payment_volume(ctx: Any) -> dict[str, Any]:
    """Sum the month's captured payments."""
    simulate_failure(ctx)
    d = _digest("payments-volume", ctx.context["period"])
    return {"payment_count": 4_000 + d % 2_000, "gross_amount": round(200_000 + d % 10_000_000 / 100, 2)}


def collect_refund_volume(ctx: Any) -> dict[str, Any]:
    """Sum the month's refunds and chargebacks."""
    simulate_failure(ctx)
    d = _digest("refund-volume", ctx.context["period"])
    return {
        "refund_count": 100 + d % 150,
        "refund_amount": round(5_000 + d % 1_500_000 / 100, 2),
        "chargeback_count": d % 12,
    }


def compile_payment_report(ctx: Any) -> dict[str, Any]:
    """Combine both volumes into net revenue and refund rate."""
    simulate_failure(ctx)
    pay = ctx.results["collect_payment_volume"]
    ref = ctx.results["collect_refund_volume"]
    return {
        "period": ctx.context["period"],
        **pay,
        **ref,
        "net_amount": round(pay["gross_amount"] - ref["refund_amount"], 2),
        "refund_rate": round(ref["refund_count"] / pay["payment_count"], 4),
    }


def publish_payment_report(ctx: Any) -> dict[str, Any]:
    """Publish the report and send it to its recipients."""
    simulate_failure(ctx)
    period = ctx.context["period"]
    recipients = list(ctx.context.get("recipients", ["finance@growthcorp.example"]))
    return {
        "report_id": f"payrep_{period.replace('-', '')}",
        "location": f"reports/payments/{period}.json",
        "sent_to": recipients,
    }
