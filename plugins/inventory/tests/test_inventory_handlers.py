"""The inventory handlers: stock derives deterministically from SKU strings.

Workflows run to the end on a teamflow host holding this plugin alone (``teamflow_host``,
from ``teamflow.testing``); single handlers run with ``run_step``.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from teamflow import PermanentError, RetryableError
from teamflow.testing import run_step, run_workflow
from teamflow_inventory import handlers
from teamflow_inventory.handlers import REORDER_POINT, stock_level

LOW, PLENTY = "SKU-1009", "SKU-1001"


def test_stock_levels_are_deterministic_per_sku_and_warehouse() -> None:
    assert stock_level(PLENTY) == stock_level(PLENTY, "wh_main")
    assert stock_level(LOW) <= REORDER_POINT < stock_level(PLENTY)
    levels = [stock_level(f"SKU-{n}") for n in range(1000, 1200)]
    assert all(0 <= level < 500 for level in levels)
    assert len(set(levels)) > 100
    assert [stock_level(f"SKU-{n}", "wh_east") for n in range(1000, 1010)] != levels[:10]


def test_return_restocks_resellable_items_and_writes_off_damaged(teamflow_host) -> None:
    items = [{"sku": f"SKU-{n}", "quantity": 2} for n in range(1000, 1020)]
    task = run_workflow(
        teamflow_host, "inventory/process_return@1.4.0", {"return_id": "ret_77", "items": items}
    )
    assert task.status == "completed", task.error_summary
    inspected = task.step("inspect_returned_items").result["items"]
    assert {i["condition"] for i in inspected} == {"resellable", "damaged"}
    closed = task.step("close_return").result
    assert closed["status"] == "closed"
    assert closed["restocked_units"] + closed["written_off_units"] == 40
    for line in task.step("restock_items").result["restocked"]:
        assert line["new_level"] == stock_level(line["sku"]) + 2


def test_return_without_items_uses_the_authorisation(teamflow_host) -> None:
    task = run_workflow(teamflow_host, "inventory/process_return@1.4.0", {"return_id": "ret_1001"})
    rma = task.step("validate_return_authorization").result
    assert rma["rma_number"].startswith("RMA-")
    assert len(rma["items"]) == 1 and 1 <= rma["items"][0]["quantity"] <= 3


def test_stock_adjustments_are_merged_and_applied(teamflow_host) -> None:
    adjustments = [{"sku": PLENTY, "delta": -3}, {"sku": LOW, "delta": 5}, {"sku": PLENTY, "delta": 1}]
    task = run_workflow(teamflow_host, "inventory/update_stock_levels@2.3.0", {"adjustments": adjustments})
    assert task.step("apply_stock_adjustments").result["new_levels"] == {
        PLENTY: stock_level(PLENTY) - 2,
        LOW: stock_level(LOW) + 5,
    }
    assert task.step("publish_stock_update").result["below_reorder_point"] == [LOW]


def test_negative_stock_is_refused_permanently(teamflow_host) -> None:
    context = {"adjustments": [{"sku": LOW, "delta": -(stock_level(LOW) + 1)}]}
    task = run_workflow(teamflow_host, "inventory/update_stock_levels@2.3.0", context)
    step = task.step("apply_stock_adjustments")
    assert (task.status, step.error_type, step.attempts) == ("failed", "PermanentError", 1)
    assert f"negative in wh_main: {LOW} has {stock_level(LOW)}" in step.error


def test_reorder_orders_low_skus_up_to_target_in_cases(teamflow_host) -> None:
    task = run_workflow(
        teamflow_host, "inventory/reorder_products@1.8.0", {"skus": [LOW, PLENTY, "SKU-1023"]}
    )
    assert set(task.step("identify_low_stock").result["low_stock"]) == {LOW, "SKU-1023"}
    quantities = task.step("calculate_reorder_quantities").result["quantities"]
    for sku, quantity in quantities.items():
        assert quantity % handlers.CASE_SIZE == 0
        assert 0 <= stock_level(sku) + quantity - handlers.TARGET_STOCK < handlers.CASE_SIZE
    orders = task.step("create_purchase_order").result["purchase_orders"]
    assert sorted(line["sku"] for o in orders for line in o["lines"]) == sorted(quantities)
    assert task.step("notify_procurement").result["units_ordered"] == sum(quantities.values())


def test_reorder_with_nothing_low_orders_nothing(teamflow_host) -> None:
    task = run_workflow(teamflow_host, "inventory/reorder_products@1.8.0", {"skus": [PLENTY]})
    assert task.step("create_purchase_order").result == {"purchase_orders": [], "status": "nothing_to_order"}


def test_transfer_moves_stock_between_warehouses(teamflow_host) -> None:
    context = {
        "sku": PLENTY,
        "quantity": 10,
        "source_warehouse": "wh_main",
        "destination_warehouse": "wh_east",
    }
    task = run_workflow(teamflow_host, "inventory/process_warehouse_transfer@1.0.0", context)
    receipt = task.step("confirm_receipt").result
    assert receipt["source_level"] == stock_level(PLENTY, "wh_main") - 10
    assert receipt["destination_level"] == stock_level(PLENTY, "wh_east") + 10
    assert (
        task.step("dispatch_shipment").result["reservation_id"]
        == task.step("reserve_source_stock").result["reservation_id"]
    )


def test_transfer_of_more_than_the_source_holds_is_permanent(teamflow_host) -> None:
    context = {"sku": LOW, "quantity": 400, "source_warehouse": "wh_main", "destination_warehouse": "wh_east"}
    task = run_workflow(teamflow_host, "inventory/process_warehouse_transfer@1.0.0", context)
    step = task.step("reserve_source_stock")
    assert (task.status, step.error_type) == ("failed", "PermanentError")
    assert f"holds only {stock_level(LOW)} of {LOW}" in step.error


def test_transfer_to_the_same_warehouse_is_permanent() -> None:
    context = {
        "sku": PLENTY,
        "quantity": 1,
        "source_warehouse": "wh_main",
        "destination_warehouse": "wh_main",
    }
    with pytest.raises(PermanentError, match="both wh_main"):
        run_step(handlers.validate_transfer, context)


def test_inventory_report_is_deterministic(teamflow_host) -> None:
    context = {"period": "2024-05", "warehouse_id": "wh_east"}
    first = run_workflow(teamflow_host, "inventory/generate_inventory_report@2.1.0", context)
    again = run_workflow(teamflow_host, "inventory/generate_inventory_report@2.1.0", context)
    metrics = first.step("compute_inventory_metrics").result
    assert metrics == again.step("compute_inventory_metrics").result
    assert metrics["sku_count"] == 20
    assert first.step("publish_inventory_report").result["report_id"] == "invrep_wh_east_202405"


@pytest.mark.parametrize("times", [1, 2])
def test_simulated_retryable_failure_stops_after_times_attempts(times: int) -> None:
    context = {
        "return_id": "ret_1",
        "simulate_failure": {"step": "validate_return_authorization", "times": times},
    }
    for attempt in range(1, times + 1):
        with pytest.raises(RetryableError):
            run_step(handlers.validate_return_authorization, context, attempt=attempt)
    assert run_step(handlers.validate_return_authorization, context, attempt=times + 1)


def test_simulated_permanent_failure_only_hits_the_named_step(teamflow_host) -> None:
    flag = {"step": "close_return", "mode": "permanent"}
    task = run_workflow(
        teamflow_host, "inventory/process_return@1.4.0", {"return_id": "ret_1", "simulate_failure": flag}
    )
    assert task.status == "failed"
    assert "simulated permanent failure in step close_return" in task.step("close_return").error
    assert task.step("restock_items").status == "completed"
    flag = {"step": "restock_items", "mode": "retryable", "times": 3}
    task = run_workflow(
        teamflow_host, "inventory/process_return@1.4.0", {"return_id": "ret_1", "simulate_failure": flag}
    )
    assert task.step("close_return").result
    assert task.step("restock_items").attempts == 4


def test_simulate_slow_s_sleeps_in_the_stock_write(teamflow_host, monkeypatch) -> None:
    slept: list[float] = []
    # the handlers' own ``time``: the host's threads keep the real time.sleep
    monkeypatch.setattr(handlers, "time", SimpleNamespace(sleep=slept.append))
    context = {"adjustments": [{"sku": PLENTY, "delta": 1}], "simulate_slow_s": 0.5}
    assert run_workflow(teamflow_host, "inventory/update_stock_levels@2.3.0", context).status == "completed"
    assert slept == [0.5]
