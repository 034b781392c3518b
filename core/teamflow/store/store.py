"""What every database's store does: the concerns put together.

``Store`` is the type the engine and the host hold; ``SqliteStore`` and ``PostgresStore``
(``sqlite.py``, ``postgres.py``) say how each database does it. ``open_store`` (in the
package) picks one from the URL.
"""

from __future__ import annotations

from collections.abc import Callable

from teamflow.errors import StoreError
from teamflow.store.access import AccessStore
from teamflow.store.catalog import Catalog
from teamflow.store.rollouts import Rollouts
from teamflow.store.scheduling import Scheduling
from teamflow.store.schema import Schema
from teamflow.store.stats import Stats
from teamflow.store.workers import Workers

# Called when another connection may have made work ready; ``urgent``: every worker should
# claim (False: a NOTIFY that only a group's leader answers at once).
Wake = Callable[[bool], None]


class Store(Schema, Catalog, Scheduling, Stats, Workers, AccessStore, Rollouts):
    """A connection pool to one database and every statement teamflow runs on it."""

    def writable(self) -> str | None:
        """Why this database refuses writes now (a read-only file, a replica...), or None.

        Commits a write that changes nothing: a database can take a write it then cannot
        commit (SQLite writes a transaction's pages only at its commit).
        """
        try:
            with self.tx():
                self.execute("UPDATE tf_meta SET value = value WHERE key = 'schema_version'")
        except StoreError as exc:
            return exc.detail
        except Exception as exc:  # the driver's own refusal of the write
            return f"{type(exc).__name__}: {exc}"
        return None

    def watch(
        self,
        wake: Wake,
        hungry: Callable[[], bool] | None = None,
        listening: Callable[[], bool] | None = None,
        worker_id: str | None = None,
    ) -> Callable[[], None] | None:
        """Call ``wake`` (from a thread of its own) when another process makes work ready;
        returns what stops watching, or None when this database offers no such signal.
        ``hungry`` says whether the watcher's worker would take more work now (a watcher that
        polls can rest while it would not). ``listening`` says whether it acts on new work
        at all (its group's leader does); while it does not, a database that can tell the
        two apart brings it only the wake-ups meant for every worker (``overflow``), and of
        those only the ones that ask ``worker_id`` (or every worker)."""
        return None
