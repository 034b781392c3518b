"""The inventory team's registrations: the ``inventory`` namespace and its workflow versions.

teamflow loads this module through the entry point ``inventory = "teamflow_inventory.plugin"``
and calls the two hooks below once at start-up.
"""

from __future__ import annotations

from teamflow import NamespacePolicy, Step, Workflow, hookimpl
from teamflow_inventory import handlers as h
from teamflow_inventory import schemas

NAMESPACE = "inventory"


@hookimpl
def teamflow_namespaces() -> list[NamespacePolicy]:
    """The ``inventory`` namespace."""
    return [
        NamespacePolicy(
            name=NAMESPACE,
            owner_team="inventory",
            contact_email="inventory-team@growthcorp.example",
            description="Stock, returns and warehouse workflows",
        )
    ]


@hookimpl
def teamflow_workflows() -> list[Workflow]:
    """Every workflow version this distribution ships."""
    return [
        process_return_1_4_0(),
        update_stock_levels_2_3_0(),
        reorder_products_1_8_0(),
        process_warehouse_transfer_1_0_0(),
        generate_inventory_report_2_1_0(),
    ]


def process_return_1_4_0() -> Workflow:
    return Workflow(
        NAMESPACE,
        "process_return",
        "1.4.0",
        description="Receive a customer return: inspect it, restock what is resellable, close the RMA.",
        context_schema=schemas.PROCESS_RETURN,
        steps=[
            Step(
                "validate_return_authorization",
                h.validate_return_authorization,
                description="Match the return to its RMA and items",
            ),
            Step(
                "inspect_returned_items",
                h.inspect_returned_items,
                depends_on="validate_return_authorization",
                description="Grade each item resellable or damaged",
            ),
            Step(
                "restock_items",
                h.restock_items,
                depends_on="inspect_returned_items",
                description="Restock resellable items and write off damaged ones",
            ),
            Step(
                "close_return",
                h.close_return,
                depends_on="restock_items",
                description="Close the RMA with its outcome",
            ),
        ],
    )


def update_stock_levels_2_3_0() -> Workflow:
    return Workflow(
        NAMESPACE,
        "update_stock_levels",
        "2.3.0",
        description="Apply a batch of stock adjustments atomically and announce the new levels.",
        context_schema=schemas.UPDATE_STOCK_LEVELS,
        steps=[
            Step(
                "validate_adjustments",
                h.validate_adjustments,
                description="Merge the adjustments per SKU",
            ),
            Step(
                "load_current_stock",
                h.load_current_stock,
                depends_on="validate_adjustments",
                description="Read current on-hand levels",
            ),
            Step(
                "apply_stock_adjustments",
                h.apply_stock_adjustments,
                depends_on="load_current_stock",
                description="Write the new levels, refusing negative stock",
                timeout_s=10,
            ),
            Step(
                "publish_stock_update",
                h.publish_stock_update,
                depends_on="apply_stock_adjustments",
                description="Announce the change and flag low stock",
            ),
        ],
    )


def reorder_products_1_8_0() -> Workflow:
    return Workflow(
        NAMESPACE,
        "reorder_products",
        "1.8.0",
        description="Reorder SKUs at or below the reorder point from their suppliers.",
        context_schema=schemas.REORDER_PRODUCTS,
        steps=[
            Step(
                "identify_low_stock",
                h.identify_low_stock,
                description="Find SKUs at or below the reorder point",
            ),
            Step(
                "calculate_reorder_quantities",
                h.calculate_reorder_quantities,
                depends_on="identify_low_stock",
                description="Order back up to target stock in whole cases",
            ),
            Step(
                "select_supplier",
                h.select_supplier,
                depends_on="calculate_reorder_quantities",
                description="Pick each SKU's supplier and lead time",
            ),
            Step(
                "create_purchase_order",
                h.create_purchase_order,
                depends_on="select_supplier",
                description="Raise one purchase order per supplier",
            ),
            Step(
                "notify_procurement",
                h.notify_procurement,
                depends_on="create_purchase_order",
                description="Tell procurement what was ordered",
            ),
        ],
    )


def process_warehouse_transfer_1_0_0() -> Workflow:
    return Workflow(
        NAMESPACE,
        "process_warehouse_transfer",
        "1.0.0",
        description="Move stock between warehouses: reserve and prepare in parallel, then ship.",
        context_schema=schemas.PROCESS_WAREHOUSE_TRANSFER,
        steps=[
            Step("validate_transfer", h.validate_transfer, description="Check source and destination differ"),
            Step(
                "reserve_source_stock",
                h.reserve_source_stock,
                depends_on="validate_transfer",
                description="Reserve the units at the source warehouse",
            ),
            Step(
                "prepare_destination_capacity",
                h.prepare_destination_capacity,
                depends_on="validate_transfer",
                description="Allocate a bin at the destination warehouse",
            ),
            Step(
                "dispatch_shipment",
                h.dispatch_shipment,
                depends_on=("reserve_source_stock", "prepare_destination_capacity"),
                description="Hand the reserved units to a carrier",
            ),
            Step(
                "confirm_receipt",
                h.confirm_receipt,
                depends_on="dispatch_shipment",
                description="Book the units out of the source and into the destination",
            ),
        ],
    )


def generate_inventory_report_2_1_0() -> Workflow:
    return Workflow(
        NAMESPACE,
        "generate_inventory_report",
        "2.1.0",
        description="Monthly warehouse report: stock on hand, movements, low stock, turnover.",
        context_schema=schemas.GENERATE_INVENTORY_REPORT,
        steps=[
            Step(
                "snapshot_stock_levels",
                h.snapshot_stock_levels,
                description="Read every stocked SKU's level",
            ),
            Step(
                "collect_stock_movements",
                h.collect_stock_movements,
                description="Sum the period's inbound and outbound units",
            ),
            Step(
                "compute_inventory_metrics",
                h.compute_inventory_metrics,
                depends_on=("snapshot_stock_levels", "collect_stock_movements"),
                description="Compute totals, low stock and turnover",
            ),
            Step(
                "publish_inventory_report",
                h.publish_inventory_report,
                depends_on="compute_inventory_metrics",
                description="Publish the report for operations",
            ),
        ],
    )
