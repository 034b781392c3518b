"""The payments team's registrations: the ``payments`` namespace and its workflow versions.

teamflow loads this module through the entry point ``payments = "teamflow_payments.plugin"``
and calls the two hooks below once at start-up.
"""

from __future__ import annotations

from teamflow import NamespacePolicy, Step, Workflow, hookimpl
from teamflow_payments import handlers as h
from teamflow_payments import schemas

NAMESPACE = "payments"


@hookimpl
def teamflow_namespaces() -> list[NamespacePolicy]:
    """The ``payments`` namespace: any team's workflow may call it."""
    return [
        NamespacePolicy(
            name=NAMESPACE,
            owner_team="payments",
            contact_email="payments-team@growthcorp.example",
            description="Payment processing, refunds, and financial workflows",
            allowed_callers=("*",),
        )
    ]


@hookimpl
def teamflow_workflows() -> list[Workflow]:
    """Every workflow version this distribution ships."""
    return [
        process_refund_2_0_0(),
        process_refund_2_1_0(),
        process_payment_3_0_0(),
        handle_chargeback_1_2_0(),
        reconcile_transactions_1_1_0(),
        generate_payment_report_2_0_0(),
    ]


# The gateway honours our idempotency key, so retrying a refund cannot pay out twice.
def _gateway_refund_step(depends_on: str) -> Step:
    return Step(
        "process_gateway_refund",
        h.process_gateway_refund,
        depends_on=depends_on,
        description="Execute refund through payment processor",
        retry_limit=5,
        timeout_s=10,
    )


def process_refund_2_0_0() -> Workflow:
    return Workflow(
        NAMESPACE,
        "process_refund",
        "2.0.0",
        description="Refund a captured payment through the gateway.",
        context_schema=schemas.PROCESS_REFUND,
        deprecated="use 2.1.0 (fraud screening)",
        steps=[
            Step(
                "validate_payment_eligibility",
                h.validate_payment_eligibility,
                description="Check if payment can be refunded via gateway",
            ),
            _gateway_refund_step(depends_on="validate_payment_eligibility"),
            Step(
                "update_payment_records",
                h.update_payment_records,
                depends_on="process_gateway_refund",
                description="Update internal payment status and history",
            ),
            Step(
                "notify_customer",
                h.notify_customer,
                depends_on="update_payment_records",
                description="Send refund confirmation to customer",
            ),
        ],
    )


def process_refund_2_1_0() -> Workflow:
    return Workflow(
        NAMESPACE,
        "process_refund",
        "2.1.0",
        description="Refund a captured payment, screened for fraud, and notify everyone involved.",
        context_schema=schemas.PROCESS_REFUND,
        steps=[
            Step(
                "validate_payment_eligibility",
                h.validate_payment_eligibility,
                description="Check payment refund eligibility",
            ),
            Step(
                "check_fraud_indicators",
                h.check_fraud_indicators,
                depends_on="validate_payment_eligibility",
                description="Screen for potential fraud before refunding",
            ),
            _gateway_refund_step(depends_on="check_fraud_indicators"),
            Step(
                "update_payment_records",
                h.update_payment_records,
                depends_on="process_gateway_refund",
                description="Update payment status and history",
            ),
            Step(
                "notify_stakeholders",
                h.notify_stakeholders,
                depends_on="update_payment_records",
                description="Notify customer and internal teams",
            ),
        ],
    )


def process_payment_3_0_0() -> Workflow:
    return Workflow(
        NAMESPACE,
        "process_payment",
        "3.0.0",
        description="Charge an order: authorise and risk-score in parallel, then capture.",
        context_schema=schemas.PROCESS_PAYMENT,
        steps=[
            Step(
                "validate_payment_request",
                h.validate_payment_request,
                description="Validate amount, currency and payment method",
            ),
            Step(
                "authorize_payment",
                h.authorize_payment,
                depends_on="validate_payment_request",
                description="Place an authorisation hold with the gateway",
                timeout_s=10,
            ),
            Step(
                "score_payment_risk",
                h.score_payment_risk,
                depends_on="validate_payment_request",
                description="Score the charge for fraud risk",
            ),
            Step(
                "capture_payment",
                h.capture_payment,
                depends_on=("authorize_payment", "score_payment_risk"),
                description="Capture the authorised amount",
                timeout_s=10,
            ),
            Step(
                "send_payment_receipt",
                h.send_payment_receipt,
                depends_on="capture_payment",
                description="Email the customer a receipt",
            ),
        ],
    )


def handle_chargeback_1_2_0() -> Workflow:
    return Workflow(
        NAMESPACE,
        "handle_chargeback",
        "1.2.0",
        description="Respond to a card network dispute: contest it with evidence or accept it.",
        context_schema=schemas.HANDLE_CHARGEBACK,
        steps=[
            Step(
                "record_chargeback", h.record_chargeback, description="Record the dispute against the payment"
            ),
            Step(
                "gather_evidence",
                h.gather_evidence,
                depends_on="record_chargeback",
                description="Collect delivery, communication and device evidence",
            ),
            Step(
                "decide_dispute_strategy",
                h.decide_dispute_strategy,
                depends_on="gather_evidence",
                description="Decide whether to contest or accept the chargeback",
            ),
            Step(
                "submit_dispute_response",
                h.submit_dispute_response,
                depends_on="decide_dispute_strategy",
                description="Submit the response to the gateway",
            ),
        ],
    )


def reconcile_transactions_1_1_0() -> Workflow:
    return Workflow(
        NAMESPACE,
        "reconcile_transactions",
        "1.1.0",
        description="Match one day's gateway settlements against the ledger.",
        context_schema=schemas.RECONCILE_TRANSACTIONS,
        steps=[
            Step("load_period", h.load_period, description="Fix the settlement day to reconcile"),
            Step(
                "fetch_gateway_settlements",
                h.fetch_gateway_settlements,
                depends_on="load_period",
                description="Download the gateway's settlement report",
            ),
            Step(
                "fetch_ledger_entries",
                h.fetch_ledger_entries,
                depends_on="load_period",
                description="Read the ledger's entries for the day",
            ),
            Step(
                "match_transactions",
                h.match_transactions,
                depends_on=("fetch_gateway_settlements", "fetch_ledger_entries"),
                description="Match settlements to ledger entries by id and amount",
            ),
            Step(
                "report_discrepancies",
                h.report_discrepancies,
                depends_on="match_transactions",
                description="File the outcome and escalate discrepancies to finance",
            ),
        ],
    )


def generate_payment_report_2_0_0() -> Workflow:
    return Workflow(
        NAMESPACE,
        "generate_payment_report",
        "2.0.0",
        description="Monthly payments report: volume, refunds, chargebacks, net revenue.",
        context_schema=schemas.GENERATE_PAYMENT_REPORT,
        steps=[
            Step("collect_payment_volume", h.collect_payment_volume, description="Sum the month's payments"),
            Step(
                "collect_refund_volume",
                h.collect_refund_volume,
                description="Sum the month's refunds and chargebacks",
            ),
            Step(
                "compile_payment_report",
                h.compile_payment_report,
                depends_on=("collect_payment_volume", "collect_refund_volume"),
                description="Compute net revenue and refund rate",
            ),
            Step(
                "publish_payment_report",
                h.publish_payment_report,
                depends_on="compile_payment_report",
                description="Publish the report and send it to its recipients",
            ),
        ],
    )
