"""The context schema compatibility check (teamflow.registry.compat): one case per rule, and a
property that a schema judged compatible accepts every instance its predecessor accepted, both
as ``compare`` judges it and as ``teamflow check --against`` reports it (registry.release)."""

from __future__ import annotations

import copy
import re
from typing import Any

import jsonschema
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from teamflow import NamespacePolicy, Step, Workflow
from teamflow.registry import Contribution, Source, build_registry
from teamflow.registry.compat import SchemaChange, compare, is_compatible
from teamflow.registry.export import RegistryExport, build_export
from teamflow.registry.release import check_release

OBJ: dict[str, Any] = {"type": "object"}


def obj(**keywords: Any) -> dict[str, Any]:
    """An object schema: ``obj(properties={...}, required=[...])``."""
    return {"type": "object", **keywords}


def props(**properties: Any) -> dict[str, Any]:
    return obj(properties=properties)


def closed(**properties: Any) -> dict[str, Any]:
    return obj(properties=properties, additionalProperties=False)


S, I, N = {"type": "string"}, {"type": "integer"}, {"type": "number"}  # noqa: E741
DEFS = {"money": {"type": "number", "minimum": 0}}

# (id, old, new, path, kind)
BREAKING = [
    ("type narrowed", {"type": ["string", "integer"]}, S, "#/type", "type_narrowed"),
    ("type changed", S, I, "#/type", "type_changed"),
    ("number to integer", props(amount=N), props(amount=I), "#/properties/amount/type", "type_narrowed"),
    ("type added", props(note={}), props(note=S), "#/properties/note/type", "type_narrowed"),
    ("maxLength tightened", {"type": "string", "maxLength": 10}, {"type": "string", "maxLength": 5}, "#/maxLength", "limit_tightened"),
    ("minimum tightened", {"type": "integer", "minimum": 0}, {"type": "integer", "minimum": 1}, "#/minimum", "limit_tightened"),
    ("exclusiveMaximum tightened", {"type": "number", "exclusiveMaximum": 5}, {"type": "number", "exclusiveMaximum": 4}, "#/exclusiveMaximum", "limit_tightened"),
    ("minimum added", I, {"type": "integer", "minimum": 0}, "#/minimum", "limit_added"),
    ("maxItems added", {"type": "array"}, {"type": "array", "maxItems": 3}, "#/maxItems", "limit_added"),
    ("minProperties added", OBJ, obj(minProperties=1), "#/minProperties", "limit_added"),
    ("multipleOf changed", {"type": "integer", "multipleOf": 2}, {"type": "integer", "multipleOf": 3}, "#/multipleOf", "limit_tightened"),
    ("multipleOf added", I, {"type": "integer", "multipleOf": 2}, "#/multipleOf", "limit_added"),
    ("pattern added", S, {"type": "string", "pattern": "^[a-z]+$"}, "#/pattern", "pattern_added"),
    ("pattern changed", {"type": "string", "pattern": "^a"}, {"type": "string", "pattern": "^b"}, "#/pattern", "pattern_changed"),
    ("required added", props(a=S), obj(properties={"a": S}, required=["a"]), "#/required/a", "required_added"),
    (
        "required added with a default",
        props(a={"type": "string", "default": "x"}),
        obj(properties={"a": {"type": "string", "default": "x"}}, required=["a"]),
        "#/required/a",
        "required_added",
    ),
    ("enum narrowed", {"enum": ["a", "b"]}, {"enum": ["a"]}, "#/enum", "enum_narrowed"),
    ("enum added", S, {"type": "string", "enum": ["a"]}, "#/enum", "enum_added"),
    ("const added", S, {"type": "string", "const": "a"}, "#/const", "const_added"),
    ("const changed", {"const": "a"}, {"const": "b"}, "#/const", "const_changed"),
    ("anyOf narrowed", {"anyOf": [S, I]}, {"anyOf": [S]}, "#/anyOf", "any_of_narrowed"),
    ("anyOf member narrowed", {"anyOf": [S, N]}, {"anyOf": [S, I]}, "#/anyOf", "any_of_changed"),
    ("oneOf narrowed", {"oneOf": [S, I]}, {"oneOf": [S]}, "#/oneOf", "one_of_narrowed"),
    ("oneOf extended with an overlap", {"oneOf": [S]}, {"oneOf": [S, {"maxLength": 3}]}, "#/oneOf", "one_of_ambiguous"),
    ("allOf extended", {"allOf": [S]}, {"allOf": [S, {"maxLength": 3}]}, "#/allOf/1", "all_of_extended"),
    ("property removed from closed", closed(a=S, b=S), closed(a=S), "#/properties/b", "property_removed_from_closed"),
    ("typed property added to open", props(a=S), props(a=S, b=I), "#/properties/b", "typed_property_added_to_open"),
    (
        "property added outside its pattern",
        obj(patternProperties={"^x_": I}, additionalProperties=False),
        obj(properties={"x_a": S}, patternProperties={"^x_": I}, additionalProperties=False),
        "#/properties/x_a",
        "property_added_not_covered",
    ),
    (
        "property added outside typed additionalProperties",
        obj(additionalProperties=I),
        obj(properties={"a": S}, additionalProperties=I),
        "#/properties/a",
        "property_added_not_covered",
    ),
    (
        "property removed, the rest must be integers",
        obj(properties={"a": S}, additionalProperties=I),
        obj(additionalProperties=I),
        "#/properties/a",
        "property_removed_not_covered",
    ),
    ("additionalProperties closed", props(a=S), closed(a=S), "#/additionalProperties", "additional_properties_narrowed"),
    ("additionalProperties typed", obj(additionalProperties=True), obj(additionalProperties=S), "#/additionalProperties", "additional_properties_narrowed"),
    (
        "typed additionalProperties narrowed",
        obj(additionalProperties=N),
        obj(additionalProperties=I),
        "#/additionalProperties",
        "additional_properties_narrowed",
    ),
    (
        "patternProperties added to an open model",
        OBJ,
        obj(patternProperties={"^n_": N}),
        "#/patternProperties/^n_",
        "pattern_property_added_not_covered",
    ),
    (
        "patternProperties removed from a closed model",
        obj(patternProperties={"^n_": N}, additionalProperties=False),
        obj(additionalProperties=False),
        "#/patternProperties/^n_",
        "pattern_property_removed_not_covered",
    ),
    ("nested property narrowed", props(a=props(b=N)), props(a=props(b=I)), "#/properties/a/properties/b/type", "type_narrowed"),
    ("items narrowed", {"type": "array", "items": N}, {"type": "array", "items": I}, "#/items/type", "type_narrowed"),
    ("prefixItems narrowed", {"type": "array", "prefixItems": [N]}, {"type": "array", "prefixItems": [I]}, "#/prefixItems/0/type", "type_narrowed"),
    ("tuple item added to an open array", {"type": "array", "prefixItems": [S]}, {"type": "array", "prefixItems": [S, I]}, "#/prefixItems/1", "tuple_item_added_not_covered"),
    (
        "tuple item removed from a closed array",
        {"type": "array", "prefixItems": [S, I], "items": False},
        {"type": "array", "prefixItems": [S], "items": False},
        "#/prefixItems/1",
        "tuple_item_removed_not_covered",
    ),
    ("uniqueItems added", {"type": "array"}, {"type": "array", "uniqueItems": True}, "#/uniqueItems", "unique_items_added"),
    ("false schema", props(a={}), props(a=False), "#/properties/a", "false_schema_added"),
    (
        "a local $ref's target narrowed",
        {"$defs": DEFS, **props(amount={"$ref": "#/$defs/money"})},
        {"$defs": {"money": {"type": "integer", "minimum": 0}}, **props(amount={"$ref": "#/$defs/money"})},
        "#/properties/amount/type",
        "type_narrowed",
    ),
    (
        "a $ref replaced by a narrower schema",
        {"$defs": DEFS, **props(amount={"$ref": "#/$defs/money"})},
        props(amount={"type": "number", "minimum": 1}),
        "#/properties/amount/minimum",
        "limit_tightened",
    ),
    ("remote $ref changed", props(a={"$ref": "https://x.test/a.json"}), props(a={"$ref": "https://x.test/b.json"}), "#/properties/a/$ref", "remote_ref"),
    ("remote $ref added", props(a=S), props(a={"$ref": "https://x.test/a.json"}), "#/properties/a/$ref", "remote_ref"),
    ("remote $ref removed", props(a={"$ref": "a.json"}), props(a={}), "#/properties/a/$ref", "remote_ref"),
    ("local $ref to nowhere", props(a=S), props(a={"$ref": "#/$defs/missing"}), "#/properties/a/$ref", "unresolved_ref"),
    ("not added", S, {"type": "string", "not": {"const": ""}}, "#/not", "unsupported_keyword"),
    ("not changed", {"not": {"const": 1}}, {"not": {"const": 2}}, "#/not", "unsupported_keyword"),
    ("if/then added", OBJ, obj(**{"if": props(a={"const": 1}), "then": {"required": ["b"]}}), "#/if", "unsupported_keyword"),
    ("format added", S, {"type": "string", "format": "email"}, "#/format", "unsupported_keyword"),
    ("format changed", {"type": "string", "format": "email"}, {"type": "string", "format": "uri"}, "#/format", "unsupported_keyword"),
    ("dependentRequired added", OBJ, obj(dependentRequired={"a": ["b"]}), "#/dependentRequired", "unsupported_keyword"),
    ("propertyNames added", OBJ, obj(propertyNames={"maxLength": 3}), "#/propertyNames", "unsupported_keyword"),
    ("contains added", {"type": "array"}, {"type": "array", "contains": S}, "#/contains", "unsupported_keyword"),
    ("contentEncoding added", S, {"type": "string", "contentEncoding": "base64"}, "#/contentEncoding", "unsupported_keyword"),
    ("custom keyword added", S, {"type": "string", "x-teamflow-check": "luhn"}, "#/x-teamflow-check", "unsupported_keyword"),
    (
        "unevaluatedProperties sees a property go",
        obj(properties={"a": {}, "b": {}}, unevaluatedProperties=False),
        obj(properties={"a": {}}, unevaluatedProperties=False),
        "#/unevaluatedProperties",
        "unsupported_keyword",
    ),
    ("dialect changed", {"$schema": "http://json-schema.org/draft-07/schema#", **OBJ}, OBJ, "#/$schema", "dialect_changed"),
]

