"""The host: discovery -> hooks -> registry -> store -> engine, assembled in that order."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from loguru import logger

from teamflow.config import HostConfig, load_config, normalize_distribution
from teamflow.engine.engine import Engine, policy_dict
from teamflow.engine.runner import Runner, new_worker_id
from teamflow.errors import InvalidCursor, NamespaceNotFound
from teamflow.models import TaskRequest, TaskResult
from teamflow.plugins import LoadReport, Plugins
from teamflow.published import definition_json
from teamflow.refs import parse_ref
from teamflow.registry import Registry, Rules, Source, build_registry
from teamflow.store import Store

TERMINAL = ("completed", "failed", "cancelled")


def _in_process_source(plugin: object, name: str | None) -> Source:
    dist = name or getattr(plugin, "__name__", None) or type(plugin).__name__
    return Source(
        normalize_distribution(dist), str(getattr(plugin, "__version__", "0+local")), f"in-process {dist}"
    )


class Host:
    """One teamflow process: its plugins, registry, store and engine.

    ``plugins`` registers extra plugin objects in-process (tests, embedding), each
    either an object or a ``(distribution_name, object)`` pair; ``discover=False``
    skips the ``teamflow.plugins`` entry points.
    """

    def __init__(
        self,
        database_url: str | None = None,
        config: HostConfig | None = None,
        *,
        plugins: Sequence[object] = (),
        discover: bool = True,
        migrate: bool | None = None,
    ) -> None:
        config = config or load_config()
        if database_url is not None:
            config = attrs.evolve(config, database_url=database_url)
        self.config = config
        self._plugins = Plugins(resolvers=config.conflict_resolvers)
        if discover:
            self._plugins.discover()
        for item in plugins:
            name, obj = item if isinstance(item, tuple) else (None, item)
            self._plugins.register(obj, _in_process_source(obj, name))
        self.store = Store(
            config.database_url,
            synchronous=config.sqlite_synchronous,
            wal_autocheckpoint=config.sqlite_wal_autocheckpoint,
        )
        self.store.ensure_schema(auto=migrate if migrate is not None else self.store.dialect == "sqlite")
        rules = Rules(
            platform_namespaces=config.platform_namespaces(),
            owner_pins=config.owner_pins,
            default_versions=config.default_versions,
            strict=config.strict,
            recorded_owners=self.store.recorded_owners(),
            recorded_fingerprints=self.store.recorded_fingerprints(),
        )
        self.registry: Registry = build_registry(
            self._plugins.collect(), rules, self._plugins.resolve_conflict
        )
        self.plugins: LoadReport = self._plugins.report(self.registry)
        self._publish()
        self.worker_id = new_worker_id()
        self.engine = Engine(
            self.store, self.registry, self._plugins, lease_s=config.lease_s, worker_id=self.worker_id
        )
        self._runner_lock = threading.Lock()

    @classmethod
    def from_env(cls, **kwargs: Any) -> Host:
        """A host configured from ``teamflow.toml`` / ``TEAMFLOW_*`` variables."""
        return cls(**kwargs)

    def _publish(self) -> None:
        namespaces = [
            {"name": name, "owner": ns.owner, "policy": policy_dict(ns.policy)}
            for name, ns in self.registry.namespaces.items()
        ]
        versions = [
            {
                "namespace": e.namespace,
                "name": e.name,
                "version": e.version.text,
                "fingerprint": e.fingerprint,
                "distribution": e.source.distribution,
                "distribution_version": e.source.version,
                "deprecated": e.deprecated,
                "definition": definition_json(e),
            }
            for e in self.registry.entries()
        ]
        self.store.publish(namespaces, versions)

    # -- running tasks --------------------------------------------------------------------

    @property
    def runner(self) -> Runner:
        """This process's runner: a worker when ``run_worker`` started one, else a local one."""
        with self._runner_lock:
            if self.engine.runner is None:
                self.engine.runner = self._make_runner(concurrency=4, namespaces=None, worker_mode=False)
                self.engine.runner.start()
            return self.engine.runner

    def _make_runner(
        self, *, concurrency: int, namespaces: Sequence[str] | None, worker_mode: bool
    ) -> Runner:
        waker = None
        if worker_mode and self.store.dialect == "postgres":
            from teamflow.store.listen import listener

            waker = listener(self.store)
        return Runner(
            self.engine,
            concurrency=concurrency,
            namespaces=namespaces,
            worker_mode=worker_mode,
            poll_interval_s=self.config.poll_interval_s,
            retry_base_s=self.config.retry_base_s,
            retry_max_s=self.config.retry_max_s,
            waker=waker,
        )

    def execute_async(self, request: TaskRequest) -> str:
        """Validate and store the task for workers; return its id."""
        task_id, _, _ = self.engine.create(request, claim=False)
        runner = self.engine.runner
        if runner is not None and runner.worker_mode:
            runner.wake()
        return task_id

    def execute_sync(
        self,
        request: TaskRequest,
        timeout: float | None = None,
        progress: Callable[[TaskResult], None] | None = None,
    ) -> TaskResult:
        """Run the task to the end in this process and return its final state."""
        entry = self.engine.prepare(request)
        runner = self.runner
        task_id, claimed, _ = self.engine.create(request, claim=runner.serves(entry.namespace), entry=entry)
        done = runner.waiter(task_id)
        if claimed and timeout is None and progress is None:
            runner.drive(task_id, claimed)  # runs the task's chain on this thread
        elif claimed:  # the caller needs control back (timeout, progress): step threads run it
            runner.adopt(task_id, claimed)
        else:  # an existing task (idempotency) or one this process does not serve: pick up what it can
            runner.track(task_id)
        return self.wait(task_id, timeout=timeout, event=done, progress=progress)

    def wait(
        self,
        task_id: str,
        timeout: float | None = None,
        event: threading.Event | None = None,
        progress: Callable[[TaskResult], None] | None = None,
    ) -> TaskResult:
        """Block until a task ends (or ``timeout`` seconds pass) and return it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        every = 0.25 if progress is not None else 2.0
        while True:
            remaining = every if deadline is None else min(every, max(0.0, deadline - time.monotonic()))
            if event is not None and event.wait(remaining):
                return self.get_task(task_id)
            if event is None:
                time.sleep(min(remaining, 0.05))
            task = self.get_task(task_id)
            if progress is not None:
                progress(task)
            if task.status in TERMINAL or (deadline is not None and time.monotonic() >= deadline):
                return task

    def get_task(self, task_id: str) -> TaskResult:
        return self.engine.get_task(task_id)

    def cancel(self, task_id: str, actor: str = "api") -> TaskResult:
        return self.engine.cancel(task_id, actor)

    def retry(self, task_id: str, actor: str = "cli") -> list[str]:
        return self.engine.retry(task_id, actor)

    def resolve_step(self, task_id: str, step: str, result: Any = None, actor: str = "cli") -> TaskResult:
        return self.engine.resolve_step(task_id, step, result, actor)

    def list_tasks(
        self,
        *,
        namespace: str | None = None,
        name: str | None = None,
        version: str | None = None,
        status: str | None = None,
        parent_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of tasks, newest first, and the cursor of the next page (None at the end)."""
        before = None
        if cursor:
            try:
                at, _, last_id = cursor.partition("_")
                before = (float(at), last_id)
            except ValueError:
                raise InvalidCursor(
                    f"invalid cursor {cursor!r}: pass the next_cursor of the previous page"
                ) from None
        limit = max(1, min(limit, 500))
        rows = self.store.list_tasks(
            filters={
                "namespace": namespace,
                "name": name,
                "version": version,
                "status": status,
                "parent_id": parent_id,
            },
            limit=limit + 1,
            before=before,
        )
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = f"{rows[-1]['created_at']!r}_{rows[-1]['id']}"
        return rows, next_cursor

    def approve(self, ref: str, approver: str) -> str:
        """Approve a workflow version's current fingerprint; returns the fingerprint."""
        parsed = parse_ref(ref)
        entry = self.registry.resolve(parsed.namespace, parsed.name, parsed.version)
        policy = self.registry.namespaces[entry.namespace].policy
        if policy.approvers and approver not in policy.approvers:
            from teamflow.errors import NotApproved

            raise NotApproved(
                f"{approver} is not an approver of namespace {entry.namespace!r}; approvers: "
                f"{', '.join(policy.approvers)}"
            )
        self.store.approve(entry.namespace, entry.name, entry.version.text, entry.fingerprint, approver)
        return entry.fingerprint

    # -- workers --------------------------------------------------------------------------

    def start_worker(self, *, concurrency: int = 4, namespaces: Sequence[str] | None = None) -> Runner:
        """Start claiming ready steps of ``namespaces`` (default: every namespace loaded) in the background."""
        unknown = [ns for ns in namespaces or () if ns not in self.registry.namespaces]
        if unknown:
            raise NamespaceNotFound(
                f"this worker does not hold namespace(s) {', '.join(unknown)}; loaded: "
                f"{', '.join(sorted(self.registry.namespaces)) or 'none'} (install the team's plugin)"
            )
        with self._runner_lock:
            if self.engine.runner is not None:
                self.engine.runner.stop()
            self.engine.runner = self._make_runner(
                concurrency=concurrency, namespaces=namespaces, worker_mode=True
            )
            self.engine.runner.start()
            return self.engine.runner

    def run_worker(
        self,
        *,
        concurrency: int = 4,
        namespaces: Sequence[str] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        """Run a worker in this thread until ``stop`` is set; then finish or release steps in hand."""
        stop = stop or threading.Event()
        runner = self.start_worker(concurrency=concurrency, namespaces=namespaces)
        logger.info(
            "worker {} serving {} with concurrency {}",
            self.worker_id,
            ", ".join(namespaces or sorted(self.registry.namespaces)),
            concurrency,
        )
        stop.wait()
        runner.stop()

    def unservable(self) -> list[dict[str, Any]]:
        """Unfinished tasks whose version and fingerprint this host's registry does not hold."""
        problems = []
        for namespace, name, version, fingerprint, count in self.store.active_keys():
            entry = self.registry.get(namespace, name, version)
            if entry is not None and entry.fingerprint == fingerprint:
                continue
            why = (
                "version not loaded (removed, blocked or refused)"
                if entry is None
                else f"definition drifted: tasks need {fingerprint[:12]}, loaded {entry.fingerprint[:12]}"
            )
            problems.append(
                {
                    "reference": f"{namespace}/{name}@{version}",
                    "fingerprint": fingerprint,
                    "tasks": count,
                    "reason": why,
                }
            )
        return problems

    def close(self) -> None:
        runner = self.engine.runner
        if runner is not None:
            runner.stop()
            self.engine.runner = None
        self.store.close()

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
