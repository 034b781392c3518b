"""Access tokens as values: scopes, secrets and their hashes, and what a token may do.

Pure: nothing here reads a database or the clock on its own. ``teamflow.access`` keeps the
tokens (through the store) and decides each request with these rules.

A secret is ``tf_`` and 32 URL-safe characters of 192 random bits; only its SHA-256 is
stored, and a token is looked up by that hash.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable

import attrs

from teamflow.errors import TeamflowError

READ, EXECUTE, OPERATE, APPROVE, METRICS, ADMIN = "read", "execute", "operate", "approve", "metrics", "admin"
SCOPES: tuple[str, ...] = (READ, EXECUTE, OPERATE, APPROVE, METRICS, ADMIN)
SCOPE_MEANING = {
    READ: "tasks, results, transitions and audit of its namespaces",
    EXECUTE: "start tasks in its namespaces",
    OPERATE: "cancel, retry and resolve tasks of its namespaces",
    APPROVE: "approve versions of its namespaces (its identity must be an approver)",
    METRICS: "read /metrics",
    ADMIN: "every scope on every namespace, and tokens",
}
EVERY_NAMESPACE = "*"
PREFIX = "tf_"
SECRET_BYTES = 24  # 192 bits (at least 128 are required)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_DURATION = re.compile(r"^(\d{1,6})([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_DURATION_S = 10 * 365 * 86400


class TokenError(TeamflowError):
    """A token cannot be created, found or changed as asked."""

    code = "invalid_token_request"
    status = 400


class TokenNotFound(TokenError):
    code = "token_not_found"
    status = 404


def new_secret() -> str:
    """A new secret: the prefix and 192 random bits, URL-safe."""
    return PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def secret_hash(secret: str) -> str:
    """What is stored and looked up: the secret's SHA-256, in hex."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def looks_like_secret(text: str) -> bool:
    return text.startswith(PREFIX) and 16 < len(text) <= 200


def parse_duration(text: str) -> float:
    """``90d``, ``12h``, ``30m``, ``45s``, ``2w``: seconds (checked, never guessed)."""
    match = _DURATION.match(text.strip())
    if not match:
        raise TokenError(
            f"invalid duration {text!r}: a whole number and a unit, one of s, m, h, d, w (for example 90d)",
            given=text,
        )
    seconds = int(match.group(1)) * _UNIT_S[match.group(2)]
    if not 0 < seconds <= MAX_DURATION_S:
        raise TokenError(f"duration {text!r} must be more than 0 and at most 10 years", given=text)
    return float(seconds)


def check_request(name: str, namespaces: Iterable[str], scopes: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A new token's name, namespaces and scopes, checked; the namespaces and scopes sorted."""
    if not NAME.match(name):
        raise TokenError(
            f"invalid token name {name!r}: 1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit",
            name=name,
        )
    ns = tuple(sorted(set(namespaces)))
    sc = tuple(sorted(set(scopes)))
    if not ns:
        raise TokenError(
            f"token {name!r} needs at least one --namespace (or --namespace '*' for every namespace)", name=name
        )
    if not sc:
        raise TokenError(f"token {name!r} needs at least one --scope: {', '.join(SCOPES)}", name=name)
    unknown = [s for s in sc if s not in SCOPES]
    if unknown:
        raise TokenError(
            f"unknown scope(s) {', '.join(map(repr, unknown))} for token {name!r}; scopes: {', '.join(SCOPES)}",
            name=name,
            scopes=list(SCOPES),
        )
    return ns, sc


@attrs.frozen(slots=True)
class Principal:
    """Who a request acts as: a token's name, namespaces, scopes and identity."""

    name: str
    namespaces: tuple[str, ...]
    scopes: tuple[str, ...]
    identity: str | None = None

    @property
    def actor(self) -> str:
        """How audit rows and task histories name this principal."""
        return f"token:{self.name}"

    def has(self, scope: str) -> bool:
        return ADMIN in self.scopes or scope in self.scopes

    def sees(self, namespace: str) -> bool:
        """Whether this token reaches ``namespace`` at all."""
        return ADMIN in self.scopes or EVERY_NAMESPACE in self.namespaces or namespace in self.namespaces

    def may(self, scope: str, namespace: str) -> bool:
        return self.has(scope) and self.sees(namespace)

    def visible(self) -> tuple[str, ...] | None:
        """The namespaces whose tasks this token may list; None for every namespace."""
        if ADMIN in self.scopes or EVERY_NAMESPACE in self.namespaces:
            return None
        return self.namespaces


@attrs.frozen(slots=True)
class Caller:
    """Who asks the host for something: a token's principal (None: the CLI, or access control
    off: unrestricted), how histories and audit rows name them, and from which address."""

    actor: str
    principal: Principal | None = None
    address: str | None = None

    def sees(self, namespace: str) -> bool:
        return self.principal is None or self.principal.sees(namespace)

    def visible(self) -> tuple[str, ...] | None:
        return None if self.principal is None else self.principal.visible()
