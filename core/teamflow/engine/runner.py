"""The runner: claims steps under leases, runs their handlers, records the outcomes.

The hot path has no hand-offs: the thread that ran a step commits its outcome, and the
same transaction claims the successors the step made ready; the thread then runs one of
them itself (a chain runs start to end on one thread) and queues the rest for the other
step threads. Commits are combined: outcomes that finish while another thread is
committing wait for it and go out together in the next transaction, so parallel
completions share one commit. ``execute_sync`` drives its task the same way on the
caller's thread; on SQLite (one writer) its new task joins the next group commit too.

A housekeeping thread does everything off the hot path: retries whose backoff expired,
claiming ready work in worker mode (woken by LISTEN/NOTIFY or a slow poll), renewing
leases, enforcing ``timeout_s`` and taking back steps whose worker lost its lease.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import json
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from loguru import logger

from teamflow.engine.context import Park, StepContext, TaskInfo, task_fields
from teamflow.engine.engine import Engine
from teamflow.errors import PermanentError, RetryableError, StoreError
from teamflow.logs import bound
from teamflow.registry import WorkflowEntry
from teamflow.serialization import to_json
from teamflow.store import DECODE as _DECODE
from teamflow.store import Applied, Claimed, Outcome, StepRow, TaskRow

UNSERVABLE_DELAY_S = 5.0
CACHE_LIMIT = 4096
_SCALARS = (int, float, str, bool, type(None))


@attrs.define(slots=True)
class _Running:
    claim: Claimed
    deadline: float | None
    abandoned: bool = False


@attrs.define(slots=True, eq=False)
class _Slot:
    """Work waiting to be committed (outcomes, or a new task), and what its thread gets back.

    ``lock`` is held while no signal is pending for the slot's thread: a bare lock is the
    cheapest way to park a thread.
    """

    outcomes: list[Outcome]
    keep: str | None
    create: tuple[dict[str, Any], Sequence[StepRow]] | None = None
    claim: Claimed | None = None
    created: list[Claimed] = attrs.field(factory=list)
    error: StoreError | None = None
    done: bool = False
    lock: Any = None  # only a slot that has to wait gets one


@attrs.define(slots=True)
class _TaskCache:
    row: TaskRow
    entry: WorkflowEntry | None
    results: dict[str, Any]
    info: TaskInfo
    log_fields: dict[str, str]  # the task's part of every log line of its steps


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with equal jitter: in [d/2, d] for d = base * 2**(attempt-1), capped."""
    # The exponent is bounded so that a step with a huge retry_limit cannot overflow a float.
    delay = min(cap, base * 2.0 ** min(max(0, attempt - 1), 64))
    return delay / 2 + random.random() * delay / 2


