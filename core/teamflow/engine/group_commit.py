"""Group commit: outcomes (and new tasks) that finish while another thread commits go out together.

The thread that ran a step commits its outcome, and the same transaction claims the
successors the step made ready, so a chain runs start to end on one thread. Outcomes
that arrive while a commit is in progress wait for it and go out in the next
transaction, so parallel completions share one commit; on SQLite (one writer) new tasks
of ``execute_sync`` join it too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import attrs
from loguru import logger

from teamflow.errors import StoreError
from teamflow.store import Store
from teamflow.store.records import Applied, Claimed, NewTask, Outcome, StepPlan

# Called with what a commit changed and the claims its committing threads kept for themselves.
Settle = Callable[[Applied, set[int] | None], None]


@attrs.define(slots=True, eq=False)
class _Slot:
    """Work waiting to be committed (outcomes, or a new task), and what its thread gets back.

    ``lock`` is held while no signal is pending for the slot's thread: a bare lock is the
    cheapest way to park a thread.
    """

    outcomes: list[Outcome]
    keep: str | None
    create: tuple[NewTask, Sequence[StepPlan]] | None = None
    claim: Claimed | None = None
    created: list[Claimed] = attrs.field(factory=list)
    error: StoreError | None = None
    done: bool = False
    lock: threading.Lock | None = None  # only a slot that has to wait gets one


class GroupCommit:
    """Leader/followers commits of step outcomes and new tasks, for one worker.

    ``settle`` dispatches a commit's changes (queues claims, wakes waiters). With
    ``ordered`` (event subscribers exist) a batch is settled before the next batch
    commits, so events keep their order; else the next batch commits while the last one
    is settled.
    """

    def __init__(self, store: Store, *, worker_id: str, lease_s: float, settle: Settle, ordered: bool) -> None:
        self._store = store
        self._worker_id = worker_id
        self._lease_s = lease_s
        self._settle = settle
        self._ordered = ordered
        self._lock = threading.Lock()  # guards the three below
        self._outbox: list[_Slot] = []
        self._leading = False
        self._stranded: list[Outcome] = []  # outcomes a failed commit left behind

    def commit(self, outcomes: list[Outcome], keep: str | None = None) -> Claimed | None:
        """Record outcomes; return a step of task ``keep`` this commit claimed, to run next."""
        return self._commit_slot(_Slot(outcomes, keep)).claim

    def create(self, task: NewTask, steps: Sequence[StepPlan]) -> list[Claimed]:
        """Store a new task and lease its roots to this worker, in the next group commit."""
        slot = self._commit_slot(_Slot([], None, (task, steps)))
        if slot.error is not None:
            raise slot.error
        return slot.created

    def held(self) -> list[int]:
        """Steps whose outcomes wait to be committed: their leases must be kept."""
        with self._lock:
            return [o.claim.step_id for s in self._outbox for o in s.outcomes] + [
                o.claim.step_id for o in self._stranded
            ]

    def retry_stranded(self) -> None:
        """Commit again the outcomes a failed commit left behind (is the database back?)."""
        with self._lock:
            stranded, self._stranded = self._stranded, []
        if stranded:
            self.commit(stranded)

    def pending_creations(self) -> int:
        """New tasks waiting for the next commit."""
        with self._lock:
            return sum(1 for s in self._outbox if s.create is not None)

    def _commit_slot(self, slot: _Slot) -> _Slot:
        """The thread that finds no commit in progress leads: it commits every slot waiting at
        that moment in one transaction. The others sleep on their slot's lock, which is
        released (under ``_lock``) when a leader has committed their slot, or to nudge the
        oldest waiter when a leader is done and work is left: a thread that arrives then
        leads at once, without waiting for a sleeping thread to wake, and a nudged waiter
        that finds a leader busy goes back to sleep.
        """
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

    def _lead(self, slots: list[_Slot]) -> None:
        """Commit ``slots`` as the leader, then settle what the commit changed.

        Unordered, the lead is handed on as soon as the transaction is over, so the next
        batch's statements run while this thread settles the last one (a claim is handed
        out only by settling, so no later batch can hold an outcome of it).
        """
        done: tuple[Applied, set[int]] | None = None
        try:
            done = self._commit_batch(slots)
            if done is not None and self._ordered:
                applied, keep = done
                done = None
                self._settle(applied, keep)
        finally:
            with self._lock:
                self._leading = False
                first = self._outbox[0].lock if self._outbox else None
                if first is not None and first.locked():
                    first.release()  # work is left: nudge the oldest waiter
        try:
            if done is not None:
                self._settle(*done)
        finally:  # whatever happened, no follower sleeps forever
            with self._lock:
                for s in slots:
                    s.done = True
                    if s.lock is not None and s.lock.locked():  # a follower still asleep (the leader's too)
                        s.lock.release()

    def _commit_batch(self, slots: list[_Slot]) -> tuple[Applied, set[int]] | None:
        """Apply the slots' outcomes and new tasks in one transaction; give each slot its share."""
        batch = [out for s in slots for out in s.outcomes]
        creates = [s.create for s in slots if s.create is not None]
        if not batch and not creates:
            return None
        try:
            applied = self._store.apply(batch, self._worker_id, self._lease_s, claim_successors=True, creates=creates)
        except Exception as exc:
            # Keep the outcomes: housekeeping commits them again once the database answers
            # (each update is fenced by lease owner and attempt, so a late commit is safe).
            # A new task is not kept: its caller gets the error.
            if not isinstance(exc, StoreError):
                logger.exception("runner {}: unexpected error committing a batch", self._worker_id)
                exc = StoreError(f"internal error while committing: {exc!r}")
            if batch:
                logger.error("runner {}: could not record {} outcome(s): {}; will retry", self._worker_id,
                             len(batch), exc)
                with self._lock:
                    self._stranded.extend(batch)
            for s in slots:
                if s.create is not None:
                    s.error = exc
            return None
        keep: set[int] = set()
        for s in slots:
            if s.create is not None:
                s.created = applied.created.get(s.create[0].id, [])
            elif s.keep is not None:
                s.claim = next((c for c in applied.claimed if c.task_id == s.keep and id(c) not in keep), None)
                if s.claim is not None:
                    keep.add(id(s.claim))
        return applied, keep
