"""The one cattrs converter: every (un)structuring of teamflow types goes through here."""

from __future__ import annotations

from typing import Any, TypeVar

import cattrs
from cattrs.preconf.json import make_converter

T = TypeVar("T")


def _make() -> cattrs.Converter:
    return make_converter(forbid_extra_keys=True)


converter = _make()


def structure(data: Any, cls: type[T]) -> T:
    return converter.structure(data, cls)


def unstructure(value: Any) -> Any:
    return converter.unstructure(value)


def readable_errors(exc: BaseException, root: str = "$") -> list[str]:
    """Turn a cattrs error group into readable ``expected int @ $.context.amount`` lines."""
    if isinstance(exc, cattrs.BaseValidationError):
        return list(cattrs.transform_error(exc, path=root))
    return [f"{exc} @ {root}"]
