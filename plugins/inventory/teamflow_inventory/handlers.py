"""Step handlers of the ``inventory`` namespace.

Each handler is a module-level function ``handler(ctx) -> dict``: the host finds it by
``module:qualname`` and stores what it returns as JSON. Stock levels, suppliers, returns
and carriers are deterministic simulations (stock derives from a hash of warehouse and
SKU), so a demo or a test gives the same answers on every machine. A step fails only
when the task's context asks for it with ``simulate_failure`` (or when the request breaks
a stock rule, such as moving more than a warehouse holds); see the README.
"""

from __future__ import annotations

import hashlib
import math
import time
from datetime import UTC, datetime
from typing import Any

from teamflow import PermanentError, RetryableError

DEFAULT_WAREHOUSE = "wh_main"
REORDER_POINT = 60
TARGET_STOCK = 300
CASE_SIZE = 12
SUPPLIERS = {"acme_supply": 5, "northwind": 9, "globex": 14}  # supplier -> lead time in days


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
# Simulated systems: stock ledger, catalogue, carriers
# -------------------------------------------------------------------------


def _digest(*parts: object) -> int:
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:12], 16)


def _reference(prefix: str, key: str) -> str:
    """Ids derived from the step's idempotency key: a retried call gets the same id."""
    return f"{prefix}_{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def stock_level(sku: str, warehouse: str = DEFAULT_WAREHOUSE) -> int:
    """On-hand units of a SKU in a warehouse (0-499), derived from a hash of both."""
    return _digest("stock", warehouse, sku) % 500


def supplier_for(sku: str) -> str:
    return list(SUPPLIERS)[_digest("supplier", sku) % len(SUPPLIERS)]


def catalogue(warehouse: str, size: int = 20) -> list[str]:
    """The SKUs a warehouse stocks."""
    base = _digest("catalogue", warehouse) % 9000
    return [f"SKU-{1000 + (base + 37 * i) % 9000}" for i in range(size)]


def _warehouse(ctx: Any) -> str:
    return ctx.context.get("warehouse_id", DEFAULT_WAREHOUSE)


# -------------------------------------------------------------------------
# process_return 1.4.0
# -------------------------------------------------------------------------


def validate_return_authorization(ctx: Any) -> dict[str, Any]:
    """Match the return to its authorisation (RMA) and list the items coming back."""
    simulate_failure(ctx)
    return_id = ctx.context["return_id"]
    d = _digest("return", return_id)
    items = ctx.context.get("items") or [{"sku": f"SKU-{1000 + d % 9000}", "quantity": 1 + (d >> 16) % 3}]
    return {
        "return_id": return_id,
        "rma_number": f"RMA-{d % 1_000_000:06d}",
        "order_id": ctx.context.get("order_id"),
        "warehouse_id": _warehouse(ctx),
        "items": [{"sku": i["sku"], "quantity": int(i["quantity"])} for i in items],
    }


def inspect_returned_items(ctx: Any) -> dict[str, Any]:
    """Grade each item: one in five comes back damaged."""
    simulate_failure(ctx)
    rma = ctx.results["validate_return_authorization"]
    inspected = [
        {
            **item,
            "condition": "damaged"
            if _digest("inspect", rma["return_id"], item["sku"]) % 5 == 0
            else "resellable",
        }
        for item in rma["items"]
    ]
    return {"items": inspected, "inspected_at": _now()}


def restock_items(ctx: Any) -> dict[str, Any]:
    """Put resellable items back on the shelf; write damaged ones off."""
    simulate_failure(ctx)
    warehouse = ctx.results["validate_return_authorization"]["warehouse_id"]
    items = ctx.results["inspect_returned_items"]["items"]
    restocked = [
        {
            "sku": i["sku"],
            "quantity": i["quantity"],
            "new_level": stock_level(i["sku"], warehouse) + i["quantity"],
        }
        for i in items
        if i["condition"] == "resellable"
    ]
    written_off = [{"sku": i["sku"], "quantity": i["quantity"]} for i in items if i["condition"] == "damaged"]
    return {"warehouse_id": warehouse, "restocked": restocked, "written_off": written_off}


def close_return(ctx: Any) -> dict[str, Any]:
    """Close the RMA with its outcome."""
    simulate_failure(ctx)
    rma = ctx.results["validate_return_authorization"]
    restock = ctx.results["restock_items"]
    return {
        "return_id": rma["return_id"],
        "rma_number": rma["rma_number"],
        "status": "closed",
        "restocked_units": sum(i["quantity"] for i in restock["restocked"]),
        "written_off_units": sum(i["quantity"] for i in restock["written_off"]),
    }


# -------------------------------------------------------------------------
# update_stock_levels 2.3.0
# -------------------------------------------------------------------------


