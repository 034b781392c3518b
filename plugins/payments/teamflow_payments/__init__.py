"""teamflow-payments: the payments team's workflows, loaded by teamflow through the
``teamflow.plugins`` entry point ``payments = "teamflow_payments.plugin"``."""

__version__ = "1.0.0"
