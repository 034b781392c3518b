"""Step handlers of the ``customer_success`` namespace.

Each handler is a module-level function ``handler(ctx) -> dict``: the host finds it by
``module:qualname`` and stores what it returns as JSON. The ticket system, the CRM and
the survey and paging services are deterministic simulations, so a demo or a test gives
the same answers on every machine. A step fails only when the task's context asks for
it with ``simulate_failure`` (or when the request breaks a business rule, such as a
refund above the manager's limit); see the README.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from teamflow import PermanentError, RetryableError, TaskRequest

AUTO_APPROVE_LIMIT = 100.0
MANAGER_LIMIT = 500.0
PAYMENTS_REFUND = "payments/process_refund@2.1.0"

# What execute_payment_refund sends to payments, declared as its call's examples: the
# payments team's `teamflow check` fails on a release that would refuse them, before it
# reaches production. The first is the refund of ticket cs_456 (pay_456, 219.80 requested);
# the second carries the demo switch passed through to the payments task.
PAYMENTS_REFUND_EXAMPLES: tuple[dict[str, Any], ...] = (
    {
        "payment_id": "pay_456",
        "amount": 219.8,
        "reason": "customer_service_refund",
        "initiated_by": "customer_success",
        "cs_ticket_id": "cs_456",
    },
    {
        "payment_id": "pay_1",
        "amount": 10.0,
        "reason": "customer_service_refund",
        "initiated_by": "customer_success",
        "cs_ticket_id": "cs_1",
        "simulate_failure": {"step": "process_gateway_refund", "mode": "permanent"},
    },
)


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
# Simulated systems: ticketing, CRM, messaging
# -------------------------------------------------------------------------

_PRIORITIES = ("low", "normal", "high", "urgent")
_CHANNELS = ("email", "chat", "phone")
_PLANS = {"starter": 19.0, "growth": 79.0, "enterprise": 399.0}
_MANAGERS = ("maria.on-call", "dev.on-call", "lee.on-call")
_SENIOR_AGENTS = ("aisha", "bruno", "chen", "dana", "emeka")


def _digest(*parts: object) -> int:
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:12], 16)


def _reference(prefix: str, key: str) -> str:
    """Ids derived from the step's idempotency key: a retried call gets the same id."""
    return f"{prefix}_{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def lookup_ticket(ticket_id: str) -> dict[str, Any]:
    """The simulated ticket system: ticket ``cs_<digits>`` is about payment ``pay_<digits>``.

    The requested refund (15.00-249.99) is always under the manager's limit.
    """
    d = _digest("ticket", ticket_id)
    return {
        "ticket_id": ticket_id,
        "payment_id": "pay_" + ticket_id.removeprefix("cs_"),
        "customer_id": f"cust_{d % 100_000:05d}",
        "requested_amount": round(15 + (d >> 20) % 23_500 / 100, 2),
        "priority": _PRIORITIES[(d >> 8) % len(_PRIORITIES)],
        "channel": _CHANNELS[(d >> 12) % len(_CHANNELS)],
        "days_open": (d >> 16) % 10,
        "assigned_agent": _SENIOR_AGENTS[(d >> 4) % len(_SENIOR_AGENTS)],
    }


def lookup_customer(customer_id: str) -> dict[str, Any]:
    """The simulated CRM record of a customer."""
    d = _digest("customer", customer_id)
    plan = list(_PLANS)[d % len(_PLANS)]
    return {
        "customer_id": customer_id,
        "email": f"{customer_id}@customers.example",
        "plan": plan,
        "monthly_price": _PLANS[plan],
        "tenure_months": 1 + (d >> 8) % 48,
        "previous_tickets": (d >> 16) % 12,
    }


# -------------------------------------------------------------------------
# process_refund 1.3.0
# -------------------------------------------------------------------------


