"""Workflow references: ``namespace/name[@version-or-constraint]``."""

from __future__ import annotations

import re

import attrs

from teamflow.errors import InvalidReference

MAX_NAME = 100  # characters of a namespace, workflow or step name
NAME_RE = re.compile(rf"^[a-z][a-z0-9_]{{0,{MAX_NAME - 1}}}$")


def valid_name(value: object) -> bool:
    return isinstance(value, str) and NAME_RE.fullmatch(value) is not None


@attrs.frozen
class WorkflowRef:
    namespace: str
    name: str
    version: str | None = None

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" + (f"@{self.version}" if self.version else "")


def parse_ref(text: str) -> WorkflowRef:
    """Parse ``namespace/name[@version]``; raise InvalidReference saying what to write."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidReference(
            "a workflow reference is 'namespace/name[@version]', e.g. payments/process_refund@2.1.0"
        )
    path, _, version = text.strip().partition("@")
    namespace, slash, name = path.partition("/")
    if not slash or not valid_name(namespace) or not valid_name(name):
        raise InvalidReference(
            f"invalid workflow reference {text[:200]!r}: write 'namespace/name[@version]' with names matching "
            f"[a-z][a-z0-9_]* (at most {MAX_NAME} characters), e.g. payments/process_refund@2.1.0",
            reference=text,
        )
    if "@" in text and not version.strip():
        raise InvalidReference(f"invalid workflow reference {text!r}: nothing after '@'", reference=text)
    return WorkflowRef(namespace, name, version.strip() or None)
