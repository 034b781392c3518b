"""JSON Schemas (draft 2020-12) of the ``payments`` workflows' contexts.

Contexts may carry extra fields (``additionalProperties`` is true); the key fields are
required. A schema is part of its workflow version's fingerprint: changing one means
releasing a new workflow version.
"""

from __future__ import annotations

from typing import Any

SIMULATE_FAILURE: dict[str, Any] = {
    "description": "Demo and test switch: make the named step fail (see README).",
    "type": "object",
    "properties": {
        "step": {"type": "string"},
        "mode": {"enum": ["retryable", "permanent"], "default": "retryable"},
        "times": {"type": "integer", "minimum": 0, "default": 1},
    },
    "required": ["step"],
    "additionalProperties": False,
}

DEMO_PROPERTIES: dict[str, Any] = {
    "simulate_failure": SIMULATE_FAILURE,
    "simulate_slow_s": {"type": "number", "minimum": 0, "description": "Demo switch: slow the gateway step."},
}

PAYMENT_ID = {"type": "string", "pattern": "^pay_[A-Za-z0-9_-]+$"}
AMOUNT = {"type": "number", "exclusiveMinimum": 0}
PERIOD = {"type": "string", "pattern": r"^\d{4}-(0[1-9]|1[0-2])$", "description": "A month, YYYY-MM."}


def context_schema(title: str, required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "type": "object",
        "properties": {**properties, **DEMO_PROPERTIES},
        "required": required,
        "additionalProperties": True,
    }


PROCESS_REFUND = context_schema(
    "payments/process_refund context",
    ["payment_id"],
    {
        "payment_id": PAYMENT_ID,
        "amount": {**AMOUNT, "description": "Defaults to the amount captured on the payment."},
        "reason": {"type": "string"},
        "initiated_by": {"type": "string"},
        "cs_ticket_id": {"type": "string"},
    },
)

PROCESS_PAYMENT = context_schema(
    "payments/process_payment context",
    ["order_id", "customer_id", "amount"],
    {
        "order_id": {"type": "string", "pattern": "^ord_"},
        "customer_id": {"type": "string", "pattern": "^cust_"},
        "amount": {**AMOUNT, "maximum": 10_000},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$", "default": "USD"},
        "payment_method": {"type": "string", "default": "card"},
    },
)

HANDLE_CHARGEBACK = context_schema(
    "payments/handle_chargeback context",
    ["chargeback_id", "payment_id"],
    {
        "chargeback_id": {"type": "string", "pattern": "^cb_"},
        "payment_id": PAYMENT_ID,
        "amount": AMOUNT,
        "reason_code": {
            "enum": ["fraudulent", "product_not_received", "duplicate", "subscription_canceled", "general"]
        },
    },
)

RECONCILE_TRANSACTIONS = context_schema(
    "payments/reconcile_transactions context",
    ["settlement_date"],
    {"settlement_date": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$", "description": "YYYY-MM-DD"}},
)

GENERATE_PAYMENT_REPORT = context_schema(
    "payments/generate_payment_report context",
    ["period"],
    {"period": PERIOD, "recipients": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
)
