"""PostgreSQL's hot path: one statement (one round trip, one transaction) per batch.

Data-modifying CTEs let a batch of completions, the successors they make ready (claimed
by the same worker), the task counters, the wake-up of parents whose child finished, the
transition history and the NOTIFY go out as a single statement; likewise a claim and the
task-started bookkeeping. SQLite has no data-modifying CTEs: ``store.py`` runs the same
logic statement by statement there, where statements are in-process calls.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Mapping
from typing import Any

NOW = "extract(epoch from clock_timestamp())"

COMPLETE = f"""
WITH v AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(attempts)s::int[], %(results)s::text[]) AS v(id, attempt, result)
),
sx AS (SELECT * FROM unnest(%(succ_ids)s::bigint[], %(succ_names)s::text[]) AS sx(step_id, name)),
done AS (
    UPDATE tf_step s SET status = 'completed', result = v.result, error = NULL, error_type = NULL,
        lease_owner = NULL, lease_expires_at = NULL, finished_at = {NOW}
    FROM v
    WHERE s.id = v.id AND s.lease_owner = %(owner)s AND s.attempts = v.attempt AND s.status = 'in_progress'
    RETURNING s.id, s.task_id, s.name, s.attempts
),
rel AS (
    SELECT d.task_id, sx.name, count(*)::int AS n FROM done d JOIN sx ON sx.step_id = d.id
    GROUP BY d.task_id, sx.name
),
succ AS (
    UPDATE tf_step s SET deps_left = s.deps_left - rel.n,
        ready_at = CASE WHEN s.deps_left = rel.n THEN {NOW} ELSE s.ready_at END,
        status = CASE WHEN s.deps_left = rel.n AND %(claim)s THEN 'in_progress' ELSE s.status END,
        attempts = CASE WHEN s.deps_left = rel.n AND %(claim)s THEN s.attempts + 1 ELSE s.attempts END,
        lease_owner = CASE WHEN s.deps_left = rel.n AND %(claim)s THEN %(owner)s ELSE s.lease_owner END,
        lease_expires_at = CASE WHEN s.deps_left = rel.n AND %(claim)s THEN {NOW} + %(lease)s
                           ELSE s.lease_expires_at END,
        started_at = CASE WHEN s.deps_left = rel.n AND %(claim)s THEN {NOW} ELSE s.started_at END
    FROM rel
    WHERE s.task_id = rel.task_id AND s.name = rel.name AND s.status = 'pending'
    RETURNING s.id, s.task_id, s.name, s.attempts, s.status, s.deps_left
),
cnt AS (SELECT task_id, count(*)::int AS n FROM done GROUP BY task_id),
tk AS (
    UPDATE tf_task t SET steps_left = t.steps_left - cnt.n, updated_at = {NOW},
        status = CASE WHEN t.steps_left = cnt.n AND t.status = 'in_progress' THEN 'completed' ELSE t.status END,
        finished_at = CASE WHEN t.steps_left = cnt.n AND t.status = 'in_progress' THEN {NOW}
                      ELSE t.finished_at END
    FROM cnt WHERE t.id = cnt.task_id
    RETURNING t.id, t.status, t.steps_left, t.parent_id, t.parent_step
),
finished AS (SELECT * FROM tk WHERE steps_left = 0 AND status = 'completed'),
wake AS (
    UPDATE tf_step p SET status = 'pending', next_attempt_at = {NOW}, ready_at = {NOW}
    FROM finished f
    WHERE f.parent_id IS NOT NULL AND p.task_id = f.parent_id AND p.name = f.parent_step AND p.status = 'waiting'
    RETURNING p.task_id, p.name
),
history AS (
    INSERT INTO tf_transition (task_id, step, from_status, to_status, attempt, actor, detail, at)
    SELECT task_id, name, 'in_progress', 'completed', attempts, %(owner)s, NULL, {NOW} FROM done
    UNION ALL
    SELECT task_id, name, 'pending', 'in_progress', attempts, %(owner)s, NULL, {NOW}
    FROM succ WHERE status = 'in_progress'
    UNION ALL
    SELECT id, NULL, 'in_progress', 'completed', NULL, NULL, NULL, {NOW} FROM finished
    UNION ALL
    SELECT task_id, name, 'waiting', 'pending', NULL, NULL, 'child finished', {NOW} FROM wake
),
released AS (SELECT 1 FROM succ WHERE status = 'pending' AND deps_left = 0 UNION ALL SELECT 1 FROM wake),
notified AS (SELECT pg_notify('teamflow', '') FROM (SELECT 1 FROM released LIMIT 1) r)
SELECT 'done', id, task_id, name, attempts FROM done
UNION ALL SELECT 'claim', id, task_id, name, attempts FROM succ WHERE status = 'in_progress'
UNION ALL SELECT 'finished', NULL::bigint, id, NULL, NULL::int FROM finished
UNION ALL SELECT 'woken', NULL::bigint, task_id, name, NULL::int FROM wake
UNION ALL SELECT 'notify', NULL::bigint, NULL, NULL, NULL::int FROM notified
"""

CLAIM = f"""
WITH c AS (
    UPDATE tf_step s SET status = 'in_progress', attempts = s.attempts + 1, lease_owner = %(owner)s,
        lease_expires_at = {NOW} + %(lease)s, started_at = {NOW}
    WHERE s.id IN (
        SELECT id FROM tf_step
        WHERE status = 'pending' AND deps_left = 0 AND next_attempt_at <= {NOW} {{where}}
        ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
    )
    RETURNING s.id, s.task_id, s.name, s.attempts
),
started AS (
    UPDATE tf_task t SET status = 'in_progress', updated_at = {NOW}
    WHERE t.id IN (SELECT task_id FROM c) AND t.status = 'pending'
    RETURNING t.id
),
history AS (
    INSERT INTO tf_transition (task_id, step, from_status, to_status, attempt, actor, detail, at)
    SELECT task_id, name, 'pending', 'in_progress', attempts, %(owner)s, NULL, {NOW} FROM c
    UNION ALL
    SELECT id, NULL, 'pending', 'in_progress', NULL, NULL, NULL, {NOW} FROM started
)
SELECT 'claim', c.id, c.task_id, c.name, c.attempts, t.namespace, t.name, t.version, t.fingerprint, t.context,
       t.parent_id, t.parent_step
