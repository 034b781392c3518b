"""Rollout buckets: which requests a rollout of N percent sends to its version.

Pure, and the same on every host: the bucket is SHA-256 of ``namespace/name`` and the
request's key (its idempotency key; else the new task's id; for a child, its parent's id,
step and call ordinal) modulo 10,000; a rollout of N percent takes the buckets below N x 100.
"""

from __future__ import annotations

import hashlib

BUCKETS = 10_000


def bucket(namespace: str, name: str, key: str) -> int:
    digest = hashlib.sha256(f"{namespace}/{name}\x00{key}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def chosen(percent: float, namespace: str, name: str, key: str) -> bool:
    """Whether a request with ``key`` goes to a version rolled out to ``percent`` of them."""
    return bucket(namespace, name, key) < round(percent * BUCKETS / 100)