# (id, old, new, path, kind): changes that must be reported, and not as breaking
COMPATIBLE = [
    ("optional property added to a closed model", closed(a=S), closed(a=S, b=I), "#/properties/b", "property_added_to_closed"),
    ("untyped property added to an open model", props(a=S), props(a=S, b={"description": "free text"}), "#/properties/b", "untyped_property_added_to_open"),
    ("property removed from an open model", props(a=S, b=I), props(a=S), "#/properties/b", "property_removed_from_open"),
    (
        "property added within typed additionalProperties",
        obj(additionalProperties=I),
        obj(properties={"a": N}, additionalProperties=I),
        "#/properties/a",
        "property_added_covered",
    ),
    (
        "property added within its pattern",
        obj(patternProperties={"^x_": I}, additionalProperties=False),
        obj(properties={"x_a": {"type": "number", "description": "d"}}, patternProperties={"^x_": I}, additionalProperties=False),
        "#/properties/x_a",
        "property_added_covered",
    ),
    ("type widened", props(amount=I), props(amount=N), "#/properties/amount/type", "type_widened"),
    ("null allowed", S, {"type": ["string", "null"]}, "#/type", "type_widened"),
    ("type removed", S, {}, "#/type", "type_widened"),
    ("maxLength relaxed", {"type": "string", "maxLength": 5}, {"type": "string", "maxLength": 10}, "#/maxLength", "limit_relaxed"),
    ("minimum relaxed", {"type": "integer", "minimum": 1}, {"type": "integer", "minimum": 0}, "#/minimum", "limit_relaxed"),
    ("minItems removed", {"type": "array", "minItems": 1}, {"type": "array"}, "#/minItems", "limit_removed"),
    ("minLength 0 is no limit", S, {"type": "string", "minLength": 0}, "#/description", None),
    ("multipleOf relaxed", {"type": "integer", "multipleOf": 6}, {"type": "integer", "multipleOf": 3}, "#/multipleOf", "limit_relaxed"),
    ("pattern removed", {"type": "string", "pattern": "^a"}, S, "#/pattern", "pattern_removed"),
    ("enum extended", {"enum": ["a"]}, {"enum": ["a", "b"]}, "#/enum", "enum_extended"),
    ("enum removed", {"type": "string", "enum": ["a"]}, S, "#/enum", "enum_removed"),
    ("enum narrowed to what const allowed", {"const": "a", "enum": ["a", "b"]}, {"const": "a", "enum": ["a"]}, "#/enum", "enum_narrowed"),
    ("const removed", {"const": 1}, {}, "#/const", "const_removed"),
    ("required entry removed", obj(properties={"a": S}, required=["a"]), props(a=S), "#/required/a", "required_removed"),
    ("allOf narrowed", {"allOf": [S, {"maxLength": 3}]}, {"allOf": [S]}, "#/allOf", "all_of_narrowed"),
    ("anyOf extended", {"anyOf": [S]}, {"anyOf": [S, I]}, "#/anyOf", "any_of_extended"),
    ("anyOf member widened", {"anyOf": [S, I]}, {"anyOf": [S, N]}, "#/anyOf/1/type", "type_widened"),
    ("anyOf added around the old schema", S, {"anyOf": [S, I]}, "#/anyOf", "any_of_added"),
    ("oneOf extended with another type", {"oneOf": [S]}, {"oneOf": [S, I]}, "#/oneOf", "one_of_extended"),
    (
        "oneOf extended with a discriminator",
        {"oneOf": [obj(properties={"kind": {"const": "card"}}, required=["kind"])]},
        {"oneOf": [obj(properties={"kind": {"const": "card"}}, required=["kind"]), obj(properties={"kind": {"const": "bank"}}, required=["kind"])]},
        "#/oneOf",
        "one_of_extended",
    ),
    ("additionalProperties opened", closed(a=S), props(a=S), "#/additionalProperties", "additional_properties_widened"),
    ("additionalProperties widened", obj(additionalProperties=I), obj(additionalProperties=N), "#/additionalProperties", "additional_properties_widened"),
    (
        "patternProperties added to a closed model",
        closed(a=S),
        obj(properties={"a": S}, patternProperties={"^n_": N}, additionalProperties=False),
        "#/patternProperties/^n_",
        "pattern_property_added_covered",
    ),
    ("description changed", {**S, "description": "old"}, {**S, "description": "new"}, "#/description", "annotation_changed"),
    ("title, default and examples changed", props(a={"title": "A", "default": 1}), props(a={"title": "B", "default": 2, "examples": [3]}), "#/properties/a/title", "annotation_changed"),
    ("$comment changed", {"$comment": "x", **OBJ}, {"$comment": "y", **OBJ}, "#/$comment", "annotation_changed"),
    (
        "remote $ref unchanged",
        props(a={"$ref": "https://x.test/a.json", "description": "old"}),
        props(a={"$ref": "https://x.test/a.json", "description": "new"}),
        "#/properties/a/description",
        "annotation_changed",
    ),
    ("not removed", {"type": "string", "not": {"const": ""}}, S, "#/not", "unsupported_keyword_removed"),
    ("format removed", {"type": "string", "format": "email"}, S, "#/format", "unsupported_keyword_removed"),
    (
        "an unchanged if/then beside a changed description",
        obj(description="old", **{"if": props(a={"const": 1}), "then": {"required": ["b"]}}),
        obj(description="new", **{"if": props(a={"const": 1}), "then": {"required": ["b"]}}),
        "#/description",
        "annotation_changed",
    ),
    ("string limits do not bind integers", I, {"type": "integer", "maxLength": 3}, "#/description", None),
    (
        "a recursive $ref",
        {"$defs": {"node": props(child={"$ref": "#/$defs/node"}, n=I)}, "$ref": "#/$defs/node"},
        {"$defs": {"node": props(child={"$ref": "#/$defs/node"}, n=N)}, "$ref": "#/$defs/node"},
        "#/properties/n/type",
        "type_widened",
    ),
    ("a $ref inlined", {"$defs": DEFS, **props(amount={"$ref": "#/$defs/money"})}, props(amount=N), "#/properties/amount/minimum", "limit_removed"),
    ("false schema opened", props(a=False), props(a=S), "#/properties/a", "false_schema_removed"),
    (
        "tuple item added to a closed array",
        {"type": "array", "prefixItems": [S], "items": False},
        {"type": "array", "prefixItems": [S, I], "items": False},
        "#/prefixItems/1",
        "tuple_item_added_covered",
    ),
    ("uniqueItems removed", {"type": "array", "uniqueItems": True}, {"type": "array"}, "#/uniqueItems", "unique_items_removed"),
]


