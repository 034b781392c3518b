"""The inventory handlers: stock derives deterministically from SKU strings."""

from __future__ import annotations

import pytest

from teamflow import PermanentError, RetryableError
from teamflow_inventory import handlers
from teamflow_inventory.handlers import REORDER_POINT, stock_level
from teamflow_inventory.plugin import (
    generate_inventory_report_2_1_0,
    process_return_1_4_0,
    process_warehouse_transfer_1_0_0,
    reorder_products_1_8_0,
    update_stock_levels_2_3_0,
)

LOW, PLENTY = "SKU-1009", "SKU-1001"


def test_stock_levels_are_deterministic_per_sku_and_warehouse() -> None:
    assert stock_level(PLENTY) == stock_level(PLENTY, "wh_main")
    assert stock_level(LOW) <= REORDER_POINT < stock_level(PLENTY)
    levels = [stock_level(f"SKU-{n}") for n in range(1000, 1200)]
    assert all(0 <= level < 500 for level in levels)
    assert len(set(levels)) > 100
    assert [stock_level(f"SKU-{n}", "wh_east") for n in range(1000, 1010)] != levels[:10]


def test_return_restocks_resellable_items_and_writes_off_damaged(run_workflow) -> None:
    items = [{"sku": f"SKU-{n}", "quantity": 2} for n in range(1000, 1020)]
    results = run_workflow(process_return_1_4_0(), {"return_id": "ret_77", "items": items})
    inspected = results["inspect_returned_items"]["items"]
    assert {i["condition"] for i in inspected} == {"resellable", "damaged"}
    closed = results["close_return"]
    assert closed["status"] == "closed"
    assert closed["restocked_units"] + closed["written_off_units"] == 40
    for line in results["restock_items"]["restocked"]:
        assert line["new_level"] == stock_level(line["sku"]) + 2


def test_return_without_items_uses_the_authorisation(run_workflow) -> None:
    results = run_workflow(process_return_1_4_0(), {"return_id": "ret_1001"})
    rma = results["validate_return_authorization"]
    assert rma["rma_number"].startswith("RMA-")
    assert len(rma["items"]) == 1 and 1 <= rma["items"][0]["quantity"] <= 3


def test_stock_adjustments_are_merged_and_applied(run_workflow) -> None:
    adjustments = [{"sku": PLENTY, "delta": -3}, {"sku": LOW, "delta": 5}, {"sku": PLENTY, "delta": 1}]
    results = run_workflow(update_stock_levels_2_3_0(), {"adjustments": adjustments})
    assert results["apply_stock_adjustments"]["new_levels"] == {
        PLENTY: stock_level(PLENTY) - 2,
        LOW: stock_level(LOW) + 5,
    }
    assert results["publish_stock_update"]["below_reorder_point"] == [LOW]


def test_negative_stock_is_refused_permanently(run_workflow) -> None:
    context = {"adjustments": [{"sku": LOW, "delta": -(stock_level(LOW) + 1)}]}
    with pytest.raises(PermanentError, match=f"negative in wh_main: {LOW} has {stock_level(LOW)}"):
        run_workflow(update_stock_levels_2_3_0(), context)


def test_reorder_orders_low_skus_up_to_target_in_cases(run_workflow) -> None:
    results = run_workflow(reorder_products_1_8_0(), {"skus": [LOW, PLENTY, "SKU-1023"]})
    assert set(results["identify_low_stock"]["low_stock"]) == {LOW, "SKU-1023"}
    quantities = results["calculate_reorder_quantities"]["quantities"]
    for sku, quantity in quantities.items():
        assert quantity % handlers.CASE_SIZE == 0
        assert 0 <= stock_level(sku) + quantity - handlers.TARGET_STOCK < handlers.CASE_SIZE
    orders = results["create_purchase_order"]["purchase_orders"]
    assert sorted(line["sku"] for o in orders for line in o["lines"]) == sorted(quantities)
    assert results["notify_procurement"]["units_ordered"] == sum(quantities.values())


