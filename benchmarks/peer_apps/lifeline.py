"""Shared by the peer apps: never outlive the benchmark that started them."""

from __future__ import annotations

import os
import threading
import time


def exit_with_parent() -> None:
    """Exit as soon as the process that started this one is gone (no orphaned workers)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