def _check_schema(schema: Any) -> None:
    jsonschema.validators.validator_for(schema).check_schema(schema)


def _found(changes: list[SchemaChange]) -> set[tuple[str, str, bool]]:
    return {(c.path, c.kind, c.breaking) for c in changes}


@pytest.mark.parametrize(("old", "new", "path", "kind"), [c[1:] for c in BREAKING], ids=[c[0] for c in BREAKING])
def test_breaking_change_is_reported_at_its_path_with_a_fix(old: Any, new: Any, path: str, kind: str) -> None:
    _check_schema(old)
    _check_schema(new)
    changes = compare(old, new)
    assert (path, kind, True) in _found(changes), changes
    assert not is_compatible(old, new)
    [change] = [c for c in changes if (c.path, c.kind) == (path, kind)]
    assert change.message and change.fix


@pytest.mark.parametrize(("old", "new", "path", "kind"), [c[1:] for c in COMPATIBLE], ids=[c[0] for c in COMPATIBLE])
def test_compatible_change_is_reported_and_not_breaking(old: Any, new: Any, path: str, kind: str | None) -> None:
    _check_schema(old)
    _check_schema(new)
    changes = compare(old, new)
    assert is_compatible(old, new), [c for c in changes if c.breaking]
    assert all(not c.fix for c in changes)
    if kind is not None:  # None: a change that means nothing need not be reported at all
        assert (path, kind, False) in _found(changes), changes


