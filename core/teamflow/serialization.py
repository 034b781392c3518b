"""The one cattrs converter: every (un)structuring of teamflow types goes through here."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, TypeVar

import cattrs
import msgspec
from cattrs.preconf.json import make_converter

T = TypeVar("T")


def _make() -> cattrs.Converter:
    return make_converter(forbid_extra_keys=True)


def _instant(value: datetime) -> str:
    """An instant as RFC 3339 / ISO 8601 with its zone, written as msgspec writes it (UTC: ``Z``)."""
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


converter = _make()
converter.register_unstructure_hook(datetime, _instant)

# Contexts and step results as stored: strict JSON (NaN and Infinity refused). One shared
# encoder: ``json.dumps(..., allow_nan=False)`` would build a new one on every call.
to_json = json.JSONEncoder(allow_nan=False).encode


def canonical_json(value: Any) -> str:
    """One text per JSON value (sorted keys, no spaces), so equal values hash alike."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_ENCODE_VIEW = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode
_MSGSPEC = msgspec.json.Encoder()


def encode_view(value: Any) -> bytes:
    """A view as the JSON the HTTP API sends: compact, keys in name order, instants as
    ``2026-12-02T06:23:19.123456Z``.

    msgspec encodes the attrs views directly, about twenty times faster than unstructuring
    them first; what it refuses (a lone surrogate from an older database, which UTF-8
    cannot hold) goes the slow way, as the same JSON with ASCII escapes. Both give what
    ``unstructure`` gives, which the CLI prints.
    """
    try:
        return _MSGSPEC.encode(value)
    except (UnicodeEncodeError, msgspec.EncodeError):
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
