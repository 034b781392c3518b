"""Housekeeping: everything a runner does off the hot path, on a thread of its own.

Retries whose backoff expired and tasks this process watches (timers); claiming ready
work in worker mode (woken by the database's signal, a new task, a step thread that ran
out of work, or a slow poll); renewing the leases of steps in hand; failing steps past
their ``timeout_s``; and taking back steps whose worker lost its lease.
"""

from __future__ import annotations

import hashlib
import heapq
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from loguru import logger

from teamflow.engine.events import Events
from teamflow.engine.execute import StepExecutor
from teamflow.engine.group_commit import GroupCommit
from teamflow.engine.work import Work
from teamflow.errors import StoreError
from teamflow.store import Store
from teamflow.store.records import Applied, Claims

DUE_CHECK_S = 0.1  # how often a worker woken for nothing asks when the next retry is due
OVERFLOW_S = 0.005  # how often a leader with more work than it can take wakes the others
# How long a leader asks the same helpers before it asks one more (the next longest-running
# worker of its group; past the last of them, every worker).
ESCALATE_S = 0.05
# Workers started together may each see only itself at its first heartbeat (another's
# registration not yet committed) and each lead; the second heartbeat, this soon after the
# first, settles which one does (two leaders split the steps over twice the commits).
SETTLE_S = 1.0