def test_output_is_sorted_by_path_then_kind_and_repeatable() -> None:
    old = closed(a=S, b=I, c=N)
    new = obj(properties={"a": {"type": "string", "maxLength": 2}, "c": I, "d": S}, required=["d", "a"])
    changes = compare(old, new)
    assert changes == sorted(changes, key=lambda c: (c.path, c.kind, c.message))
    assert changes == compare(copy.deepcopy(old), copy.deepcopy(new))
    assert [(c.path, c.kind) for c in changes] == [
        ("#/additionalProperties", "additional_properties_widened"),
        ("#/properties/a/maxLength", "limit_added"),
        ("#/properties/b", "property_removed_from_open"),
        ("#/properties/c/type", "type_narrowed"),
        ("#/properties/d", "property_added_to_closed"),
        ("#/required/a", "required_added"),
        ("#/required/d", "required_added"),
    ]


def test_identical_schemas_give_nothing() -> None:
    schema = {"$defs": DEFS, **obj(properties={"a": {"$ref": "#/$defs/money"}, "b": {"not": S}}, required=["a"])}
    assert compare(schema, copy.deepcopy(schema)) == []
    assert compare(None, None) == []


def test_mode_none_turns_the_check_off() -> None:
    old, new = props(a=N), obj(properties={"a": I}, required=["a"])
    assert compare(old, new, mode="none") == []
    assert is_compatible(old, new, mode="none")
    assert not is_compatible(old, new, mode="backward")
    with pytest.raises(ValueError, match="unknown compatibility mode 'forward'"):
        compare(old, new, mode="forward")


