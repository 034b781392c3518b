"""The store's plumbing: one connection per thread, short write transactions, statements.

Every statement teamflow runs is written once, for both databases, as a named constant in
the module of its concern: ``?`` placeholders, ``{now}`` for the database's clock in
epoch seconds, and ``{share}`` where PostgreSQL must lock the row it reads. Each
database's class compiles a statement once (``_compile``) and caches it. The subclasses
in ``sqlite.py`` and ``postgres.py`` hold every difference between the databases.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import urlparse

import peewee as pw

from teamflow.errors import StoreError
from teamflow.store.records import AuditEntry

# Every concern's audited action writes its row with ``StoreBase.audit_in``.
INSERT_AUDIT = (
    "INSERT INTO tf_audit (at, action, actor, namespace, target, address, detail, count) "
    "VALUES ({now}, ?, ?, ?, ?, ?, ?, 1)"
)


class DuplicateKey(Exception):
    """An insert hit a unique index; ``constraint`` names it (``records.IDEMPOTENCY_KEY``)."""

    def __init__(self, constraint: str, message: str) -> None:
        super().__init__(message)
        self.constraint = constraint


class Tx:
    """``Store.tx()``: a class, not a generator, as it wraps every commit on the hot path.

    The history rows a transaction records wait for its commit and go out in one insert
    (``Store._transition``); the database's class adds what its commit needs
    (``_before_commit``, ``_committed``).
    """

    __slots__ = ("broken", "conn", "cur", "store")

    def __init__(self, store: StoreBase) -> None:
        self.store = store

    def __enter__(self) -> None:
        store = self.store
        store._writer.acquire()
        local = store._local
        self.broken = False
        try:
            self.conn = store._borrow()
        except BaseException:
            store._writer.release()
            raise
        try:
            self.cur = cur = self.conn.cursor()
            cur.execute(store.begin_sql)
        except BaseException as exc:
            failed = self._failed(exc, begun=False)
            store._give_back(self.conn, broken=self.broken)
            store._writer.release()
            if failed is exc:
                raise
            raise failed from exc
        local.txcur = cur
        local.history = []
        local.notify = False

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        store = self.store
        local = store._local
        try:
            if exc is None:
                try:
                    if local.history:
                        store._insert_history(local.history)
                    store._before_commit(self.cur, local.notify)
                    self.cur.execute("COMMIT")
                except BaseException as commit_exc:
                    failed = self._failed(commit_exc, begun=True)
                    if failed is commit_exc:
                        raise
                    raise failed from commit_exc
                store._committed()
                return
            failed = self._failed(exc, begun=True)
            if failed is not exc:
                raise failed from exc
        finally:
            local.txcur = None
            local.history = None
            store._give_back(self.conn, broken=self.broken)
            store._writer.release()

    def _failed(self, exc: BaseException, *, begun: bool) -> BaseException:
        """Roll back; the exception to raise (a lost connection becomes StoreError)."""
        store = self.store
        if begun:
            try:
                self.cur.execute("ROLLBACK")
            except Exception:
                self.broken = True  # the connection is gone; the server rolled back
        if isinstance(exc, store._lost):
            self.broken = True
            return store._db_error(exc)
        return exc


class StoreBase(ABC):
    """A connection pool to one database, its transactions and its statement cache."""

    # What each database's class says about itself.
    dialect: ClassVar[str]
    # reads answer from a local file in microseconds, with no network round trip (SQLite)
    reads_locally: ClassVar[bool] = False
    now_sql: ClassVar[str]  # the database clock, epoch seconds
    share_sql: ClassVar[str]  # ``{share}``: lock a row read inside a write (PostgreSQL)
    begin_sql: ClassVar[str]
    single_writer: ClassVar[bool]  # one writer at a time: writers of a process share commits
    migrates_itself: ClassVar[bool]  # creates and upgrades its schema at start

    db: pw.Database
    _lost: tuple[type[BaseException], ...]  # driver errors: the connection or server is gone
    _integrity: tuple[type[BaseException], ...]  # driver errors: a unique index refused a row
    _writer: Any  # the lock every write transaction holds

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()
        self._statements: dict[str, str] = {}
        # Any error that means the database cannot be reached, from peewee or the driver.
        self._unreachable: tuple[type[BaseException], ...] = (pw.OperationalError, pw.InterfaceError, *self._lost)
        self.db = self._open()

    # -- what each database's class provides -------------------------------------------

    @abstractmethod
    def _open(self) -> pw.Database:
        """The peewee database: a connection per thread."""

    @abstractmethod
    def _compile(self, text: str) -> str:
        """A statement in this driver's placeholder style (``{now}`` already substituted)."""

    @abstractmethod
    def _duplicate(self, exc: BaseException) -> DuplicateKey:
        """The unique index a driver's integrity error names."""

    @abstractmethod
    def _insert_history(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Append transition rows ``(task, step, from, to, attempt, actor, detail)``."""

    def _before_commit(self, cur: Any, notify: bool) -> None:
        """Run inside the transaction, just before COMMIT (nothing, unless the database needs it)."""
        return

    def _committed(self) -> None:
        """Called after every commit, under the writer lock (nothing, unless the database needs it)."""
        return

    # -- statements -----------------------------------------------------------------------

    def sql(self, text: str) -> str:
        """``text`` compiled for this database, once."""
        compiled = self._statements.get(text)
        if compiled is None:
            compiled = self._compile(text.replace("{now}", self.now_sql).replace("{share}", self.share_sql))
            self._statements[text] = compiled
        return compiled

    def _borrow(self) -> Any:
        """A connection for one statement or one transaction (this thread's own, by default)."""
        try:
            return self.db.connection()
        except self._unreachable as exc:
            self.reset()
            raise StoreError(f"cannot reach the database at {self.safe_url}: {str(exc).strip()}") from exc

    def _give_back(self, conn: Any, *, broken: bool) -> None:
        """Done with ``conn``; ``broken``: the server went away under it."""
        if broken:
            self.reset()

    def execute(self, text: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement (the driver's cursor, no ORM) and return what reads its rows.

        Inside ``tx`` every statement reuses the transaction's cursor: read what a
        statement returned before running the next one.
        """
        txcur = self._local.__dict__.get("txcur")
        if txcur is None:
            return self._alone(text, params, many=False)
        try:
            txcur.execute(self._statements.get(text) or self.sql(text), params)
        except self._lost as exc:
            raise self._db_error(exc) from exc
        except self._integrity as exc:
            raise self._duplicate(exc) from exc
        return txcur

    def audit_in(self, entry: AuditEntry) -> None:
        """One audit row, in the transaction already open (the action's own): a rolled-back
        action leaves no row."""
        self.execute(
            INSERT_AUDIT, (entry.action, entry.actor, entry.namespace, entry.target, entry.address, entry.detail)
        )

    def executemany(self, text: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each row (in the current transaction, if any)."""
        txcur = self._local.__dict__.get("txcur")
        if txcur is None:
            self._alone(text, rows, many=True)
            return
        try:
            txcur.executemany(self._statements.get(text) or self.sql(text), rows)
        except self._lost as exc:
            raise self._db_error(exc) from exc
        except self._integrity as exc:
            raise self._duplicate(exc) from exc

    def _alone(self, text: str, params: Any, *, many: bool) -> Any:
        """A statement outside a transaction, on this thread's connection: its cursor."""
        conn = self._borrow()
        cur = conn.cursor()
        try:
            if many:
                cur.executemany(self._statements.get(text) or self.sql(text), params)
            else:
                cur.execute(self._statements.get(text) or self.sql(text), params)
        except self._lost as exc:
            self._give_back(conn, broken=True)
            raise self._db_error(exc) from exc
        except self._integrity as exc:
            raise self._duplicate(exc) from exc
        return cur

    def _db_error(self, exc: BaseException) -> StoreError:
        """The error a lost connection or a failed statement becomes, naming the database."""
        return StoreError(f"database error on {self.safe_url}: {str(exc).strip()}")

    @staticmethod
    def placeholders(n: int) -> str:
        return ",".join("?" * n)

    # -- connections and transactions ---------------------------------------------------

    def connect(self) -> None:
        try:
            self.db.connect(reuse_if_open=True)
        except self._unreachable as exc:
            raise StoreError(f"cannot reach the database at {self.safe_url}: {str(exc).strip()}") from exc

    def reset(self) -> None:
        """Drop this thread's connection (after the server went away); the next query reconnects."""
        try:
            self.db.close()
        except Exception:
            self.db._state.reset()  # type: ignore[attr-defined]

    def disconnect(self) -> None:
        """Close this process's connections (this thread's, where a thread holds one)."""
        self.reset()

    def tx(self) -> Tx:
        """One short write transaction; NOTIFY (where there is one) at most once, at commit."""
        return Tx(self)

    def notify(self) -> None:
        """Ask for one wake-up of the workers when the current transaction commits."""
        self._local.notify = True

    @property
    def safe_url(self) -> str:
        parsed = urlparse(self.url)
        if parsed.password:
            return self.url.replace(f":{parsed.password}@", ":***@")
        return self.url

    def close(self) -> None:
        if not self.db.is_closed():
            self.db.close()
