"""Whether a workflow version's context schema still accepts what the version before it accepted.

``compare(old, new)`` lists the changes between two JSON Schemas as ``SchemaChange`` records.
Each one says whether it breaks callers. ``is_compatible`` is true when none does. The module
is pure: it reads two documents and never fetches, imports or stores anything.

The rule. ``"backward"`` (the namespace policy's default) is the Confluent Schema Registry's
BACKWARD rule for JSON Schema: every instance the old schema accepts must be accepted by the
new one, so a context a caller sent to the previous version of the same major is still
accepted. teamflow differs in one point. It validates contexts as sent and fills in no
default, so a newly required property breaks even when it has a default. ``"none"`` turns
the check off. A ``None`` schema is teamflow's default, "any JSON object".

How it reasons. Keyword by keyword, as Confluent's ``SchemaDiff`` does. A change counts as
compatible only when the checker can show that the new keyword refuses nothing the old
schema accepted. When it cannot show that, it calls the change breaking. A false alarm is
possible, and a missed break should not be.

- Type-specific keywords (``maxLength``, ``properties``, ``items``...) count only for the
  types the old schema accepts. A limit on strings cannot refuse anything an integer-only
  schema accepted.
- Content models: a name the old model did not list was governed there by the first
  ``patternProperties`` entry it matches, or by ``additionalProperties`` (absent means
  open). A property added under an open model breaks unless it is unconstrained, because
  old data may hold that name with any value. Under a closed model it is compatible. Under
  a partially open one it is compatible if the pattern's or ``additionalProperties``'
  schema is compatible with it. Removing a property is judged against what the new model
  applies to that name.
- ``anyOf``/``oneOf``: each old member must fall within some new member (same position
  first). ``allOf``: each new member must follow from some old member. ``oneOf`` also
  needs the new members not to overlap (distinct types, disjoint ``const``/``enum``, or
  a required discriminator property with disjoint values). Otherwise an instance that
  matched one member before may match two now and be refused. This is stricter than
  Confluent, which calls any extended ``oneOf`` compatible.
- Local ``$ref`` (``#/...`` pointers and ``#name`` anchors) is resolved within the same
  document, and recursion through references is assumed to hold while it is being checked
  (instances are finite). A remote ``$ref`` is never fetched: it is a breaking
  ``remote_ref`` change unless both sides name the same one (with the same root ``$id``),
  in which case only its siblings are compared. A nested ``$id`` would change what ``#``
  means, so the checker does not resolve references in such a document.
- ``multipleOf`` relaxes only between whole numbers (every multiple of 6 is a multiple
  of 3), because validators decide float multiples by floating-point division.

Keywords it does not reason about. These include ``not``, ``if``/``then``/``else``,
``dependentSchemas``, ``dependentRequired``, ``dependencies``, ``propertyNames``,
``contains`` (and ``min``/``maxContains``), ``unevaluatedProperties``,
``unevaluatedItems``, ``format``, ``contentEncoding``/``contentMediaType``/
``contentSchema``, ``$dynamicRef``, keywords of another dialect and custom keywords. The
checker refuses to call a change compatible when such a keyword is added or changed at
some path. It reports a breaking ``unsupported_keyword`` change that names the keyword and
the path. Removing one is compatible, because it drops a constraint. Identical ones on
both sides are fine, with three exceptions. ``unevaluatedProperties``/``unevaluatedItems``
depend on what their sibling keywords evaluate, so any other change in that subschema
breaks. A ``$dynamicRef`` anywhere in a changed document breaks, because its target
depends on the document around it. And ``format`` is only an annotation in
``jsonschema``'s default validators, but a validator with a format checker asserts it, so
an added or changed ``format`` is treated as breaking too.

Output: every change found, compatible ones included (``breaking=False``), so a report can
show both. Changes are sorted by path, then kind, then message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import unquote

import attrs

__all__ = ["MODES", "SchemaChange", "compare", "is_compatible"]

MODES = ("backward", "none")
"""The compatibility modes a namespace policy may name (``NamespacePolicy.compatibility``)."""


@attrs.frozen
class SchemaChange:
    """One difference between two versions of a context schema, and whether it breaks callers.

    ``path`` points into the schema (``#/properties/amount/type``, ``#/required/amount``);
    ``kind`` is a stable machine code; ``message`` says what changed, old -> new; ``fix``
    says what the provider should do instead (empty for a compatible change).
    """

    path: str
    kind: str
    breaking: bool
    message: str
    fix: str


def compare(
    old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, mode: str = "backward"
) -> list[SchemaChange]:
    """Every change from ``old`` to ``new``, sorted by path then kind.

    :param old: the previous version's context schema; ``None`` means any JSON object.
    :param new: the new version's context schema; ``None`` means any JSON object.
    :param mode: ``"backward"`` (new must accept all that old accepted) or ``"none"``
        (the check is off: no changes are reported).
    :raises ValueError: for any other mode.
    """
    if mode == "none":
        return []
    if mode != "backward":
        raise ValueError(f"unknown compatibility mode {mode!r}: use 'backward' or 'none'")
    old_doc = _ANY_OBJECT if old is None else old
    new_doc = _ANY_OBJECT if new is None else new
    if _json_equal(old_doc, new_doc):
        return []
    return _Checker(old_doc, new_doc).run()


def is_compatible(
    old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, mode: str = "backward"
) -> bool:
    """Whether ``new`` breaks nothing ``old`` accepted (``compare`` finds no breaking change)."""
    return not any(change.breaking for change in compare(old, new, mode))


# --------------------------------------------------------------------------- vocabulary

_ANY_OBJECT: Mapping[str, Any] = {"type": "object"}
_ALL_TYPES = frozenset({"array", "boolean", "integer", "null", "number", "object", "string"})

# Keywords that change no instance's validity.
_ANNOTATIONS = frozenset(
    {
        "title", "description", "default", "examples", "$comment", "readOnly", "writeOnly",
        "deprecated", "$id", "id", "$anchor", "$dynamicAnchor", "$recursiveAnchor",
    }
)
# Keywords that hold or point at schemas but assert nothing themselves: their effect is
# judged where a reference uses them ($ref is handled before the keywords).
_CONTAINERS = frozenset({"$schema", "$vocabulary", "$defs", "definitions", "$ref"})

# What each type-specific keyword applies to: it cannot refuse an instance of another type.
_FAMILIES: Mapping[str, frozenset[str]] = {
    "string": frozenset({"string"}),
    "number": frozenset({"integer", "number"}),
    "array": frozenset({"array"}),
    "object": frozenset({"object"}),
}
_FAMILY_OF: Mapping[str, str] = {
    **dict.fromkeys(
        ("minLength", "maxLength", "pattern", "contentEncoding", "contentMediaType", "contentSchema"),
        "string",
    ),
    **dict.fromkeys(("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"), "number"),
    **dict.fromkeys(
        (
            "items", "prefixItems", "additionalItems", "minItems", "maxItems", "uniqueItems", "contains",
            "minContains", "maxContains", "unevaluatedItems",
        ),
        "array",
    ),
    **dict.fromkeys(
        (
            "properties", "patternProperties", "additionalProperties", "required", "minProperties",
            "maxProperties", "propertyNames", "dependentRequired", "dependentSchemas", "dependencies",
            "unevaluatedProperties",
        ),
        "object",
    ),
}

# Limit keyword -> True for a lower bound (relaxed when it goes down), False for an upper one.
_LIMITS: Mapping[str, bool] = {
    "minLength": True, "maxLength": False, "minimum": True, "maximum": False,
    "exclusiveMinimum": True, "exclusiveMaximum": False, "minItems": True, "maxItems": False,
    "minProperties": True, "maxProperties": False,
}
_COUNT_MINIMA = frozenset({"minLength", "minItems", "minProperties"})  # 0 is the same as absent

# The keywords the checker reasons about; array keywords depend on the dialect (below).
_REASONED = frozenset(
    {
        "type", "enum", "const", "allOf", "anyOf", "oneOf", "properties", "patternProperties",
        "additionalProperties", "required", "items", "uniqueItems", "pattern", "multipleOf", *_LIMITS,
    }
)
# Keywords whose meaning depends on what their siblings evaluate.
_SIBLING_DEPENDENT = ("unevaluatedProperties", "unevaluatedItems")
# References resolved through the dynamic scope: the checker cannot follow them.
_DYNAMIC_REFS = frozenset({"$dynamicRef", "$recursiveRef"})

# Where subschemas sit, so equality follows references inside them and nowhere else.
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependencies"})
_SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SCHEMA_VALUES = frozenset(
    {
        "not", "if", "then", "else", "items", "additionalItems", "additionalProperties", "contains",
        "propertyNames", "unevaluatedItems", "unevaluatedProperties", "contentSchema",
    }
)

_FIXES: Mapping[str, str] = {
    "required_added": "give the new field no requirement, or release it in a new major version",
    "type_narrowed": "keep accepting the previous types (widen, never narrow), or release the change in a new major version",
    "type_changed": "keep accepting the previous types (widen, never narrow), or release the change in a new major version",
    "enum_added": "keep accepting every value the previous version accepted, or release the change in a new major version",
    "enum_narrowed": "keep every value the previous version accepted, or release the change in a new major version",
    "const_added": "keep accepting every value the previous version accepted, or release the change in a new major version",
    "const_changed": "keep the previous value, or release the change in a new major version",
    "limit_added": "leave the limit out, or release it in a new major version",
    "limit_tightened": "keep the previous limit or relax it, or release the change in a new major version",
    "pattern_added": "leave the pattern out, or release it in a new major version",
    "pattern_changed": "keep the previous pattern, or release the change in a new major version",
    "unique_items_added": "leave uniqueItems out, or release it in a new major version",
    "typed_property_added_to_open": (
        "add the property without constraints ({}), or release it in a new major version "
        "(data sent before may already hold that name with any value)"
    ),
    "property_added_not_covered": (
        "let the new property accept what patternProperties/additionalProperties accepted for that "
        "name, or release it in a new major version"
    ),
    "property_removed_from_closed": (
        "keep the property (it may stay optional), or allow it through additionalProperties, "
        "or release the change in a new major version"
    ),
    "property_removed_not_covered": (
        "keep the property, or make what now governs that name accept its previous values, "
        "or release the change in a new major version"
    ),
    "pattern_property_added_not_covered": (
        "let the pattern's schema accept what those names could hold before, or release it in a new major version"
    ),
    "pattern_property_removed_not_covered": (
        "keep the pattern, or let additionalProperties accept its previous values, "
        "or release the change in a new major version"
    ),
    "additional_properties_narrowed": (
        "keep additionalProperties as it was (or wider), or release the change in a new major version"
    ),
    "tuple_item_added_not_covered": (
        "let the new position accept what the array allowed there before, or release it in a new major version"
    ),
    "tuple_item_removed_not_covered": (
        "keep the position, or let the remaining items accept its previous values, "
        "or release the change in a new major version"
    ),
    "all_of_extended": "leave the new allOf member out, or release it in a new major version",
    "all_of_changed": "keep the allOf member as it was (or looser), or release the change in a new major version",
    "any_of_added": "include a member that accepts everything the previous schema did, or release it in a new major version",
    "any_of_narrowed": "keep the removed member, or release the change in a new major version",
    "any_of_changed": "keep each previous member (or a looser one), or release the change in a new major version",
    "one_of_added": "include a member that accepts everything the previous schema did, or release it in a new major version",
    "one_of_narrowed": "keep the removed member, or release the change in a new major version",
    "one_of_changed": "keep each previous member (or a looser one), or release the change in a new major version",
    "one_of_ambiguous": (
        "make the oneOf members exclusive (distinct types, or a required property with distinct const values), "
        "use anyOf, or release the change in a new major version"
    ),
    "false_schema_added": "keep accepting what the previous version accepted here, or release the change in a new major version",
    "remote_ref": "the schema it points to cannot be checked without fetching it: vendor the schema under $defs and refer to it with a local #/$defs/... reference",
    "unresolved_ref": "point $ref at a definition in the same document (#/$defs/...), without a nested $id",
    "unsupported_keyword": "make the change compatible by hand and release it in a new major version, or drop the keyword",
    "dialect_changed": "keep the previous $schema, or release the change in a new major version",
}


# --------------------------------------------------------------------------- the checker


@attrs.frozen
class _Dialect:
    """What a JSON Schema draft changes about the keywords the checker reasons about."""

    name: str
    ref_overrides_siblings: bool  # drafts 3 to 7 ignore the keywords beside a $ref
    prefix_items: bool  # 2020-12: prefixItems + items; earlier: items (list) + additionalItems

    @property
    def array_keywords(self) -> frozenset[str]:
        return frozenset({"prefixItems"} if self.prefix_items else {"additionalItems"})


_LATEST = _Dialect("2020-12", ref_overrides_siblings=False, prefix_items=True)
_DIALECTS = (
    ("draft-03", _Dialect("draft-03", ref_overrides_siblings=True, prefix_items=False)),
    ("draft-04", _Dialect("draft-04", ref_overrides_siblings=True, prefix_items=False)),
    ("draft-06", _Dialect("draft-06", ref_overrides_siblings=True, prefix_items=False)),
    ("draft-07", _Dialect("draft-07", ref_overrides_siblings=True, prefix_items=False)),
    ("2019-09", _Dialect("2019-09", ref_overrides_siblings=False, prefix_items=False)),
)


def _dialect(document: Any) -> _Dialect:
    """The draft named by ``$schema``; none (or an unknown one) is 2020-12, as ``jsonschema`` does."""
    uri = document.get("$schema") if isinstance(document, Mapping) else None
    if isinstance(uri, str):
        for marker, dialect in _DIALECTS:
            if marker in uri:
                return dialect
    return _LATEST


@attrs.frozen
class _Side:
    """One of the two documents: its root (for local references) and its dialect."""

    root: Any
    dialect: _Dialect
    nested_ids: bool  # a nested $id rebases '#': references are then not resolved

    @classmethod
    def of(cls, document: Any) -> _Side:
        nested = any(
            isinstance(node.get(key), str) and not node[key].startswith("#")
            for node in _dicts(document, top=False)
            for key in ("$id", "id")
        )
        return cls(document, _dialect(document), nested)


_MISSING = object()
_EMPTY: Mapping[str, Any] = {}  # the schema `true`, one object: reference cycles are detected by identity
_MAX_REF_DEPTH = 64


class _Checker:
    """Compares two documents; holds their roots and the references being followed."""

    def __init__(self, old: Any, new: Any) -> None:
        self.old = _Side.of(old)
        self.new = _Side.of(new)
        self._following: set[tuple[int, int]] = set()
        self._equating: set[tuple[int, int]] = set()

    def run(self) -> list[SchemaChange]:
        changes = [*self._dialect_change(), *self._dynamic_refs(), *self.schema(self.old.root, self.new.root, "#")]
        unique = {(c.path, c.kind, c.message): c for c in changes}
        return sorted(unique.values(), key=lambda c: (c.path, c.kind, c.message))

    def _dialect_change(self) -> list[SchemaChange]:
        old_uri, new_uri = _get(self.old.root, "$schema"), _get(self.new.root, "$schema")
        if self.old.dialect != self.new.dialect:
            return [
                _broken(
                    "#/$schema", "dialect_changed",
                    f"$schema {_show(old_uri)} -> {_show(new_uri)}: the two versions are read under different "
                    f"rules ({self.old.dialect.name} -> {self.new.dialect.name})",
                )
            ]
        if not _json_equal(old_uri, new_uri):
            return [_fine("#/$schema", "annotation_changed", f"$schema {_show(old_uri)} -> {_show(new_uri)}")]
        return []

    def _dynamic_refs(self) -> list[SchemaChange]:
        used = sorted({key for node in _dicts(self.new.root) for key in node if key in _DYNAMIC_REFS})
        return [
            _broken(
                "#", "unsupported_keyword",
                f"the new schema uses {keyword}, whose target depends on the document around it, and the "
                "document changed: the checker cannot follow it",
            )
            for keyword in used
        ]

    # -- one subschema against another -----------------------------------------------------

    def schema(self, old: Any, new: Any, path: str) -> list[SchemaChange]:
        """The changes from subschema ``old`` to subschema ``new`` at ``path`` (booleans allowed)."""
        if old is False or new is False:
            return _false_schemas(old, new, path)
        old = _EMPTY if old is True else old
        new = _EMPTY if new is True else new
        if not isinstance(old, Mapping) or not isinstance(new, Mapping):
            # not a schema (the loader refuses those): only equality can be judged
            if _json_equal(old, new):
                return []
            return [_broken(path, "unsupported_keyword", f"not a schema: {_show(old)} -> {_show(new)}")]
        if self.equivalent(old, new):
            return []
        if isinstance(old.get("$ref"), str) or isinstance(new.get("$ref"), str):
            return self._refs(old, new, path)
        return self._keywords(old, new, path)

    def equivalent(self, old: Any, new: Any) -> bool:
        """Whether two subschemas say the same, following local references on each side."""
        if not (isinstance(old, Mapping) and isinstance(new, Mapping)):
            return _json_equal(old, new)
        old_ref, new_ref = old.get("$ref"), new.get("$ref")
        if not (_is_local(old_ref) or _is_local(new_ref)):
            return self._same_keywords(old, new)
        if not (isinstance(old_ref, str) and isinstance(new_ref, str) and _is_local(old_ref) and _is_local(new_ref)):
            return False
        key = (id(old), id(new))
        if key in self._equating:
            return True  # already being compared further up: holds unless something else differs
        self._equating.add(key)
        try:
            old_target, new_target = _resolve(self.old, old_ref), _resolve(self.new, new_ref)
            if old_target is _MISSING or new_target is _MISSING:
                return False
            return self.equivalent(old_target, new_target) and self._same_keywords(
                _without(old, "$ref"), _without(new, "$ref")
            )
        finally:
            self._equating.discard(key)

    def _same_keywords(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
        return old.keys() == new.keys() and all(self._same_value(k, old[k], new[k]) for k in old)

    def _same_value(self, keyword: str, old: Any, new: Any) -> bool:
        if keyword == "$ref" and _is_remote(old):
            # a relative remote name means another document once the root $id moves
            return old == new and _json_equal(_root_id(self.old.root), _root_id(self.new.root))
        if keyword in _SCHEMA_MAPS and isinstance(old, Mapping) and isinstance(new, Mapping):
            return old.keys() == new.keys() and all(self.equivalent(old[k], new[k]) for k in old)
        if keyword in _SCHEMA_LISTS | _SCHEMA_VALUES and isinstance(old, list) and isinstance(new, list):
            return len(old) == len(new) and all(self.equivalent(o, n) for o, n in zip(old, new, strict=True))
        if keyword in _SCHEMA_VALUES:
            return self.equivalent(old, new)
        return _json_equal(old, new)

    # -- references --------------------------------------------------------------------------

    def _refs(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> list[SchemaChange]:
        old_ref, new_ref = old.get("$ref"), new.get("$ref")
        if _is_remote(old_ref) or _is_remote(new_ref):
            same_base = _json_equal(_root_id(self.old.root), _root_id(self.new.root))
            if old_ref == new_ref and same_base:
                # the same unfetched schema constrains both sides: only what is beside it can differ
                return self.schema(_without(old, "$ref"), _without(new, "$ref"), path)
            change = _broken(
                _at(path, "$ref"), "remote_ref",
                f"$ref {_show(old_ref)} -> {_show(new_ref)}: a remote schema cannot be checked without fetching it",
            )
            return [change, *self.schema(_drop_remote(old), _drop_remote(new), path)]
        key = (id(old), id(new))
        if key in self._following:
            # already comparing these two further up: assume it holds; instances are finite,
            # so a recursive schema is proven level by level
            return []
        if len(self._following) >= _MAX_REF_DEPTH:
            return [_broken(_at(path, "$ref"), "unresolved_ref", f"references nest more than {_MAX_REF_DEPTH} deep here")]
        self._following.add(key)
        try:
            return self._local_refs(old, new, path)
        finally:
            self._following.discard(key)

    def _local_refs(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> list[SchemaChange]:
        old_target, old_rest, old_problems = self._split_ref(self.old, old, path)
        new_target, new_rest, new_problems = self._split_ref(self.new, new, path)
        changes = [*old_problems, *new_problems]
        if old_target is _MISSING and new_target is _MISSING:
            return [*changes, *self.schema(old_rest, new_rest, path)]
        if old_target is not _MISSING and new_target is not _MISSING:
            # old is within its target and within its siblings; so is new, both must hold
            return [*changes, *self.schema(old_target, new_target, path), *self.schema(old_rest, new_rest, path)]
        if new_target is not _MISSING:
            # only the new side refers: the old schema must satisfy the target and the siblings
            changes += self.schema(old_rest, new_target, path)
            if _asserts(new_rest):
                changes += self.schema(old_rest, new_rest, path)
            else:
                changes += _annotations(old_rest, new_rest, path)
            return changes
        # only the old side refers: the old schema lies within its target and within its siblings
        through_target = self.schema(old_target, new_rest, path)
        if _asserts(old_rest) and any(c.breaking for c in through_target):
            through_siblings = self.schema(old_rest, new_rest, path)
            if not any(c.breaking for c in through_siblings):
                return [*changes, *through_siblings]
        return [*changes, *through_target]

    def _split_ref(self, side: _Side, schema: Mapping[str, Any], path: str) -> tuple[Any, Any, list[SchemaChange]]:
        """The target of a local ``$ref`` (or ``_MISSING``), the keywords beside it, and any problem."""
        ref = schema.get("$ref")
        if not isinstance(ref, str):
            return _MISSING, schema, []
        rest = _EMPTY if side.dialect.ref_overrides_siblings else _without(schema, "$ref")
        target = _resolve(side, ref)
        if target is _MISSING:
            reason = "a nested $id changes what '#' refers to" if side.nested_ids else "nothing in the document is there"
            problem = _broken(_at(path, "$ref"), "unresolved_ref", f"$ref {_show(ref)} cannot be resolved: {reason}")
            # without its target the schema is looser: judging the rest alone stays on the safe side
            return _MISSING, _without(schema, "$ref"), [problem]
        return target, rest, []

    # -- the keywords of one subschema -----------------------------------------------------------

    def _keywords(self, raw_old: Mapping[str, Any], raw_new: Mapping[str, Any], path: str) -> list[SchemaChange]:
        array_keywords = self.old.dialect.array_keywords & self.new.dialect.array_keywords
        present = (raw_old.keys() | raw_new.keys()) & (_REASONED | array_keywords)
        # a reasoned-about keyword in an unexpected shape (another draft's form, a typo) is
        # judged like an unsupported one
        misshapen = {k for k in present if not (_well_formed(k, raw_old) and _well_formed(k, raw_new))}
        reasoned = (_REASONED | array_keywords) - misshapen
        old, new = _without(raw_old, *misshapen), _without(raw_new, *misshapen)
        types = _types(old)
        changes = [
            *_annotations(old, new, path),
            *_type_change(old, new, path),
            *_value_changes(old, new, types, path),
            *self._combinators(old, new, path),
        ]
        if "object" in types:
            changes += self._object(old, new, path)
        if "array" in types:
            changes += self._array(old, new, path)
        if "string" in types:
            changes += _limits(old, new, path, "string") + _pattern(old, new, path)
        if types & _FAMILIES["number"]:
            changes += _limits(old, new, path, "number") + _multiple_of(old, new, path)
        changes += self._unsupported(raw_old, raw_new, path, types, reasoned)
        changes += _sibling_dependent(new, types, path, changes)
        return changes

    def _unsupported(
        self, old: Mapping[str, Any], new: Mapping[str, Any], path: str, types: frozenset[str], reasoned: frozenset[str]
    ) -> list[SchemaChange]:
        changes = []
        for keyword in sorted((old.keys() | new.keys()) - reasoned - _ANNOTATIONS - _CONTAINERS):
            family = _FAMILY_OF.get(keyword)
            if family is not None and not types & _FAMILIES[family]:
                continue  # it cannot refuse an instance of the types the old schema accepted
            if keyword in old and keyword in new and self._same_value(keyword, old[keyword], new[keyword]):
                continue
            where = _at(path, keyword)
            if keyword not in new:
                changes.append(_fine(where, "unsupported_keyword_removed", f"{keyword} removed: one constraint fewer"))
            else:
                done = "changed" if keyword in old else "added"
                changes.append(
                    _broken(
                        where, "unsupported_keyword",
                        f"{keyword} {done} ({_show(old.get(keyword))} -> {_show(new[keyword])}): the checker "
                        "cannot tell what it refuses",
                    )
                )
        return changes

    # -- allOf, anyOf, oneOf --------------------------------------------------------------------

    def _combinators(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> list[SchemaChange]:
        changes = []
        for keyword in ("allOf", "anyOf", "oneOf"):
            old_members, new_members = old.get(keyword, []), new.get(keyword, [])
            if self._same_value(keyword, old_members, new_members):
                continue
            where = _at(path, keyword)
            if keyword == "allOf":
                changes += self._all_of(old_members, new_members, where)
            else:
                section = self._sum(keyword, old, old_members, new_members, where)
                if keyword == "oneOf" and any(c.kind != "annotation_changed" for c in section):
                    section += self._one_of_overlap(new_members, where)
                changes += section
        return changes

    def _all_of(self, old_members: list[Any], new_members: list[Any], path: str) -> list[SchemaChange]:
        """Each new member must follow from some old member; dropping a member only loosens."""
        changes: list[SchemaChange] = []
        for j, member in enumerate(new_members):
            where = _at(path, j)
            match = self._first_compatible(((o, member) for o in _preferring(old_members, j)), where)
            if match is not None:
                changes += match
                continue
            kind = "all_of_extended" if len(new_members) > len(old_members) else "all_of_changed"
            if j < len(old_members):
                changes += self.schema(old_members[j], member, where)
            changes.append(
                _broken(where, kind, f"allOf member {j} follows from no member of the previous allOf: it may refuse what they accepted")
            )
        if len(new_members) < len(old_members) and not any(c.breaking for c in changes):
            changes.append(_fine(path, "all_of_narrowed", f"allOf {len(old_members)} -> {len(new_members)} members"))
        return changes

    def _sum(
        self, keyword: str, old: Mapping[str, Any], old_members: list[Any], new_members: list[Any], path: str
    ) -> list[SchemaChange]:
        """anyOf/oneOf: each old member must fall within some new member."""
        name = _snake(keyword)
        if not new_members:
            return [_fine(path, f"{name}_removed", f"{keyword} removed: one constraint fewer")]
        if not old_members:
            # the old schema offered no choice here: it must fall within one new member as a whole
            for j, member in enumerate(new_members):
                if self._first_compatible([(old, member)], _at(path, j)) is not None:
                    return [_fine(path, f"{name}_added", f"{keyword} added; the previous schema falls within member {j}")]
            return [_broken(path, f"{name}_added", f"{keyword} added, and the previous schema falls within none of its members")]
        changes: list[SchemaChange] = []
        lost = []
        for i, member in enumerate(old_members):
            where = _at(path, i)
            match = self._first_compatible(((member, n) for n in _preferring(new_members, i)), where)
            if match is not None:
                changes += match
                continue
            lost.append(i)
            if i < len(new_members):
                changes += self.schema(member, new_members[i], where)
        if lost:
            kind = f"{name}_narrowed" if len(new_members) < len(old_members) else f"{name}_changed"
            changes.append(
                _broken(path, kind, f"{keyword} members {lost} of the previous version fall within no new member")
            )
        elif len(new_members) > len(old_members):
            changes.append(_fine(path, f"{name}_extended", f"{keyword} {len(old_members)} -> {len(new_members)} members"))
        return changes

    def _first_compatible(self, pairs: Iterable[tuple[Any, Any]], path: str) -> list[SchemaChange] | None:
        """The changes of the first (old, new) pair without a breaking change, or None."""
        for old, new in pairs:
            changes = self.schema(old, new, path)
            if not any(c.breaking for c in changes):
                return changes
        return None

    def _one_of_overlap(self, members: list[Any], path: str) -> list[SchemaChange]:
        resolved = [self._plain(self.new, m) for m in members]
        overlapping = [
            (i, j)
            for i in range(len(resolved))
            for j in range(i + 1, len(resolved))
            if not _disjoint(resolved[i], resolved[j])
        ]
        if not overlapping:
            return []
        return [
            _broken(
                path, "one_of_ambiguous",
                f"oneOf members {overlapping[0][0]} and {overlapping[0][1]} may both match one instance: "
                "an instance that matched one member before may now match two and be refused",
            )
        ]

    def _plain(self, side: _Side, schema: Any) -> Any:
        """``schema`` with a bare local ``$ref`` replaced by its target (a few hops at most)."""
        for _ in range(8):
            if not (isinstance(schema, Mapping) and _is_local(schema.get("$ref")) and not _asserts(_without(schema, "$ref"))):
                return schema
            target = _resolve(side, schema["$ref"])
            if target is _MISSING:
                return schema
            schema = target
        return schema

    # -- objects --------------------------------------------------------------------------

    def _object(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> list[SchemaChange]:
        return [
            *_required(old, new, path),
            *self._properties(old, new, path),
            *self._pattern_properties(old, new, path),
            *self._additional_properties(old, new, path),
            *_limits(old, new, path, "object"),
        ]

    def _properties(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> list[SchemaChange]:
        old_props, new_props = old.get("properties", {}), new.get("properties", {})
        changes = []
        for name in sorted(old_props.keys() | new_props.keys()):
            where = _at(path, "properties", name)
            if name in old_props and name in new_props:
                changes += self.schema(old_props[name], new_props[name], where)
            elif name in new_props:
                changes += self._property_added(old, name, new_props[name], where)
            else:
                changes += self._property_removed(new, name, old_props[name], where)
        return changes

    def _property_added(self, old: Mapping[str, Any], name: str, schema: Any, path: str) -> list[SchemaChange]:
        governing, source = _governing(old, name)
        if source is None:
            if not any(c.breaking for c in self.schema(True, schema, path)):
                return [_fine(path, "untyped_property_added_to_open", f"property {name!r} added without constraints")]
            return [
                _broken(
                    path, "typed_property_added_to_open",
                    f"property {name!r} added with constraints ({_show(schema)}) to an open model: data sent "
                    f"before may already hold {name!r} with any value",
                )
            ]
        if governing is False:
            return [
                _fine(path, "property_added_to_closed", f"property {name!r} added to a closed model (the previous version refused it)")
            ]
        return _covered(
            self.schema(governing, schema, path), path, "property_added",
            f"property {name!r} added where {source} governed that name before",
        )

    def _property_removed(self, new: Mapping[str, Any], name: str, schema: Any, path: str) -> list[SchemaChange]:
        applying = _applying(new, name)
        if not applying:
            return [_fine(path, "property_removed_from_open", f"property {name!r} removed from an open model")]
        if [s for s, _ in applying] == [False] and schema is not False:
            return [
                _broken(
                    path, "property_removed_from_closed",
                    f"property {name!r} removed from a closed model: the previous version accepted it, the new one refuses it",
                )
            ]
        sub = [change for governing, _ in applying for change in self.schema(schema, governing, path)]
        sources = ", ".join(source for _, source in applying)
        return _covered(sub, path, "property_removed", f"property {name!r} removed; {sources} now governs that name")

    def _pattern_properties(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> list[SchemaChange]:
        old_patterns, new_patterns = old.get("patternProperties", {}), new.get("patternProperties", {})
        changes = []
        for pattern in sorted(old_patterns.keys() | new_patterns.keys()):
            where = _at(path, "patternProperties", pattern)
            if pattern in old_patterns and pattern in new_patterns:
                changes += self.schema(old_patterns[pattern], new_patterns[pattern], where)
            elif pattern in new_patterns:
                # names matching it could hold, before, whatever any old pattern, a listed property
                # or additionalProperties allowed: patterns may overlap, so all of them count
                old_props = old.get("properties", {})
                before = [
                    *old_patterns.values(),
                    *(old_props[k] for k in sorted(old_props) if re.search(pattern, k)),
                    old.get("additionalProperties", True),
                ]
                sub = [
                    c for schema in before if schema is not False for c in self.schema(schema, new_patterns[pattern], where)
                ]
                changes += _covered(sub, where, "pattern_property_added", f"patternProperties {pattern!r} added")
            else:
                fallback = new.get("additionalProperties", True)
                sub = self.schema(old_patterns[pattern], fallback, where)
                changes += _covered(
                    sub, where, "pattern_property_removed",
                    f"patternProperties {pattern!r} removed: those names fall to additionalProperties",
                )
        return changes

    def _additional_properties(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> list[SchemaChange]:
        before, after = old.get("additionalProperties", True), new.get("additionalProperties", True)
        where = _at(path, "additionalProperties")
        sub = self.schema(before, after, where)
        if not sub:
            return []
        detail = sub if isinstance(before, Mapping) and isinstance(after, Mapping) else []
        message = f"additionalProperties {_show(old.get('additionalProperties'))} -> {_show(new.get('additionalProperties'))}"
        if any(c.breaking for c in sub):
            return [*detail, _broken(where, "additional_properties_narrowed", message)]
        return [*detail, _fine(where, "additional_properties_widened", message)]

    # -- arrays -----------------------------------------------------------------------------

    def _array(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> list[SchemaChange]:
        old_prefix, old_prefix_kw, old_rest, _ = _tuple_form(self.old.dialect, old)
        new_prefix, new_prefix_kw, new_rest, new_rest_kw = _tuple_form(self.new.dialect, new)
        changes = []
        # position by position: what the old array allowed there against what the new one requires
        for i in range(max(len(old_prefix), len(new_prefix))):
            in_old, in_new = i < len(old_prefix), i < len(new_prefix)
            where = _at(path, new_prefix_kw if in_new else old_prefix_kw, i)
            sub = self.schema(old_prefix[i] if in_old else old_rest, new_prefix[i] if in_new else new_rest, where)
            if in_old and in_new:
                changes += sub
            elif in_new:
                changes += _covered(sub, where, "tuple_item_added", f"a schema for position {i} added")
            else:
                changes += _covered(sub, where, "tuple_item_removed", f"the schema for position {i} removed")
        changes += self.schema(old_rest, new_rest, _at(path, new_rest_kw))
        changes += _limits(old, new, path, "array")
        before, after = old.get("uniqueItems") is True, new.get("uniqueItems") is True
        if after and not before:
            changes.append(_broken(_at(path, "uniqueItems"), "unique_items_added", "uniqueItems added: repeated items are refused"))
        elif before and not after:
            changes.append(_fine(_at(path, "uniqueItems"), "unique_items_removed", "uniqueItems removed"))
        return changes


# --------------------------------------------------------------------------- keyword rules


def _false_schemas(old: Any, new: Any, path: str) -> list[SchemaChange]:
    if old is False and new is False:
        return []
    if old is False:
        return [_fine(path, "false_schema_removed", f"false -> {_show(new)}: the previous version accepted nothing here")]
    return [_broken(path, "false_schema_added", f"{_show(old)} -> false: nothing is accepted here any more")]


def _annotations(old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> list[SchemaChange]:
    return [
        _fine(_at(path, k), "annotation_changed", f"{k} {_show(old.get(k))} -> {_show(new.get(k))}")
        for k in sorted((old.keys() | new.keys()) & _ANNOTATIONS)
        if not _json_equal(old.get(k), new.get(k))
    ]


def _type_change(old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> list[SchemaChange]:
    before, after = _types(old), _types(new)
    if before == after:
        return []
    where = _at(path, "type")
    message = f"type {_show(old.get('type', 'any'))} -> {_show(new.get('type', 'any'))}"
    lost = sorted(t for t in before if not _covers(after, t))
    if not lost:
        return [_fine(where, "type_widened", message)]
    kind = "type_narrowed" if all(_covers(before, t) for t in after) else "type_changed"
    return [_broken(where, kind, f"{message}: {', '.join(lost)} no longer accepted")]


def _value_changes(old: Mapping[str, Any], new: Mapping[str, Any], types: frozenset[str], path: str) -> list[SchemaChange]:
    """``enum`` and ``const``, judged by the values the old schema could accept."""
    possible = _possible_values(old, types)
    changes = []
    if "enum" in old or "enum" in new:
        changes += _enum(old.get("enum"), new.get("enum"), possible, _at(path, "enum"))
    if "const" in old or "const" in new:
        changes += _const(old, new, possible, _at(path, "const"))
    return changes


def _enum(before: list[Any] | None, after: list[Any] | None, possible: list[Any] | None, path: str) -> list[SchemaChange]:
    if before is not None and after is not None and _json_equal(before, after):
        return []
    if after is None:
        return [_fine(path, "enum_removed", f"enum {_show(before)} removed")]
    message = f"enum {_show(before)} -> {_show(after)}"
    dropped = None if possible is None else [v for v in possible if not _contains(after, v)]
    breaking = dropped is None or bool(dropped)
    if dropped:
        message += f": {_show(dropped)} no longer accepted"
    if before is None:
        return [_change(path, "enum_added", breaking, message)]
    if all(_contains(after, v) for v in before):
        return [_fine(path, "enum_extended", message)]
    return [_change(path, "enum_narrowed", breaking, message)]


def _const(old: Mapping[str, Any], new: Mapping[str, Any], possible: list[Any] | None, path: str) -> list[SchemaChange]:
    if "const" in old and "const" in new and _json_equal(old["const"], new["const"]):
        return []
    if "const" not in new:
        return [_fine(path, "const_removed", f"const {_show(old['const'])} removed")]
    breaking = possible is None or any(not _json_equal(v, new["const"]) for v in possible)
    kind = "const_changed" if "const" in old else "const_added"
    return [_change(path, kind, breaking, f"const {_show(old.get('const'))} -> {_show(new['const'])}")]


def _required(old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> list[SchemaChange]:
    before, after = set(old.get("required", [])), set(new.get("required", []))
    changes = []
    for name in sorted(after - before):
        message = f"{name!r} is now required"
        prop = new.get("properties", {}).get(name)
        if isinstance(prop, Mapping) and "default" in prop:
            message += " (its default does not help: contexts are validated as sent, no default is filled in)"
        changes.append(_broken(_at(path, "required", name), "required_added", message))
    changes += [
        _fine(_at(path, "required", name), "required_removed", f"{name!r} is no longer required")
        for name in sorted(before - after)
    ]
    return changes


def _limits(old: Mapping[str, Any], new: Mapping[str, Any], path: str, family: str) -> list[SchemaChange]:
    changes = []
    for keyword, lower in _LIMITS.items():
        if _FAMILY_OF[keyword] != family:
            continue
        before, after = _limit(old, keyword), _limit(new, keyword)
        if before == after:
            continue
        where = _at(path, keyword)
        if after is None:
            changes.append(_fine(where, "limit_removed", f"{keyword} {before} removed"))
        elif before is None:
            changes.append(_broken(where, "limit_added", f"{keyword} {after} added"))
        elif (after <= before) if lower else (after >= before):
            changes.append(_fine(where, "limit_relaxed", f"{keyword} {before} -> {after}"))
        else:
            changes.append(_broken(where, "limit_tightened", f"{keyword} {before} -> {after}"))
    return changes


def _multiple_of(old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> list[SchemaChange]:
    before, after = old.get("multipleOf"), new.get("multipleOf")
    if before == after:
        return []
    where = _at(path, "multipleOf")
    if after is None:
        return [_fine(where, "limit_removed", f"multipleOf {before} removed")]
    if before is None:
        return [_broken(where, "limit_added", f"multipleOf {after} added")]
    message = f"multipleOf {before} -> {after}"
    # only whole numbers are safe: validators decide float multiples by floating-point division
    if isinstance(before, int) and isinstance(after, int) and after > 0 and before % after == 0:
        return [_fine(where, "limit_relaxed", f"{message}: every multiple of {before} is a multiple of {after}")]
    return [_broken(where, "limit_tightened", f"{message}: not every multiple of {before} is shown to be one of {after}")]


def _pattern(old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> list[SchemaChange]:
    before, after = old.get("pattern"), new.get("pattern")
    if before == after:
        return []
    where = _at(path, "pattern")
    if after is None:
        return [_fine(where, "pattern_removed", f"pattern {before!r} removed")]
    if before is None:
        return [_broken(where, "pattern_added", f"pattern {after!r} added")]
    return [_broken(where, "pattern_changed", f"pattern {before!r} -> {after!r}")]


def _sibling_dependent(
    new: Mapping[str, Any], types: frozenset[str], path: str, changes: list[SchemaChange]
) -> list[SchemaChange]:
    """unevaluated* depend on what the other keywords evaluate: any real change there breaks."""
    if not any(c.kind != "annotation_changed" for c in changes):
        return []
    reported = {c.path for c in changes}
    return [
        _broken(
            _at(path, keyword), "unsupported_keyword",
            f"{keyword} depends on what the keywords beside it evaluate, and they changed",
        )
        for keyword in _SIBLING_DEPENDENT
        if keyword in new and types & _FAMILIES[_FAMILY_OF[keyword]] and _at(path, keyword) not in reported
    ]


def _covered(sub: list[SchemaChange], path: str, kind: str, message: str) -> list[SchemaChange]:
    """``sub``, and a summary: ``<kind>_covered`` if nothing in it breaks, else ``<kind>_not_covered``."""
    if any(c.breaking for c in sub):
        return [*sub, _broken(path, f"{kind}_not_covered", f"{message}, and what was accepted there before no longer is")]
    return [*sub, _fine(path, f"{kind}_covered", f"{message}; what was accepted there before still is")]


# --------------------------------------------------------------------------- helpers


def _change(path: str, kind: str, breaking: bool, message: str) -> SchemaChange:
    return SchemaChange(path, kind, breaking, message, _FIXES.get(kind, "") if breaking else "")


def _broken(path: str, kind: str, message: str) -> SchemaChange:
    return _change(path, kind, True, message)


def _fine(path: str, kind: str, message: str) -> SchemaChange:
    return _change(path, kind, False, message)


def _at(path: str, *tokens: str | int) -> str:
    """``path`` extended by JSON pointer tokens (``~`` and ``/`` escaped)."""
    return path + "".join("/" + str(t).replace("~", "~0").replace("/", "~1") for t in tokens)


def _show(value: Any) -> str:
    if value is None:
        return "absent"
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _snake(keyword: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", keyword).lower()


def _get(document: Any, key: str) -> Any:
    return document.get(key) if isinstance(document, Mapping) else None


def _root_id(document: Any) -> Any:
    return _get(document, "$id") or _get(document, "id")


def _without(schema: Mapping[str, Any], *keys: str) -> Mapping[str, Any]:
    """``schema`` without ``keys``: the same object when it has none of them (identity matters)."""
    if not any(k in schema for k in keys):
        return schema
    return {k: v for k, v in schema.items() if k not in keys}


def _drop_remote(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    return _without(schema, "$ref") if _is_remote(schema.get("$ref")) else schema


def _is_local(ref: Any) -> bool:
    return isinstance(ref, str) and ref.startswith("#")


def _is_remote(ref: Any) -> bool:
    return isinstance(ref, str) and not ref.startswith("#")


def _asserts(schema: Mapping[str, Any]) -> bool:
    """Whether a subschema says anything beyond annotations."""
    return bool(schema.keys() - _ANNOTATIONS - {"$schema", "$defs", "definitions"})


def _resolve(side: _Side, ref: str) -> Any:
    """The target of a local reference in ``side``'s document, or ``_MISSING``."""
    if side.nested_ids:
        return _MISSING
    fragment = unquote(ref[1:])
    if fragment and not fragment.startswith("/"):
        # 2019-09 and later name anchors with $anchor; drafts 6 and 7 with an $id of "#name"
        anchors = (n for n in _dicts(side.root) if n.get("$anchor") == fragment or n.get("$id") == f"#{fragment}")
        return next(anchors, _MISSING)
    node = side.root
    for token in fragment.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return _MISSING
    return node


def _dicts(value: Any, top: bool = True) -> Iterator[Mapping[str, Any]]:
    """Every mapping inside ``value`` (itself included when ``top``), depth first."""
    if isinstance(value, Mapping):
        if top:
            yield value
        for child in value.values():
            yield from _dicts(child)
    elif isinstance(value, list):
        for child in value:
            yield from _dicts(child)


def _well_formed(keyword: str, schema: Mapping[str, Any]) -> bool:
    """Whether a reasoned-about keyword has the shape the checker's rules assume."""
    if keyword not in schema:
        return True
    value = schema[keyword]
    if keyword == "type":
        values = [value] if isinstance(value, str) else value
        return isinstance(values, list) and all(isinstance(t, str) and t in _ALL_TYPES for t in values)
    if keyword == "required":
        return isinstance(value, list) and all(isinstance(name, str) for name in value)
    if keyword in ("enum", "allOf", "anyOf", "oneOf", "prefixItems"):
        return isinstance(value, list)
    if keyword == "properties":
        return isinstance(value, Mapping)
    if keyword == "patternProperties":
        return isinstance(value, Mapping) and all(_compiles(p) for p in value)
    if keyword in ("additionalProperties", "additionalItems"):
        return isinstance(value, bool | Mapping)
    if keyword == "items":
        return isinstance(value, bool | Mapping | list)
    if keyword == "pattern":
        return isinstance(value, str)
    if keyword == "uniqueItems":
        return isinstance(value, bool)
    if keyword in _LIMITS or keyword == "multipleOf":
        return _is_number(value)
    return True


def _compiles(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _limit(schema: Mapping[str, Any], keyword: str) -> float | None:
    value = schema.get(keyword)
    if value is None or (keyword in _COUNT_MINIMA and value == 0):
        return None
    return float(value) if isinstance(value, float) else int(value)


def _types(schema: Mapping[str, Any]) -> frozenset[str]:
    """The JSON types a schema's ``type`` allows (all of them when it has none)."""
    value = schema.get("type")
    if value is None:
        return _ALL_TYPES
    return frozenset([value] if isinstance(value, str) else value)


def _covers(types: frozenset[str], json_type: str) -> bool:
    return json_type in types or (json_type == "integer" and "number" in types)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _possible_values(schema: Mapping[str, Any], types: frozenset[str]) -> list[Any] | None:
    """The values ``enum``/``const`` limit the schema to (of its types), or None when unlimited."""
    values = list(schema["enum"]) if "enum" in schema else None
    if "const" in schema:
        const = schema["const"]
        values = [const] if values is None else [v for v in values if _json_equal(v, const)]
    if values is None:
        return None
    return [v for v in values if _covers(types, _json_type(v))]


def _contains(values: list[Any], value: Any) -> bool:
    return any(_json_equal(value, v) for v in values)


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: 1 equals 1.0, but true is not 1 (as JSON Schema's enum and const compare)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def _preferring(items: list[Any], index: int) -> list[Any]:
    """``items`` with the one at ``index`` (the same position) tried first."""
    if index >= len(items):
        return list(items)
    return [items[index], *items[:index], *items[index + 1 :]]


def _governing(schema: Mapping[str, Any], name: str) -> tuple[Any, str | None]:
    """What an unlisted property ``name`` was held to: a pattern's schema, additionalProperties,
    or nothing (``None`` source: an open model)."""
    patterns = schema.get("patternProperties", {})
    for pattern in sorted(patterns):
        if re.search(pattern, name):
            return patterns[pattern], f"patternProperties {pattern!r}"
    extra = schema.get("additionalProperties", True)
    if extra is True or (isinstance(extra, Mapping) and not _asserts(extra)):
        return True, None
    return extra, "additionalProperties"


def _applying(schema: Mapping[str, Any], name: str) -> list[tuple[Any, str]]:
    """Every schema the model applies to an unlisted property ``name`` (empty when open)."""
    patterns = schema.get("patternProperties", {})
    matching = [(patterns[p], f"patternProperties {p!r}") for p in sorted(patterns) if re.search(p, name)]
    if matching:
        return matching
    governing, source = _governing(_without(schema, "patternProperties"), name)
    return [] if source is None else [(governing, source)]


def _tuple_form(dialect: _Dialect, schema: Mapping[str, Any]) -> tuple[list[Any], str, Any, str]:
    """An array schema as (position schemas, their keyword, the schema of the rest, its keyword)."""
    items = schema.get("items", True)
    if isinstance(items, list):
        return items, "items", schema.get("additionalItems", True), "additionalItems"
    if dialect.prefix_items:
        return list(schema.get("prefixItems", [])), "prefixItems", items, "items"
    # before 2020-12, additionalItems means nothing unless items is a list
    return [], "items", items, "items"


def _disjoint(a: Any, b: Any) -> bool:
    """Whether no instance can match both subschemas (a cheap, safe test: False when unsure)."""
    if a is False or b is False:
        return True
    if not (isinstance(a, Mapping) and isinstance(b, Mapping)):
        return False
    if not all(_well_formed(k, s) for k in ("type", "enum", "required", "properties") for s in (a, b)):
        return False
    types_a, types_b = _types(a), _types(b)
    common = {t for t in types_a if _covers(types_b, t)} | {t for t in types_b if _covers(types_a, t)}
    if not common:
        return True
    values_a, values_b = _possible_values(a, types_a), _possible_values(b, types_b)
    if values_a is not None and values_b is not None and not any(_contains(values_b, v) for v in values_a):
        return True
    if common != {"object"}:
        return False
    # a discriminator: a property both require, with no value in common
    props_a, props_b = a.get("properties", {}), b.get("properties", {})
    for name in set(a.get("required", [])) & set(b.get("required", [])):
        pa, pb = props_a.get(name), props_b.get(name)
        if isinstance(pa, Mapping) and isinstance(pb, Mapping):
            va, vb = _possible_values(pa, _types(pa)), _possible_values(pb, _types(pb))
            if va is not None and vb is not None and not any(_contains(vb, v) for v in va):
                return True
    return False