def test_no_schema_means_any_object() -> None:
    with_required = obj(properties={"a": S}, required=["a"])
    # None -> a schema with required fields: a caller that sent {} before is refused now
    assert ("#/required/a", "required_added", True) in _found(compare(None, with_required))
    assert compare(None, OBJ) == []
    assert is_compatible(None, {})  # {} accepts everything, objects included
    # a schema -> None: None accepts every object, so only a schema that accepted nothing else is safe to drop
    assert is_compatible(with_required, None)
    assert is_compatible(closed(a=S), None)
    assert not is_compatible({"type": ["object", "string"]}, None)
    assert ("#/type", "type_narrowed", True) in _found(compare({}, None))


def test_unsupported_keyword_change_names_the_keyword_and_the_fix() -> None:
    [change] = [c for c in compare(props(a=S), props(a={"type": "string", "format": "date"})) if c.breaking]
    assert change == SchemaChange(
        path="#/properties/a/format",
        kind="unsupported_keyword",
        breaking=True,
        message=change.message,
        fix="make the change compatible by hand and release it in a new major version, or drop the keyword",
    )
    assert "format added" in change.message


def test_remote_ref_is_never_fetched_and_says_to_vendor_it() -> None:
    [change] = compare(props(a={"$ref": "https://x.test/a.json"}), props(a={"$ref": "https://x.test/b.json"}))
    assert change.kind == "remote_ref"
    assert "vendor the schema" in change.fix
    # the same remote reference on both sides, but the root $id moved: relative names may now mean other documents
    old = {"$id": "https://x.test/v1/", **props(a={"$ref": "a.json"})}
    new = {"$id": "https://x.test/v2/", **props(a={"$ref": "a.json"})}
    assert not is_compatible(old, new)


