"""The store's tables (peewee models) and their migrations.

Timestamps are epoch seconds taken from the database's clock; contexts and results are
JSON text so both SQLite and PostgreSQL store them the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import peewee as pw

SCHEMA_VERSION = 2

proxy = pw.DatabaseProxy()


class _Base(pw.Model):
    class Meta:
        database = proxy
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
    if isinstance(db, pw.SqliteDatabase):
        # SQLite: the history is clustered by task (one B-tree, not a table and an index),
        # so recording a transition writes one page. ``id`` orders a task's rows (the store
        # writes nanosecond timestamps, unique per process; v1's ids are smaller).
        db.execute_sql(
            "CREATE TABLE tf_transition_v2 (task_id VARCHAR(36) NOT NULL, id INTEGER NOT NULL, "
            "step VARCHAR(255), from_status VARCHAR(255), to_status VARCHAR(255) NOT NULL, attempt INTEGER, "
            "at REAL NOT NULL, actor VARCHAR(255), detail TEXT, PRIMARY KEY (task_id, id)) WITHOUT ROWID"
        )
        db.execute_sql(
            "INSERT INTO tf_transition_v2 (task_id, id, step, from_status, to_status, attempt, at, actor, detail) "
            "SELECT task_id, id, step, from_status, to_status, attempt, at, actor, detail FROM tf_transition"
        )
        db.execute_sql("DROP TABLE tf_transition")
        db.execute_sql("ALTER TABLE tf_transition_v2 RENAME TO tf_transition")
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


MIGRATIONS: dict[int, Callable[[pw.Database], None]] = {1: _v1, 2: _v2}
