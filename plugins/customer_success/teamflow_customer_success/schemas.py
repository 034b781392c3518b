"""JSON Schemas (draft 2020-12) of the ``customer_success`` workflows' contexts.

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
    "simulate_slow_s": {
        "type": "number",
        "minimum": 0,
        "description": "Demo switch: slow the ticket lookup.",
    },
}

TICKET_ID = {"type": "string", "pattern": r"^cs_\d+$"}
CUSTOMER_ID = {"type": "string", "pattern": "^cust_"}
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
    "customer_success/process_refund context",
    ["ticket_id"],
    {
        "ticket_id": TICKET_ID,
        "customer_id": CUSTOMER_ID,
        "amount": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "Defaults to the ticket's request.",
        },
        "manager_override": {"type": "boolean", "description": "Approve a refund above the manager limit."},
        "payments_simulate_failure": {
            **SIMULATE_FAILURE,
            "description": "Demo switch passed to the payments child task as its simulate_failure.",
        },
    },
)

ESCALATE_TICKET = context_schema(
    "customer_success/escalate_ticket context",
    ["ticket_id"],
    {"ticket_id": TICKET_ID, "reason": {"type": "string"}},
)

GENERATE_SATISFACTION_SURVEY = context_schema(
    "customer_success/generate_satisfaction_survey context",
    ["ticket_id"],
    {"ticket_id": TICKET_ID},
)

PROCESS_CANCELLATION = context_schema(
    "customer_success/process_cancellation context",
    ["customer_id"],
    {
        "customer_id": CUSTOMER_ID,
        "subscription_id": {"type": "string", "pattern": "^sub_"},
        "reason": {"type": "string"},
    },
)

GENERATE_SUPPORT_REPORT = context_schema(
    "customer_success/generate_support_report context",
    ["period"],
    {"period": PERIOD},
)