# --------------------------------------------------------------------------- property: no missed break

NAMES = ["a", "b", "c", "d"]
EXTRA_NAMES = ["a", "b", "c", "d", "e", "x1", "x2"]  # names an instance may carry beyond the listed ones
PATTERNS = ["^[a-z]+$", "^[0-9]+$", "^a", "b"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 6), st.sampled_from(["", "a", "b", "ab", "1"]))
ANY_JSON = st.recursive(
    st.one_of(SCALARS, st.floats(-10, 10, allow_nan=False), st.text("ab1", max_size=3)),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.sampled_from(["a", "z"]), inner, max_size=2),
    max_leaves=4,
)
TYPES = ["string", "integer", "number", "boolean", "object", "array", ["string", "null"], ["integer", "string"]]
LIMITS = ["minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "minItems", "maxItems", "minProperties", "maxProperties"]


def leaves() -> st.SearchStrategy[dict[str, Any]]:
    string = st.fixed_dictionaries(
        {"type": st.just("string")},
        optional={
            "minLength": st.integers(0, 3),
            "maxLength": st.integers(2, 6),
            "pattern": st.sampled_from(PATTERNS),
            "enum": st.lists(st.sampled_from(["a", "b", "ab", "1", ""]), min_size=1, max_size=3, unique=True),
        },
    )
    integer = st.fixed_dictionaries(
        {"type": st.just("integer")},
        optional={
            "minimum": st.integers(-3, 3),
            "maximum": st.integers(0, 6),
            "enum": st.lists(st.integers(-2, 5), min_size=1, max_size=3, unique=True),
        },
    )
    number = st.fixed_dictionaries(
        {"type": st.just("number")},
        optional={"minimum": st.integers(-3, 3), "exclusiveMaximum": st.sampled_from([1.5, 4, 10])},
    )
    return st.one_of(string, integer, number, st.just({"type": "boolean"}), st.just({}))


def arrays(items: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"type": st.just("array"), "items": items},
        optional={"minItems": st.integers(0, 2), "maxItems": st.integers(1, 4), "uniqueItems": st.booleans()},
    )


@st.composite
def object_schemas(draw: st.DrawFn, depth: int = 2) -> dict[str, Any]:
    child = leaves() | arrays(leaves())
    if depth > 0:
        # objects inside arrays too: old data may hold extra names in every item the old model leaves open
        child = child | object_schemas(depth - 1) | arrays(object_schemas(depth - 1))
    properties = draw(st.dictionaries(st.sampled_from(NAMES), child, max_size=4))
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    required = draw(st.lists(st.sampled_from([*properties, "e"]), unique=True, max_size=3))
    if required:
        schema["required"] = required
    extra = draw(st.sampled_from(["absent", True, False, {"type": "integer"}]))
    if extra != "absent":
        schema["additionalProperties"] = extra
    if draw(st.integers(0, 5)) == 0:
        schema["patternProperties"] = {"^x": draw(leaves())}
    return schema


