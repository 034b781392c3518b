"""What every database's store does: the concerns put together.

``Store`` is the type the engine and the host hold; ``SqliteStore`` and ``PostgresStore``
(``sqlite.py``, ``postgres.py``) say how each database does it. ``open_store`` (in the
package) picks one from the URL.
"""

from __future__ import annotations

from collections.abc import Callable

from teamflow.store.catalog import Catalog
from teamflow.store.scheduling import Scheduling
from teamflow.store.schema import Schema
from teamflow.store.stats import Stats

Wake = Callable[[], None]


class Store(Schema, Catalog, Scheduling, Stats):
    """A connection pool to one database and every statement teamflow runs on it."""

    def watch(self, wake: Wake) -> Callable[[], None] | None:
        """Call ``wake`` (from a thread of its own) when another process makes work ready;
        returns what stops watching, or None when this database offers no such signal."""
        return None
