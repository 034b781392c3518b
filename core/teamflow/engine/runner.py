"""The runner: claims steps under leases, runs their handlers, records the outcomes.

One loop thread owns every write of the hot path. Handler threads only run handlers and
hand back outcomes; the loop applies all outcomes that arrived together in one
transaction, which also claims the successors they made ready (so a chain costs one
commit per step, and parallel completions share a commit). The loop renews leases,
enforces timeouts, retries after backoff, and in worker mode claims ready steps of the
namespaces it serves, woken by the database (LISTEN/NOTIFY) or a slow poll.
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
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs
from loguru import logger

from teamflow.engine.context import Park, StepContext, TaskInfo
from teamflow.engine.engine import Engine
from teamflow.errors import PermanentError, RetryableError, StoreError
from teamflow.registry import WorkflowEntry
from teamflow.store import Applied, Claimed, Outcome, TaskRow

UNSERVABLE_DELAY_S = 5.0
CACHE_LIMIT = 4096


@attrs.define(slots=True)
class _Running:
    claim: Claimed
    started: float
    deadline: float | None
    abandoned: bool = False


@attrs.define(slots=True)
class _TaskCache:
    row: TaskRow
    entry: WorkflowEntry | None
    results: dict[str, Any]
    info: TaskInfo


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with equal jitter: in [d/2, d] for d = base * 2**(attempt-1), capped."""
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
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
        self._cv = threading.Condition()
        self._done: list[Outcome] = []
        self._backlog: deque[Claimed] = deque()
        self._running: dict[int, _Running] = {}
        self._threads_busy = 0
        self._tracked: set[str] = set()
        self._timers: list[tuple[float, str]] = []
        self._waiters: dict[str, threading.Event] = {}
        self._cache: dict[str, _TaskCache] = {}
        self._kick = True
        self._stop = False
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="teamflow-step")
        self._thread: threading.Thread | None = None
        self._waker = waker
        self._next_renew = 0.0
        self._next_reap = 0.0
        self._next_poll = 0.0
        # The versions (with their fingerprints) this runner can run; claims are limited to them.
        self._routes = [
            e.route for e in engine.registry.entries() if self.namespaces is None or e.namespace in self.namespaces
        ]

    # -- public -----------------------------------------------------------------------

    def serves(self, namespace: str) -> bool:
        return namespace in self.engine.registry.namespaces and (
            self.namespaces is None or namespace in self.namespaces
        )

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, name=f"teamflow-runner-{self.worker_id}", daemon=True
            )
            self._thread.start()
            if self._waker is not None:
                self._waker(self.wake)

    def wake(self) -> None:
        with self._cv:
            self._kick = True
            self._cv.notify()

    def adopt(self, task_id: str, claimed: Sequence[Claimed]) -> None:
        """Take over steps claimed for this runner outside the loop (new task, new child)."""
        with self._cv:
            self._tracked.add(task_id)
            self._backlog.extend(claimed)
            self._cv.notify()

    def track(self, task_id: str) -> None:
        """Watch a task whose steps this process should pick up when they become ready."""
        with self._cv:
            self._tracked.add(task_id)
            self._timers.append((0.0, task_id))
            heapq.heapify(self._timers)
            self._cv.notify()

    def waiter(self, task_id: str) -> threading.Event:
        with self._cv:
            return self._waiters.setdefault(task_id, threading.Event())

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming, let steps in hand finish (until ``timeout``), release the rest."""
        with self._cv:
            self._stop = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout + 5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- the loop -----------------------------------------------------------------------

    def _loop(self) -> None:
        stopping_since: float | None = None
        while True:
            try:
                with self._cv:
                    if not (self._done or self._backlog or self._kick or self._stop):
                        self._cv.wait(self._sleep_for())
                    outcomes, self._done = self._done, []
                    kick, self._kick = self._kick, False
                    stop = self._stop
                if outcomes:
                    self._apply(outcomes)
                now = time.monotonic()
                self._check_timeouts(now)
                if stop:
                    stopping_since = stopping_since or now
                    if self._backlog:
                        self.store.release(list(self._backlog), self.worker_id, 0.0, "worker stopping")
                        self._backlog.clear()
                    with self._cv:
                        finished = not self._running and not self._done
                        if not finished and not self._done:
                            self._cv.wait(0.05)  # a step in hand is still running
                    if finished or now - stopping_since > 30:
                        self._release_running()
                        return
                    continue
                self._dispatch()
                self._due_timers(now)
                if self.worker_mode:
                    self._poll(now, kick)
                self._housekeeping(now)
            except StoreError as exc:
                logger.error("runner {}: {}; retrying in 1 s", self.worker_id, exc)
                time.sleep(1.0)
            except Exception:
                logger.exception("runner {} loop error; continuing", self.worker_id)
                time.sleep(0.2)

    def _sleep_for(self) -> float:
        now = time.monotonic()
        until = [self._next_renew - now]
        if self._timers:
            until.append(self._timers[0][0] - now)
        if self.worker_mode or self._tracked:
            until.append(self._next_poll - now)
        deadlines = [
            r.deadline - now for r in self._running.values() if r.deadline is not None and not r.abandoned
        ]
        until.extend(deadlines)
        return max(0.001, min(until))

    def _free(self) -> int:
        return self.concurrency - self._threads_busy

    def _apply(self, outcomes: list[Outcome]) -> None:
        applied = self.store.apply(outcomes, self.worker_id, self.engine.lease_s, claim_successors=True)
        for out in applied.dropped:
            logger.warning(
                "step {} of task {} attempt {}: result dropped, the lease was lost to another worker",
                out.claim.name,
                out.claim.task_id,
                out.claim.attempt,
            )
        for out in applied.accepted:
            if out.kind == "complete":
                cache = self._cache.get(out.claim.task_id)
                if cache is not None:
                    cache.results[out.claim.name] = json.loads(out.result) if out.result is not None else None
            elif out.kind == "retry":
                self._timers.append((time.monotonic() + out.delay, out.claim.task_id))
        heapq.heapify(self._timers)
        self._after(applied)

    def _after(self, applied: Applied) -> None:
        self._backlog.extend(applied.claimed)
        for parent in applied.woken_parents:
            if parent in self._tracked or self.worker_mode:
                self._timers.append((0.0, parent))
        heapq.heapify(self._timers)
        self.engine.announce(applied)  # before waking waiters: execute_sync returns after its events
        for task_id, _status in applied.finished_tasks:
            self._tracked.discard(task_id)
            self._cache.pop(task_id, None)
            event = self._waiters.pop(task_id, None)
            if event is not None:
                event.set()

    def _due_timers(self, now: float) -> None:
        due: set[str] = set()
        while self._timers and self._timers[0][0] <= now:
            due.add(heapq.heappop(self._timers)[1])
        if due:
            claimed, started = self.store.claim(
                self.worker_id, self.engine.lease_s, max(self._free(), 1) * 2, task_ids=sorted(due)
            )
            self._backlog.extend(claimed)
            self._announce_claims(claimed, started)

    def _poll(self, now: float, kick: bool) -> None:
        if not kick and now < self._next_poll:
            return
        self._next_poll = now + self.poll_interval_s
        want = self._free() * 2 - len(self._backlog)
        if want <= 0:
            return
        claimed, started = self.store.claim(self.worker_id, self.engine.lease_s, want, routes=self._routes)
        self._backlog.extend(claimed)
        self._announce_claims(claimed, started)
        if len(claimed) == want:
            self._kick = True  # there may be more ready work
        else:
            due = self.store.next_due(self._routes)
            if due is not None and due < self.poll_interval_s:
                self._next_poll = now + due

    def _announce_claims(self, claimed: list[Claimed], started: list[str]) -> None:
        if claimed:
            self.engine.announce(Applied(claimed=claimed), started)

    def _housekeeping(self, now: float) -> None:
        if now >= self._next_renew:
            self._next_renew = now + self.engine.lease_s / 3
            if self._running or self._backlog:
                self.store.renew(self.worker_id, self.engine.lease_s)
        if self._tracked and not self.worker_mode and now >= self._next_poll:
            # A tracked task may have a step woken by a child another worker finished.
            self._next_poll = now + self.poll_interval_s
            self._timers.extend((0.0, t) for t in self._tracked)
            heapq.heapify(self._timers)
        if self.worker_mode and now >= self._next_reap:
            self._next_reap = now + max(0.5, self.engine.lease_s / 2)
            applied = self.store.reap_expired()
            if applied.accepted:
                for out in applied.accepted:
                    logger.warning("step {} of task {}: {}", out.claim.name, out.claim.task_id, out.error)
                self._after(applied)
                self._kick = True

    def _release_running(self) -> None:
        claims = [r.claim for r in self._running.values() if not r.abandoned]
        if claims:
            logger.warning(
                "worker {} stopping: releasing {} step(s) still running", self.worker_id, len(claims)
            )
            self.store.release(claims, self.worker_id, 0.0, "worker stopped")

    # -- dispatching ---------------------------------------------------------------------

    def _dispatch(self) -> None:
        if not self._backlog or self._free() <= 0:
            return
        batch: list[Claimed] = []
        while self._backlog and len(batch) < self._free():
            batch.append(self._backlog.popleft())
        self._load([c.task_id for c in batch])
        unservable: list[Claimed] = []
        for claim in batch:
            cache = self._cache.get(claim.task_id)
            if cache is None or cache.entry is None:
                unservable.append(claim)
                continue
            step = cache.entry.steps[claim.name]
            missing = [d for d in step.depends_on if d not in cache.results]
            if missing:
                cache.results.update(self.store.results(claim.task_id))
            now = time.monotonic()
            deadline = now + step.timeout_s if step.timeout_s else None
            self._running[claim.step_id] = _Running(claim, now, deadline)
            self._threads_busy += 1
            self._pool.submit(self._run, claim, cache)
        if unservable:
            for claim in unservable:
                logger.warning(
                    "worker {} cannot serve step {} of task {}: {}",
                    self.worker_id,
                    claim.name,
                    claim.task_id,
                    self._why_unservable(claim.task_id),
                )
            self.store.release(
                unservable,
                self.worker_id,
                UNSERVABLE_DELAY_S,
                f"worker {self.worker_id} does not hold this workflow version and fingerprint",
            )

    def _why_unservable(self, task_id: str) -> str:
        cache = self._cache.get(task_id)
        if cache is None:
            return "task not found"
        row = cache.row
        return (
            f"{row.namespace}/{row.name}@{row.version} with fingerprint {row.fingerprint[:12]} "
            "is not in this worker's registry"
        )

    def _load(self, task_ids: list[str]) -> None:
        missing = sorted({t for t in task_ids if t not in self._cache})
        if not missing:
            return
        for task_id, row in self.store.task_rows(missing).items():
            entry = self.engine.registry.get(row.namespace, row.name, row.version)
            if entry is not None and entry.fingerprint != row.fingerprint:
                entry = None
            self._cache[task_id] = _TaskCache(
                row, entry, {}, TaskInfo(row.id, row.namespace, row.name, row.version)
            )
            if not self.worker_mode:
                self._tracked.add(task_id)
        # Tasks finished by other workers never report back here: keep the cache bounded.
        while len(self._cache) > CACHE_LIMIT:
            del self._cache[next(iter(self._cache))]

    # -- running one step (handler thread) ----------------------------------------------

    def _run(self, claim: Claimed, cache: _TaskCache) -> None:
        entry = cache.entry
        assert entry is not None
        entry.steps[claim.name]
        log = logger.bind(
            namespace=entry.namespace,
            workflow=entry.name,
            version=entry.version.text,
            task_id=claim.task_id,
            step=claim.name,
            attempt=claim.attempt,
        )
        ctx = StepContext(
            self.engine, cache.info, claim.name, claim.attempt, cache.row.context, dict(cache.results), log
        )
        try:
            outcome = self._outcome(claim, entry, ctx, log)
        except BaseException as exc:  # never lose a claim, whatever happened
            outcome = Outcome("fail", claim, error=f"internal error: {exc!r}", error_type=type(exc).__name__)
        with self._cv:
            self._threads_busy -= 1
            running = self._running.pop(claim.step_id, None)
            if running is not None and not running.abandoned:
                self._done.append(outcome)
            self._cv.notify()

    def _outcome(self, claim: Claimed, entry: WorkflowEntry, ctx: StepContext, log: Any) -> Outcome:
        step = entry.steps[claim.name]
        handler = entry.handlers[claim.name]
        try:
            result = asyncio.run(handler(ctx)) if inspect.iscoroutinefunction(handler) else handler(ctx)
        except Park as park:
            log.debug("parked waiting for child task {}", park.child_id)
            return Outcome("park", claim, child_id=park.child_id)
        except PermanentError as exc:
            return self._failure(claim, step, exc, permanent=True, log=log)
        except RetryableError as exc:
            return self._failure(claim, step, exc, permanent=False, log=log, retry_after=exc.retry_after)
        except Exception as exc:
            return self._failure(claim, step, exc, permanent=not step.retryable, log=log)
        try:
            text = json.dumps(result, allow_nan=False)
        except (TypeError, ValueError) as exc:
            bad = PermanentError(f"the handler's result is not JSON-serialisable: {exc}")
            return self._failure(claim, step, bad, permanent=True, log=log)
        return Outcome("complete", claim, result=text, successors=entry.successors[claim.name])

    def _failure(
        self,
        claim: Claimed,
        step: Any,
        exc: BaseException,
        *,
        permanent: bool,
        log: Any,
        retry_after: float | None = None,
    ) -> Outcome:
        kind = type(exc).__name__
        message = getattr(exc, "message", None) or str(exc) or kind
        max_attempts = 1 + step.retry_limit
        if not permanent and claim.attempt < max_attempts:
            delay = (
                retry_after
                if retry_after is not None
                else backoff(claim.attempt, self.retry_base_s, self.retry_max_s)
            )
            log.warning(
                "attempt {}/{} failed ({}: {}); retrying in {:.2f}s",
                claim.attempt,
                max_attempts,
                kind,
                message,
                delay,
            )
            return Outcome("retry", claim, error=message, error_type=kind, delay=delay)
        why = "permanent error" if permanent else f"gave up after {claim.attempt} attempt(s)"
        summary = (
            f"step {claim.name!r} failed ({why}, attempt {claim.attempt}/{max_attempts}): {kind}: {message}"
        )
        log.error(summary)
        return Outcome("fail", claim, error=summary, error_type=kind)

    def _check_timeouts(self, now: float) -> None:
        late = [
            r
            for r in self._running.values()
            if r.deadline is not None and not r.abandoned and now > r.deadline
        ]
        if not late:
            return
        outcomes = []
        for running in late:
            running.abandoned = True
            cache = self._cache.get(running.claim.task_id)
            if cache is None or cache.entry is None:
                continue
            step = cache.entry.steps[running.claim.name]
            exc = TimeoutError(f"step exceeded timeout_s={step.timeout_s}; its late result will be discarded")
            log = logger.bind(task_id=running.claim.task_id, step=running.claim.name)
            outcomes.append(self._failure(running.claim, step, exc, permanent=False, log=log))
        self._apply(outcomes)


def new_worker_id() -> str:
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