def validate_refund_request(ctx: Any) -> dict[str, Any]:
    """Look the ticket up; the context may name the customer and amount explicitly."""
    simulate_failure(ctx)
    simulate_latency(ctx)
    ticket = lookup_ticket(ctx.context["ticket_id"])
    return {
        "ticket_id": ticket["ticket_id"],
        "payment_id": ticket["payment_id"],
        "customer_id": ctx.context.get("customer_id", ticket["customer_id"]),
        "refund_amount": round(float(ctx.context.get("amount", ticket["requested_amount"])), 2),
        "ticket_requested_amount": ticket["requested_amount"],
    }


def check_refund_policy(ctx: Any) -> dict[str, Any]:
    """Pick the approval tier: small refunds are pre-approved by policy, larger ones need a manager."""
    simulate_failure(ctx)
    request = ctx.results["validate_refund_request"]
    return {
        "policy": "standard_refund_policy",
        "auto_approve_limit": AUTO_APPROVE_LIMIT,
        "approval_tier": "auto" if request["refund_amount"] <= AUTO_APPROVE_LIMIT else "manager",
    }


def get_manager_approval(ctx: Any) -> dict[str, Any]:
    """Approve up to the manager's limit; above it only with ``manager_override``."""
    simulate_failure(ctx)
    request = ctx.results["validate_refund_request"]
    amount = request["refund_amount"]
    if ctx.results["check_refund_policy"]["approval_tier"] == "auto":
        approver = "refund_policy"
    elif amount <= MANAGER_LIMIT:
        approver = _MANAGERS[_digest("manager", request["ticket_id"]) % len(_MANAGERS)]
    elif ctx.context.get("manager_override") is True:
        approver = "manager_override"
    else:
        raise PermanentError(
            f"refund of {amount:.2f} exceeds the manager limit of {MANAGER_LIMIT:.2f}; "
            "resubmit with manager_override: true once a director has signed off"
        )
    return {
        "approved": True,
        "approved_by": approver,
        "approval_id": _reference("appr", ctx.idempotency_key),
        "payment_id": request["payment_id"],
        "approved_amount": amount,
    }


def execute_payment_refund(ctx: Any) -> dict[str, Any]:
    """Run the payments team's ``process_refund@2.1.0`` as a child task and report its refund."""
    simulate_failure(ctx)
    approval = ctx.results["get_manager_approval"]
    context = {
        "payment_id": approval["payment_id"],
        "amount": approval["approved_amount"],
        "reason": "customer_service_refund",
        "initiated_by": "customer_success",
        "cs_ticket_id": ctx.context["ticket_id"],
    }
    if "payments_simulate_failure" in ctx.context:  # demo: make the child task fail
        context["simulate_failure"] = ctx.context["payments_simulate_failure"]
    child = ctx.run_workflow(
        TaskRequest(name="process_refund", namespace="payments", version="2.1.0", context=context)
    )
    if child.status == "completed":
        refund = child.step("process_gateway_refund").result
        return {
            "payment_refund_id": refund["refund_id"],
            "refund_amount": refund["amount"],
            "refunded_at": refund["processed_at"],
            "payments_task_id": child.id,
        }
    if child.status == "failed":
        raise RetryableError(f"payments task {child.id} ({PAYMENTS_REFUND}) failed: {child.error_summary}")
    raise RetryableError(f"payments task {child.id} ({PAYMENTS_REFUND}) ended as {child.status}")


def update_customer_record(ctx: Any) -> dict[str, Any]:
    """Resolve the ticket and note the refund on the customer's record."""
    simulate_failure(ctx)
    request = ctx.results["validate_refund_request"]
    refund = ctx.results["execute_payment_refund"]
    return {
        "customer_id": request["customer_id"],
        "ticket_id": request["ticket_id"],
        "ticket_status": "resolved",
        "resolution": "refunded",
        "refund_id": refund["payment_refund_id"],
        "note": f"Refunded {refund['refund_amount']:.2f} (payments task {refund['payments_task_id']})",
    }


# -------------------------------------------------------------------------
# escalate_ticket 2.2.0: assess -> (page manager, gather history) -> assign -> update
# -------------------------------------------------------------------------


