"""Group commit: outcomes (and new tasks) that finish while another thread commits go out together.

The thread that ran a step commits its outcome, and the same transaction claims the
successors the step made ready, so a chain runs start to end on one thread. Outcomes
that arrive while a commit is in progress wait for it and go out in the next
transaction, so parallel completions share one commit; on SQLite (one writer) new tasks
of ``execute_sync`` join it too. New tasks for the workers (``execute_async``) from
concurrent callers share commits the same way (``TaskCommit``), on both databases.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import attrs
from loguru import logger

from teamflow.errors import StoreError
from teamflow.store import DuplicateKey, Store
from teamflow.store.records import IDEMPOTENCY_KEY, Applied, Claimed, Claims, NewTask, Outcome, StepPlan, Take

# Called with what a commit changed and the claims its committing threads kept for themselves.
Settle = Callable[[Applied, set[int] | None], None]


@attrs.define(slots=True, eq=False)
class Slot:
    """One thread's work waiting for a commit, and what the thread gets back.

    ``lock`` is held while no signal is pending for the slot's thread: a bare lock is the
    cheapest way to park a thread.
    """

    done: bool = attrs.field(default=False, kw_only=True)
    lock: threading.Lock | None = attrs.field(default=None, kw_only=True)  # only a slot that has to wait


SlotT = TypeVar("SlotT", bound=Slot)


class Batcher(Generic[SlotT]):
    """Leader/followers: the thread that finds no commit in progress leads, and commits every
    slot waiting at that moment in one transaction.

    The others sleep on their slot's lock, which is released (under ``_lock``) when a leader
    has committed their slot, or to nudge the oldest waiter when a leader is done and work
    is left: a thread that arrives then leads at once, without waiting for a sleeping
    thread to wake, and a nudged waiter that finds a leader busy goes back to sleep.

    ``commit(slots)`` commits and may return more work, run after the lead is handed on,
    so the next batch's statements run meanwhile.
    """

    def __init__(self, commit: Callable[[list[SlotT]], Callable[[], None] | None]) -> None:
        self._commit = commit
        self._lock = threading.Lock()  # guards the two below
        self._outbox: list[SlotT] = []
        self._leading = False

    def run(self, slot: SlotT) -> SlotT:
        """Commit ``slot`` (with whatever else waits) and return it once committed."""
        with self._lock:
            lead = not self._leading and not self._outbox
            if lead:  # nobody is committing or waiting: commit at once, nothing to wait on
                self._leading = True
            else:
                slot.lock = threading.Lock()
                slot.lock.acquire()  # held: no signal pending
                self._outbox.append(slot)
        if lead:
            self._lead([slot])
            return slot
        while True:
            with self._lock:
                if slot.done:
                    return slot
                lead = not self._leading
                if lead:
                    self._leading = True
                    batch, self._outbox = self._outbox, []
            if not lead:
                assert slot.lock is not None
                slot.lock.acquire()  # until a leader signals: done, or nudged
                continue
            self._lead(batch)

    def waiting(self) -> list[SlotT]:
        """The slots queued for the next commit."""
        with self._lock:
            return list(self._outbox)

    def _lead(self, slots: list[SlotT]) -> None:
        after: Callable[[], None] | None = None
        try:
            after = self._commit(slots)
        finally:
            with self._lock:
                self._leading = False
                first = self._outbox[0].lock if self._outbox else None
                if first is not None and first.locked():
                    first.release()  # work is left: nudge the oldest waiter
        try:
            if after is not None:
                after()
        finally:  # whatever happened, no follower sleeps forever
            with self._lock:
                for s in slots:
                    s.done = True
                    if s.lock is not None and s.lock.locked():  # a follower still asleep (the leader's too)
                        s.lock.release()


@attrs.define(slots=True, eq=False)
class _Outcomes(Slot):
    """Outcomes (or a new task whose roots this worker leases) to commit."""

    outcomes: list[Outcome]
    keep: str | None
    create: tuple[NewTask, Sequence[StepPlan]] | None = None
    take: Take | None = None  # housekeeping's claim of more ready steps
    claim: Claimed | None = None
    created: list[Claimed] = attrs.field(factory=list)
    taken: Claims | None = None
    error: StoreError | None = None


class GroupCommit:
    """Step outcomes (and new tasks with their roots leased here) of one worker, committed together.

    ``settle`` dispatches a commit's changes (queues claims, wakes waiters). With
    ``ordered`` (event subscribers exist) a batch is settled before the next batch
    commits, so events keep their order; else the next batch commits while the last one
    is settled (a claim is handed out only by settling, so no later batch can hold an
    outcome of it).
    """

    def __init__(self, store: Store, *, worker_id: str, lease_s: float, settle: Settle, ordered: bool) -> None:
        self._store = store
        self._worker_id = worker_id
        self._lease_s = lease_s
        self._settle = settle
        self._ordered = ordered
        self._batcher: Batcher[_Outcomes] = Batcher(self._commit_batch)
        self._stranded_lock = threading.Lock()
        self._stranded: list[Outcome] = []  # outcomes a failed commit left behind
        self._unreleased: list[tuple[Claimed, str]] = []  # claims to give back once the database answers

    def commit(self, outcomes: list[Outcome], keep: str | None = None) -> Claimed | None:
        """Record outcomes; return a step of task ``keep`` this commit claimed, to run next."""
        return self._batcher.run(_Outcomes(outcomes, keep)).claim

    def create(self, task: NewTask, steps: Sequence[StepPlan]) -> list[Claimed]:
        """Store a new task and lease its roots to this worker, in the next group commit."""
        slot = self._batcher.run(_Outcomes([], None, (task, steps)))
        if slot.error is not None:
            raise slot.error
        return slot.created

    def take(self, limit: int, routes: Sequence[str]) -> Claims:
        """Lease up to ``limit`` ready steps of these routes. While a commit is in progress the
        claim waits for it and goes out with the next one's outcomes, in its statement: a
        worker fed by one caller claimed about once per new task, beside a commit of
        completions every two, and each claim cost a commit of its own."""
        want = Take(limit, tuple(routes))
        slot = self._batcher.run(_Outcomes([], None, take=want))
        if slot.taken is not None:
            return slot.taken
        # No outcome went with it, or the batch it joined failed (retried later): alone.
        return self._store.claim(self._worker_id, self._lease_s, limit, routes=routes)

    def held(self) -> list[int]:
        """Steps whose outcomes (or release) wait to be committed: their leases must be kept."""
        with self._stranded_lock:
            stranded = [o.claim.step_id for o in self._stranded] + [c.step_id for c, _ in self._unreleased]
        return [o.claim.step_id for s in self._batcher.waiting() for o in s.outcomes] + stranded

    def release_later(self, claim: Claimed, reason: str) -> None:
        """Give ``claim`` back without counting its attempt, when the database answers again."""
        with self._stranded_lock:
            self._unreleased.append((claim, reason))

    def retry_stranded(self) -> None:
        """Commit again the outcomes a failed commit left behind, and the claims to give back
        (is the database back?); what fails again waits for the next try."""
        with self._stranded_lock:
            stranded, self._stranded = self._stranded, []
            unreleased, self._unreleased = self._unreleased, []
        if stranded:
            self.commit(stranded)
        for claim, reason in unreleased:
            try:
                self._store.release([claim], self._worker_id, 0.0, reason)
            except StoreError:
                with self._stranded_lock:
                    self._unreleased.append((claim, reason))

    def pending_creations(self) -> int:
        """New tasks waiting for the next commit."""
        return sum(1 for s in self._batcher.waiting() if s.create is not None)

    def _commit_batch(self, slots: list[_Outcomes]) -> Callable[[], None] | None:
        """Apply the slots' outcomes and new tasks in one transaction; give each slot its share."""
        batch = [out for s in slots for out in s.outcomes]
        creates = [s.create for s in slots if s.create is not None]
        taker = next((s for s in slots if s.take is not None), None)  # one housekeeping thread asks
        if not batch and not creates:
            return None  # nothing to commit with (a claim alone goes out from ``take``)
        try:
            applied = self._store.apply(
                batch, self._worker_id, self._lease_s, claim_successors=True, creates=creates,
                take=taker.take if taker is not None else None,
            )  # fmt: skip
        except Exception as exc:
            # Keep the outcomes: housekeeping commits them again once the database answers
            # (each update is fenced by lease owner and attempt, so a late commit is safe).
            # A new task is not kept: its caller gets the error.
            error = _commit_error(exc, f"runner {self._worker_id}")
            if batch:
                logger.error("runner {}: could not record {} outcome(s): {}; will retry", self._worker_id,
                             len(batch), error)
                with self._stranded_lock:
                    self._stranded.extend(batch)
            for s in slots:
                if s.create is not None:
                    s.error = error
            return None
        if taker is not None:
            taker.taken = applied.taken
        keep: set[int] = set()
        for s in slots:
            if s.create is not None:
                s.created = applied.created.get(s.create[0].id, [])
            elif s.keep is not None:
                s.claim = next((c for c in applied.claimed if c.task_id == s.keep and id(c) not in keep), None)
                if s.claim is not None:
                    keep.add(id(s.claim))
        if self._ordered:
            self._settle(applied, keep)
            return None
        return lambda: self._settle(applied, keep)


