"""The one cattrs converter: every (un)structuring of teamflow types goes through here."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import cattrs
from cattrs.preconf.json import make_converter

T = TypeVar("T")


def _make() -> cattrs.Converter:
    return make_converter(forbid_extra_keys=True)


converter = _make()

# Contexts and step results as stored: strict JSON (NaN and Infinity refused). One shared
# encoder: ``json.dumps(..., allow_nan=False)`` would build a new one on every call.
to_json = json.JSONEncoder(allow_nan=False).encode


def canonical_json(value: Any) -> str:
    """One text per JSON value (sorted keys, no spaces), so equal values hash alike."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_ENCODE_VIEW = json.JSONEncoder(separators=(",", ":")).encode


def encode_view(value: Any) -> bytes:
    """A view as the JSON the HTTP API sends: compact, ASCII (any text, even a lone
    surrogate from an older database, is written as a valid JSON escape)."""
    return _ENCODE_VIEW(converter.unstructure(value)).encode("ascii")


def structure(data: Any, cls: type[T]) -> T:
    return converter.structure(data, cls)


def unstructure(value: Any) -> Any:
    return converter.unstructure(value)


def readable_errors(exc: BaseException, root: str = "$") -> list[str]:
    """Turn a cattrs error group into readable ``expected int @ $.context.amount`` lines."""
    if isinstance(exc, cattrs.BaseValidationError):
        return list(cattrs.transform_error(exc, path=root))
    return [f"{exc} @ {root}"]
