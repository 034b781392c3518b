"""The customer success team's registrations: the ``customer_success`` namespace and its
workflow versions.

teamflow loads this module through the entry point
``customer_success = "teamflow_customer_success.plugin"`` and calls the two hooks below
once at start-up.
"""

from __future__ import annotations

from teamflow import Call, NamespacePolicy, Step, Workflow, hookimpl
from teamflow_customer_success import handlers as h
from teamflow_customer_success import schemas

NAMESPACE = "customer_success"


@hookimpl
def teamflow_namespaces() -> list[NamespacePolicy]:
    """The ``customer_success`` namespace."""
    return [
        NamespacePolicy(
            name=NAMESPACE,
            owner_team="customer_success",
            contact_email="cs-team@growthcorp.example",
            description="Customer support and success workflows",
        )
    ]


@hookimpl
def teamflow_workflows() -> list[Workflow]:
    """Every workflow version this distribution ships."""
    return [
        process_refund_1_3_0(),
        escalate_ticket_2_2_0(),
        generate_satisfaction_survey_1_0_0(),
        process_cancellation_1_1_0(),
        generate_support_report_1_5_0(),
    ]


def process_refund_1_3_0() -> Workflow:
    return Workflow(
        NAMESPACE,
        "process_refund",
        "1.3.0",
        description="Refund a customer from a support ticket, with approval, through the payments team.",
        context_schema=schemas.PROCESS_REFUND,
        steps=[
            Step(
                "validate_refund_request",
                h.validate_refund_request,
                description="Validate customer refund request details",
                timeout_s=10,
            ),
            Step(
                "check_refund_policy",
                h.check_refund_policy,
                depends_on="validate_refund_request",
                description="Verify request complies with refund policies",
            ),
            Step(
                "get_manager_approval",
                h.get_manager_approval,
                depends_on="check_refund_policy",
                description="Route to manager for approval if needed",
            ),
            Step(
                "execute_payment_refund",
                h.execute_payment_refund,
                depends_on="get_manager_approval",
                description="Execute refund via payments team workflow",
                calls=(Call(h.PAYMENTS_REFUND, examples=h.PAYMENTS_REFUND_EXAMPLES),),
            ),
            Step(
                "update_customer_record",
                h.update_customer_record,
                depends_on="execute_payment_refund",
                description="Update customer service records",
            ),
        ],
    )


def escalate_ticket_2_2_0() -> Workflow:
    return Workflow(
        NAMESPACE,
        "escalate_ticket",
        "2.2.0",
        description="Escalate a ticket: page the manager and pull history in parallel, then reassign.",
        context_schema=schemas.ESCALATE_TICKET,
        steps=[
            Step(
                "assess_ticket_severity",
                h.assess_ticket_severity,
                description="Grade severity from priority and age",
            ),
            Step(
                "notify_on_call_manager",
                h.notify_on_call_manager,
                depends_on="assess_ticket_severity",
                description="Page the on-call support manager",
            ),
            Step(
                "gather_customer_history",
                h.gather_customer_history,
                depends_on="assess_ticket_severity",
                description="Pull plan, tenure and past tickets from the CRM",
            ),
            Step(
                "assign_senior_agent",
                h.assign_senior_agent,
                depends_on=("notify_on_call_manager", "gather_customer_history"),
                description="Hand the ticket to a senior agent or team lead",
            ),
            Step(
                "update_ticket_status",
                h.update_ticket_status,
                depends_on="assign_senior_agent",
                description="Mark the ticket escalated with its owner and SLA",
            ),
        ],
    )


def generate_satisfaction_survey_1_0_0() -> Workflow:
    return Workflow(
        NAMESPACE,
        "generate_satisfaction_survey",
        "1.0.0",
        description="Send a satisfaction survey fitted to how a ticket was handled.",
        context_schema=schemas.GENERATE_SATISFACTION_SURVEY,
        steps=[
            Step(
                "load_ticket_interaction",
                h.load_ticket_interaction,
                description="Read how the ticket was handled",
            ),
            Step(
                "select_survey_template",
                h.select_survey_template,
                depends_on="load_ticket_interaction",
                description="Choose the short or detailed survey",
            ),
            Step(
                "send_survey",
                h.send_survey,
                depends_on="select_survey_template",
                description="Email the survey link to the customer",
            ),
        ],
    )


def process_cancellation_1_1_0() -> Workflow:
    return Workflow(
        NAMESPACE,
        "process_cancellation",
        "1.1.0",
        description="Cancel a subscription and credit the unused days.",
        context_schema=schemas.PROCESS_CANCELLATION,
        steps=[
            Step(
                "validate_cancellation_request",
                h.validate_cancellation_request,
                description="Find the subscription and its billing cycle",
            ),
            Step(
                "calculate_prorated_refund",
                h.calculate_prorated_refund,
                depends_on="validate_cancellation_request",
                description="Credit the unused days of the cycle",
            ),
            Step(
                "cancel_subscription",
                h.cancel_subscription,
                depends_on="calculate_prorated_refund",
                description="Cancel the subscription in billing",
            ),
            Step(
                "send_cancellation_confirmation",
                h.send_cancellation_confirmation,
                depends_on="cancel_subscription",
                description="Email the confirmation and credit issued",
            ),
        ],
    )


def generate_support_report_1_5_0() -> Workflow:
    return Workflow(
        NAMESPACE,
        "generate_support_report",
        "1.5.0",
        description="Monthly support report: volume, resolution and satisfaction.",
        context_schema=schemas.GENERATE_SUPPORT_REPORT,
        steps=[
            Step(
                "collect_ticket_metrics",
                h.collect_ticket_metrics,
                description="Count tickets and resolution times",
            ),
            Step(
                "collect_satisfaction_scores",
                h.collect_satisfaction_scores,
                description="Aggregate survey answers",
            ),
            Step(
                "compile_support_report",
                h.compile_support_report,
                depends_on=("collect_ticket_metrics", "collect_satisfaction_scores"),
                description="Combine ticket and satisfaction metrics",
            ),
            Step(
                "publish_support_report",
                h.publish_support_report,
                depends_on="compile_support_report",
                description="Publish the report to support leadership",
            ),
        ],
    )