def instances(schema: Any) -> st.SearchStrategy[Any]:
    """Values shaped by ``schema``: most are valid, and the test keeps only those that are."""
    if schema is False:
        return st.nothing()
    if schema is True or not schema:
        return ANY_JSON
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([instances(member) for member in schema["anyOf"]])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([instances({**schema, "type": t}) for t in kind])
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"])
        low = schema.get("minLength", 0)
        return st.text("ab1", min_size=low, max_size=max(low, schema.get("maxLength", low + 4)))
    if kind in ("integer", "number"):
        # an unsatisfiable range (minimum above maximum) still yields values: the filter drops them
        low, high = sorted((schema.get("minimum", -10), schema.get("maximum", 10)))
        whole = st.integers(int(low) - 1, int(high) + 1)
        return whole if kind == "integer" else whole | st.floats(low, high + 1, allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        low = schema.get("minItems", 0)
        return st.lists(instances(schema.get("items", True)), min_size=low, max_size=max(low, schema.get("maxItems", 3)))
    if kind == "object":
        return object_instances(schema)
    return ANY_JSON


def _extra_value(schema: dict[str, Any], name: str) -> st.SearchStrategy[Any]:
    for pattern, sub in schema.get("patternProperties", {}).items():
        if re.search(pattern, name):
            return instances(sub)
    extra = schema.get("additionalProperties", True)
    return ANY_JSON if extra is True else instances(extra)


@st.composite
def object_instances(draw: st.DrawFn, schema: dict[str, Any]) -> dict[str, Any]:
    properties = schema.get("properties", {})
    value: dict[str, Any] = {}
    if schema.get("additionalProperties", True) is not False:
        # old data may hold any name the old model allows: exactly what a typed property added later must respect
        names = draw(st.lists(st.sampled_from([n for n in EXTRA_NAMES if n not in properties]), unique=True, max_size=3))
        value.update({name: draw(_extra_value(schema, name)) for name in names})
    for name in schema.get("required", []):
        if name not in properties:
            value[name] = draw(_extra_value(schema, name))
    for name, sub in properties.items():
        if name in schema.get("required", []) or draw(st.booleans()):
            value[name] = draw(instances(sub))
    return value


def _nodes(schema: Any) -> list[dict[str, Any]]:
    """Every subschema a mutation may change: the object itself, its properties, array items."""
    if not isinstance(schema, dict):
        return []
    found = [schema]
    for sub in schema.get("properties", {}).values():
        found += _nodes(sub)
    found += _nodes(schema.get("items"))
    found += _nodes(schema.get("additionalProperties"))
    return found


def _mutate(draw: st.DrawFn, node: dict[str, Any]) -> None:
    op = draw(st.sampled_from(["type", "limit", "enum", "pattern", "required", "property", "additional", "pattern_properties", "unique", "any_of"]))
    if op == "any_of":
        # a property becomes one of several schemas (wider), or loses one of them (narrower)
        properties = node.get("properties")
        if not properties:
            return
        name = draw(st.sampled_from(sorted(properties)))
        members = properties[name].get("anyOf") if isinstance(properties[name], dict) else None
        if members and len(members) > 1 and draw(st.booleans()):
            properties[name] = {"anyOf": members[1:]}
        else:
            properties[name] = {"anyOf": [properties[name], draw(leaves())]}
    elif op == "type":
        widened = {"integer": "number", "string": ["string", "null"]}
        choice = draw(st.sampled_from(["widen", "remove", *range(len(TYPES))]))
        if choice == "remove":
            node.pop("type", None)
        elif choice == "widen":
            current = node.get("type", "string")
            node["type"] = widened.get(current, current) if isinstance(current, str) else [*current, "boolean"]
        else:
            node["type"] = TYPES[choice]
    elif op == "limit":
        keyword = draw(st.sampled_from(LIMITS))
        if keyword in node and draw(st.booleans()):
            del node[keyword]
        else:
            node[keyword] = node.get(keyword, 2) + draw(st.integers(-2, 2))
            node[keyword] = max(node[keyword], 0)
    elif op == "enum":
        values = node.get("enum")
        action = draw(st.sampled_from(["extend", "narrow", "remove", "set"]))
        if values and action == "extend":
            node["enum"] = [*values, draw(SCALARS.filter(lambda v: v not in values))]
        elif values and action == "narrow" and len(values) > 1:
            node["enum"] = values[1:]
        elif action == "remove":
            node.pop("enum", None)
        else:
            node["enum"] = draw(st.lists(SCALARS, min_size=1, max_size=3, unique_by=repr))
    elif op == "pattern":
        if "pattern" in node and draw(st.booleans()):
            del node["pattern"]
        else:
            node["pattern"] = draw(st.sampled_from(PATTERNS))
    elif op == "required":
        required = node.setdefault("required", [])
        name = draw(st.sampled_from([*NAMES, "e"]))
        if name in required:
            required.remove(name)
        else:
            required.append(name)
    elif op == "property":
        properties = node.setdefault("properties", {})
        name = draw(st.sampled_from([*NAMES, "e", "x1"]))
        if name in properties and draw(st.booleans()):
            del properties[name]
        else:
            properties[name] = draw(leaves() | arrays(leaves()))
    elif op == "additional":
        extra = draw(st.sampled_from(["absent", True, False, {"type": "integer"}, {"type": "number"}, {}]))
        node.pop("additionalProperties", None)
        if extra != "absent":
            node["additionalProperties"] = extra
    elif op == "pattern_properties":
        if "patternProperties" in node and draw(st.booleans()):
            del node["patternProperties"]
        else:
            node["patternProperties"] = {draw(st.sampled_from(["^x", "^[a-c]$"])): draw(leaves())}
    else:
        node["uniqueItems"] = not node.get("uniqueItems", False)


@st.composite
def mutated(draw: st.DrawFn, schema: dict[str, Any]) -> dict[str, Any]:
    new = copy.deepcopy(schema)
    for _ in range(draw(st.integers(1, 3))):
        _mutate(draw, draw(st.sampled_from(_nodes(new))))
    return new


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_a_compatible_new_schema_accepts_every_instance_the_old_one_accepted(data: st.DataObject) -> None:
    old = data.draw(object_schemas(), label="old")
    new = data.draw(mutated(old), label="new")
    jsonschema.Draft202012Validator.check_schema(new)
    compatible = is_compatible(old, new)
    event("compatible" if compatible else "breaking")
    if not compatible:
        return
    old_validator, new_validator = jsonschema.Draft202012Validator(old), jsonschema.Draft202012Validator(new)
    accepted = [v for v in data.draw(st.lists(instances(old), min_size=1, max_size=6), label="instances") if old_validator.is_valid(v)]
    event(f"instances the old schema accepted: {min(len(accepted), 3)}{'+' if len(accepted) >= 3 else ''}")
    for value in accepted:
        assert new_validator.is_valid(value), (value, compare(old, new))


@settings(max_examples=100, deadline=None)
@given(schema=object_schemas())
def test_a_schema_compared_with_itself_has_no_change(schema: dict[str, Any]) -> None:
    assert compare(schema, schema) == []
    assert compare(schema, copy.deepcopy(schema)) == []


# --------------------------------------------------------------------------- the same property, through the release check


def handler(ctx: Any) -> dict[str, Any]:
    return {}


def _export(*schemas: tuple[str, Any]) -> RegistryExport:
    """A registry export holding ``billing/invoice`` at each (version, context schema)."""
    policy = NamespacePolicy("billing", "billing", "billing@growthcorp.example")
    workflows = tuple(Workflow("billing", "invoice", v, [Step("work", handler)], context_schema=sch) for v, sch in schemas)
    registry = build_registry([Contribution(Source("teamflow-billing", "1.0.0"), (policy,), workflows)])
    assert not registry.refusals, registry.refusals
    return build_export(registry, teamflow_version="test", exported_at="test")


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_a_release_the_check_calls_compatible_accepts_every_context_the_previous_version_accepted(data: st.DataObject) -> None:
    """``teamflow check --against`` says what ``compare`` says, for each new version against its
    baseline: when it reports no schema change, no context the previous version accepted is refused."""
    old = data.draw(object_schemas(), label="old")
    new = data.draw(mutated(old), label="new")
    jsonschema.Draft202012Validator.check_schema(new)
    outcome = check_release(_export(("1.0.0", old)), _export(("1.0.0", old), ("1.1.0", new)))
    assert [(j.previous, j.current) for j in outcome.judged] == [("1.0.0", "1.1.0")]
    reported = [f for f in outcome.findings if f.rule == "schema_incompatible"]
    assert {f.where for f in reported} == {f"context_schema {c.path}" for c in compare(old, new) if c.breaking}
    event("breaking" if reported else "compatible")
    if reported:
        return
    old_validator, new_validator = jsonschema.Draft202012Validator(old), jsonschema.Draft202012Validator(new)
    for value in data.draw(st.lists(instances(old), min_size=1, max_size=6), label="instances"):
        if old_validator.is_valid(value):
            assert new_validator.is_valid(value), (value, compare(old, new))
