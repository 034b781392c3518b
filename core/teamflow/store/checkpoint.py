"""SQLite: copy the WAL back into the database on a background thread.

A writer that commits past ``wal_autocheckpoint`` pages runs the checkpoint itself, inside
its COMMIT: the step that happens to commit then pays for copying thousands of pages, and
the process's Python threads wait for it. Here a thread of its own, woken every
``EVERY`` commits, runs ``PRAGMA wal_checkpoint(PASSIVE)`` on its own connection. SQLite
does that work with the GIL released, so it overlaps with the engine on another core, and
a PASSIVE checkpoint never waits for readers or writers. The writers' own checkpoint
stays as the fallback: by the time the WAL reaches its threshold most frames are already
copied, so it is cheap, and it restarts the WAL.
"""

from __future__ import annotations

import sqlite3
import threading
import time

from loguru import logger

EVERY = 256  # commits between two background checkpoints (64 and 1,024 measured slower)
PAUSE_S = 0.005  # after a checkpoint, let commits gather before the next


class Checkpointer:
    def __init__(self, path: str) -> None:
        self.path = path
        self._commits = 0
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def committed(self) -> None:
        """Count a commit (called under the store's writer lock); every ``EVERY`` commits wake
        the checkpointer, whose thread starts on the first wake (short-lived commands never
        start it)."""
        self._commits += 1
        if self._commits % EVERY:
            return
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._stopped:
                    self._thread = threading.Thread(target=self._run, name="teamflow-checkpoint", daemon=True)
                    self._thread.start()
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._stopped = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            logger.warning("background WAL checkpoints of {} are off: {}", self.path, exc)
            return
        try:
            while True:
                self._wake.wait()
                if self._stopped:
                    return
                self._wake.clear()
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:  # the writers' own checkpoints still run
                    logger.debug("background WAL checkpoint of {} failed: {}", self.path, exc)
                time.sleep(PAUSE_S)
        finally:
            conn.close()