@attrs.define(slots=True, eq=False)
class _NewTask(Slot):
    task: NewTask
    steps: Sequence[StepPlan]
    stored: bool = False  # False after the commit: an idempotency key already named a task
    error: StoreError | None = None


# Called on the committer thread once a submitted task's commit is over: the commit's error
# (None: committed) and whether the task was stored (False: its idempotency key was taken).
Committed = Callable[[StoreError | None, bool], None]


class TaskCommit:
    """New tasks for the workers (none leased), from any number of callers, stored together.

    Concurrent ``execute_async`` callers (threads) share one commit, leading in turn
    (``create``). Callers that must not block (an event loop's requests) ``submit``
    instead: a committer thread stores everything submitted meanwhile in one commit and
    calls each task's ``Committed`` after it, so a request holds no thread while it waits.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._batcher: Batcher[_NewTask] = Batcher(self._commit_batch)
        self._submitted: list[tuple[_NewTask, Committed]] = []
        self._wake = threading.Condition(threading.Lock())
        self._committer: threading.Thread | None = None
        self._closing = False

    def submit(self, task: NewTask, steps: Sequence[StepPlan], committed: Committed) -> None:
        """Store ``task`` in the committer thread's next commit; ``committed`` is called on that
        thread once it is over. Refused (StoreError) once ``close`` began."""
        with self._wake:
            if self._closing:
                raise StoreError("the host is closing: no new task is stored")
            self._submitted.append((_NewTask(task, steps), committed))
            if self._committer is None:
                self._committer = threading.Thread(target=self._commit_submitted, name="teamflow-task-commit",
                                                   daemon=True)
                self._committer.start()
            self._wake.notify()

    def close(self, timeout: float = 10.0) -> None:
        """Commit what was submitted, then stop the committer thread."""
        with self._wake:
            self._closing = True
            committer = self._committer
            self._wake.notify()
        if committer is not None:
            committer.join(timeout)

    def _commit_submitted(self) -> None:
        while True:
            with self._wake:
                while not self._submitted and not self._closing:
                    self._wake.wait()
                batch, self._submitted = self._submitted, []
                if not batch:  # closing, and nothing is left
                    return
            self._commit_batch([slot for slot, _ in batch])
            for slot, committed in batch:
                try:
                    committed(slot.error, slot.stored)
                except Exception:  # one caller's answer must not stop the others'
                    logger.exception("host: answering a stored task failed")

    def create(self, task: NewTask, steps: Sequence[StepPlan]) -> list[Claimed]:
        """Store ``task`` in the next commit (``TaskSink``: nothing is leased, so no claims).

        Raises DuplicateKey when its idempotency key already named another task.
        """
        slot = self._batcher.run(_NewTask(task, steps))
        if slot.error is not None:
            raise slot.error
        if not slot.stored:
            raise DuplicateKey(IDEMPOTENCY_KEY, f"idempotency key {task.idempotency_key!r} is taken")
        return []

    def _commit_batch(self, slots: list[_NewTask]) -> None:
        try:
            stored = self._store.create_tasks([(s.task, s.steps) for s in slots])
        except Exception as exc:
            error = _commit_error(exc, "host")
            for s in slots:
                s.error = error
            return
        for s in slots:
            s.stored = s.task.id in stored


def _commit_error(exc: Exception, who: str) -> StoreError:
    """The error a caller of a failed commit gets (an unexpected one is logged with its trace)."""
    if isinstance(exc, StoreError):
        return exc
    logger.exception("{}: unexpected error committing a batch", who)
    return StoreError(f"internal error while committing: {exc!r}")