class Runner:
    def __init__(
        self,
        engine: Engine,
        *,
        concurrency: int = 4,
        namespaces: Sequence[str] | None = None,
        worker_mode: bool = False,
        poll_interval_s: float = 1.0,
        retry_base_s: float = 1.0,
        retry_max_s: float = 300.0,
        waker: Callable[[Callable[[], None]], Any] | None = None,
    ) -> None:
        self.engine = engine
        self.store = engine.store
        self.worker_id = engine.worker_id
        self.concurrency = max(1, concurrency)
        self.namespaces = tuple(namespaces) if namespaces is not None else None
        self.worker_mode = worker_mode
        self.poll_interval_s = poll_interval_s
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self._waker = waker
        # The versions (with their fingerprints) this runner can run; claims are limited to them.
        self._routes = [
            e.route for e in engine.registry.entries() if self.namespaces is None or e.namespace in self.namespaces
        ]
        # ``_mutex`` guards everything below; step threads wait on ``_lock``, a condition on it.
        # (``with self._mutex`` is a C call; a Condition's ``__enter__`` is Python code.)
        self._mutex = threading.RLock()
        self._lock = threading.Condition(self._mutex)
        self._queue: deque[Claimed] = deque()
        self._idle = 0
        self._running: dict[int, _Running] = {}
        self._tracked: set[str] = set()
        self._timers: list[tuple[float, str]] = []
        self._waiters: dict[str, threading.Event] = {}
        self._cache: dict[str, _TaskCache] = {}
        self._async: dict[Callable[..., Any], bool] = {}  # handler -> is it ``async def``
        self._kick = worker_mode  # worker mode claims at once on start
        self._stop = False
        self._outbox_lock = threading.Lock()  # guards the three below
        self._outbox: list[_Slot] = []
        self._leading = False
        self._stranded: list[Outcome] = []  # outcomes a failed commit left behind
        self._threads: list[threading.Thread] = []
        self._keeper: threading.Thread | None = None
        self._house = threading.Condition()

    # -- public -----------------------------------------------------------------------

    def serves(self, namespace: str) -> bool:
        return namespace in self.engine.registry.namespaces and (
            self.namespaces is None or namespace in self.namespaces
        )

    def start(self) -> None:
        if self._keeper is not None:
            return
        for i in range(self.concurrency):
            thread = threading.Thread(target=self._step_thread, name=f"teamflow-step-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._keeper = threading.Thread(target=self._housekeeping, name="teamflow-housekeeping", daemon=True)
        self._keeper.start()
        if self._waker is not None:
            self._waker(self.wake)

    def wake(self) -> None:
        """Work may be ready (NOTIFY, a new task): claim soon."""
        with self._house:
            self._kick = True
            self._house.notify()

    def adopt(self, task_id: str, claimed: Sequence[Claimed]) -> None:
        """Take over steps claimed for this runner outside a commit (a new task, a new child)."""
        with self._mutex:
            self._tracked.add(task_id)
            self._queue.extend(claimed)
            self._lock.notify(len(claimed))

    def track(self, task_id: str) -> None:
        """Watch a task whose steps this process should pick up when they become ready."""
        with self._mutex:
            self._tracked.add(task_id)
        self._add_timer(0.0, task_id)

    def waiter(self, task_id: str) -> threading.Event:
        with self._mutex:
            return self._waiters.setdefault(task_id, threading.Event())

    def drive(self, task_id: str, claimed: Sequence[Claimed]) -> None:
        """Run a task's claimed steps on the calling thread (execute_sync), following the chain."""
        with self._mutex:
            self._tracked.add(task_id)
            self._queue.extend(claimed[1:])
            self._lock.notify(len(claimed) - 1)
        claim: Claimed | None = claimed[0] if claimed else None
        while claim is not None:
            claim = self._run_and_commit(claim, prefer_task=task_id, caller=True)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming; let steps in hand finish (until ``timeout``); release the rest."""
        with self._mutex:
            self._stop = True
            queued, self._queue = list(self._queue), deque()
            self._lock.notify_all()
        with self._house:
            self._house.notify()
        if queued:
            self._safe(lambda: self.store.release(queued, self.worker_id, 0.0, "worker stopping"))
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._keeper is not None:
            self._keeper.join(5)
        with self._mutex:
            # Steps in hand that overran ``timeout``, and claims queued after the queue was
            # emptied above (successors claimed by the last commits, a claim in flight).
            left = [r.claim for r in self._running.values() if not r.abandoned]
            left += self._queue
            self._queue.clear()
        if left:
            logger.warning("worker {} stopping: releasing {} step(s) it could not finish", self.worker_id, len(left))
            self._safe(lambda: self.store.release(left, self.worker_id, 0.0, "worker stopped"))

    # -- step threads -------------------------------------------------------------------

    def _step_thread(self) -> None:
        while True:
            if self.worker_mode and not self._queue:
                self.wake()  # a thread ran out of work: claim more now, not at the next poll
            with self._mutex:
                while not self._queue and not self._stop:
                    self._idle += 1
                    self._lock.wait()
                    self._idle -= 1
                if self._stop:
                    return
                claim: Claimed | None = self._queue.popleft()
            while claim is not None:
                try:
                    claim = self._run_and_commit(claim)
                except Exception:
                    logger.exception("runner {}: unexpected error; the step's lease will expire", self.worker_id)
                    claim = None

    def _run_and_commit(self, claim: Claimed, prefer_task: str | None = None, caller: bool = False) -> Claimed | None:
        """Run one claimed step, commit its outcome, and return the next claim to run here."""
        cache = self._load(claim)
        if cache is None or cache.entry is None:
            self._unservable(claim, cache)
            return None
        step = cache.entry.steps[claim.name]
        if caller and step.timeout_s:
            # A step that may overrun runs on a step thread: the caller must be able to
            # return when it times out, without waiting for the late handler.
            with self._mutex:
                self._queue.append(claim)
                self._lock.notify()
            return None
        running = _Running(claim, time.monotonic() + step.timeout_s if step.timeout_s else None)
        with self._mutex:
            self._running[claim.step_id] = running
        if running.deadline is not None:
            with self._house:
                self._house.notify()
        try:
            outcome = self._outcome(claim, cache)
        except BaseException as exc:  # never lose a claim, whatever happened
            outcome = Outcome("fail", claim, error=f"internal error: {exc!r}", error_type=type(exc).__name__)
        with self._mutex:
            self._running.pop(claim.step_id, None)
            if running.abandoned:  # timed out: its late result is discarded
                return None
        mine = self._commit([outcome], keep=claim.task_id)
        if self._stop:
            if mine is not None:  # claimed by this last commit: give it back, it will not run here
                self._safe(lambda: self.store.release([mine], self.worker_id, 0.0, "worker stopping"))
            return None
        return mine or self._next(prefer_task or claim.task_id)

    def _next(self, task_id: str) -> Claimed | None:
        """A queued claim to run on this thread: one of the same task first (locality)."""
        with self._mutex:
            if not self._queue or self._stop:
                return None
            for i, queued in enumerate(self._queue):
                if queued.task_id == task_id:
                    del self._queue[i]
                    return queued
            return None

    # -- committing -------------------------------------------------------------------

    def create(self, task: dict[str, Any], steps: Sequence[StepRow]) -> list[Claimed]:
        """Store a new task and lease its roots to this runner, in the next group commit."""
        slot = self._commit_slot(_Slot([], None, (task, steps)))
        if slot.error is not None:
            raise slot.error
        return slot.created

    def _commit(self, outcomes: list[Outcome], keep: str | None = None) -> Claimed | None:
        """Record outcomes with group commit; return a newly claimed step of task ``keep``."""
        return self._commit_slot(_Slot(outcomes, keep)).claim

    def _commit_slot(self, slot: _Slot) -> _Slot:
        """Leader/followers group commit.

        The thread that finds no commit in progress leads: it commits every slot waiting
        at that moment in one transaction. The others sleep on their slot's lock, which is
        released (under ``_outbox_lock``) when a leader has committed their slot, or to
        nudge the oldest waiter when a leader is done and work is left: a thread that
        arrives then leads at once, without waiting for a sleeping thread to wake, and a
        nudged waiter that finds a leader busy goes back to sleep.
        """
        with self._outbox_lock:
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
            with self._outbox_lock:
                if slot.done:
                    return slot
                lead = not self._leading
                if lead:
                    self._leading = True
                    batch, self._outbox = self._outbox, []
            if not lead:
                slot.lock.acquire()  # until a leader signals: done, or nudged
                continue
            self._lead(batch)

    def _lead(self, slots: list[_Slot]) -> None:
        """Commit ``slots`` as the leader, then dispatch what the commit changed.

        Without event subscribers the lead is handed on as soon as the transaction is over,
        so the next batch's statements run while this thread dispatches the last one (a
        claim is handed out only by that dispatch, so no later batch can hold an outcome of
        it). With subscribers a batch's events must all fire before the next batch's, so the
        lead is handed on after the dispatch.
        """
        done: tuple[Applied, set[int]] | None = None
        try:
            done = self._commit_batch(slots)
            if done is not None and self.engine.has_events:
                applied, keep = done
                done = None
                self._after(applied, keep)
        finally:
            with self._outbox_lock:
                self._leading = False
                if self._outbox and self._outbox[0].lock.locked():
                    self._outbox[0].lock.release()  # work is left: nudge the oldest waiter
        try:
            if done is not None:
                self._after(*done)
        finally:  # whatever happened, no follower sleeps forever
            with self._outbox_lock:
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
            applied = self.store.apply(
                batch, self.worker_id, self.engine.lease_s, claim_successors=True, creates=creates
            )
        except Exception as exc:
            # Keep the outcomes: housekeeping commits them again once the database answers
            # (each update is fenced by lease owner and attempt, so a late commit is safe).
            # A new task is not kept: its caller gets the error.
            if not isinstance(exc, StoreError):
                logger.exception("runner {}: unexpected error committing a batch", self.worker_id)
                exc = StoreError(f"internal error while committing: {exc!r}")
            if batch:
                logger.error("runner {}: could not record {} outcome(s): {}; will retry", self.worker_id,
                             len(batch), exc)
                with self._outbox_lock:
                    self._stranded.extend(batch)
            for s in slots:
                if s.create is not None:
                    s.error = exc
            return None
        claims = list(applied.claimed)
        keep: set[int] = set()
        for s in slots:
            if s.create is not None:
                s.created = applied.created.get(s.create[0]["id"], [])
            elif s.keep is not None:
                s.claim = next((c for c in claims if c.task_id == s.keep and id(c) not in keep), None)
                if s.claim is not None:
                    keep.add(id(s.claim))
        return applied, keep

    def _after(self, applied: Applied, keep: set[int] | None = None) -> None:
        for out in applied.dropped:
            self._log(out.claim).warning(
                "step {} of task {} attempt {}: result dropped, the lease was lost to another worker",
                out.claim.name, out.claim.task_id, out.claim.attempt,
            )
        timers = []
        with self._mutex:
            for out in applied.accepted:
                if out.kind == "complete":
                    cache = self._cache.get(out.claim.task_id)
                    if cache is not None:
                        value = out.value
                        if value is _DECODE:
                            value = json.loads(out.result) if out.result is not None else None
                        cache.results[out.claim.name] = value
                elif out.kind == "retry":
                    timers.append((time.monotonic() + out.delay, out.claim.task_id))
            for parent in applied.woken_parents:
                if parent in self._tracked or self.worker_mode:
                    timers.append((0.0, parent))
            if not self.engine.has_events:
                self._dispatch(applied, keep)
        for timer in timers:
            self._add_timer(*timer)
        if self.engine.has_events:
            # Events first: before a queued successor can run (and announce its own events),
            # and before waiters wake (execute_sync returns after its task's events).
            self.engine.announce(applied)
            with self._mutex:
                self._dispatch(applied, keep)

    def _dispatch(self, applied: Applied, keep: set[int] | None) -> None:
        """Queue the claims no committing thread kept; wake the waiters of finished tasks (under ``_mutex``)."""
        others = [c for c in applied.claimed if id(c) not in keep] if keep else applied.claimed
        if others:
            self._queue.extend(others)
            self._lock.notify(len(others))
        for task_id, _status in applied.finished_tasks:
            self._tracked.discard(task_id)
            self._cache.pop(task_id, None)
            event = self._waiters.pop(task_id, None)
            if event is not None:
                event.set()

    # -- running one step ---------------------------------------------------------------

    def _load(self, claim: Claimed) -> _TaskCache | None:
        with self._mutex:
            cache = self._cache.get(claim.task_id)
        if cache is None:
            row = claim.task or self.store.task_rows([claim.task_id]).get(claim.task_id)
            if row is None:
                return None
            entry = self.engine.registry.get(row.namespace, row.name, row.version)
            if entry is not None and entry.fingerprint != row.fingerprint:
                entry = None
            cache = _TaskCache(row, entry, {}, TaskInfo(row.id, row.namespace, row.name, row.version),
                               task_fields(row))
            with self._mutex:
                cache = self._cache.setdefault(claim.task_id, cache)
                if not self.worker_mode:
                    self._tracked.add(claim.task_id)
                # Tasks finished by other workers never report back here: keep the cache bounded.
                while len(self._cache) > CACHE_LIMIT:
                    del self._cache[next(iter(self._cache))]
        if cache.entry is not None:
            results = cache.results
            for dep in cache.entry.steps[claim.name].depends_on:
                if dep not in results:  # finished elsewhere (another worker, an earlier run)
                    results.update(self.store.results(claim.task_id))
                    break
        return cache

    def _unservable(self, claim: Claimed, cache: _TaskCache | None) -> None:
        why = "task not found" if cache is None else (
            f"{cache.row.namespace}/{cache.row.name}@{cache.row.version} with fingerprint "
            f"{cache.row.fingerprint[:12]} is not in this worker's registry"
        )
        log = self._log(claim, cache.row if cache is not None else None)
        log.warning("worker {} cannot serve step {} of task {}: {}", self.worker_id, claim.name, claim.task_id, why)
        self._safe(lambda: self.store.release([claim], self.worker_id, UNSERVABLE_DELAY_S,
                                              f"worker {self.worker_id}: {why}"))

    def _outcome(self, claim: Claimed, cache: _TaskCache) -> Outcome:
        entry = cache.entry
        assert entry is not None
        step = entry.steps[claim.name]
        handler = entry.handlers[claim.name]
        ctx = StepContext(self.engine, cache.info, claim.name, claim.attempt, cache.row.context, dict(cache.results))
        try:
            # Lines a handler logs through loguru's global ``logger`` are bound as ctx.log's are.
            with bound({**cache.log_fields, "step": claim.name, "attempt": claim.attempt}):
                result = asyncio.run(handler(ctx)) if self._is_async(handler) else handler(ctx)
        except Park as park:
            ctx.log.debug("parked waiting for child task {}", park.child_id)
            return Outcome("park", claim, child_id=park.child_id)
        except PermanentError as exc:
            return self._failure(claim, step, exc, permanent=True, log=ctx.log)
        except RetryableError as exc:
            return self._failure(claim, step, exc, permanent=False, log=ctx.log, retry_after=exc.retry_after)
        except Exception as exc:
            return self._failure(claim, step, exc, permanent=not step.retryable, log=ctx.log)
        try:
            text = to_json(result)
        except (TypeError, ValueError) as exc:
            bad = PermanentError(f"the handler's result is not JSON-serialisable: {exc}")
            return self._failure(claim, step, bad, permanent=True, log=ctx.log)
        # A scalar reads back from JSON as itself: successors on this worker can take it as is.
        value = result if type(result) in _SCALARS else _DECODE
        return Outcome("complete", claim, result=text, successors=entry.successors[claim.name], value=value)

    def _log(self, claim: Claimed, row: TaskRow | None = None) -> Any:
        """A logger bound to a claimed step's task and step (the workflow when it is known)."""
        if row is None:
            cache = self._cache.get(claim.task_id)
            row = cache.row if cache is not None else claim.task
        fields: dict[str, Any] = task_fields(row) if row is not None else {"task_id": claim.task_id}
        return logger.bind(**fields, step=claim.name, attempt=claim.attempt)

    def _is_async(self, handler: Callable[..., Any]) -> bool:
        known = self._async.get(handler)
        if known is None:
            known = self._async[handler] = inspect.iscoroutinefunction(handler)
        return known

    def _failure(
        self, claim: Claimed, step: Any, exc: BaseException, *, permanent: bool, log: Any,
        retry_after: float | None = None,
    ) -> Outcome:
        kind = type(exc).__name__
        message = getattr(exc, "message", None) or str(exc) or kind
        max_attempts = 1 + step.retry_limit
        if not permanent and claim.attempt < max_attempts:
            delay = retry_after if retry_after is not None else backoff(claim.attempt, self.retry_base_s,
                                                                        self.retry_max_s)
            log.warning("attempt {}/{} failed ({}: {}); retrying in {:.2f}s", claim.attempt, max_attempts, kind,
                        message, delay)
            return Outcome("retry", claim, error=message, error_type=kind, delay=delay)
        why = "permanent error" if permanent else f"gave up after {claim.attempt} attempt(s)"
        summary = f"step {claim.name!r} failed ({why}, attempt {claim.attempt}/{max_attempts}): {kind}: {message}"
        log.error(summary)
        return Outcome("fail", claim, error=summary, error_type=kind)

    # -- housekeeping -------------------------------------------------------------------

    def _add_timer(self, at: float, task_id: str) -> None:
        with self._house:
            heapq.heappush(self._timers, (at, task_id))
            self._house.notify()

    def _housekeeping(self) -> None:
        next_renew = next_reap = next_poll = 0.0
        while not self._stop:
            try:
                now = time.monotonic()
                self._check_timeouts(now)
                self._due_timers(now)
                if self.worker_mode:
                    next_poll = self._poll(now, next_poll)
                elif self._tracked and now >= next_poll:
                    # A tracked task may have a step woken by a child another worker finished.
                    next_poll = now + self.poll_interval_s
                    with self._mutex:
                        tracked = list(self._tracked)
                    for task_id in tracked:
                        self._add_timer(0.0, task_id)
                if now >= next_renew:
                    next_renew = now + self.engine.lease_s / 3
                    with self._mutex:
                        held = [r.claim.step_id for r in self._running.values() if not r.abandoned]
                        held += [c.step_id for c in self._queue]
                    with self._outbox_lock:
                        held += [o.claim.step_id for s in self._outbox for o in s.outcomes]
                        held += [o.claim.step_id for o in self._stranded]
                    self.store.renew(self.worker_id, self.engine.lease_s, held)
                    with self._outbox_lock:
                        stranded, self._stranded = self._stranded, []
                    if stranded:
                        self._commit(stranded)  # outcomes a failed commit left behind (database back?)
                if self.worker_mode and now >= next_reap:
                    next_reap = now + max(0.5, self.engine.lease_s / 2)
                    self._reap()
                with self._house:
                    if not (self._kick and self.worker_mode) and not self._stop:
                        self._house.wait(self._sleep_for(now, next_renew, next_poll))
            except StoreError as exc:
                logger.error("runner {}: {}; retrying in 1 s", self.worker_id, exc)
                time.sleep(1.0)
            except Exception:
                logger.exception("runner {} housekeeping error; continuing", self.worker_id)
                time.sleep(0.2)

    def _sleep_for(self, now: float, next_renew: float, next_poll: float) -> float:
        until = [next_renew - now, 5.0]
        if self._timers:
            until.append(self._timers[0][0] - now)
        if self.worker_mode or self._tracked:
            until.append(next_poll - now)
        with self._mutex:
            until.extend(r.deadline - now for r in self._running.values() if r.deadline is not None and not r.abandoned)
        return max(0.001, min(until))

    def _free(self) -> int:
        with self._mutex:
            return self._idle - len(self._queue)

    def _due_timers(self, now: float) -> None:
        due: set[str] = set()
        with self._house:
            while self._timers and self._timers[0][0] <= now:
                due.add(heapq.heappop(self._timers)[1])
        if due:
            claimed, started = self.store.claim(
                self.worker_id, self.engine.lease_s, max(self._free(), 1) * 2, task_ids=sorted(due)
            )
            self._enqueue(claimed, started)

    def _poll(self, now: float, next_poll: float) -> float:
        with self._house:
            kick, self._kick = self._kick, False
        if not kick and now < next_poll:
            return next_poll
        next_poll = now + self.poll_interval_s
        want = self._free() + self.concurrency  # keep one claim queued per thread
        if want <= 0:
            return next_poll
        claimed, started = self.store.claim(self.worker_id, self.engine.lease_s, want, routes=self._routes)
        self._enqueue(claimed, started)
        if len(claimed) == want:
            with self._house:
                self._kick = True  # there may be more ready work
        else:
            due = self.store.next_due(self._routes)
            if due is not None and due < self.poll_interval_s:
                next_poll = now + due
        return next_poll

    def _enqueue(self, claimed: list[Claimed], started: list[str]) -> None:
        if not claimed:
            return
        # Announce before queueing: once queued, a step thread may finish the step and
        # announce its completion before this thread announced that it started.
        self.engine.announce(Applied(claimed=claimed), started)
        with self._mutex:
            self._queue.extend(claimed)
            self._lock.notify(len(claimed))

    def _reap(self) -> None:
        applied = self.store.reap_expired()
        if applied.accepted:
            for out in applied.accepted:
                self._log(out.claim).warning("step {} of task {}: {}", out.claim.name, out.claim.task_id, out.error)
            self._after(applied)
            with self._house:
                self._kick = True

    def _check_timeouts(self, now: float) -> None:
        with self._mutex:
            late = [r for r in self._running.values()
                    if r.deadline is not None and not r.abandoned and now > r.deadline]
            for running in late:
                running.abandoned = True  # the thread stays busy until the handler returns
        outcomes = []
        for running in late:
            cache = self._cache.get(running.claim.task_id)
            if cache is None or cache.entry is None:
                continue
            step = cache.entry.steps[running.claim.name]
            exc = TimeoutError(f"step exceeded timeout_s={step.timeout_s}; its late result will be discarded")
            log = self._log(running.claim, cache.row)
            outcomes.append(self._failure(running.claim, step, exc, permanent=False, log=log))
        if outcomes:
            self._commit(outcomes)

    def _safe(self, action: Callable[[], Any]) -> None:
        try:
            action()
        except StoreError as exc:
            logger.error("runner {}: {}", self.worker_id, exc)


def new_worker_id() -> str:
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
