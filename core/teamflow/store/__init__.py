"""The store: peewee models and every SQL statement (``store.py`` owns the SQL)."""

from teamflow.store.store import DECODE, Applied, Claimed, Outcome, StepRow, Store, TaskRow

__all__ = ["DECODE", "Applied", "Claimed", "Outcome", "StepRow", "Store", "TaskRow"]
