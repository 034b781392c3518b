"""The store's tables (peewee models), their migrations, and the schema's version.

Timestamps are epoch seconds taken from the database's clock; contexts and results are
JSON text so both SQLite and PostgreSQL store them the same way. The models describe the
tables for migrations only (statements are plain SQL, see ``base.py``), and are bound to
a database just while a migration runs, so no store changes another store's models.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

import peewee as pw

from teamflow.errors import StoreError
from teamflow.store.base import StoreBase

SCHEMA_VERSION = 5

Migration = Callable[[pw.Database], None]


class _Base(pw.Model):
    class Meta:
        legacy_table_names = False


class Meta(_Base):
    key = pw.CharField(primary_key=True)
    value = pw.TextField()

    class Meta:
        table_name = "tf_meta"


class Task(_Base):
    id = pw.CharField(primary_key=True, max_length=36)
    namespace = pw.CharField()
    name = pw.CharField()
    version = pw.CharField()
    fingerprint = pw.CharField()
    context = pw.TextField()
    status = pw.CharField()
    steps_left = pw.IntegerField()
    parent_id = pw.CharField(null=True, max_length=36)
    parent_step = pw.CharField(null=True)
    parent_attempt = pw.IntegerField(null=True)
    call_ordinal = pw.IntegerField(null=True)
    idempotency_key = pw.CharField(null=True)
    request_hash = pw.CharField(null=True)
    error_summary = pw.TextField(null=True)
    created_at = pw.DoubleField(index=True)
    updated_at = pw.DoubleField()
    finished_at = pw.DoubleField(null=True)

    class Meta:
        table_name = "tf_task"
        # Idempotency keys and parent links are partial indexes (see _v2): a task without
        # them, the common case, is not in them.
        indexes = ((("namespace", "name", "version", "status"), False),)


class WorkflowStep(_Base):
    id = pw.AutoField()
    task_id = pw.CharField(max_length=36)
    name = pw.CharField()
    namespace = pw.CharField()
    route = pw.CharField(max_length=20)
    status = pw.CharField()
    deps_left = pw.IntegerField()
    attempts = pw.IntegerField(default=0)
    max_attempts = pw.IntegerField()
    retryable = pw.BooleanField(default=True)
    next_attempt_at = pw.DoubleField(default=0)
    lease_owner = pw.CharField(null=True)
    lease_expires_at = pw.DoubleField(null=True)
    result = pw.TextField(null=True)
    error = pw.TextField(null=True)
    error_type = pw.CharField(null=True)
    started_at = pw.DoubleField(null=True)
    finished_at = pw.DoubleField(null=True)
    ready_at = pw.DoubleField(null=True)
    waiting_on = pw.CharField(null=True, max_length=36)
    resolved_by = pw.CharField(null=True)

    class Meta:
        table_name = "tf_step"
        # The claim and reaper paths use partial indexes (see _v1): a step is in them only
        # while it is ready or leased, so most status changes touch one index or none.
        indexes = ((("task_id", "name"), True),)


class Transition(_Base):
    id = pw.AutoField()
    task_id = pw.CharField(max_length=36, index=True)
    step = pw.CharField(null=True)
    from_status = pw.CharField(null=True)
    to_status = pw.CharField()
    attempt = pw.IntegerField(null=True)
    at = pw.DoubleField()
    actor = pw.CharField(null=True)
    detail = pw.TextField(null=True)

    class Meta:
        table_name = "tf_transition"


class NamespaceOwner(_Base):
    name = pw.CharField(primary_key=True)
    distribution = pw.CharField()
    policy = pw.TextField()
    recorded_at = pw.DoubleField()
    updated_at = pw.DoubleField()

    class Meta:
        table_name = "tf_namespace"


class PublishedVersion(_Base):
    namespace = pw.CharField()
    name = pw.CharField()
    version = pw.CharField()
    fingerprint = pw.CharField()
    first_fingerprint = pw.CharField()
    distribution = pw.CharField()
    distribution_version = pw.CharField()
    deprecated = pw.TextField(null=True)
    definition = pw.TextField()
    published_at = pw.DoubleField()

    class Meta:
        table_name = "tf_workflow_version"
        primary_key = pw.CompositeKey("namespace", "name", "version")


class Approval(_Base):
    id = pw.AutoField()
    namespace = pw.CharField()
    name = pw.CharField()
    version = pw.CharField()
    fingerprint = pw.CharField()
    approver = pw.CharField()
    at = pw.DoubleField()

    class Meta:
        table_name = "tf_approval"
        indexes = ((("namespace", "name", "version", "fingerprint"), False),)


MODELS: tuple[type[pw.Model], ...] = (
    Meta,
    Task,
    WorkflowStep,
    Transition,
    NamespaceOwner,
    PublishedVersion,
    Approval,
)


def _v1(db: pw.Database) -> None:
    db.create_tables(MODELS, safe=True)
    # Claim path: only ready, pending steps, oldest due first. Reaper: leased steps.
    db.execute_sql(
        "CREATE INDEX IF NOT EXISTS tf_step_ready ON tf_step (next_attempt_at) WHERE status = 'pending' AND deps_left = 0"
    )
    db.execute_sql(
        "CREATE INDEX IF NOT EXISTS tf_step_leased ON tf_step (lease_expires_at) WHERE status = 'in_progress'"
    )


def _v2(db: pw.Database) -> None:
    # v1 indexed every task's (null) idempotency key and parent link.
    db.execute_sql("DROP INDEX IF EXISTS tf_task_namespace_name_idempotency_key")
    db.execute_sql("DROP INDEX IF EXISTS tf_task_parent_id_parent_step_call_ordinal")
    db.execute_sql(
        "CREATE UNIQUE INDEX IF NOT EXISTS tf_task_idempotency ON tf_task (namespace, name, idempotency_key) "
        "WHERE idempotency_key IS NOT NULL"
    )
    db.execute_sql(
        "CREATE INDEX IF NOT EXISTS tf_task_parent ON tf_task (parent_id, parent_step, call_ordinal) "
        "WHERE parent_id IS NOT NULL"
    )


def _v3(db: pw.Database) -> None:
    # Worker heartbeats: which versions live workers serve, and who answers wake-ups first.
    db.execute_sql(
        "CREATE TABLE IF NOT EXISTS tf_worker (id VARCHAR(255) PRIMARY KEY, grp VARCHAR(40) NOT NULL, "
        "routes TEXT NOT NULL, concurrency INTEGER NOT NULL, started_at DOUBLE PRECISION NOT NULL, "
        "seen_at DOUBLE PRECISION NOT NULL)"
    )


class Token(_Base):
    """An access token: what it reaches; its secrets are in ``tf_token_secret``, hashed."""

    name = pw.CharField(primary_key=True, max_length=100)
    namespaces = pw.TextField()  # JSON list
    scopes = pw.TextField()  # JSON list
    identity = pw.CharField(null=True)
    created_at = pw.DoubleField()
    created_by = pw.CharField()
    expires_at = pw.DoubleField(null=True)
    revoked_at = pw.DoubleField(null=True)
    last_used_at = pw.DoubleField(null=True)

    class Meta:
        table_name = "tf_token"


class TokenSecret(_Base):
    """A token's secret, as its SHA-256: valid until ``retired_at`` (a rotation's overlap)."""

    hash = pw.CharField(primary_key=True, max_length=64)
    token = pw.CharField(max_length=100, index=True)
    created_at = pw.DoubleField()
    retired_at = pw.DoubleField(null=True)

    class Meta:
        table_name = "tf_token_secret"


class AdminSession(_Base):
    """A signed-in admin page: bound to the secret it signed in with (the cookie holds only
    the session id, stored here as its SHA-256)."""

    id_hash = pw.CharField(primary_key=True, max_length=64)
    token = pw.CharField(max_length=100, index=True)
    secret_hash = pw.CharField(max_length=64)
    csrf = pw.CharField(max_length=64)
    created_at = pw.DoubleField()
    seen_at = pw.DoubleField()

    class Meta:
        table_name = "tf_session"


class Audit(_Base):
    """Who did what, when, from where. Refused requests share one row per ``bucket``
    (address, token, route, status and minute) with a ``count``."""

    id = pw.AutoField()
    at = pw.DoubleField(index=True)
    action = pw.CharField(max_length=40)
    actor = pw.CharField()
    namespace = pw.CharField(null=True, index=True)
    target = pw.TextField(null=True)
    address = pw.CharField(null=True)
    detail = pw.TextField(null=True)
    count = pw.IntegerField(default=1)
    bucket = pw.CharField(null=True, unique=True)

    class Meta:
        table_name = "tf_audit"


ACCESS_MODELS: tuple[type[pw.Model], ...] = (Token, TokenSecret, AdminSession, Audit)


def _v4(db: pw.Database) -> None:
    # Access: tokens, their hashed secrets, admin sessions, the audit trail; approvals say
    # whether their approver's identity was verified (older ones were not) and through what.
    db.create_tables(ACCESS_MODELS, safe=True)
    db.execute_sql("ALTER TABLE tf_approval ADD COLUMN verified INTEGER NOT NULL DEFAULT 0")
    db.execute_sql("ALTER TABLE tf_approval ADD COLUMN via VARCHAR(255)")
    # A token's task list (namespace IN its namespaces, newest first) pages on an index.
    db.execute_sql("CREATE INDEX IF NOT EXISTS tf_task_namespace_newest ON tf_task (namespace, created_at, id)")


def _v5(db: pw.Database) -> None:
    # Rollouts: a share of a workflow's requests sent to one version, on every host alike.
    db.execute_sql(
        "CREATE TABLE IF NOT EXISTS tf_rollout (namespace VARCHAR(255) NOT NULL, name VARCHAR(255) NOT NULL, "
        "version VARCHAR(255) NOT NULL, percent DOUBLE PRECISION NOT NULL, set_at DOUBLE PRECISION NOT NULL, "
        "set_by VARCHAR(255) NOT NULL, PRIMARY KEY (namespace, name))"
    )


MIGRATIONS: dict[int, Migration] = {1: _v1, 2: _v2, 3: _v3, 4: _v4, 5: _v5}

_binding = threading.Lock()  # models are bound to one database at a time, while it migrates


class Schema(StoreBase):
    """The schema's version and its upgrade; a database's class may add its own steps."""

    # Steps of a migration that only this database takes, run after the common ones.
    extra_migrations: Mapping[int, Migration] = {}

    def schema_version(self) -> int | None:
        try:
            if not self.db.table_exists("tf_meta"):
                return None
            row = self.execute("SELECT value FROM tf_meta WHERE key = 'schema_version'").fetchone()
        except pw.OperationalError as exc:
            raise StoreError(f"cannot reach the database at {self.safe_url}: {exc}") from exc
        return int(row[0]) if row else None

    def upgrade(self) -> list[int]:
        """Apply missing migrations in one transaction; idempotent. Returns the versions applied."""
        applied = []
        with _binding, self.db.bind_ctx(MODELS + ACCESS_MODELS), self.db.atomic():
            current = self.schema_version() or 0
            for version in sorted(MIGRATIONS):
                if version > current:
                    MIGRATIONS[version](self.db)
                    extra = self.extra_migrations.get(version)
                    if extra is not None:
                        extra(self.db)
                    applied.append(version)
            if applied:
                Meta.insert(key="schema_version", value=str(max(applied))).on_conflict(
                    conflict_target=[Meta.key], update={Meta.value: str(max(applied))}
                ).execute()
        return applied

    def ensure_schema(self, auto: bool) -> None:
        """Migrate (``auto``) or refuse with the fix unless the schema is this teamflow's."""
        self.connect()
        current = self.schema_version()
        if current == SCHEMA_VERSION:
            return
        if current is not None and current > SCHEMA_VERSION:
            raise StoreError(
                f"database schema version {current} is newer than this teamflow ({SCHEMA_VERSION}): "
                "upgrade teamflow"
            )
        if auto:
            self.upgrade()
            return
        raise StoreError(
            f"database schema at {self.safe_url} is at version {current or 0}, this teamflow needs "
            f"{SCHEMA_VERSION}: run `teamflow db upgrade`"
        )