def validate_adjustments(ctx: Any) -> dict[str, Any]:
    """Merge adjustments per SKU; a SKU whose deltas cancel out is dropped."""
    simulate_failure(ctx)
    merged: dict[str, int] = {}
    for adjustment in ctx.context["adjustments"]:
        merged[adjustment["sku"]] = merged.get(adjustment["sku"], 0) + int(adjustment["delta"])
    return {
        "warehouse_id": _warehouse(ctx),
        "adjustments": [{"sku": sku, "delta": delta} for sku, delta in sorted(merged.items()) if delta],
        "reason": ctx.context.get("reason", "cycle_count"),
    }


def load_current_stock(ctx: Any) -> dict[str, Any]:
    """Read the current on-hand level of every SKU adjusted."""
    simulate_failure(ctx)
    request = ctx.results["validate_adjustments"]
    return {
        "levels": {a["sku"]: stock_level(a["sku"], request["warehouse_id"]) for a in request["adjustments"]}
    }


def apply_stock_adjustments(ctx: Any) -> dict[str, Any]:
    """Write the new levels; refuse the whole batch if any would go below zero."""
    simulate_failure(ctx)
    simulate_latency(ctx)
    request = ctx.results["validate_adjustments"]
    levels = ctx.results["load_current_stock"]["levels"]
    new = {a["sku"]: levels[a["sku"]] + a["delta"] for a in request["adjustments"]}
    negative = sorted(sku for sku, level in new.items() if level < 0)
    if negative:
        detail = ", ".join(f"{sku} has {levels[sku]}" for sku in negative)
        raise PermanentError(f"adjustments would make stock negative in {request['warehouse_id']}: {detail}")
    return {
        "warehouse_id": request["warehouse_id"],
        "new_levels": new,
        "batch_id": _reference("adj", ctx.idempotency_key),
    }


def publish_stock_update(ctx: Any) -> dict[str, Any]:
    """Announce the new levels; flag SKUs now at or below the reorder point."""
    simulate_failure(ctx)
    applied = ctx.results["apply_stock_adjustments"]
    return {
        "event_id": _reference("evt", ctx.idempotency_key),
        "topic": "inventory.stock_changed",
        "skus": sorted(applied["new_levels"]),
        "below_reorder_point": sorted(
            s for s, level in applied["new_levels"].items() if level <= REORDER_POINT
        ),
    }


# -------------------------------------------------------------------------
# reorder_products 1.8.0
# -------------------------------------------------------------------------


def identify_low_stock(ctx: Any) -> dict[str, Any]:
    """Find the SKUs at or below the reorder point."""
    simulate_failure(ctx)
    warehouse = _warehouse(ctx)
    levels = {sku: stock_level(sku, warehouse) for sku in ctx.context["skus"]}
    return {
        "warehouse_id": warehouse,
        "reorder_point": REORDER_POINT,
        "low_stock": {sku: level for sku, level in sorted(levels.items()) if level <= REORDER_POINT},
    }


def calculate_reorder_quantities(ctx: Any) -> dict[str, Any]:
    """Order back up to the target level, in whole cases."""
    simulate_failure(ctx)
    low = ctx.results["identify_low_stock"]["low_stock"]
    return {
        "quantities": {
            sku: CASE_SIZE * math.ceil((TARGET_STOCK - level) / CASE_SIZE) for sku, level in low.items()
        }
    }


def select_supplier(ctx: Any) -> dict[str, Any]:
    """Pick each SKU's supplier (or the one the context names) and its lead time."""
    simulate_failure(ctx)
    override = ctx.context.get("supplier_id")
    chosen = {
        sku: override or supplier_for(sku)
        for sku in ctx.results["calculate_reorder_quantities"]["quantities"]
    }
    return {"suppliers": chosen, "lead_time_days": {s: SUPPLIERS[s] for s in sorted(set(chosen.values()))}}


def create_purchase_order(ctx: Any) -> dict[str, Any]:
    """Raise one purchase order per supplier (ids are stable across retries)."""
    simulate_failure(ctx)
    quantities = ctx.results["calculate_reorder_quantities"]["quantities"]
    suppliers = ctx.results["select_supplier"]["suppliers"]
    orders = [
        {
            "po_number": _reference("po", f"{ctx.idempotency_key}:{supplier}"),
            "supplier_id": supplier,
            "lines": [
                {"sku": sku, "quantity": quantities[sku]}
                for sku in sorted(quantities)
                if suppliers[sku] == supplier
            ],
        }
        for supplier in sorted(set(suppliers.values()))
    ]
    return {"purchase_orders": orders, "status": "ordered" if orders else "nothing_to_order"}


def notify_procurement(ctx: Any) -> dict[str, Any]:
    """Tell procurement what was ordered."""
    simulate_failure(ctx)
    orders = ctx.results["create_purchase_order"]["purchase_orders"]
    return {
        "recipient": "procurement@growthcorp.example",
        "purchase_orders": [o["po_number"] for o in orders],
        "units_ordered": sum(line["quantity"] for o in orders for line in o["lines"]),
    }


# -------------------------------------------------------------------------
# process_warehouse_transfer 1.0.0: validate -> (reserve source, prepare destination) -> dispatch -> confirm
# -------------------------------------------------------------------------


