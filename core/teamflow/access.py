"""Access control at run time: who a request is, what it may reach, and what was done.

``Access`` is owned by the host. It keeps tokens through the store (only their secrets'
SHA-256), answers ``authenticate`` from a short cache (a revocation or expiry is honoured
on every host within ``CACHE_S``), counts failed sign-ins per address (``throttle``), and
aggregates refused requests in memory into one audit row per (minute, address, token,
route, status), written at most every ``FLUSH_S``: a flood of 401s never holds the
SQLite writer.
"""

from __future__ import annotations

import collections
import getpass
import secrets
import socket
import threading
import time

from loguru import logger

from teamflow.config import HostConfig
from teamflow.errors import TeamflowError
from teamflow.store import DuplicateKey, Store
from teamflow.store.records import AuditEntry, AuditRecord, TokenRecord
from teamflow.tokens import (
    ADMIN,
    Caller,
    Principal,
    TokenError,
    TokenNotFound,
    check_request,
    new_secret,
    secret_hash,
)

CACHE_S = 2.0  # how long a token lookup (or the "is access control on" answer) is reused
FLUSH_S = 5.0  # how often aggregated refusals and last-use times are written
FAILURES_ALLOWED = 20  # failed authentications from one address per window...
FAILURE_WINDOW_S = 60.0  # ...before it is answered 429 until the window frees


class TokenNameTaken(TokenError):
    code = "token_exists"
    status = 409


def cli_caller() -> Caller:
    """The CLI acts with the database's rights; it is named by the OS user and host."""
    return Caller(actor=f"cli:{os_user()}", address=None)


