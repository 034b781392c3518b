"""What a runner's threads share: claims queued for the step threads, the steps running, the
tasks this process watches, timers for housekeeping, and the waiters of ``execute_sync``.

``settle`` is where a commit's changes land: successors go to the queue (unless the
thread that committed keeps one to run itself), retries and woken parents get timers,
finished tasks wake their waiters.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Sequence

import attrs

from teamflow.engine.events import Events
from teamflow.engine.execute import TaskCache, decoded, log_for
from teamflow.store.records import Applied, Claimed, TaskRow


@attrs.define(slots=True)
class Running:
    claim: Claimed
    deadline: float | None
    abandoned: bool = False  # timed out: its thread is busy until the handler returns


class Work:
    def __init__(self, cache: TaskCache, events: Events, *, worker_mode: bool, concurrency: int = 1) -> None:
        self.cache = cache
        self.events = events
        self.worker_mode = worker_mode
        # ``mutex`` guards the queue, the running steps, the tracked tasks and the waiters;
        # step threads wait on ``ready``, a condition on it. (``with mutex`` is a C call; a
        # Condition's ``__enter__`` is Python code.)
        self.mutex = threading.RLock()
        self.ready = threading.Condition(self.mutex)
        self.queue: deque[Claimed] = deque()
        self.idle = 0
        self.running: dict[int, Running] = {}
        self.tracked: set[str] = set()
        self.waiters: dict[str, threading.Event] = {}
        self.stopping = False
        # Housekeeping sleeps on ``house`` until a timer is due or it is kicked.
        self.house = threading.Condition()
        self.kick = worker_mode  # worker mode claims at once on start
        self.urgent = worker_mode
        self.backlog = worker_mode  # ready work may be left: a thread out of work asks for more
        # Claims queued beyond the idle threads below which a backlogged worker claims more:
        # topping up a few at a time would cost a commit each (and on SQLite every commit
        # wakes this worker's own watcher).
        self.refill_at = max(1, concurrency // 2)
        self.timers: list[tuple[float, str]] = []

    # -- handing work to the step threads -------------------------------------------------

    def enqueue(self, claimed: Sequence[Claimed]) -> None:
        with self.mutex:
            self.queue.extend(claimed)
            self.ready.notify(len(claimed))

    def adopt(self, task_id: str, claimed: Sequence[Claimed]) -> None:
        """Take over steps claimed for this runner outside a commit (a new task, a new child)."""
        with self.mutex:
            self.tracked.add(task_id)
            self.queue.extend(claimed)
            self.ready.notify(len(claimed))

    def next_of(self, task_id: str) -> Claimed | None:
        """A queued claim for the calling thread to run: one of the same task (locality)."""
        with self.mutex:
            if not self.queue or self.stopping:
                return None
            for i, queued in enumerate(self.queue):
                if queued.task_id == task_id:
                    del self.queue[i]
                    return queued
            return None

    def running_low(self) -> bool:
        """More ready work is likely and the queue is below its refill mark: claim more now."""
        return self.backlog and len(self.queue) < self.refill_at

    def hungry(self) -> bool:
        """Would a wake-up claim more? Not while a backlog keeps the queue above its mark."""
        return not self.backlog or len(self.queue) - self.idle < self.refill_at

    def free(self) -> int:
        """Idle step threads not yet promised a queued claim."""
        with self.mutex:
            return self.idle - len(self.queue)

    def held(self) -> list[int]:
        """Steps in hand (running, or queued to run): their leases must be kept."""
        with self.mutex:
            return [r.claim.step_id for r in self.running.values() if not r.abandoned] + [
                c.step_id for c in self.queue
            ]

    # -- watching tasks -----------------------------------------------------------------

    def track(self, task_id: str) -> None:
        """Watch a task whose steps this process should pick up when they become ready."""
        with self.mutex:
            self.tracked.add(task_id)
        self.add_timer(0.0, task_id)

    def waiter(self, task_id: str) -> threading.Event:
        with self.mutex:
            return self.waiters.setdefault(task_id, threading.Event())

    def add_timer(self, at: float, task_id: str) -> None:
        with self.house:
            heapq.heappush(self.timers, (at, task_id))
            self.house.notify()

    def wake(self, urgent: bool = True) -> None:
        """Work may be ready (a new task, a NOTIFY): housekeeping claims soon.

        Not ``urgent`` (a NOTIFY every worker hears): only the leader of this worker's group
        claims at once, unless this worker already has a backlog.
        """
        with self.house:
            self.kick = True
            self.urgent = self.urgent or urgent
            self.house.notify()

    # -- after a commit -----------------------------------------------------------------

    def settle(self, applied: Applied, keep: set[int] | None = None) -> None:
        """Dispatch what a commit changed (``keep``: claims a committing thread runs itself)."""
        for out in applied.dropped:
            log_for(out.claim, self._row(out.claim)).warning(
                "step {} of task {} attempt {}: result dropped, the lease was lost to another worker",
                out.claim.name, out.claim.task_id, out.claim.attempt,
            )
        timers = []
        for out in applied.accepted:
            if out.kind == "complete":
                self.cache.record(out.claim.task_id, out.claim.name, decoded(out))
            elif out.kind == "retry":
                timers.append((time.monotonic() + out.delay, out.claim.task_id))
        with self.mutex:
            for parent in applied.woken_parents:
                if parent in self.tracked or self.worker_mode:
                    timers.append((0.0, parent))
            if not self.events.enabled:
                self._dispatch(applied, keep)
        for timer in timers:
            self.add_timer(*timer)
        if self.events.enabled:
            # Events first: before a queued successor can run (and announce its own events),
            # and before waiters wake (execute_sync returns after its task's events).
            self.events.announce(applied)
            with self.mutex:
                self._dispatch(applied, keep)

    def _dispatch(self, applied: Applied, keep: set[int] | None) -> None:
        """Queue the claims no committing thread kept; wake the waiters of finished tasks (under ``mutex``)."""
        others = [c for c in applied.claimed if id(c) not in keep] if keep else applied.claimed
        if others:
            self.queue.extend(others)
            self.ready.notify(len(others))
        for finished in applied.finished_tasks:
            self.tracked.discard(finished.task_id)
            self.cache.forget(finished.task_id)
            event = self.waiters.pop(finished.task_id, None)
            if event is not None:
                event.set()

    def _row(self, claim: Claimed) -> TaskRow | None:
        cached = self.cache.get(claim.task_id)
        return cached.row if cached is not None else claim.task
