"""JSON Schemas (draft 2020-12) of the ``inventory`` workflows' contexts.

Contexts may carry extra fields (``additionalProperties`` is true); the key fields are
required. A schema is part of its workflow version's fingerprint: changing one means
releasing a new workflow version.
"""

from __future__ import annotations

from typing import Any

from teamflow_inventory.handlers import DEFAULT_WAREHOUSE, SUPPLIERS

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
    "simulate_slow_s": {"type": "number", "minimum": 0, "description": "Demo switch: slow the stock write."},
}

SKU = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]*$", "maxLength": 64}
WAREHOUSE = {"type": "string", "pattern": "^wh_[a-z0-9_]+$"}
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


PROCESS_RETURN = context_schema(
    "inventory/process_return context",
    ["return_id"],
    {
        "return_id": {"type": "string", "pattern": "^ret_"},
        "order_id": {"type": "string", "pattern": "^ord_"},
        "warehouse_id": {**WAREHOUSE, "default": DEFAULT_WAREHOUSE},
        "items": {
            "description": "Defaults to the items on the return authorisation.",
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {"sku": SKU, "quantity": {"type": "integer", "minimum": 1}},
                "required": ["sku", "quantity"],
            },
        },
    },
)

UPDATE_STOCK_LEVELS = context_schema(
    "inventory/update_stock_levels context",
    ["adjustments"],
    {
        "warehouse_id": {**WAREHOUSE, "default": DEFAULT_WAREHOUSE},
        "reason": {"type": "string"},
        "adjustments": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {"sku": SKU, "delta": {"type": "integer", "not": {"const": 0}}},
                "required": ["sku", "delta"],
            },
        },
    },
)

REORDER_PRODUCTS = context_schema(
    "inventory/reorder_products context",
    ["skus"],
    {
        "warehouse_id": {**WAREHOUSE, "default": DEFAULT_WAREHOUSE},
        "skus": {"type": "array", "items": SKU, "minItems": 1, "uniqueItems": True},
        "supplier_id": {"enum": sorted(SUPPLIERS)},
    },
)

PROCESS_WAREHOUSE_TRANSFER = context_schema(
    "inventory/process_warehouse_transfer context",
    ["sku", "quantity", "source_warehouse", "destination_warehouse"],
    {
        "transfer_id": {"type": "string"},
        "sku": SKU,
        "quantity": {"type": "integer", "minimum": 1},
        "source_warehouse": WAREHOUSE,
        "destination_warehouse": WAREHOUSE,
    },
)

GENERATE_INVENTORY_REPORT = context_schema(
    "inventory/generate_inventory_report context",
    ["period"],
    {"warehouse_id": {**WAREHOUSE, "default": DEFAULT_WAREHOUSE}, "period": PERIOD},
)