class Housekeeping:
    def __init__(
        self,
        store: Store,
        work: Work,
        commit: GroupCommit,
        executor: StepExecutor,
        events: Events,
        *,
        worker_id: str,
        lease_s: float,
        poll_interval_s: float,
        concurrency: int,
        routes: Sequence[str],
    ) -> None:
        self._store = store
        self._work = work
        self._commit = commit
        self._executor = executor
        self._events = events
        self._worker_id = worker_id
        self.lease_s = lease_s
        self.poll_interval_s = poll_interval_s
        self._concurrency = concurrency
        self._routes = list(routes)  # the versions (with fingerprints) this runner can run
        self._next_due_check = 0.0
        self._group = hashlib.sha1(",".join(sorted(self._routes)).encode()).hexdigest()[:20]
        self._leading = True  # until the first heartbeat says otherwise
        self._helpers: list[str] = []  # the group's other workers, the longest-running first
        self._asked = 0  # how many of them the leader's overflow asks (past them all: everyone)
        self._overflow_at = self._escalate_at = 0.0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="teamflow-housekeeping", daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        work = self._work
        next_renew = next_reap = next_poll = 0.0
        while not work.stopping:
            try:
                now = time.monotonic()
                self._check_timeouts(now)
                self._due_timers(now)
                if work.worker_mode:
                    next_poll = self._poll(now, next_poll)
                elif work.tracked and now >= next_poll:
                    # A tracked task may have a step woken by a child another worker finished.
                    next_poll = now + self.poll_interval_s
                    with work.mutex:
                        tracked = list(work.tracked)
                    for task_id in tracked:
                        work.add_timer(0.0, task_id)
                if now >= next_renew:
                    next_renew = now + (min(SETTLE_S, self.lease_s / 3) if next_renew == 0.0 else self.lease_s / 3)
                    if work.worker_mode:
                        self._heartbeat()
                    self._store.renew(self._worker_id, self.lease_s, work.held() + self._commit.held())
                    self._commit.retry_stranded()
                if work.worker_mode and now >= next_reap:
                    next_reap = now + max(0.5, self.lease_s / 2)
                    self._reap()
                with work.house:
                    if not (work.kick and work.worker_mode) and not work.stopping:
                        work.house.wait(self._sleep_for(now, next_renew, next_poll))
            except StoreError as exc:
                logger.error("runner {}: {}; retrying in 1 s", self._worker_id, exc)
                time.sleep(1.0)
            except Exception:
                logger.exception("runner {} housekeeping error; continuing", self._worker_id)
                time.sleep(0.2)

    def _sleep_for(self, now: float, next_renew: float, next_poll: float) -> float:
        work = self._work
        until = [next_renew - now, 5.0]
        if work.timers:
            until.append(work.timers[0][0] - now)
        if work.worker_mode or work.tracked:
            until.append(next_poll - now)
        with work.mutex:
            until.extend(r.deadline - now for r in work.running.values() if r.deadline is not None and not r.abandoned)
        return max(0.001, min(until))

    def _due_timers(self, now: float) -> None:
        work = self._work
        due: set[str] = set()
        with work.house:
            while work.timers and work.timers[0][0] <= now:
                due.add(heapq.heappop(work.timers)[1])
        if due:
            self._take(
                self._store.claim(self._worker_id, self.lease_s, max(work.free(), 1) * 2, task_ids=sorted(due))
            )

    def _poll(self, now: float, next_poll: float) -> float:
        work = self._work
        with work.house:
            kick, work.kick = work.kick, False
            urgent, work.urgent = work.urgent, False
        polling = now >= next_poll
        if not kick and not polling:
            return next_poll
        if not polling and not self.heeds(urgent):
            return next_poll
        next_poll = now + self.poll_interval_s
        # Claim what idle threads can start now, and, while there is a backlog, one more
        # per thread. A busy worker claims nothing when woken: the new work is left to an
        # idle worker (every worker hears every NOTIFY), and this worker's first thread to
        # run out of work asks again (``backlog`` stays set).
        want = work.free() + (self._concurrency if work.backlog else 0)
        if want <= 0 or (not polling and not work.hungry()):
            # Woken while enough is queued (a NOTIFY, a commit the watcher saw, this loop's
            # own kick after a full claim): claiming a few more would cost a commit for
            # little; the step threads ask again when the queue runs low.
            work.backlog = True
            self._overflow(now, kick)
            return next_poll
        claims = self._commit.take(want, self._routes)  # with the next commit's outcomes, if one is under way
        self._take(claims)
        work.backlog = len(claims.claimed) == want  # a full claim: there may be more ready work
        if work.backlog:
            with work.house:
                work.kick = work.urgent = True
            self._overflow(now, kick)
            return next_poll
        self._asked, self._escalate_at = 0, 0.0  # it took every ready step: help starts from the first again
        if now >= self._next_due_check:
            # When does a retry (of any worker) become due? Asked at most every DUE_CHECK_S.
            self._next_due_check = now + DUE_CHECK_S
            due = self._store.next_due(self._routes)
            if due is not None and due < self.poll_interval_s:
                next_poll = now + due
        return next_poll

    def heeds(self, urgent: bool) -> bool:
        """Would a wake-up make ``_poll`` act? A wake-up for new work (not ``urgent``) reaches
        a worker while it ``listens`` (on SQLite: any commit); the leader of the group takes
        the new work, so that one worker's steps share commits instead of many workers'
        claims finding nothing, and wakes the others when it cannot take it all
        (``overflow``). A worker with a backlog and room in its queue takes more too. Waking
        the others' housekeeping for nothing cost CPU that the callers creating the tasks
        needed (4 workers were slower than 2)."""
        work = self._work
        return urgent or self._leading or (work.backlog and work.hungry())

    def listens(self) -> bool:
        """Does this worker act on a wake-up meant for one worker of its group (see
        ``heeds``)? While it does not, PostgreSQL does not send it one (``Store.watch``)."""
        return self._leading or self._work.backlog

    def _overflow(self, now: float, woken: bool) -> None:
        """A leader woken for more than it can take asks for help (at most every OVERFLOW_S):
        the next longest-running worker of its group first, one more every ESCALATE_S while
        it stays full, then every worker, until a claim of its own takes all that is ready.
        (Waking all its workers at once spread the steps over more commits than the load
        needed: with 8 callers, 4 workers were 0.60-0.88x as fast as 2.)"""
        if woken and self._leading and now >= self._overflow_at:
            self._overflow_at = now + OVERFLOW_S
            if now >= self._escalate_at:
                self._asked += 1
                self._escalate_at = now + ESCALATE_S
            self._store.overflow(self._helpers[: self._asked] if self._asked <= len(self._helpers) else ())

    def _heartbeat(self) -> None:
        """Say this worker is alive, and learn whether it leads its group."""
        self._store.heartbeat(self._worker_id, self._group, self._routes, self._concurrency)
        # A leader that stopped heartbeating (two lease periods) is passed over.
        members = [w.id for w in self._store.live_workers(2 * self.lease_s) if w.group == self._group]
        self._leading = members[:1] == [self._worker_id]
        self._helpers = [m for m in members if m != self._worker_id]

    def _take(self, claims: Claims) -> None:
        if not claims.claimed:
            return
        # Announce before queueing: once queued, a step thread may finish the step and
        # announce its completion before this thread announced that it started.
        self._events.announce(Applied(claimed=claims.claimed), claims.started)
        self._work.enqueue(claims.claimed)

    def _reap(self) -> None:
        applied = self._store.reap_expired()
        if applied.accepted:
            for out in applied.accepted:
                self._executor.log(out.claim).warning(
                    "step {} of task {}: {}", out.claim.name, out.claim.task_id, out.error
                )
            self._work.settle(applied)
            self._work.wake()

    def _check_timeouts(self, now: float) -> None:
        work = self._work
        with work.mutex:
            late = [r for r in work.running.values() if r.deadline is not None and not r.abandoned and now > r.deadline]
            for running in late:
                running.abandoned = True  # the thread stays busy until the handler returns
        outcomes = [out for r in late if (out := self._executor.timed_out(r.claim)) is not None]
        if outcomes:
            self._commit.commit(outcomes)


def safely(worker_id: str, action: Callable[[], Any]) -> None:
    """Run a store action whose failure is logged, not raised (the lease expires anyway)."""
    try:
        action()
    except StoreError as exc:
        logger.error("runner {}: {}", worker_id, exc)