def validate_transfer(ctx: Any) -> dict[str, Any]:
    """Check the transfer moves stock between two different warehouses."""
    simulate_failure(ctx)
    source, destination = ctx.context["source_warehouse"], ctx.context["destination_warehouse"]
    if source == destination:
        raise PermanentError(f"source and destination are both {source}; name two different warehouses")
    return {
        "transfer_id": ctx.context.get("transfer_id") or _reference("trf", ctx.task.id),
        "sku": ctx.context["sku"],
        "quantity": int(ctx.context["quantity"]),
        "source_warehouse": source,
        "destination_warehouse": destination,
    }


def reserve_source_stock(ctx: Any) -> dict[str, Any]:
    """Reserve the units at the source so nothing else ships them."""
    simulate_failure(ctx)
    transfer = ctx.results["validate_transfer"]
    available = stock_level(transfer["sku"], transfer["source_warehouse"])
    if transfer["quantity"] > available:
        raise PermanentError(
            f"{transfer['source_warehouse']} holds only {available} of {transfer['sku']}, "
            f"{transfer['quantity']} requested"
        )
    return {
        "reservation_id": _reference("rsv", ctx.idempotency_key),
        "available_before": available,
        "reserved": transfer["quantity"],
    }


def prepare_destination_capacity(ctx: Any) -> dict[str, Any]:
    """Allocate a bin at the destination."""
    simulate_failure(ctx)
    transfer = ctx.results["validate_transfer"]
    d = _digest("bin", transfer["destination_warehouse"], transfer["sku"])
    return {
        "bin_location": f"{chr(65 + d % 6)}-{(d >> 8) % 40:02d}-{(d >> 16) % 5}",
        "level_before": stock_level(transfer["sku"], transfer["destination_warehouse"]),
    }


def dispatch_shipment(ctx: Any) -> dict[str, Any]:
    """Hand the reserved units to a carrier."""
    simulate_failure(ctx)
    transfer = ctx.results["validate_transfer"]
    d = _digest("carrier", transfer["transfer_id"])
    return {
        "shipment_id": _reference("shp", ctx.idempotency_key),
        "carrier": ("freightline", "roadrunner", "parcelco")[d % 3],
        "reservation_id": ctx.results["reserve_source_stock"]["reservation_id"],
        "bin_location": ctx.results["prepare_destination_capacity"]["bin_location"],
        "eta_days": 1 + (d >> 8) % 4,
    }


def confirm_receipt(ctx: Any) -> dict[str, Any]:
    """Book the units out of the source and into the destination bin."""
    simulate_failure(ctx)
    transfer = ctx.results["validate_transfer"]
    quantity = transfer["quantity"]
    return {
        "transfer_id": transfer["transfer_id"],
        "shipment_id": ctx.results["dispatch_shipment"]["shipment_id"],
        "received_quantity": quantity,
        "source_level": ctx.results["reserve_source_stock"]["available_before"] - quantity,
        "destination_level": ctx.results["prepare_destination_capacity"]["level_before"] + quantity,
        "status": "completed",
    }


# -------------------------------------------------------------------------
# generate_inventory_report 2.1.0
# -------------------------------------------------------------------------


def snapshot_stock_levels(ctx: Any) -> dict[str, Any]:
    """Read the level of every SKU the warehouse stocks."""
    simulate_failure(ctx)
    warehouse = _warehouse(ctx)
    return {
        "warehouse_id": warehouse,
        "levels": {sku: stock_level(sku, warehouse) for sku in catalogue(warehouse)},
    }


def collect_stock_movements(ctx: Any) -> dict[str, Any]:
    """Sum the period's inbound and outbound units."""
    simulate_failure(ctx)
    d = _digest("movements", _warehouse(ctx), ctx.context["period"])
    return {"inbound_units": 2_000 + d % 3_000, "outbound_units": 2_500 + (d >> 16) % 3_000}


def compute_inventory_metrics(ctx: Any) -> dict[str, Any]:
    """Totals, low-stock SKUs and turnover."""
    simulate_failure(ctx)
    levels = ctx.results["snapshot_stock_levels"]["levels"]
    movements = ctx.results["collect_stock_movements"]
    on_hand = sum(levels.values())
    return {
        "period": ctx.context["period"],
        "sku_count": len(levels),
        "units_on_hand": on_hand,
        "low_stock_skus": sorted(sku for sku, level in levels.items() if level <= REORDER_POINT),
        **movements,
        "turnover": round(movements["outbound_units"] / max(on_hand, 1), 3),
    }


def publish_inventory_report(ctx: Any) -> dict[str, Any]:
    """Publish the report for operations."""
    simulate_failure(ctx)
    warehouse = ctx.results["snapshot_stock_levels"]["warehouse_id"]
    period = ctx.context["period"]
    return {
        "report_id": f"invrep_{warehouse}_{period.replace('-', '')}",
        "location": f"reports/inventory/{warehouse}/{period}.json",
        "published_at": _now(),
    }
