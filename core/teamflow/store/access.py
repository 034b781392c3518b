"""Access: tokens and their hashed secrets, admin sessions, and the audit trail.

A secret is never stored, only its SHA-256 (``teamflow.tokens``). An audit row is written
with ``audit_in(entry)`` (``base.py``: every concern's actions use it) inside the transaction of the action it records, so a rolled-back
action leaves none. Refused requests arrive aggregated (``refusals``): one row per bucket
of (minute, address, token, route, status) whose ``count`` grows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from teamflow.store.base import StoreBase
from teamflow.store.records import AuditEntry, AuditRecord, SessionRecord, TokenRecord

TOKEN_COLUMNS = (
    "t.name, t.namespaces, t.scopes, t.identity, t.created_at, t.created_by, t.expires_at, t.revoked_at, "
    "t.last_used_at"
)
ANY_TOKEN = "SELECT 1 FROM tf_token LIMIT 1"
TOKENS = f"SELECT {TOKEN_COLUMNS} FROM tf_token t ORDER BY t.name"
TOKEN = f"SELECT {TOKEN_COLUMNS} FROM tf_token t WHERE t.name = ?"
BY_SECRET = (
    f"SELECT {TOKEN_COLUMNS}, s.retired_at FROM tf_token_secret s JOIN tf_token t ON t.name = s.token "
    "WHERE s.hash = ?"
)
INSERT_TOKEN = (
    "INSERT INTO tf_token (name, namespaces, scopes, identity, created_at, created_by, expires_at) "
    "VALUES (?, ?, ?, ?, {now}, ?, ?)"
)
REISSUE_TOKEN = "UPDATE tf_token SET expires_at = ?, revoked_at = NULL WHERE name = ?"
INSERT_SECRET = "INSERT INTO tf_token_secret (hash, token, created_at) VALUES (?, ?, {now})"
RETIRE_SECRETS = (
    "UPDATE tf_token_secret SET retired_at = {now} + ? WHERE token = ? AND hash <> ? "
    "AND (retired_at IS NULL OR retired_at > {now} + ?)"
)
REVOKE_TOKEN = "UPDATE tf_token SET revoked_at = {now} WHERE name = ? AND revoked_at IS NULL"
TOUCH_TOKEN = "UPDATE tf_token SET last_used_at = ? WHERE name = ? AND (last_used_at IS NULL OR last_used_at < ?)"

REFUSED = (
    "INSERT INTO tf_audit (at, action, actor, namespace, target, address, detail, count, bucket) "
    "VALUES (?, 'refused', ?, NULL, ?, ?, ?, ?, ?) "
    "ON CONFLICT (bucket) DO UPDATE SET count = tf_audit.count + excluded.count"
)
AUDIT_COLUMNS = "id, at, action, actor, namespace, target, address, detail, count"

INSERT_SESSION = (
    "INSERT INTO tf_session (id_hash, token, secret_hash, csrf, created_at, seen_at) VALUES (?, ?, ?, ?, {now}, {now})"
)
SESSION = "SELECT token, secret_hash, csrf, created_at, seen_at FROM tf_session WHERE id_hash = ?"
TOUCH_SESSION = "UPDATE tf_session SET seen_at = {now} WHERE id_hash = ?"
END_SESSION = "DELETE FROM tf_session WHERE id_hash = ?"
END_SESSIONS_OF = "DELETE FROM tf_session WHERE token = ?"
END_IDLE_SESSIONS = "DELETE FROM tf_session WHERE seen_at < {now} - ?"


def _token(row: Sequence[Any]) -> TokenRecord:
    return TokenRecord(
        row[0], tuple(json.loads(row[1])), tuple(json.loads(row[2])), row[3], row[4], row[5], row[6], row[7], row[8]
    )


class AccessStore(StoreBase):
    # -- tokens -------------------------------------------------------------------------

    def any_token(self) -> bool:
        """Whether a token was ever created (revoked and expired ones count)."""
        return self.execute(ANY_TOKEN).fetchone() is not None

    def tokens(self) -> list[TokenRecord]:
        return [_token(r) for r in self.execute(TOKENS).fetchall()]

    def token(self, name: str) -> TokenRecord | None:
        row = self.execute(TOKEN, (name,)).fetchone()
        return None if row is None else _token(row)

    def token_by_secret(self, digest: str) -> tuple[TokenRecord, float | None] | None:
        """The token a secret's hash belongs to, and when that secret retires (None: never)."""
        row = self.execute(BY_SECRET, (digest,)).fetchone()
        return None if row is None else (_token(row[:9]), row[9])

    def create_token(self, token: TokenRecord, digest: str, audit: AuditEntry) -> None:
        """Store a new token and its secret's hash (raises ``DuplicateKey`` if the name is taken)."""
        with self.tx():
            self.execute(
                INSERT_TOKEN,
                (token.name, json.dumps(list(token.namespaces)), json.dumps(list(token.scopes)), token.identity,
                 token.created_by, token.expires_at),
            )
            self.execute(INSERT_SECRET, (digest, token.name))
            self.audit_in(audit)

    def reissue_token(self, name: str, digest: str, overlap_s: float, expires_at: float | None, audit: AuditEntry) -> None:
        """A new secret for ``name``; its other secrets keep working for ``overlap_s`` seconds."""
        with self.tx():
            self.execute(INSERT_SECRET, (digest, name))
            self.execute(RETIRE_SECRETS, (overlap_s, name, digest, overlap_s))
            self.execute(REISSUE_TOKEN, (expires_at, name))
            self.audit_in(audit)

    def revoke_token(self, name: str, audit: AuditEntry) -> bool:
        """Revoke ``name`` and end its admin sessions; False if it was revoked already."""
        with self.tx():
            if not self.execute(REVOKE_TOKEN, (name,)).rowcount:
                return False
            self.execute(END_SESSIONS_OF, (name,))
            self.audit_in(audit)
        return True

    def touch_tokens(self, used: Iterable[tuple[str, float]]) -> None:
        """Record when each token was last used (written in batches, not per request)."""
        rows = [(at, name, at) for name, at in used]
        if rows:
            with self.tx():
                self.executemany(TOUCH_TOKEN, rows)

    # -- audit --------------------------------------------------------------------------

    def audit(self, entry: AuditEntry) -> None:
        """One audit row in a transaction of its own."""
        with self.tx():
            self.audit_in(entry)

    def refusals(self, rows: Iterable[tuple[float, str, str, str, str, int, str]]) -> None:
        """Aggregated refused requests: (minute, actor, route, address, status, count, bucket)."""
        batch = list(rows)
        if batch:
            with self.tx():
                self.executemany(REFUSED, batch)

    def audit_rows(
        self, *, namespaces: tuple[str, ...] | None, limit: int, before_id: int | None = None
    ) -> list[AuditRecord]:
        """Newest first. ``namespaces``: only rows of those namespaces (None: every row)."""
        clauses: list[str] = []
        params: list[Any] = []
        if namespaces is not None:
            if not namespaces:
                return []
            clauses.append(f"namespace IN ({self.placeholders(len(namespaces))})")
            params.extend(namespaces)
        if before_id is not None:
            clauses.append("id < ?")
            params.append(before_id)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.execute(
            f"SELECT {AUDIT_COLUMNS} FROM tf_audit {where} ORDER BY id DESC LIMIT ?", (*params, limit)
        ).fetchall()
        return [AuditRecord(*r) for r in rows]

    # -- admin sessions -----------------------------------------------------------------

    def create_session(self, id_hash: str, token: str, secret_digest: str, csrf: str, idle_s: float) -> None:
        with self.tx():
            self.execute(END_IDLE_SESSIONS, (idle_s,))
            self.execute(INSERT_SESSION, (id_hash, token, secret_digest, csrf))

    def session(self, id_hash: str) -> SessionRecord | None:
        row = self.execute(SESSION, (id_hash,)).fetchone()
        return None if row is None else SessionRecord(*row)

    def touch_session(self, id_hash: str) -> None:
        self.execute(TOUCH_SESSION, (id_hash,))

    def end_session(self, id_hash: str) -> None:
        self.execute(END_SESSION, (id_hash,))
