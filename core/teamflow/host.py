"""The host: discovery -> hooks -> registry -> store -> engine, assembled in that order,
and the one way in for the surfaces (CLI, HTTP API, admin pages).

What the surfaces show comes from here, already in its typed shape (``teamflow.views``):
a task with its children and history, readiness (one definition for ``/health/ready``
and ``teamflow check``), the stats behind ``/metrics``, and the database upgrade with the
configuration in force. The surfaces never reach the store or the engine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from typing import Any

import attrs
from loguru import logger

from teamflow import views
from teamflow.access import Access, cli_caller
from teamflow.config import HostConfig, load_config, normalize_distribution
from teamflow.engine.engine import Created, Engine, Prepared
from teamflow.engine.events import Events
from teamflow.engine.group_commit import TaskCommit
from teamflow.engine.runner import Runner, new_worker_id
from teamflow.errors import (
    ApprovalNotRequired,
    Forbidden,
    InvalidCursor,
    NamespaceNotFound,
    NotApproved,
    NoWorker,
    RolloutRefused,
    StoreError,
    TaskNotFound,
    TeamflowError,
)
from teamflow.models import TERMINAL, TaskRequest, TaskResult
from teamflow.plugins import LoadReport, Plugins
from teamflow.refs import parse_ref
from teamflow.registry import Registry, Rules, Source, build_registry
from teamflow.registry.export import RegistryExport, build_export, read_export
from teamflow.registry.fingerprint import route_key
from teamflow.registry.published import definition, policy_dict
from teamflow.registry.records import PublishedCatalog
from teamflow.registry.release import check_release
from teamflow.store import DuplicateKey, Store, open_store
from teamflow.store.records import IDEMPOTENCY_KEY, AuditEntry, NamespaceRecord, TaskFilter, VersionRecord
from teamflow.store.schema import SCHEMA_VERSION
from teamflow.tokens import APPROVE, EXECUTE, OPERATE, Caller

UNSERVED_S = 2.0  # how long a waiter gives a task nobody serves before it says so
STEP_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0)


def _in_process_source(plugin: object, name: str | None) -> Source:
    dist = name or getattr(plugin, "__name__", None) or type(plugin).__name__
    return Source(
        normalize_distribution(dist), str(getattr(plugin, "__version__", "0+local")), f"in-process {dist}"
    )


@attrs.frozen
class Started:
    """A task started by ``Host.start``: its id, and the event its end sets."""

    id: str
    done: threading.Event
    deprecation: views.Deprecation | None = None


def _open(config: HostConfig) -> Store:
    return open_store(
        config.database_url,
        synchronous=config.sqlite_synchronous,
        wal_autocheckpoint=config.sqlite_wal_autocheckpoint,
    )


def _actor(caller: Caller | None) -> str | None:
    return None if caller is None else caller.actor


def _may_execute(caller: Caller | None, namespace: str) -> None:
    principal = caller.principal if caller is not None else None
    if principal is not None and not principal.may(EXECUTE, namespace):
        raise Forbidden(
            f"token {principal.name!r} may not start tasks in namespace {namespace!r} (its namespaces: "
            f"{', '.join(principal.namespaces)}; its scopes: {', '.join(principal.scopes)}): use a token with "
            f"scope 'execute' on {namespace!r}",
            token=principal.name,
            namespace=namespace,
        )


def _approver(caller: Caller, namespace: str, given: str | None) -> str:
    """Who approves: a token's identity (it must hold scope approve there), else the name given."""
    principal = caller.principal
    if principal is None:
        if not given:
            raise NotApproved("name the approver: `teamflow approve REF --approver EMAIL`")
        return given
    if not principal.may(APPROVE, namespace):
        raise Forbidden(
            f"token {principal.name!r} may not approve in namespace {namespace!r}: use a token with scope "
            f"'approve' on {namespace!r} whose identity is one of its approvers",
            token=principal.name,
            namespace=namespace,
        )
    if principal.identity is None:
        raise Forbidden(
            f"token {principal.name!r} has no identity to approve as: create the approver's token with "
            "`teamflow tokens create --scope approve --identity EMAIL ...`",
            token=principal.name,
        )
    if given is not None and given != principal.identity:
        raise Forbidden(f"token {principal.name!r} approves as {principal.identity}, not as {given}", token=principal.name)
    return principal.identity