def os_user() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no user name in this environment
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class Access:
    def __init__(self, store: Store, config: HostConfig) -> None:
        self._store = store
        self._config = config
        self._lock = threading.Lock()
        self._enabled: tuple[float, bool] | None = None
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._failures: dict[str, collections.deque[float]] = {}
        self._refused: collections.Counter[tuple[int, str, str, str, str]] = collections.Counter()
        self._used: dict[str, float] = {}
        self._flushed_at = time.monotonic()

    # -- is it on -------------------------------------------------------------------------

    def enabled(self) -> bool:
        """On with ``auth = true``, or once any token was created (revoked and expired count)."""
        if self._config.auth:
            return True
        now = time.monotonic()
        cached = self._enabled
        if cached is not None and (cached[1] or now - cached[0] < CACHE_S):
            return cached[1]  # once on, it stays on: tokens are never deleted
        on = self._store.any_token()
        self._enabled = (now, on)
        return on

    # -- requests ---------------------------------------------------------------------------

    def authenticate(self, secret: str | None) -> Principal | None:
        """The principal a bearer secret stands for; None if it is missing, unknown, revoked
        or expired (the caller answers all four the same)."""
        if not secret:
            return None
        digest = secret_hash(secret)
        return self.by_digest(digest)

    def cached(self, secret: str | None) -> tuple[bool, Principal | None]:
        """(True, the principal) when a recent lookup of this secret can answer without the
        database (the event loop asks this first); (False, None) when it cannot."""
        if not secret:
            return True, None
        cached = self._cache.get(secret_hash(secret))
        if cached is None or time.monotonic() - cached[0] >= CACHE_S:
            return False, None
        if cached[1] is not None:
            with self._lock:
                self._used[cached[1].name] = time.time()
        return True, cached[1]

    def by_digest(self, digest: str) -> Principal | None:
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[0] < CACHE_S:
            principal = cached[1]
        else:
            principal = self._lookup(digest)
            if len(self._cache) > 10_000:
                self._cache.clear()  # many unknown secrets: start over rather than grow
            self._cache[digest] = (now, principal)
        if principal is not None:
            with self._lock:
                self._used[principal.name] = time.time()
        self._maybe_flush()
        return principal

    def _lookup(self, digest: str) -> Principal | None:
        found = self._store.token_by_secret(digest)
        if found is None:
            return None
        token, retired_at = found
        now = time.time()
        if token.revoked_at is not None or (token.expires_at is not None and token.expires_at <= now):
            return None
        if retired_at is not None and retired_at <= now:
            return None
        return Principal(token.name, token.namespaces, token.scopes, token.identity)

    def throttle(self, address: str | None) -> float | None:
        """Seconds this address must wait after too many failed authentications, or None."""
        if address is None:
            return None
        with self._lock:
            failures = self._failures.get(address)
            if not failures:
                return None
            now = time.monotonic()
            while failures and failures[0] <= now - FAILURE_WINDOW_S:
                failures.popleft()
            if len(failures) < FAILURES_ALLOWED:
                return None
            return max(1.0, failures[0] + FAILURE_WINDOW_S - now)

    def failed(self, address: str | None) -> None:
        """A request from ``address`` carried no valid token."""
        if address is None:
            return
        with self._lock:
            if len(self._failures) > 10_000:
                self._failures.clear()
            self._failures.setdefault(address, collections.deque(maxlen=FAILURES_ALLOWED * 2)).append(time.monotonic())

    def refused(self, address: str | None, token: str | None, route: str, status: int) -> None:
        """Count a refused request (401/403/429) into its minute's audit row."""
        minute = int(time.time() // 60) * 60
        with self._lock:
            self._refused[(minute, address or "-", token or "-", route, str(status))] += 1
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        if time.monotonic() - self._flushed_at >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        """Write the aggregated refusals and last-use times now."""
        with self._lock:
            refused, self._refused = self._refused, collections.Counter()
            used, self._used = self._used, {}
            self._flushed_at = time.monotonic()
        try:
            self._store.refusals(
                (minute, f"token:{token}" if token != "-" else "anonymous", route, address, f"status {status}",
                 count, f"{minute}|{address}|{token}|{route}|{status}")
                for (minute, address, token, route, status), count in sorted(refused.items())
            )
            self._store.touch_tokens(used.items())
        except TeamflowError as exc:  # the database is away: try again at the next flush
            logger.warning("could not record {} refused request(s): {}", sum(refused.values()), exc.detail)
            with self._lock:
                self._refused.update(refused)
                for name, at in used.items():
                    self._used.setdefault(name, at)

    # -- tokens -----------------------------------------------------------------------------

    def create(
        self,
        name: str,
        namespaces: list[str] | tuple[str, ...],
        scopes: list[str] | tuple[str, ...],
        *,
        identity: str | None = None,
        expires_s: float | None = None,
        caller: Caller,
    ) -> tuple[TokenRecord, str]:
        """A new token and its secret (the only time the secret exists outside the caller)."""
        if caller.principal is not None and not caller.principal.has(ADMIN):
            raise TokenError("only an admin token (or the CLI) can create tokens")
        ns, sc = check_request(name, namespaces, scopes)
        lifetime = self._config.token_expires_s if expires_s is None else expires_s
        secret = new_secret()
        record = TokenRecord(name, ns, sc, identity, time.time(), caller.actor, time.time() + lifetime, None, None)
        audit = AuditEntry("token.create", caller.actor, None, f"token {name}", caller.address,
                           f"namespaces {', '.join(ns)}; scopes {', '.join(sc)}")
        try:
            self._store.create_token(record, secret_hash(secret), audit)
        except DuplicateKey:
            raise TokenNameTaken(
                f"a token named {name!r} exists: revoke it, re-issue it with `teamflow tokens create --name {name} "
                "--rotate`, or choose another name",
                name=name,
            ) from None
        self._enabled = None
        return record, secret

    def reissue(self, name: str, *, overlap_s: float, expires_s: float | None = None, caller: Caller) -> tuple[TokenRecord, str]:
        """A new secret for an existing token; the old one keeps working for ``overlap_s``."""
        token = self._store.token(name)
        if token is None:
            raise TokenNotFound(f"no token named {name!r}: `teamflow tokens list` shows them", name=name)
        lifetime = self._config.token_expires_s if expires_s is None else expires_s
        secret = new_secret()
        audit = AuditEntry("token.reissue", caller.actor, None, f"token {name}", caller.address,
                           f"old secret valid {overlap_s:g} s more")
        self._store.reissue_token(name, secret_hash(secret), overlap_s, time.time() + lifetime, audit)
        self._cache.clear()
        return self._store.token(name) or token, secret

    def revoke(self, name: str, *, caller: Caller) -> TokenRecord:
        token = self._store.token(name)
        if token is None:
            raise TokenNotFound(f"no token named {name!r}: `teamflow tokens list` shows them", name=name)
        if token.revoked_at is None:
            self._store.revoke_token(name, AuditEntry("token.revoke", caller.actor, None, f"token {name}", caller.address))
        self._cache.clear()
        return self._store.token(name) or token

    def tokens(self) -> list[TokenRecord]:
        return self._store.tokens()

    # -- audit ------------------------------------------------------------------------------

    def audit_rows(
        self, *, caller: Caller, namespace: str | None = None, limit: int = 100, before_id: int | None = None
    ) -> list[AuditRecord]:
        """Newest first: every row for the CLI and admin tokens, else the token's namespaces'."""
        self.flush()
        visible = caller.visible()
        if namespace is not None:
            if not caller.sees(namespace):
                return []
            visible = (namespace,)
        return self._store.audit_rows(namespaces=visible, limit=limit, before_id=before_id)

    # -- admin sessions ---------------------------------------------------------------------

    def sign_in(self, secret: str) -> tuple[str, str, Principal] | None:
        """A new session for a valid secret: (session id, CSRF value, principal); None if invalid."""
        principal = self.authenticate(secret)
        if principal is None:
            return None
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self._store.create_session(
            secret_hash(session_id), principal.name, secret_hash(secret), csrf, self._config.session_idle_s
        )
        return session_id, csrf, principal

    def session(self, session_id: str) -> tuple[Principal, str] | None:
        """The principal and CSRF value of a live session; None once it idled out or its
        token (or the secret it signed in with) was revoked or expired."""
        digest = secret_hash(session_id)
        record = self._store.session(digest)
        if record is None or time.time() - record.seen_at > self._config.session_idle_s:
            return None
        principal = self.by_digest(record.secret_hash)
        if principal is None or principal.name != record.token:
            self._store.end_session(digest)
            return None
        if time.time() - record.seen_at > 30:
            self._store.touch_session(digest)
        return principal, record.csrf

    def sign_out(self, session_id: str) -> None:
        self._store.end_session(secret_hash(session_id))