def assess_ticket_severity(ctx: Any) -> dict[str, Any]:
    """Grade the ticket from its priority and how long it has been open."""
    simulate_failure(ctx)
    ticket = lookup_ticket(ctx.context["ticket_id"])
    points = _PRIORITIES.index(ticket["priority"]) * 2 + ticket["days_open"] // 3
    severity = "sev1" if points >= 6 else "sev2" if points >= 3 else "sev3"
    return {
        "ticket_id": ticket["ticket_id"],
        "customer_id": ticket["customer_id"],
        "severity": severity,
        "sla_hours": {"sev1": 4, "sev2": 24, "sev3": 72}[severity],
        "reason": ctx.context.get("reason", "customer_requested"),
    }


def notify_on_call_manager(ctx: Any) -> dict[str, Any]:
    """Page the on-call support manager."""
    simulate_failure(ctx)
    assessment = ctx.results["assess_ticket_severity"]
    return {
        "paged": _MANAGERS[_digest("oncall", assessment["ticket_id"]) % len(_MANAGERS)],
        "page_id": _reference("page", ctx.idempotency_key),
        "urgency": "high" if assessment["severity"] == "sev1" else "low",
    }


def gather_customer_history(ctx: Any) -> dict[str, Any]:
    """Pull the customer's plan, tenure and past tickets from the CRM."""
    simulate_failure(ctx)
    customer = lookup_customer(ctx.results["assess_ticket_severity"]["customer_id"])
    return {**customer, "vip": customer["plan"] == "enterprise" or customer["tenure_months"] >= 36}


def assign_senior_agent(ctx: Any) -> dict[str, Any]:
    """Hand the ticket to a senior agent, or a team lead for sev1 or VIP customers."""
    simulate_failure(ctx)
    assessment = ctx.results["assess_ticket_severity"]
    history = ctx.results["gather_customer_history"]
    lead = assessment["severity"] == "sev1" or history["vip"]
    agent = _SENIOR_AGENTS[_digest("assign", assessment["ticket_id"]) % len(_SENIOR_AGENTS)]
    return {"assigned_to": agent, "role": "team_lead" if lead else "senior_agent"}


def update_ticket_status(ctx: Any) -> dict[str, Any]:
    """Mark the ticket escalated, with its new owner and SLA."""
    simulate_failure(ctx)
    assessment = ctx.results["assess_ticket_severity"]
    return {
        "ticket_id": assessment["ticket_id"],
        "status": "escalated",
        "severity": assessment["severity"],
        "assigned_to": ctx.results["assign_senior_agent"]["assigned_to"],
        "manager_page_id": ctx.results["notify_on_call_manager"]["page_id"],
        "sla_hours": assessment["sla_hours"],
    }


# -------------------------------------------------------------------------
# generate_satisfaction_survey 1.0.0
# -------------------------------------------------------------------------


def load_ticket_interaction(ctx: Any) -> dict[str, Any]:
    """Read how the ticket was handled."""
    simulate_failure(ctx)
    ticket = lookup_ticket(ctx.context["ticket_id"])
    return {
        key: ticket[key] for key in ("ticket_id", "customer_id", "channel", "assigned_agent", "days_open")
    }


def select_survey_template(ctx: Any) -> dict[str, Any]:
    """Short CSAT after quick chats, the detailed survey after long or phone cases."""
    simulate_failure(ctx)
    interaction = ctx.results["load_ticket_interaction"]
    detailed = interaction["channel"] == "phone" or interaction["days_open"] >= 5
    return {"template": "csat_detailed" if detailed else "csat_short", "questions": 8 if detailed else 2}


def send_survey(ctx: Any) -> dict[str, Any]:
    """Email the survey link to the customer."""
    simulate_failure(ctx)
    interaction = ctx.results["load_ticket_interaction"]
    survey_id = _reference("srv", ctx.idempotency_key)
    return {
        "survey_id": survey_id,
        "template": ctx.results["select_survey_template"]["template"],
        "recipient": lookup_customer(interaction["customer_id"])["email"],
        "url": f"https://survey.growthcorp.example/{survey_id}",
        "expires_in_days": 14,
    }


