"""The store: peewee models and every SQL statement (``store.py`` owns the SQL)."""

from teamflow.store.store import Applied, Claimed, Outcome, Store, TaskRow

__all__ = ["Applied", "Claimed", "Outcome", "Store", "TaskRow"]
