"""The inventory hookimpls register what the README promises."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

import jsonschema
import pytest

from teamflow import NamespacePolicy, Workflow
from teamflow.testing import assert_plugin_loads
from teamflow_inventory import handlers, plugin

GRAPHS = {
    ("process_return", "1.4.0"): {
        "validate_return_authorization": (),
        "inspect_returned_items": ("validate_return_authorization",),
        "restock_items": ("inspect_returned_items",),
        "close_return": ("restock_items",),
    },
    ("update_stock_levels", "2.3.0"): {
        "validate_adjustments": (),
        "load_current_stock": ("validate_adjustments",),
        "apply_stock_adjustments": ("load_current_stock",),
        "publish_stock_update": ("apply_stock_adjustments",),
    },
    ("reorder_products", "1.8.0"): {
        "identify_low_stock": (),
        "calculate_reorder_quantities": ("identify_low_stock",),
        "select_supplier": ("calculate_reorder_quantities",),
        "create_purchase_order": ("select_supplier",),
        "notify_procurement": ("create_purchase_order",),
    },
    ("process_warehouse_transfer", "1.0.0"): {
        "validate_transfer": (),
        "reserve_source_stock": ("validate_transfer",),
        "prepare_destination_capacity": ("validate_transfer",),
        "dispatch_shipment": ("reserve_source_stock", "prepare_destination_capacity"),
        "confirm_receipt": ("dispatch_shipment",),
    },
    ("generate_inventory_report", "2.1.0"): {
        "snapshot_stock_levels": (),
        "collect_stock_movements": (),
        "compute_inventory_metrics": ("snapshot_stock_levels", "collect_stock_movements"),
        "publish_inventory_report": ("compute_inventory_metrics",),
    },
}

WORKFLOWS = plugin.teamflow_workflows()
BY_KEY = {(w.name, w.version): w for w in WORKFLOWS}

SAMPLE_CONTEXTS = {
    "process_return": {"return_id": "ret_1001"},
    "update_stock_levels": {"adjustments": [{"sku": "SKU-1001", "delta": -3}]},
    "reorder_products": {"skus": ["SKU-1009", "SKU-1001"]},
    "process_warehouse_transfer": {
        "sku": "SKU-1001",
        "quantity": 10,
        "source_warehouse": "wh_main",
        "destination_warehouse": "wh_east",
    },
    "generate_inventory_report": {"period": "2024-05"},
}


def test_teamflow_namespaces_declares_inventory() -> None:
    assert plugin.teamflow_namespaces() == [
        NamespacePolicy(
            name="inventory",
            owner_team="inventory",
            contact_email="inventory-team@growthcorp.example",
            description="Stock, returns and warehouse workflows",
        )
    ]


def test_teamflow_workflows_ships_each_version_once_in_its_namespace() -> None:
    assert sorted(BY_KEY) == sorted(GRAPHS)
    assert len(WORKFLOWS) == len(GRAPHS)
    assert {w.namespace for w in WORKFLOWS} == {"inventory"}
    assert not any(w.deprecated for w in WORKFLOWS)


@pytest.mark.parametrize("key", sorted(GRAPHS), ids="@".join)
def test_step_graph(key: tuple[str, str]) -> None:
    workflow = BY_KEY[key]
    assert {s.name: s.depends_on for s in workflow.steps} == GRAPHS[key]
    assert all(s.description for s in workflow.steps)
    assert workflow.description


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda w: w.ref)
def test_handlers_are_module_level_functions_of_handlers_module(workflow: Workflow) -> None:
    for step in workflow.steps:
        assert step.handler.__module__ == "teamflow_inventory.handlers"
        assert getattr(handlers, step.handler.__qualname__) is step.handler
        assert not step.calls


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda w: w.ref)
def test_context_schema_is_valid_open_and_accepts_the_readme_example(workflow: Workflow) -> None:
    schema = workflow.context_schema
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is True
    jsonschema.validate(SAMPLE_CONTEXTS[workflow.name], schema)
    jsonschema.validate({**SAMPLE_CONTEXTS[workflow.name], "note": "extra"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({}, schema)


@pytest.mark.parametrize(
    ("name", "context"),
    [
        ("update_stock_levels", {"adjustments": []}),
        ("update_stock_levels", {"adjustments": [{"sku": "SKU-1", "delta": 0}]}),
        ("reorder_products", {"skus": ["SKU-1"], "supplier_id": "initech"}),
        ("process_warehouse_transfer", {**SAMPLE_CONTEXTS["process_warehouse_transfer"], "quantity": 0}),
        ("process_return", {"return_id": "ret_1", "simulate_failure": {"step": "x", "times": -1}}),
    ],
)
def test_schemas_reject_bad_contexts(name: str, context: dict) -> None:
    (workflow,) = [w for w in WORKFLOWS if w.name == name]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(context, workflow.context_schema)


def test_plugin_loads_with_no_refusal_and_its_hookimpls_match_the_hookspecs() -> None:
    record = assert_plugin_loads("teamflow-inventory").plugin("teamflow-inventory")
    assert record.hooks == ("teamflow_namespaces", "teamflow_workflows")
    assert record.namespaces == ("inventory",)
    assert len(record.workflows) == len(GRAPHS)


def test_entry_point_names_the_plugin_module() -> None:
    (ep,) = [ep for ep in entry_points(group="teamflow.plugins") if ep.name == "inventory"]
    assert ep.value == "teamflow_inventory.plugin"
    assert ep.load() is importlib.import_module("teamflow_inventory.plugin")