FROM c JOIN tf_task t ON t.id = c.task_id
UNION ALL SELECT 'started', NULL::bigint, id, NULL, NULL::int, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM started
"""


_PARAM = re.compile(r"%\((\w+)\)s")


class Prepared:
    """A statement PREPAREd once per connection, so PostgreSQL plans it once, not per call."""

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.order: list[str] = []
        for param in _PARAM.findall(text):
            if param not in self.order:
                self.order.append(param)
        self.text = _PARAM.sub(lambda m: f"${self.order.index(m.group(1)) + 1}", text)
        self.call = f"EXECUTE {name} ({', '.join(['%s'] * len(self.order))})"
        self._ready: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()

    def execute(self, conn: Any, cur: Any, params: Mapping[str, Any]) -> None:
        if conn not in self._ready:
            cur.execute(f"PREPARE {self.name} AS {self.text}")
            self._ready[conn] = True
        cur.execute(self.call, [params[name] for name in self.order])


COMPLETE_STMT = Prepared("tf_complete", COMPLETE)
CLAIM_STMTS = {
    (routes, tasks): Prepared(
        f"tf_claim_{int(routes)}{int(tasks)}",
        CLAIM.replace(
            "{where}",
            (" AND route = ANY(%(routes)s)" if routes else "") + (" AND task_id = ANY(%(task_ids)s)" if tasks else ""),
        ),
    )
    for routes in (False, True)
    for tasks in (False, True)
}