def test_reorder_with_nothing_low_orders_nothing(run_workflow) -> None:
    results = run_workflow(reorder_products_1_8_0(), {"skus": [PLENTY]})
    assert results["create_purchase_order"] == {"purchase_orders": [], "status": "nothing_to_order"}


def test_transfer_moves_stock_between_warehouses(run_workflow) -> None:
    context = {
        "sku": PLENTY,
        "quantity": 10,
        "source_warehouse": "wh_main",
        "destination_warehouse": "wh_east",
    }
    results = run_workflow(process_warehouse_transfer_1_0_0(), context)
    receipt = results["confirm_receipt"]
    assert receipt["source_level"] == stock_level(PLENTY, "wh_main") - 10
    assert receipt["destination_level"] == stock_level(PLENTY, "wh_east") + 10
    assert results["dispatch_shipment"]["reservation_id"] == results["reserve_source_stock"]["reservation_id"]


def test_transfer_of_more_than_the_source_holds_is_permanent(run_workflow) -> None:
    context = {"sku": LOW, "quantity": 400, "source_warehouse": "wh_main", "destination_warehouse": "wh_east"}
    with pytest.raises(PermanentError, match=f"holds only {stock_level(LOW)} of {LOW}"):
        run_workflow(process_warehouse_transfer_1_0_0(), context)


def test_transfer_to_the_same_warehouse_is_permanent(make_ctx) -> None:
    context = {
        "sku": PLENTY,
        "quantity": 1,
        "source_warehouse": "wh_main",
        "destination_warehouse": "wh_main",
    }
    with pytest.raises(PermanentError, match="both wh_main"):
        handlers.validate_transfer(make_ctx(context, "validate_transfer"))


def test_inventory_report_is_deterministic(run_workflow) -> None:
    first = run_workflow(generate_inventory_report_2_1_0(), {"period": "2024-05", "warehouse_id": "wh_east"})
    again = run_workflow(generate_inventory_report_2_1_0(), {"period": "2024-05", "warehouse_id": "wh_east"})
    metrics = first["compute_inventory_metrics"]
    assert metrics == again["compute_inventory_metrics"]
    assert metrics["sku_count"] == 20
    assert first["publish_inventory_report"]["report_id"] == "invrep_wh_east_202405"


@pytest.mark.parametrize("times", [1, 2])
def test_simulated_retryable_failure_stops_after_times_attempts(make_ctx, times: int) -> None:
    context = {
        "return_id": "ret_1",
        "simulate_failure": {"step": "validate_return_authorization", "times": times},
    }
    for attempt in range(1, times + 1):
        with pytest.raises(RetryableError):
            handlers.validate_return_authorization(
                make_ctx(context, "validate_return_authorization", attempt=attempt)
            )
    assert handlers.validate_return_authorization(
        make_ctx(context, "validate_return_authorization", attempt=times + 1)
    )


def test_simulated_permanent_failure_only_hits_the_named_step(run_workflow) -> None:
    flag = {"step": "close_return", "mode": "permanent"}
    with pytest.raises(PermanentError, match="simulated permanent failure in step close_return"):
        run_workflow(process_return_1_4_0(), {"return_id": "ret_1", "simulate_failure": flag})
    flag = {"step": "restock_items", "mode": "retryable", "times": 3}
    assert run_workflow(process_return_1_4_0(), {"return_id": "ret_1", "simulate_failure": flag})[
        "close_return"
    ]


def test_simulate_slow_s_sleeps_in_the_stock_write(run_workflow, monkeypatch) -> None:
    slept = []
    monkeypatch.setattr(handlers.time, "sleep", slept.append)
    context = {"adjustments": [{"sku": PLENTY, "delta": 1}], "simulate_slow_s": 0.5}
    run_workflow(update_stock_levels_2_3_0(), context)
    assert slept == [0.5]