def _no_worker(task: TaskResult, namespace: Any) -> NoWorker:
    owner = f" (shipped by {namespace.owner})" if namespace is not None else ""
    return NoWorker(
        f"task {task.id} ({task.ref}) is stored, but neither this process nor any live worker runs "
        f"{task.ref} with fingerprint {task.fingerprint[:12]}{owner}: start `teamflow worker --namespace "
        f"{task.namespace}` where that version is installed (`teamflow check` lists unservable tasks); the task "
        f"stays {task.status} and runs once a worker serves it (`teamflow task {task.id}`)",
        task_id=task.id,
        reference=task.ref,
    )


def _may(caller: Caller, scope: str, namespace: str, what: str) -> None:
    principal = caller.principal
    if principal is not None and not principal.may(scope, namespace):
        raise Forbidden(
            f"token {principal.name!r} may not {what} in namespace {namespace!r}: use a token with scope "
            f"{scope!r} on {namespace!r}",
            token=principal.name,
            namespace=namespace,
        )


def _no_task(task_id: str) -> TaskNotFound:
    return TaskNotFound(f"task {task_id} does not exist", task_id=task_id)


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
        self.store = _open(config)
        self.store.ensure_schema(auto=migrate if migrate is not None else self.store.migrates_itself)
        rules = Rules(
            platform_namespaces=config.platform_namespaces(),
            owner_pins=config.owner_pins,
            default_versions=config.default_versions,
            strict=config.strict,
            recorded_owners=self.store.recorded_owners(),
            recorded_fingerprints=self.store.recorded_fingerprints(),
            published=self._published_catalog(),
        )
        self.registry: Registry = build_registry(self._plugins.collect(), rules, self._plugins.resolve_conflict)
        self.plugins: LoadReport = self._plugins.report(self.registry)
        self._publish()
        self.worker_id = new_worker_id()
        self.events = Events(self._plugins, self.store)
        self.engine = Engine(self.store, self.registry, self.events, lease_s=config.lease_s, worker_id=self.worker_id)
        self.tasks = TaskCommit(self.store)  # new tasks of concurrent callers share commits
        self.stopping = threading.Event()  # set by a server that began to stop (readiness says so)
        self.access = Access(self.store, config)  # tokens, sessions, the audit trail
        self._runner: Runner | None = None
        self._runner_lock = threading.Lock()

    @classmethod
    def from_env(cls, **kwargs: Any) -> Host:
        """A host configured from ``teamflow.toml`` / ``TEAMFLOW_*`` variables."""
        return cls(**kwargs)

    @staticmethod
    def upgrade_database(config: HostConfig) -> views.SchemaUpgrade:
        """Apply the missing migrations to ``config``'s database (no plugin is loaded)."""
        store = _open(config)
        try:
            store.connect()
            applied = store.upgrade()
            return views.SchemaUpgrade(store.safe_url, store.schema_version() or 0, applied)
        finally:
            store.close()

    def _publish(self) -> None:
        self.store.publish(
            [
                NamespaceRecord(name, ns.owner, policy_dict(ns.policy))
                for name, ns in self.registry.namespaces.items()
            ],
            [
                VersionRecord(
                    e.namespace, e.name, e.version.text, e.fingerprint, e.source.distribution, e.source.version,
                    e.deprecated, definition(e),
                )
                for e in self.registry.entries()
            ],
        )

    @property
    def database(self) -> str:
        """The database URL, without its password."""
        return self.store.safe_url

    @property
    def reads_inline(self) -> bool:
        """Reads answer from a local file in microseconds (SQLite): cheaper to run on a
        surface's event loop than to hand to a thread. False on PostgreSQL."""
        return self.store.reads_locally

    # -- running tasks --------------------------------------------------------------------

    @property
    def runner(self) -> Runner:
        """This process's runner: a worker when ``start_worker`` started one, else a local one."""
        with self._runner_lock:
            if self._runner is None:
                self._runner = self._make_runner(concurrency=4, namespaces=None, worker_mode=False)
                self._runner.start()
            return self._runner

    def _make_runner(self, *, concurrency: int, namespaces: Sequence[str] | None, worker_mode: bool) -> Runner:
        return Runner(
            self.store,
            self.registry,
            self.engine,
            self.events,
            worker_id=self.worker_id,
            lease_s=self.config.lease_s,
            concurrency=concurrency,
            namespaces=namespaces,
            worker_mode=worker_mode,
            poll_interval_s=self.config.poll_interval_s,
            retry_base_s=self.config.retry_base_s,
            retry_max_s=self.config.retry_max_s,
            watch=self.store.watch if worker_mode else None,
        )

    def execute_async(self, request: TaskRequest) -> str:
        """Validate and store the task for workers; return its id once it is committed.

        Concurrent callers (threads, HTTP requests) share commits.
        """
        return self.accept(request).id

    def accept(self, request: TaskRequest, caller: Caller | None = None) -> views.Accepted:
        """``execute_async``, answered as the HTTP API does (a task found by its idempotency
        key is read for its real status; a new one is pending, without a read)."""
        _may_execute(caller, request.namespace)
        prepared = self.engine.prepare(request)
        created = self.engine.create(request, prepared, claim=False, via=self.tasks, actor=_actor(caller))
        self._wake_workers()
        return self._accepted(created, prepared, self._deprecation(prepared, caller))

    def submit(self, request: TaskRequest, caller: Caller | None = None) -> Future[views.Accepted]:
        """``accept`` for a caller that must not block on the commit (an event loop): the
        request is checked here (a refusal raises here), the task goes into the next commit
        of ``TaskCommit``'s committer thread, and the future answers once it is committed
        (or with the commit's error). Checking reads the database (an idempotency key, a
        rollout): call it where a read is cheap (``reads_inline``)."""
        _may_execute(caller, request.namespace)
        prepared = self.engine.prepare(request)
        deprecation = self._deprecation(prepared, caller)
        staged = self.engine.stage(request, prepared, actor=_actor(caller))
        answer: Future[views.Accepted] = Future()
        if isinstance(staged, Created):
            answer.set_result(self._accepted(staged, prepared, deprecation))
            return answer

        def committed(error: StoreError | None, stored: bool) -> None:  # on the committer thread
            try:
                if error is not None:
                    raise error
                created = self.engine.stored(staged, []) if stored else self.engine.taken(
                    staged, DuplicateKey(IDEMPOTENCY_KEY, f"idempotency key {request.idempotency_key!r} is taken")
                )
                self._wake_workers()
                answer.set_result(self._accepted(created, prepared, deprecation))
            except BaseException as exc:  # the request gets it; the committer goes on
                answer.set_exception(exc)

        self.tasks.submit(staged.task, prepared.entry.step_rows, committed)
        return answer

    def _accepted(
        self, created: Created, prepared: Prepared, deprecation: views.Deprecation | None
    ) -> views.Accepted:
        """A new task is pending (no read needed); one its idempotency key found is read."""
        if created.existing:
            return attrs.evolve(views.accepted(self.get_task(created.id)), deprecation=deprecation)
        entry = prepared.entry
        return views.Accepted(created.id, entry.namespace, entry.name, entry.version.text, "pending",
                              views.links(created.id), deprecation)

    def _deprecation(self, prepared: Prepared, caller: Caller | None) -> views.Deprecation | None:
        """A deprecated version was chosen (asked for, or nothing else matched): say so in the
        log, naming who asked, and return what the HTTP answer's headers carry."""
        entry = prepared.entry
        if entry.deprecated is None:
            return None
        sunset = self.config.sunsets.get(entry.ref)
        logger.warning(
            "{} runs deprecated {}: {}{}", _actor(caller) or "a Python API caller", entry.ref, entry.deprecated,
            f" (sunset {sunset})" if sunset else "",
        )
        published = {v.version: v.published_at for v in self.store.published_versions(entry.namespace, entry.name)}
        return views.Deprecation(entry.ref, entry.deprecated, published.get(entry.version.text), sunset)

    def execute_many(self, requests: Sequence[TaskRequest]) -> list[str]:
        """Validate every request and store them all for the workers in one transaction;
        return their task ids in order. One bad request refuses the whole batch (its error
        names the item, counted from 0) and nothing is stored."""
        return [a.id for a in self.accept_many(requests).tasks]

    def accept_many(self, requests: Sequence[TaskRequest], caller: Caller | None = None) -> views.Batch:
        """``execute_many``, answered as the HTTP API does. A caller that may not execute in
        one item's namespace has the whole batch refused."""
        for i, request in enumerate(requests):
            try:
                _may_execute(caller, request.namespace)
            except TeamflowError as exc:
                raise exc.for_item(i) from None
        prepared: list[Prepared] = []

        def checked() -> Iterator[Prepared]:  # read as the tasks are stored: see Engine.create_many
            for i, request in enumerate(requests):
                try:
                    prepared.append(self.engine.prepare(request))
                except TeamflowError as exc:
                    raise exc.for_item(i) from None
                yield prepared[-1]

        created = self.engine.create_many(requests, checked(), actor=_actor(caller))
        self._wake_workers()
        deprecations: dict[str, views.Deprecation | None] = {}  # once per version, not per item
        for p in prepared:
            if p.entry.ref not in deprecations:
                deprecations[p.entry.ref] = self._deprecation(p, caller)
        return views.Batch(
            [self._accepted(c, p, deprecations[p.entry.ref]) for c, p in zip(created, prepared, strict=True)]
        )

    def _wake_workers(self) -> None:
        """New tasks: an embedded worker of this process claims them now, not at its next poll."""
        runner = self._runner
        if runner is not None and runner.worker_mode:
            runner.wake()

    def execute_sync(
        self,
        request: TaskRequest,
        timeout: float | None = None,
        progress: Callable[[TaskResult], None] | None = None,
        caller: Caller | None = None,
    ) -> TaskResult:
        """Run the task to the end in this process and return its final state (or its state
        when ``timeout`` runs out). Raises ``NoWorker`` within ``UNSERVED_S`` when neither
        this process nor any live worker can run it (the task stays stored)."""
        prepared = self.engine.prepare(request)
        entry = prepared.entry
        runner = self.runner
        serves = runner.serves(entry.namespace)
        # On a single-writer database the new task joins the runner's next group commit
        # (which leases its roots here, so only when this process runs them, and takes no
        # idempotency key: those go on their own).
        via = runner if self.store.single_writer and request.idempotency_key is None and serves else None
        created = self.engine.create(request, prepared, claim=serves, via=via, actor=_actor(caller))
        done = runner.waiter(created.id)
        if created.claimed and timeout is None and progress is None:
            runner.drive(created.id, created.claimed)  # runs the task's chain on this thread
        elif created.claimed:  # the caller needs control back (timeout, progress): step threads run it
            runner.adopt(created.id, created.claimed)
        else:  # an existing task (idempotency) or one this process does not serve: pick up what it can
            runner.track(created.id)
        return self.wait(created.id, timeout=timeout, event=done, progress=progress, unserved=True)

    def start(self, request: TaskRequest, caller: Caller | None = None) -> Started:
        """Start a task on this process's step threads and return at once, with the event its
        end sets (``execute_sync`` without waiting: the HTTP API waits on its event loop)."""
        _may_execute(caller, request.namespace)
        prepared = self.engine.prepare(request)
        runner = self.runner
        serves = runner.serves(prepared.entry.namespace)
        via = runner if self.store.single_writer and request.idempotency_key is None and serves else None
        created = self.engine.create(request, prepared, claim=serves, via=via, actor=_actor(caller))
        done = runner.waiter(created.id)
        if created.claimed:
            runner.adopt(created.id, created.claimed)
        else:  # an existing task (it may have ended already) or one other workers serve
            runner.track(created.id)
            if created.existing and self.get_task(created.id).status in TERMINAL:
                done.set()
        return Started(created.id, done, self._deprecation(prepared, caller))

    def wait(
        self,
        task_id: str,
        timeout: float | None = None,
        event: threading.Event | None = None,
        progress: Callable[[TaskResult], None] | None = None,
        unserved: bool = False,
    ) -> TaskResult:
        """Block until a task ends (or ``timeout`` seconds pass) and return it. ``unserved``:
        raise ``NoWorker`` once the task has waited ``UNSERVED_S`` with nobody to run it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        every = 0.25 if progress is not None else (0.5 if unserved else 2.0)
        check_at = time.monotonic() + UNSERVED_S
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
            if unserved and time.monotonic() >= check_at:
                check_at = time.monotonic() + UNSERVED_S
                if not self.serving(task):
                    raise self.no_worker(task.id)

    def no_worker(self, task_id: str) -> NoWorker:
        """The error that says nobody can run this stored task, and what to do."""
        task = self.get_task(task_id)
        return _no_worker(task, self.registry.namespaces.get(task.namespace))

    def serving(self, task: TaskResult) -> bool:
        """Whether this process or a live worker (a heartbeat within two lease periods) holds
        the task's version with its fingerprint."""
        entry = self.registry.get(task.namespace, task.name, task.version)
        runner = self._runner
        here = runner is not None and runner.serves(task.namespace)
        if here and entry is not None and entry.fingerprint == task.fingerprint:
            return True
        route = route_key(task.namespace, task.name, task.version, task.fingerprint)
        return any(route in w.routes for w in self.store.live_workers(2 * self.config.lease_s))

    def get_task(self, task_id: str) -> TaskResult:
        return self.engine.get_task(task_id)

    def task_view(self, task_id: str, caller: Caller | None = None) -> views.TaskView:
        """The task as every surface shows it: its steps, child tasks and history. A caller
        that does not reach its namespace is told it does not exist; a child in a namespace
        it does not reach is shown as a link only."""
        detail = self.engine.task_detail(task_id)
        if caller is not None and not caller.sees(detail.task.namespace):
            raise _no_task(task_id)
        return views.task_view(detail, sees=caller.sees if caller is not None else None)

    def _operated(self, task_id: str, caller: Caller | None, action: str, detail: str | None = None) -> AuditEntry:
        """The audit row of an operator action on a task the caller reaches (else: no such task)."""
        caller = caller or cli_caller()
        namespace = self.store.task_namespace(task_id)
        if namespace is None or not caller.sees(namespace):
            raise _no_task(task_id)
        return AuditEntry(action, caller.actor, namespace, f"task {task_id}", caller.address, detail)

    def cancel(self, task_id: str, actor: str = "api", caller: Caller | None = None) -> TaskResult:
        audit = self._operated(task_id, caller, "task.cancel")
        return self.engine.cancel(task_id, caller.actor if caller else actor, audit)

    def retry(self, task_id: str, actor: str = "cli", caller: Caller | None = None) -> list[str]:
        """Re-open a failed task's failed steps (attempts reset, history kept); their names."""
        audit = self._operated(task_id, caller, "task.retry")
        reopened = self.engine.retry(task_id, caller.actor if caller else actor, audit)
        if self._runner is not None:
            self._runner.track(task_id)
        return reopened

    def resolve_step(
        self, task_id: str, step: str, result: Any = None, actor: str = "cli", caller: Caller | None = None
    ) -> TaskResult:
        audit = self._operated(task_id, caller, "step.resolve", f"step {step}")
        task = self.engine.resolve_step(task_id, step, result, caller.actor if caller else actor, audit)
        if self._runner is not None:
            self._runner.track(task_id)
        return task

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
        caller: Caller | None = None,
    ) -> views.TaskPage:
        """A page of tasks, newest first, and the cursor of the next page (None at the end);
        only of the namespaces the caller reaches."""
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
        where = TaskFilter(namespace, name, version, status, parent_id, before, caller.visible() if caller else None)
        rows = self.store.list_tasks(where, limit + 1)
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = f"{rows[-1].created_at!r}_{rows[-1].id}"
        return views.TaskPage([views.task_summary(r) for r in rows], next_cursor)

    def approve(self, ref: str, approver: str | None = None, *, caller: Caller | None = None) -> views.ApprovalView:
        """Approve a version's current fingerprint (a changed definition needs a new approval).

        Refused: an unknown version, a namespace that requires no approval, an approver who
        is not one of its ``approvers``. A token's approval is made as the token's
        ``identity`` (never a name sent with the request); the CLI's records the OS user and
        host beside the approver. The approval and its audit row share one transaction.
        """
        caller = caller or cli_caller()
        parsed = parse_ref(ref)
        entry = self.registry.resolve(parsed.namespace, parsed.name, parsed.version)
        policy = self.registry.namespaces[entry.namespace].policy
        approver = _approver(caller, entry.namespace, approver)
        if not policy.requires_approval:
            raise ApprovalNotRequired(
                f"namespace {entry.namespace!r} (owned by {self.registry.namespaces[entry.namespace].owner}) does not "
                f"require approval: {entry.ref} runs without one",
                reference=entry.ref,
            )
        if approver not in policy.approvers:
            raise NotApproved(
                f"{approver} is not an approver of namespace {entry.namespace!r}; its approvers: "
                f"{', '.join(policy.approvers) or 'none (the namespace policy lists no approvers)'}",
                reference=entry.ref,
                approvers=list(policy.approvers),
            )
        audit = AuditEntry(
            "approve", caller.actor, entry.namespace, entry.ref, caller.address,
            f"approver {approver}; fingerprint {entry.fingerprint[:12]}",
        )
        self.store.approve(
            entry.namespace, entry.name, entry.version.text, entry.fingerprint, approver, via=caller.actor, audit=audit
        )
        return views.ApprovalView(entry.ref, approver, entry.fingerprint, time.time(), True, caller.actor, True)

    def version_view(self, namespace: str, name: str, version: str | None) -> views.VersionDetail:
        """One version as every surface shows it, with who approved it (or who can)."""
        entry = self.registry.resolve(namespace, name, version)
        records = self.store.approval_records(entry.namespace, entry.name, entry.version.text)
        detail = views.version_detail(self.registry, entry, views.approval_state(self.registry, entry, records))
        return attrs.evolve(detail, compatibility=views.compatibility(self.registry, entry))

    def workflow_view(self, namespace: str, name: str, window_days: float = 7.0) -> views.WorkflowView:
        """A workflow's versions with how drained each is (see ``views.Drain``)."""
        view = views.workflow(self.registry, namespace, name)
        unfinished = self.store.unfinished(namespace, name)
        children: dict[str, list[views.ChildCaller]] = {}
        for version, caller, tasks in self.store.child_callers(namespace, name, window_days * 86400):
            children.setdefault(version, []).append(views.ChildCaller(caller, tasks))
        rollout = self.engine.rollouts().get((namespace, name))
        drain = []
        for v in view.versions:
            entry = self.registry.get(namespace, name, v.version)
            count, oldest = unfinished.get(v.version, (0, None))
            declared = views.callers(self.registry, entry) if entry is not None else []
            share = rollout.percent if rollout is not None and rollout.version == v.version else 0.0
            drain.append(
                views.Drain(v.version, count, oldest, declared, children.get(v.version, []), window_days, share)
            )
        return attrs.evolve(view, drain=drain)

    def set_rollout(self, ref: str, percent: float, *, caller: Caller | None = None) -> views.RolloutView:
        """Send ``percent`` of the requests for ``ref``'s workflow (those naming no exact
        version, and that this version satisfies) to this exact version, on every host.
        Refused for a version not loaded here, deprecated, waiting for approval, or blocked."""
        caller = caller or cli_caller()
        parsed = parse_ref(ref)
        if parsed.version is None:
            raise RolloutRefused(f"{ref}: name the exact version to roll out, as namespace/name@1.2.3")
        _may(caller, OPERATE, parsed.namespace, "roll out versions")
        if not (isinstance(percent, int | float) and 0 < percent <= 100):
            raise RolloutRefused(f"--percent must be more than 0 and at most 100, got {percent!r}", percent=percent)
        entry = self.registry.get(parsed.namespace, parsed.name, parsed.version)
        if entry is None:
            loaded = [e.version.text for e in self.registry.entries(parsed.namespace) if e.name == parsed.name]
            raise RolloutRefused(
                f"{ref} is not loaded on this host (loaded versions: {', '.join(loaded) or 'none'}): install the "
                "plugin version that ships it, then roll it out",
                reference=ref,
            )
        if entry.deprecated is not None:
            raise RolloutRefused(f"{entry.ref} is deprecated ({entry.deprecated}): roll out a current version",
                                 reference=entry.ref)
        if entry.namespace in self.registry.blocked:
            raise RolloutRefused(
                f"namespace {entry.namespace!r} is blocked by a conflict ({self.registry.blocked[entry.namespace]}): "
                "settle it first, then roll out",
                reference=entry.ref,
            )
        if any(w.reference == entry.ref for w in self.waiting_approval()):
            raise RolloutRefused(
                f"{entry.ref} waits for approval and cannot run: `teamflow approve {entry.ref} --approver EMAIL` first",
                reference=entry.ref,
            )
        audit = AuditEntry("rollout.set", caller.actor, entry.namespace, entry.ref, caller.address, f"{percent:g}%")
        self.store.set_rollout(entry.namespace, entry.name, entry.version.text, float(percent), audit)
        return views.RolloutView(entry.namespace, entry.name, entry.version.text, float(percent), caller.actor)

    def clear_rollout(self, ref: str, *, caller: Caller | None = None) -> views.RolloutView:
        """End the rollout of ``ref``'s workflow; tasks already created keep their version."""
        caller = caller or cli_caller()
        parsed = parse_ref(ref)
        _may(caller, OPERATE, parsed.namespace, "clear rollouts")
        self.registry.versions(parsed.namespace, parsed.name)  # a NotFound naming what exists
        audit = AuditEntry("rollout.clear", caller.actor, parsed.namespace, f"{parsed.namespace}/{parsed.name}",
                           caller.address)
        self.store.clear_rollout(parsed.namespace, parsed.name, audit)
        return views.RolloutView(parsed.namespace, parsed.name, None, 0.0, caller.actor)

    def waiting_approval(self) -> list[views.WaitingApproval]:
        """Loaded versions that cannot run until one of their namespace's approvers approves them."""
        waiting = []
        for entry in self.registry.entries():
            policy = self.registry.namespaces[entry.namespace].policy
            if not policy.requires_approval:
                continue
            approvers = set(self.store.approvals(entry.namespace, entry.name, entry.version.text, entry.fingerprint))
            if approvers & set(policy.approvers):
                continue
            waiting.append(views.WaitingApproval(
                entry.ref, entry.fingerprint, list(policy.approvers),
                f"one of {', '.join(policy.approvers) or '(no approvers configured)'} runs "
                f"`teamflow approve {entry.ref} --approver EMAIL` (or POST /workflows/{entry.namespace}/{entry.name}/"
                f"{entry.version.text}/approvals with an approve token)",
            ))
        return waiting

    # -- access -----------------------------------------------------------------------------

    @staticmethod
    def cli_caller() -> Caller:
        """The CLI as a caller: unrestricted (it has the database's rights), named by the OS
        user and host."""
        return cli_caller()

    def create_token(
        self,
        name: str,
        namespaces: Sequence[str],
        scopes: Sequence[str],
        *,
        identity: str | None = None,
        expires_s: float | None = None,
        caller: Caller | None = None,
    ) -> views.IssuedToken:
        """A new token; its secret is in the answer and nowhere else (stored: its SHA-256)."""
        record, secret = self.access.create(
            name, tuple(namespaces), tuple(scopes), identity=identity, expires_s=expires_s,
            caller=caller or cli_caller(),
        )
        return views.IssuedToken(views.token_view(record, time.time()), secret)

    def reissue_token(
        self, name: str, *, overlap_s: float, expires_s: float | None = None, caller: Caller | None = None
    ) -> views.IssuedToken:
        """A new secret under an existing token's name; the old secret works ``overlap_s`` more."""
        record, secret = self.access.reissue(name, overlap_s=overlap_s, expires_s=expires_s, caller=caller or cli_caller())
        return views.IssuedToken(views.token_view(record, time.time()), secret)

    def revoke_token(self, name: str, caller: Caller | None = None) -> views.TokenView:
        return views.token_view(self.access.revoke(name, caller=caller or cli_caller()), time.time())

    def list_tokens(self) -> views.Tokens:
        now = time.time()
        return views.Tokens([views.token_view(t, now) for t in self.access.tokens()])

    def audit(
        self,
        *,
        caller: Caller | None = None,
        namespace: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> views.AuditPage:
        """Audit rows, newest first: all of them for the CLI and admin tokens, else only those
        of the caller's namespaces."""
        before = None
        if cursor:
            if not cursor.isdigit():
                raise InvalidCursor(f"invalid cursor {cursor!r}: pass the next_cursor of the previous page")
            before = int(cursor)
        rows = self.access.audit_rows(
            caller=caller or cli_caller(), namespace=namespace, limit=limit + 1, before_id=before
        )
        next_cursor = str(rows[limit - 1].id) if len(rows) > limit else None
        return views.AuditPage([views.audit_view(r) for r in rows[:limit]], next_cursor)

    # -- what the surfaces show -------------------------------------------------------------

    def unservable(self) -> list[views.Unservable]:
        """Unfinished tasks whose version and fingerprint this host's registry does not hold."""
        problems = []
        for active in self.store.active_versions():
            entry = self.registry.get(active.namespace, active.name, active.version)
            if entry is not None and entry.fingerprint == active.fingerprint:
                continue
            problems.append(views.unservable(active, loaded=entry.fingerprint if entry else None))
        return problems

    def load_report(self) -> views.LoadReportView:
        """Plugins, refusals, conflicts, drift, and the tasks no worker here can serve."""
        return views.load_report(self.plugins, self.unservable(), self.waiting_approval())

    def readiness(self) -> views.Health:
        """Whether this host can do its work: the database answers, its schema is this
        teamflow's, every unfinished task can be served here, and it is not stopping."""
        reasons: list[str] = []
        version = None
        try:
            version = self.store.schema_version()
            if version != SCHEMA_VERSION:
                reasons.append(
                    f"database schema is at version {version or 0}, this teamflow needs {SCHEMA_VERSION}: "
                    "run `teamflow db upgrade`"
                )
            refused = self.store.writable()
            if refused is not None:
                reasons.append(f"the database refuses writes ({refused}): tasks cannot be created or run")
            reasons.extend(f"{u.message} (fix: {u.fix})" for u in self.unservable())
        except Exception as exc:  # readiness reports a broken database, it never fails with it
            logger.warning("readiness check: database error: {}", exc)
            reasons.append(f"database: {exc.detail if isinstance(exc, TeamflowError) else exc}")
        if self.stopping.is_set():
            reasons.append("the server is stopping")
        return views.Health(status="unavailable" if reasons else "ok", reasons=reasons, schema_version=version)

    def stats(self) -> views.Stats:
        """Tasks and steps by workflow version and status, step durations, loaded versions."""
        return views.Stats(
            tasks=self.store.task_counts(),
            steps=self.store.step_counts(),
            durations=self.store.step_durations(STEP_BUCKETS),
            buckets=STEP_BUCKETS,
            unservable=self.unservable(),
            versions={ns: len(self.registry.entries(ns)) for ns in sorted(self.registry.namespaces)},
        )

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
            if self._runner is not None:
                self._runner.stop()
            self._runner = self._make_runner(concurrency=concurrency, namespaces=namespaces, worker_mode=True)
            self._runner.start()
            return self._runner

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
        runner.stop(timeout=self.config.shutdown_grace_s)

    def close(self) -> None:
        with self._runner_lock:
            runner, self._runner = self._runner, None
        if runner is not None:
            runner.stop(timeout=self.config.shutdown_grace_s)
        self.tasks.close(timeout=self.config.shutdown_grace_s)
        self.access.flush()
        self.store.close()

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- release safety: the registry export and `teamflow check --against` -------------------

    def export_registry(self, namespace: str | None = None) -> RegistryExport:
        """The loaded registry (or one namespace of it) in the registry export format that
        ``check_against`` reads (``teamflow registry export``, ``GET /registry/export``)."""
        return build_export(
            self.registry,
            namespace,
            teamflow_version=package_version("teamflow"),
            exported_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )

    def check_against(self, export: Mapping[str, Any], where: str = "the export") -> views.ReleaseReport:
        """What the registry loaded here breaks, compared with ``export`` (the JSON of an
        export of the previous release): an ExportInvalid when it is not one."""
        previous = read_export(export, where)
        active: dict[tuple[str, str, str], int] = {}
        for a in self.store.active_versions():
            active[(a.namespace, a.name, a.version)] = active.get((a.namespace, a.name, a.version), 0) + a.tasks
        outcome = check_release(
            previous,
            self.export_registry(),
            active=active,
            catalog=self._published_catalog(),
            defaults=self.registry.default_constraints(),
            blocked=self.registry.blocked,
            strict=self.config.strict,
            known=self.registry.calls,
        )
        return views.release_report(previous, outcome)

    def _published_catalog(self) -> PublishedCatalog:
        """What every host published: the callers and call targets beyond this host's plugins."""
        namespaces, versions = self.store.published_catalog()
        return PublishedCatalog({ns.name: ns.policy for ns in namespaces}, tuple(versions))

    # -- plugin authors: whether a namespace is free (`teamflow new-plugin`) -----------------

    def namespace_owner(self, namespace: str) -> str | None:
        """The distribution that owns ``namespace`` for this host, or None when it is free.

        In order: the owner the registry settled from the installed plugins (``teamflow.toml``
        for a namespace the host configuration defines), the distributions whose declarations
        block each other, the configuration's owner pin, and the owner the store recorded,
        whose plugin need not be installed here. Several distributions are joined by " and ".
        """
        settled = self.registry.namespaces.get(namespace)
        if settled is not None:
            return settled.owner
        blocked = sorted(
            {
                candidate.distribution
                for outcome in self.registry.conflicts
                if outcome.conflict.kind == "namespace" and outcome.conflict.key == namespace
                for candidate in outcome.conflict.candidates
            }
        )
        if blocked:
            return " and ".join(blocked)
        if namespace in self.config.owner_pins:
            return self.config.owner_pins[namespace]
        recorded = self.store.published_namespace(namespace)
        return None if recorded is None else recorded.owner
