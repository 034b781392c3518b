"""The store: every SQL statement teamflow runs, and each database's differences in one place.

``open_store(url)`` gives a ``Store`` for the URL's database. The modules, by concern:

- ``records``: the typed records crossing the store's boundary
- ``base``: connections, transactions, statements, ``DuplicateKey``
- ``schema``: the tables and their migrations
- ``catalog``: namespace owners, published versions, fingerprints, approvals
- ``tasks``: creating, reading and listing tasks; their history
- ``scheduling``: claiming, completing, requeueing, reaping; cancel, retry, resolve
- ``stats``: counts and durations
- ``store``: the concerns put together, ``Store``
- ``sqlite`` / ``postgres``: one class per database (with SQLite's WAL checkpointer in
  ``checkpoint``; PostgreSQL's batched, PREPAREd statements and LISTEN)
"""

from __future__ import annotations

from urllib.parse import urlparse

from teamflow.errors import StoreError
from teamflow.store.base import DuplicateKey
from teamflow.store.store import Store


def open_store(url: str, *, synchronous: str = "FULL", wal_autocheckpoint: int = 10_000) -> Store:
    """A store on the database the URL names (``sqlite:///path.db`` or ``postgresql://...``)."""
    scheme = urlparse(url).scheme
    if scheme.startswith("sqlite"):
        from teamflow.store.sqlite import SqliteStore

        return SqliteStore(url, synchronous=synchronous, wal_autocheckpoint=wal_autocheckpoint)
    if scheme in ("postgres", "postgresql", "postgresql+psycopg2"):
        from teamflow.store.postgres import PostgresStore

        return PostgresStore(url)
    raise StoreError(f"unsupported database URL {url!r}: use sqlite:///path.db or postgresql://user@host/db")


__all__ = ["DuplicateKey", "Store", "open_store"]
