"""teamflow-inventory: the inventory team's workflows, loaded by teamflow through the
``teamflow.plugins`` entry point ``inventory = "teamflow_inventory.plugin"``."""

__version__ = "1.0.0"
