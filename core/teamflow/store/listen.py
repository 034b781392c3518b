"""PostgreSQL LISTEN: wake a worker when work becomes ready.

One dedicated autocommit connection per worker (a pooled connection would miss
notifications); after a reconnect it LISTENs again and wakes the worker once, so a
notification lost while disconnected costs one poll, not a stuck task.
"""

from __future__ import annotations

import contextlib
import select
import threading
import time
from collections.abc import Callable
from typing import Any

from loguru import logger

from teamflow.store.store import CHANNEL, Store


def listener(store: Store) -> Callable[[Callable[[], None]], Any]:
    """Return a starter: ``start(wake)`` runs the LISTEN loop in a daemon thread."""

    def start(wake: Callable[[], None]) -> threading.Thread:
        thread = threading.Thread(target=_listen, args=(store, wake), name="teamflow-listen", daemon=True)
        thread.start()
        return thread

    return start


def _listen(store: Store, wake: Callable[[], None]) -> None:
    import psycopg2
    import psycopg2.extensions

    delay = 0.5
    while True:
        conn = None
        try:
            conn = psycopg2.connect(**store.connect_params())
            conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
            with conn.cursor() as cur:
                cur.execute(f"LISTEN {CHANNEL}")
            delay = 0.5
            wake()  # anything that became ready while we were not listening
            while True:
                if select.select([conn], [], [], 5.0) == ([], [], []):
                    continue
                conn.poll()
                if conn.notifies:
                    conn.notifies.clear()
                    wake()
        except Exception as exc:
            logger.warning("LISTEN connection lost ({}); reconnecting in {:.1f}s", str(exc).strip(), delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
