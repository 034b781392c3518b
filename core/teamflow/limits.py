"""The documented maximums, and the one check that a value can be stored and read back as JSON.

Past a limit a request is refused with the limit named (413 for sizes, 422 for shapes a
JSON reader cannot take back), a handler's result fails its step with a PermanentError
that says so, and an error message is stored once, cut, with its size.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from teamflow import refs, versions
from teamflow.errors import ContextInvalid, InvalidText, TooLarge, TooLong

MAX_NAME = refs.MAX_NAME  # characters of a namespace, workflow or step name
MAX_VERSION = versions.MAX_VERSION  # characters of a version or a version constraint
MAX_KEY = 256  # characters of an idempotency key
MAX_CONTEXT_BYTES = 256 * 1024  # a task's context, as UTF-8 JSON
MAX_RESULT_BYTES = 1024 * 1024  # a step's result, as UTF-8 JSON
MAX_DEPTH = 64  # nesting of arrays and objects in a context or a result
MAX_ERROR_BYTES = 8 * 1024  # of an error message kept with a step; the rest is cut
MAX_BATCH = 10_000  # items of one batch of tasks
MAX_BODY_BYTES = 16 * 1024 * 1024  # of an HTTP request body

_ENCODE = json.JSONEncoder(allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode


class Unstorable(ValueError):
    """A value that cannot be stored as JSON and read back the same: the reason, for a person."""

    def __init__(self, reason: str, *, too_large: bool = False) -> None:
        super().__init__(reason)
        self.too_large = too_large


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of arrays and objects (0 for a scalar), counted up to ``limit + 1``."""
    deepest, level, todo = 0, 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        todo.extend((child, level + 1) for child in children)
    return deepest


def _too_deep(max_depth: int) -> Unstorable:
    return Unstorable(f"nested more than {max_depth} levels deep (the limit)")


def encode(value: Any, *, max_bytes: int, max_depth: int = MAX_DEPTH) -> str:
    """``value`` as strict JSON text that reads back as itself; Unstorable saying why not.

    Refused: NaN and infinities, what is not JSON at all, text that is not valid Unicode
    (a lone surrogate such as ``"\\ud800"``), nesting deeper than ``max_depth``, and more
    than ``max_bytes`` of UTF-8.
    """
    try:
        text = _ENCODE(value)
    except RecursionError:
        raise _too_deep(max_depth) from None
    except (TypeError, ValueError) as exc:  # not JSON, NaN, an integer past Python's digit limit
        raise Unstorable(f"not JSON: {exc}") from None
    # Nesting needs an opening bracket per level: text with few brackets (most values) is
    # not walked.
    if text.count("[") + text.count("{") > max_depth and _depth(value, max_depth) > max_depth:
        raise _too_deep(max_depth)
    try:  # ASCII text (most results) is its own size and holds no lone surrogate
        size = len(text) if text.isascii() else len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise Unstorable(f"holds text that is not valid Unicode ({exc.reason} at character {exc.start})") from None
    if size > max_bytes:
        raise Unstorable(f"{size} bytes as JSON, over the limit of {max_bytes}", too_large=True)
    return text


def context_json(context: Any, reference: str) -> str:
    """A request's context as stored, or the 413/422 that names the limit it breaks."""
    try:
        return encode(context, max_bytes=MAX_CONTEXT_BYTES)
    except Unstorable as exc:
        facts = {"reference": reference, "limit_bytes": MAX_CONTEXT_BYTES, "limit_depth": MAX_DEPTH}
        if exc.too_large:
            raise TooLarge(f"{reference}: the context is {exc}; send less", **facts) from None
        raise ContextInvalid(f"{reference}: the context cannot be stored: it is {exc}", **facts) from None


def cut(message: str, max_bytes: int = MAX_ERROR_BYTES) -> str:
    """``message`` whole when it fits in ``max_bytes`` of UTF-8, else its start and its size."""
    data = message.encode("utf-8", "replace")  # a lone surrogate becomes "?": it could not be stored
    if len(data) <= max_bytes:
        return data.decode("utf-8")
    head = data[:max_bytes].decode("utf-8", "ignore")
    return f"{head}… (cut: {len(data)} bytes in all)"


def check_length(value: Any, what: str, limit: int) -> None:
    """A bounded identifier (an idempotency key, say): at most ``limit`` characters."""
    if isinstance(value, str) and len(value) > limit:
        raise TooLong(f"{what} is {len(value)} characters long; at most {limit} are allowed", limit=limit)


def check_key(value: str | None, what: str, limit: int) -> None:
    """A key stored as text: at most ``limit`` characters, none of them a NUL (PostgreSQL
    text cannot hold one) or a lone surrogate (not Unicode), the same on every database."""
    if not isinstance(value, str):
        return
    check_length(value, what, limit)
    nul = value.find("\x00")
    if nul >= 0:
        raise InvalidText(f"{what} holds a NUL character (U+0000) at character {nul}; use printable text",
                         limit=limit)
    if value.isascii():  # ASCII holds no lone surrogate
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidText(f"{what} holds text that is not valid Unicode ({exc.reason} at character {exc.start}); "
                         "use printable text", limit=limit) from None
