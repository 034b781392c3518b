"""Shared by the peer apps: the enqueue window, written where the benchmark reads it."""

from __future__ import annotations

import json
import os


def write_window(path: str, first: float, last: float, tasks: int) -> None:
    """Record the enqueue window (``time.time()`` of the first call and of the last return).

    Written to a temporary name and renamed, so the benchmark never reads half a file; it
    polls for this file and only then starts polling the database.
    """
    partial = f"{path}.partial"
    with open(partial, "w") as out:
        json.dump({"first": first, "last": last, "tasks": tasks}, out)
    os.replace(partial, path)
