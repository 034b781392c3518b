"""The runner: step threads that run claimed steps, wired from execution, group commit and
housekeeping.

The hot path has no hand-offs: the thread that ran a step commits its outcome, and the
same transaction claims the successors the step made ready; the thread then runs one of
them itself (a chain runs start to end on one thread) and queues the rest for the other
step threads. ``execute_sync`` drives its task the same way on the caller's thread.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Sequence

from loguru import logger

from teamflow.engine.children import Children, DatabaseFailed
from teamflow.engine.engine import Engine
from teamflow.engine.events import Events
from teamflow.engine.execute import CachedTask, StepExecutor, TaskCache
from teamflow.engine.group_commit import GroupCommit
from teamflow.engine.housekeeping import Housekeeping, safely
from teamflow.engine.work import Running, Work
from teamflow.errors import StoreError
from teamflow.registry import Registry, StepRow
from teamflow.store import Store
from teamflow.store.records import Claimed, NewTask, Outcome

UNSERVABLE_DELAY_S = 5.0


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Runner:
    """Runs the steps of ``serves`` (namespaces) on ``concurrency`` threads.

    In worker mode it claims any ready step it can run; otherwise (a local runner, for
    ``execute_sync``) it runs the tasks handed to it and the steps of the tasks it tracks.
    """

    def __init__(
        self,
        store: Store,
        registry: Registry,
        engine: Engine,
        events: Events,
        *,
        worker_id: str,
        lease_s: float,
        concurrency: int = 4,
        namespaces: Sequence[str] | None = None,
        worker_mode: bool = False,
        poll_interval_s: float = 1.0,
        retry_base_s: float = 1.0,
        retry_max_s: float = 300.0,
        watch: Callable[
            [Callable[[bool], None], Callable[[], bool], Callable[[], bool], str], Callable[[], None] | None
        ]
        | None = None,
    ) -> None:
        self.store = store
        self.worker_id = worker_id
        self.concurrency = max(1, concurrency)
        self.worker_mode = worker_mode
        self.namespaces: Collection[str] = frozenset(
            ns for ns in registry.namespaces if namespaces is None or ns in namespaces
        )
        self.work = Work(TaskCache(), events, worker_mode=worker_mode, concurrency=self.concurrency)
        self.executor = StepExecutor(
            store,
            registry,
            self.work.cache,
            Children(engine, self.namespaces, self.work.adopt),
            retry_base_s=retry_base_s,
            retry_max_s=retry_max_s,
        )
        self.commit = GroupCommit(
            store, worker_id=worker_id, lease_s=lease_s, settle=self.work.settle, ordered=events.enabled
        )
        self.housekeeping = Housekeeping(
            store,
            self.work,
            self.commit,
            self.executor,
            events,
            worker_id=worker_id,
            lease_s=lease_s,
            poll_interval_s=poll_interval_s,
            concurrency=self.concurrency,
            routes=[e.route for e in registry.entries() if e.namespace in self.namespaces],
        )
        self._watch = watch
        self._told: set[str] = set()  # the unservable versions already logged
        self._unwatch: Callable[[], None] | None = None
        self._threads: list[threading.Thread] = []

    # -- public -----------------------------------------------------------------------

    def serves(self, namespace: str) -> bool:
        return namespace in self.namespaces

    def start(self) -> None:
        if self._threads:
            return
        for i in range(self.concurrency):
            thread = threading.Thread(target=self._step_thread, name=f"teamflow-step-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self.housekeeping.start()
        if self._watch is not None:
            self._unwatch = self._watch(self.wake, self.work.hungry, self.housekeeping.listens, self.worker_id)

    def wake(self, urgent: bool = True) -> None:
        """Work may be ready (a new task, a NOTIFY): claim soon (see ``Work.wake``), unless
        housekeeping would do nothing with it (``Housekeeping.heeds``)."""
        if self.housekeeping.heeds(urgent):
            self.work.wake(urgent)

    def create(self, task: NewTask, steps: Sequence[StepRow]) -> list[Claimed]:
        """Store a new task with its roots leased here, in the next group commit (``TaskSink``)."""
        return self.commit.create(task, steps)

    def adopt(self, task_id: str, claimed: Sequence[Claimed]) -> None:
        self.work.adopt(task_id, claimed)

    def track(self, task_id: str) -> None:
        self.work.track(task_id)

    def waiter(self, task_id: str) -> threading.Event:
        return self.work.waiter(task_id)

    def drive(self, task_id: str, claimed: Sequence[Claimed]) -> None:
        """Run a task's claimed steps on the calling thread (execute_sync), following the chain."""
        work = self.work
        with work.mutex:
            work.tracked.add(task_id)
            work.queue.extend(claimed[1:])
            work.ready.notify(len(claimed) - 1)
        claim: Claimed | None = claimed[0] if claimed else None
        while claim is not None:
            claim = self._run_and_commit(claim, prefer_task=task_id, caller=True)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming; let steps in hand finish (until ``timeout``); release the rest."""
        work = self.work
        if self._unwatch is not None:
            self._unwatch()
        with work.mutex:
            work.stopping = True
            queued, work.queue = list(work.queue), deque()
            work.ready.notify_all()
        with work.house:
            work.house.notify()
        if queued:
            safely(self.worker_id, lambda: self.store.release(queued, self.worker_id, 0.0, "worker stopping"))
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.housekeeping.join(5)
        if self.worker_mode:
            safely(self.worker_id, lambda: self.store.forget_worker(self.worker_id))
        with work.mutex:
            # Steps in hand that overran ``timeout``, and claims queued after the queue was
            # emptied above (successors claimed by the last commits, a claim in flight).
            left = [r.claim for r in work.running.values() if not r.abandoned]
            left += work.queue
            work.queue.clear()
        if left:
            logger.warning("worker {} stopping: releasing {} step(s) it could not finish", self.worker_id, len(left))
            safely(self.worker_id, lambda: self.store.release(left, self.worker_id, 0.0, "worker stopped"))

    # -- step threads -------------------------------------------------------------------

    def _step_thread(self) -> None:
        work = self.work
        while True:
            if self.worker_mode and work.running_low():
                work.wake()  # the queue runs low and more is ready: claim now, not at the next poll
            with work.mutex:
                while not work.queue and not work.stopping:
                    work.idle += 1
                    work.ready.wait()
                    work.idle -= 1
                if work.stopping:
                    return
                claim: Claimed | None = work.queue.popleft()
            while claim is not None:
                try:
                    claim = self._run_and_commit(claim)
                except Exception:
                    logger.exception("runner {}: unexpected error; the step's lease will expire", self.worker_id)
                    claim = None

    def _run_and_commit(self, claim: Claimed, prefer_task: str | None = None, caller: bool = False) -> Claimed | None:
        """Run one claimed step, commit its outcome, and return the next claim to run here."""
        work = self.work
        try:
            cached = self.executor.load(claim)
        except StoreError as exc:
            # The database went away while the step was being prepared: nothing ran, so the
            # claim goes back without counting an attempt, as soon as the database is back.
            self.executor.log(claim).warning(
                "step {} of task {} not started, the database failed ({}); it goes back to the queue",
                claim.name, claim.task_id, exc,
            )
            self.commit.release_later(claim, "not started: the database failed while it was being prepared")
            return None
        if cached is None or cached.entry is None:
            self._unservable(claim, cached)
            return None
        if not self.worker_mode and claim.task_id not in work.tracked:
            with work.mutex:
                work.tracked.add(claim.task_id)
        step = cached.entry.steps[claim.name]
        if caller and step.timeout_s:
            # A step that may overrun runs on a step thread: the caller must be able to
            # return when it times out, without waiting for the late handler.
            work.enqueue([claim])
            return None
        running = Running(claim, time.monotonic() + step.timeout_s if step.timeout_s else None)
        with work.mutex:
            work.running[claim.step_id] = running
        if running.deadline is not None:
            with work.house:
                work.house.notify()
        outcome: Outcome | None = None
        try:
            outcome = self.executor.run(claim, cached)
        except DatabaseFailed as failed:  # teamflow's own database, not the handler, failed it
            self.executor.log(claim).warning(
                "step {} of task {} stopped: the database failed under its child call ({}); it goes back to "
                "the queue", claim.name, claim.task_id, failed.error,
            )
        except BaseException as exc:  # never lose a claim, whatever happened
            outcome = Outcome("fail", claim, error=f"internal error: {exc!r}", error_type=type(exc).__name__)
        with work.mutex:
            work.running.pop(claim.step_id, None)
            if running.abandoned:  # timed out: its late result is discarded
                return None
        if outcome is None:  # the attempt is given back, not spent, once the database answers
            self.commit.release_later(claim, "not finished: the database failed under its child call")
            return None
        mine = self.commit.commit([outcome], keep=claim.task_id)
        if work.stopping:
            if mine is not None:  # claimed by this last commit: give it back, it will not run here
                safely(self.worker_id, lambda: self.store.release([mine], self.worker_id, 0.0, "worker stopping"))
            return None
        return mine or work.next_of(prefer_task or claim.task_id)

    def _unservable(self, claim: Claimed, cached: CachedTask | None) -> None:
        if cached is None:
            why = "task not found"
        else:
            row = cached.row
            why = (
                f"{row.namespace}/{row.name}@{row.version} with fingerprint {row.fingerprint[:12]} is not in this "
                "worker's registry"
            )
        # said once per version (and reason): the step comes back after UNSERVABLE_DELAY_S
        level = "DEBUG" if why in self._told else "WARNING"
        self._told.add(why)
        self.executor.log(claim).log(
            level, "worker {} cannot serve step {} of task {}: {}", self.worker_id, claim.name, claim.task_id, why
        )
        safely(
            self.worker_id,
            lambda: self.store.release([claim], self.worker_id, UNSERVABLE_DELAY_S, f"worker {self.worker_id}: {why}"),
        )

    @property
    def poll_interval_s(self) -> float:
        return self.housekeeping.poll_interval_s