# -------------------------------------------------------------------------
# process_cancellation 1.1.0
# -------------------------------------------------------------------------


def validate_cancellation_request(ctx: Any) -> dict[str, Any]:
    """Find the subscription and where the customer is in the billing cycle."""
    simulate_failure(ctx)
    customer = lookup_customer(ctx.context["customer_id"])
    subscription_id = ctx.context.get(
        "subscription_id", "sub_" + customer["customer_id"].removeprefix("cust_")
    )
    return {
        "customer_id": customer["customer_id"],
        "subscription_id": subscription_id,
        "plan": customer["plan"],
        "monthly_price": customer["monthly_price"],
        "days_used": 1 + _digest("cycle", subscription_id) % 29,
        "reason": ctx.context.get("reason", "not_specified"),
    }


def calculate_prorated_refund(ctx: Any) -> dict[str, Any]:
    """Credit the unused days of the current 30-day cycle."""
    simulate_failure(ctx)
    request = ctx.results["validate_cancellation_request"]
    unused = 30 - request["days_used"]
    return {"unused_days": unused, "credit_amount": round(request["monthly_price"] * unused / 30, 2)}


def cancel_subscription(ctx: Any) -> dict[str, Any]:
    """Cancel in billing at the end of today."""
    simulate_failure(ctx)
    request = ctx.results["validate_cancellation_request"]
    effective = datetime.now(UTC).replace(hour=23, minute=59, second=59, microsecond=0)
    return {
        "cancellation_id": _reference("can", ctx.idempotency_key),
        "subscription_id": request["subscription_id"],
        "status": "cancelled",
        "effective_at": effective.isoformat(),
        "data_retained_until": (effective + timedelta(days=90)).date().isoformat(),
    }


def send_cancellation_confirmation(ctx: Any) -> dict[str, Any]:
    """Email the confirmation with the credit issued."""
    simulate_failure(ctx)
    request = ctx.results["validate_cancellation_request"]
    return {
        "recipient": lookup_customer(request["customer_id"])["email"],
        "template": "cancellation_confirmation",
        "credit_amount": ctx.results["calculate_prorated_refund"]["credit_amount"],
        "message_id": _reference("msg", ctx.idempotency_key),
    }


# -------------------------------------------------------------------------
# generate_support_report 1.5.0
# -------------------------------------------------------------------------


def collect_ticket_metrics(ctx: Any) -> dict[str, Any]:
    """Count the month's tickets and resolution times."""
    simulate_failure(ctx)
    d = _digest("tickets", ctx.context["period"])
    opened = 800 + d % 400
    return {
        "tickets_opened": opened,
        "tickets_resolved": opened - (d >> 10) % 60,
        "median_resolution_hours": round(4 + (d >> 20) % 200 / 10, 1),
    }


def collect_satisfaction_scores(ctx: Any) -> dict[str, Any]:
    """Aggregate the month's survey answers."""
    simulate_failure(ctx)
    d = _digest("csat", ctx.context["period"])
    return {"surveys_answered": 150 + d % 150, "csat": round(3.8 + (d >> 10) % 12 / 10, 1)}


def compile_support_report(ctx: Any) -> dict[str, Any]:
    """Combine ticket and satisfaction metrics."""
    simulate_failure(ctx)
    tickets = ctx.results["collect_ticket_metrics"]
    csat = ctx.results["collect_satisfaction_scores"]
    return {
        "period": ctx.context["period"],
        **tickets,
        **csat,
        "resolution_rate": round(tickets["tickets_resolved"] / tickets["tickets_opened"], 4),
        "survey_response_rate": round(csat["surveys_answered"] / tickets["tickets_resolved"], 4),
    }


def publish_support_report(ctx: Any) -> dict[str, Any]:
    """Publish the report to the support leadership channel."""
    simulate_failure(ctx)
    period = ctx.context["period"]
    return {
        "report_id": f"csrep_{period.replace('-', '')}",
        "location": f"reports/customer_success/{period}.json",
        "published_to": "#cs-leadership",
        "published_at": _now(),
    }
