"""What every database's store does: the concerns put together.

``Store`` is the type the engine and the host hold; ``SqliteStore`` and ``PostgresStore``
(``sqlite.py``, ``postgres.py``) say how each database does it. ``open_store`` (in the
package) picks one from the URL.
"""

from __future__ import annotations

from collections.abc import Callable

from teamflow.errors import StoreError
from teamflow.store.catalog import Catalog
from teamflow.store.scheduling import Scheduling
from teamflow.store.schema import Schema
from teamflow.store.stats import Stats

Wake = Callable[[], None]


class _Probe(Exception):
    """Rolls back the write ``writable`` tries."""


class Store(Schema, Catalog, Scheduling, Stats):
    """A connection pool to one database and every statement teamflow runs on it."""

    def writable(self) -> str | None:
        """Why this database refuses writes now (read-only file, replica...), or None.

        Tries a write and rolls it back: it costs no commit.
        """
        try:
            with self.tx():
                self.execute("UPDATE tf_meta SET value = value WHERE key = 'schema_version'")
                raise _Probe
        except _Probe:
            return None
        except StoreError as exc:
            return exc.detail
        except Exception as exc:  # the driver's own refusal of the write
            return f"{type(exc).__name__}: {exc}"

    def watch(self, wake: Wake) -> Callable[[], None] | None:
        """Call ``wake`` (from a thread of its own) when another process makes work ready;
        returns what stops watching, or None when this database offers no such signal."""
        return None
