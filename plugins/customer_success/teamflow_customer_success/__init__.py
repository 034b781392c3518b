"""teamflow-customer-success: the customer success team's workflows, loaded by teamflow through
the ``teamflow.plugins`` entry point ``customer_success = "teamflow_customer_success.plugin"``."""

__version__ = "1.0.0"
