"""The HTTP API: thin handlers over the host, one JSON error shape for every failure.

Handlers that touch the database are synchronous and run in worker threads
(``sync_to_thread=True``) so the event loop keeps serving while SQLite or PostgreSQL
answers; a request waiting for its task (``wait``) waits on the event loop, never in a
thread, so any number of waiters cannot starve the other routes. Every body is a view of
``teamflow.views`` (the same the CLI prints with ``--json``; the OpenAPI document is
generated from them), encoded once, in the handler (``_json``).

Requests are held to their documented shape: bodies are UTF-8 ``application/json`` of at
most ``MAX_BODY_BYTES``; a query parameter a route does not take, or one given twice, is
a 400.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import email.utils
import functools
import math
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from http import HTTPStatus
from typing import Annotated, Any, TypeVar

import anyio
import attrs
from litestar import Litestar, Request, Response, Router, delete, get, post, put
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.enums import MediaType
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Tag
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from loguru import logger

from teamflow import views
from teamflow.api import admin, pages, registry_routes
from teamflow.api.metrics import Metrics
from teamflow.api.schemas import (
    CattrsDTO,
    ErrorBody,
    ExecuteBatch,
    ExecuteRequest,
    InvalidBody,
    ResolveRequest,
    RolloutRequest,
    TaskSpec,
    TokenRequest,
)
from teamflow.errors import Forbidden, NotAuthenticated, TeamflowError, TooManyFailures
from teamflow.host import UNSERVED_S, Host
from teamflow.limits import MAX_BATCH, MAX_BODY_BYTES
from teamflow.models import TERMINAL, TaskRequest
from teamflow.serialization import encode_view
from teamflow.tokens import ADMIN, APPROVE, EXECUTE, METRICS, OPERATE, READ, Caller, parse_duration
from teamflow.views import (
    Accepted,
    ApprovalView,
    AuditPage,
    Batch,
    Health,
    IssuedToken,
    LoadReportView,
    NamespaceWorkflows,
    RegistryView,
    RolloutView,
    TaskPage,
    TaskStatus,
    TaskView,
    Tokens,
    TokenView,
    VersionDetail,
    WorkflowView,
)

_ERROR_DESCRIPTIONS = {
    400: "Malformed: invalid JSON, a wrong type, a missing or unknown field, a bad version or cursor",
    401: "A valid bearer token is required (none, unknown, revoked and expired are answered alike)",
    403: "Not allowed: the token lacks the route's scope or the namespace, or the version needs approval",
    404: "Unknown namespace, workflow, version or task; the body lists what exists",
    409: "Conflict: an idempotency key reused for another request, or a task already finished",
    413: "Too large: the batch holds more items than the limit it names",
    422: "The context does not satisfy the workflow version's context schema; the body names each field",
    429: "Too many requests without a valid token from this address: wait `Retry-After` seconds",
    503: "The database is unreachable, or the server is stopping",
}


def _errors(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the error statuses a route can answer, all in the one error shape."""
    return {
        code: ResponseSpec(
            data_container=ErrorBody, description=_ERROR_DESCRIPTIONS[code], generate_examples=False
        )
        for code in sorted({400, 401, 429, 503, *codes})
    }


class LoopCalls:
    """Calls from other threads onto one event loop, coalesced: every call queued while the
    loop has not run the last batch yet rides on one wake-up. (Each wake-up is a write to
    the loop's self-pipe; the committer thread that answers a batch of requests would
    otherwise pay one, and wait for the GIL after it, per request.)"""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._calls: list[Callable[[], None]] = []

    def call(self, fn: Callable[[], None]) -> None:
        with self._lock:
            self._calls.append(fn)
            wake = len(self._calls) == 1
        if wake:
            self.loop.call_soon_threadsafe(self._run)

    def _run(self) -> None:
        with self._lock:
            calls, self._calls = self._calls, []
        for fn in calls:
            fn()

    async def result(self, answer: concurrent.futures.Future[T]) -> T:
        """Await a future that another thread resolves, woken through this batcher."""
        waiting: asyncio.Future[T] = self.loop.create_future()

        def copy() -> None:
            if waiting.cancelled():
                return
            error = answer.exception()
            if error is not None:
                waiting.set_exception(error)
            else:
                waiting.set_result(answer.result())

        answer.add_done_callback(lambda _: self.call(copy))
        return await waiting


def _loop_calls(request: Request[Any, Any, Any]) -> LoopCalls:
    """The app's LoopCalls for the running loop (made on first use)."""
    loop = asyncio.get_running_loop()
    calls: LoopCalls | None = getattr(request.app.state, "loop_calls", None)
    if calls is None or calls.loop is not loop:
        calls = LoopCalls(loop)
        request.app.state.loop_calls = calls
    return calls


async def _read(host: Host, read: Callable[[], T]) -> T:
    """A read for a route: on the event loop when the host reads a local SQLite file (a read
    there takes tens of microseconds, less than handing it to a worker thread and back),
    else in a worker thread (PostgreSQL: a network round trip must not stall the loop)."""
    if host.reads_inline:
        return read()
    return await anyio.to_thread.run_sync(read)


def _json(view: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(encode_view(view), status_code=status, media_type=MediaType.JSON, headers=headers)


def _deprecated(*found: views.Deprecation | None) -> dict[str, str] | None:
    """``Deprecation`` (RFC 9745: when the version was published deprecated) and, where the
    host configures one, ``Sunset`` (RFC 8594) for an answer that ran a deprecated version."""
    deprecations = [d for d in found if d is not None]
    if not deprecations:
        return None
    first = deprecations[0]
    since = first.since.timestamp() if first.since is not None else time.time()
    headers = {"Deprecation": f"@{int(since)}"}
    sunsets = sorted(d.sunset for d in deprecations if d.sunset)
    if sunsets:  # the earliest day any of them stops being served
        day = datetime.date.fromisoformat(sunsets[0])
        headers["Sunset"] = email.utils.format_datetime(
            datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC), usegmt=True
        )
    return headers


class BatchTooLarge(TeamflowError):
    code = "batch_too_large"
    status = 413


class ServerStopping(TeamflowError):
    """The server began shutting down while a request waited for its task."""

    code = "shutting_down"
    status = 503


# -- request shape -----------------------------------------------------------------------------


def json_body(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """A body must be sent as ``Content-Type: application/json`` (UTF-8)."""
    if "content-type" not in connection.headers and connection.headers.get("content-length", "0") == "0":
        return  # no body at all: the decoder says what to send
    media, _sep, params = connection.headers.get("content-type", "").partition(";")
    charset = params.strip().lower().removeprefix("charset=").strip('"') if params.strip() else "utf-8"
    if media.strip().lower() != "application/json" or charset not in ("utf-8", "utf8"):
        raise HTTPException(
            status_code=415,
            detail=f"send the body as Content-Type: application/json (UTF-8), not {media.strip() or 'none'!r}",
        )


_NOT_QUERY = frozenset({"host", "metrics", "caller", "viewer", "data", "request"})  # dependencies and the body


def _query_names(route_handler: BaseRouteHandler) -> frozenset[str]:
    return frozenset(route_handler.parsed_fn_signature.parameters) - _NOT_QUERY


async def strict_query(request: Request[Any, Any, Any]) -> None:
    """A query parameter the route does not take, or one given twice, is refused (not ignored)."""
    query = request.query_params
    if not query:
        return
    allowed = _query_names(request.route_handler) - set(request.path_params)
    unknown = sorted(k for k in query if k not in allowed)
    repeated = sorted(k for k in query if k in allowed and len(query.getall(k)) > 1)
    problems = [f"unknown query parameter {k!r}; this route takes: {', '.join(sorted(allowed)) or 'none'}"
                for k in unknown]
    problems += [f"query parameter {k!r} given {len(query.getall(k))} times; give it once" for k in repeated]
    if problems:
        raise ValidationException(detail="; ".join(problems), extra=problems)


# -- access ----------------------------------------------------------------------------------

T = TypeVar("T")
CALLER = "teamflow_caller"  # where ``checked`` leaves the request's Caller (ASGI scope)
UNAUTHENTICATED = (
    "this route needs the header 'Authorization: Bearer <token>' with a valid token (none, unknown, revoked and "
    "expired tokens are all refused alike): ask an admin for one (`teamflow tokens create`)"
)


def _address(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    return connection.client.host if connection.client else None


def _route(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    return f"{connection.scope.get('method', 'GET')} {connection.scope.get('path_template') or connection.url.path}"


NEEDS = "teamflow_needs"  # a route's ``opt``: the scope its token must hold (None: any valid token)
JSON_BODY = "teamflow_json_body"  # a route's ``opt``: its body must be JSON


def needs(scope: str | None, *, body: bool = False) -> dict[str, Any]:
    """A route's ``opt``: with access control on, the request's token must be valid and
    (``scope``) hold that scope; ``body``: a body must be JSON. ``checked`` enforces both
    before anything is looked up or read. (Litestar's guards would copy the route handler
    for every request: 9% of a ``GET /tasks/{id}``.)"""
    return {NEEDS: scope, JSON_BODY: body}


async def checked(request: Request[Any, Any, Any]) -> None:
    """Before every handler (Litestar's ``before_request``, ahead of parameters and body):
    the route's token check, which leaves the request's ``Caller``; its body's media type;
    its query parameters."""
    opt = request.route_handler.opt
    if NEEDS in opt:
        request.scope[CALLER] = await authorize(request, opt[NEEDS])  # type: ignore[literal-required]
    if opt.get(JSON_BODY):
        json_body(request)
    await strict_query(request)


async def authorize(connection: ASGIConnection[Any, Any, Any, Any], scope: str | None) -> Caller:
    """Who the request is, or the refusal (401, 403, 429), counted into the audit trail."""
    access = connection.app.state.host.access
    address = _address(connection)
    if not access.enabled():
        return Caller("anonymous", None, address)
    wait = access.throttle(address)
    if wait is not None:
        await anyio.to_thread.run_sync(access.refused, address, None, _route(connection), 429)
        raise TooManyFailures(
            f"too many requests without a valid token from {address}: wait {math.ceil(wait)} s",
            retry_after_s=math.ceil(wait),
        ).with_headers({"Retry-After": str(math.ceil(wait))})
    header_scheme, _sep, secret = connection.headers.get("authorization", "").partition(" ")
    given = secret.strip() if header_scheme.lower() == "bearer" else None
    known, principal = access.cached(given)
    if not known:  # a lookup in the database: off the event loop
        principal = await anyio.to_thread.run_sync(access.authenticate, given)
    if principal is None:
        access.failed(address)
        await anyio.to_thread.run_sync(access.refused, address, None, _route(connection), 401)
        raise NotAuthenticated(UNAUTHENTICATED).with_headers({"WWW-Authenticate": "Bearer"})
    if scope is not None and not principal.has(scope):
        await anyio.to_thread.run_sync(access.refused, address, principal.name, _route(connection), 403)
        raise Forbidden(
            f"token {principal.name!r} lacks scope {scope!r} for {_route(connection)} (its scopes: "
            f"{', '.join(principal.scopes)}): use a token with scope {scope!r}",
            token=principal.name,
            scope=scope,
        )
    return Caller(principal.actor, principal, address)


def provide_caller(request: Request[Any, Any, Any], host: NamedDependency[Host]) -> Caller:
    """The Caller ``checked`` left. It names ``host`` (unused) so that Litestar resolves the two
    dependencies one after the other: two independent ones cost a task group per request."""
    del host
    caller = request.scope.get(CALLER)
    if not isinstance(caller, Caller):  # a route that asks for no token
        return Caller("anonymous", None, request.client.host if request.client else None)
    return caller


# -- workflows -------------------------------------------------------------------------------


@post(
    "/workflows/execute",
    dto=CattrsDTO[ExecuteRequest],
    return_dto=None,
    status_code=202,
    opt=needs(EXECUTE, body=True),
    tags=["tasks"],
    summary="Run a workflow version",
    responses={
        202: ResponseSpec(
            Accepted,
            description="Stored for the workers (or still running when `wait` ran out): poll `links.self`",
            generate_examples=False,
        ),
        200: ResponseSpec(
            TaskView, description="`wait` was set and the task finished", generate_examples=False
        ),
        **_errors(401, 403, 404, 409, 422),
    },
)
async def execute(
    data: JSONBody[ExecuteRequest],
    host: NamedDependency[Host],
    caller: NamedDependency[Caller],
    request: Request[Any, Any, Any],
) -> Response[Accepted | TaskView]:
    """Create a task. Without ``wait`` it is stored for the workers and the answer is 202 with
    its id and links; with ``wait`` it runs now and the answer is the finished task, unless
    ``wait`` (at most the configured ``max_wait_s``) runs out first: then it is 202 and the task
    goes on. A client that goes away stops the wait, not the task."""
    if not isinstance(data.wait, bool) and not (math.isfinite(data.wait) and data.wait >= 0):
        raise InvalidBody([f"expected true, false or a number of seconds >= 0, got {data.wait!r} @ $.wait"])
    task_request = _task_request(data)
    if not data.wait:  # false or 0: the workers run it
        if host.reads_inline:  # checked here; the answer once the committer thread committed it
            accepted = await _loop_calls(request).result(host.submit(task_request, caller))
        else:
            accepted = await anyio.to_thread.run_sync(host.accept, task_request, caller)
        return _json(accepted, 202, _deprecated(accepted.deprecation))
    started = await anyio.to_thread.run_sync(host.start, task_request, caller)
    limit = host.config.max_wait_s
    timeout = limit if data.wait is True else min(float(data.wait), limit)
    ended = await _until(started.done, timeout, request, host.stopping, lambda: host.serving(host.get_task(started.id)))
    if ended == "unserved":
        raise _unserved(host, started.id)
    if ended == "stopping":
        raise ServerStopping(
            f"the server is stopping; task {started.id} continues: poll /tasks/{started.id}",
            task_id=started.id,
            links=views.links(started.id),
        )
    view = await anyio.to_thread.run_sync(host.task_view, started.id, caller)
    headers = _deprecated(started.deprecation)
    if view.status in TERMINAL:
        return _json(view, 200, headers)
    return _json(attrs.evolve(views.accepted(view), deprecation=started.deprecation), 202, headers)


def _unserved(host: Host, task_id: str) -> TeamflowError:
    """The task waited for is stored, but nobody can run it (``NoWorker``, with its links)."""
    error = host.no_worker(task_id)
    error.facts["links"] = views.links(task_id)
    return error


async def _until(
    done: threading.Event,
    timeout: float,
    request: Request[Any, Any, Any],
    stopping: threading.Event,
    served: Callable[[], bool],
) -> str:
    """Wait on the event loop (holding no thread) until ``done``; ``timeout`` if it runs
    out, ``gone`` if the client disconnected, ``stopping`` if the server began to stop,
    ``unserved`` if neither this process nor a live worker can run the task (asked every
    UNSERVED_S, in a thread)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    check_at = loop.time() + UNSERVED_S
    disconnect = asyncio.ensure_future(request.receive())  # the body is read: next is a disconnect
    pause = 0.002
    try:
        while not done.is_set():
            if stopping.is_set():
                return "stopping"
            if disconnect.done() and disconnect.result().get("type") == "http.disconnect":
                return "gone"
            left = deadline - loop.time()
            if left <= 0:
                return "timeout"
            if loop.time() >= check_at:
                check_at = loop.time() + UNSERVED_S
                if not done.is_set() and not await anyio.to_thread.run_sync(served):
                    return "unserved"
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 1.5, 0.05)
        return "done"
    finally:
        disconnect.cancel()


def _task_request(spec: TaskSpec) -> TaskRequest:
    return TaskRequest(
        name=spec.name,
        namespace=spec.namespace,
        version=spec.version,
        context=spec.context,
        idempotency_key=spec.idempotency_key,
    )


@post(
    "/workflows/execute/batch",
    dto=CattrsDTO[ExecuteBatch],
    return_dto=None,
    status_code=202,
    sync_to_thread=True,
    opt=needs(EXECUTE, body=True),
    tags=["tasks"],
    summary="Create many tasks for the workers in one transaction",
    responses={
        202: ResponseSpec(Batch, description="Every task stored, in the order asked for", generate_examples=False),
        **_errors(401, 403, 404, 409, 413, 422),
    },
)
def execute_batch(
    data: JSONBody[ExecuteBatch], host: NamedDependency[Host], caller: NamedDependency[Caller]
) -> Response[Batch]:
    """Validate every item, then store them all in one transaction (idempotency keys hold per
    item). One bad item refuses the whole batch, naming its index (from 0), and stores nothing;
    so does one item in a namespace the token may not start tasks in."""
    if not data.requests:
        raise InvalidBody(["the batch is empty: send at least one item @ $.requests"])
    if len(data.requests) > MAX_BATCH:
        raise BatchTooLarge(
            f"a batch holds at most {MAX_BATCH} items, this one {len(data.requests)}: send several batches",
            limit=MAX_BATCH,
            items=len(data.requests),
        )
    batch = host.accept_many([_task_request(spec) for spec in data.requests], caller)
    return _json(batch, 202, _deprecated(*(a.deprecation for a in batch.tasks)))


@get(
    "/workflows",
    sync_to_thread=False,
    opt=needs(None),
    tags=["workflows"],
    summary="The token's namespaces and their workflows (every namespace for an admin or '*' token)",
    description="Any namespace's definitions stay readable by any valid token at `/workflows/{namespace}...`, "
    "since callers need providers' schemas; the list holds only the token's namespaces.",
    responses=_errors(),
)
def list_workflows(host: NamedDependency[Host], caller: NamedDependency[Caller]) -> Response[RegistryView]:
    return _json(views.registry_view(host.registry, visible=caller.visible()))


@get(
    "/workflows/{namespace:str}",
    sync_to_thread=False,
    opt=needs(None),
    tags=["workflows"],
    summary="A namespace: its policy and workflows",
    responses=_errors(404),
)
def namespace_workflows(host: NamedDependency[Host], namespace: FromPath[str]) -> Response[NamespaceWorkflows]:
    return _json(
        NamespaceWorkflows(views.namespace_view(host.registry, namespace), views.workflows(host.registry, namespace))
    )


@get(
    "/workflows/{namespace:str}/{name:str}",
    sync_to_thread=True,
    opt=needs(None),
    tags=["workflows"],
    summary="A workflow: its versions, newest first, with deprecations and how drained each is",
    responses=_errors(404),
)
def workflow_versions(
    host: NamedDependency[Host], namespace: FromPath[str], name: FromPath[str]
) -> Response[WorkflowView]:
    """``drain``, per version: unfinished tasks and the oldest, declared callers, the workflows
    that started child tasks of it in the last 7 days."""
    return _json(host.workflow_view(namespace, name))


@get(
    "/workflows/{namespace:str}/{name:str}/{version:str}",
    sync_to_thread=True,
    opt=needs(None),
    tags=["workflows"],
    summary="One workflow version: steps, owner, fingerprint, schema, callers",
    description="`version` is exact (`2.1.0`) or a URL-encoded constraint (`%5E2.0` for `^2.0`).",
    responses=_errors(404),
)
def workflow_version(
    host: NamedDependency[Host], namespace: FromPath[str], name: FromPath[str], version: FromPath[str]
) -> Response[VersionDetail]:
    return _json(host.version_view(namespace, name, version))


@post(
    "/workflows/{namespace:str}/{name:str}/{version:str}/approvals",
    status_code=201,
    sync_to_thread=True,
    opt=needs(APPROVE),
    tags=["workflows"],
    summary="Approve a version's current fingerprint, as the token's identity",
    description="The approver is the `identity` of the `approve` token, which must be one of the namespace's "
    "`approvers`; no body is read. A changed definition (a new fingerprint) needs a new approval.",
    responses={
        201: ResponseSpec(ApprovalView, description="Approved", generate_examples=False),
        **_errors(403, 404, 409),
    },
)
def approve_version(
    host: NamedDependency[Host],
    caller: NamedDependency[Caller],
    namespace: FromPath[str],
    name: FromPath[str],
    version: FromPath[str],
) -> Response[ApprovalView]:
    return _json(host.approve(f"{namespace}/{name}@{version}", caller=caller), 201)


@put(
    "/workflows/{namespace:str}/{name:str}/{version:str}/rollout",
    dto=CattrsDTO[RolloutRequest],
    return_dto=None,
    status_code=200,
    sync_to_thread=True,
    opt=needs(OPERATE, body=True),
    tags=["workflows"],
    summary="Send a share of the workflow's requests (naming no exact version) to this version, on every host",
    responses=_errors(403, 404, 409),
)
def set_rollout(
    data: JSONBody[RolloutRequest],
    host: NamedDependency[Host],
    caller: NamedDependency[Caller],
    namespace: FromPath[str],
    name: FromPath[str],
    version: FromPath[str],
) -> Response[RolloutView]:
    return _json(host.set_rollout(f"{namespace}/{name}@{version}", data.percent, caller=caller))


@delete(
    "/workflows/{namespace:str}/{name:str}/rollout",
    status_code=200,
    sync_to_thread=True,
    opt=needs(OPERATE),
    tags=["workflows"],
    summary="End the workflow's rollout; tasks already created keep their version",
    responses=_errors(403, 404),
)
def clear_rollout(
    host: NamedDependency[Host], caller: NamedDependency[Caller], namespace: FromPath[str], name: FromPath[str]
) -> Response[RolloutView]:
    return _json(host.clear_rollout(f"{namespace}/{name}", caller=caller))


# -- tasks -------------------------------------------------------------------------------------


@get(
    "/tasks",
    opt=needs(READ),
    tags=["tasks"],
    summary="Tasks of the token's namespaces, newest first",
    responses=_errors(403),
)
async def list_tasks(
    host: NamedDependency[Host],
    caller: NamedDependency[Caller],
    namespace: FromQuery[str | None] = None,
    name: FromQuery[str | None] = None,
    version: FromQuery[str | None] = None,
    status: FromQuery[TaskStatus | None] = None,
    parent_id: Annotated[str | None, QueryParameter(description="only the child tasks of this task")] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, QueryParameter(description="`next_cursor` of the previous page")] = None,
) -> Response[TaskPage]:
    page = await _read(
        host,
        functools.partial(
            host.list_tasks,
            namespace=namespace,
            name=name,
            version=version,
            status=status,
            parent_id=parent_id,
            limit=limit,
            cursor=cursor,
            caller=caller,
        ),
    )
    return _json(page)


@get(
    "/tasks/{task_id:str}",
    opt=needs(READ),
    tags=["tasks"],
    summary="A task: its steps, child tasks and transitions",
    description="A task of a namespace the token does not reach is answered 404, as if it did not exist.",
    responses=_errors(403, 404),
)
async def get_task(host: NamedDependency[Host], caller: NamedDependency[Caller], task_id: FromPath[str]) -> Response[TaskView]:
    return _json(await _read(host, functools.partial(host.task_view, task_id, caller)))


@post(
    "/tasks/{task_id:str}/cancel",
    status_code=200,
    sync_to_thread=True,
    opt=needs(OPERATE),
    tags=["tasks"],
    summary="Cancel a pending or running task and its child tasks",
    responses=_errors(403, 404, 409),
)
def cancel_task(host: NamedDependency[Host], caller: NamedDependency[Caller], task_id: FromPath[str]) -> Response[TaskView]:
    host.cancel(task_id, caller=caller)
    return _json(host.task_view(task_id, caller))


@post(
    "/tasks/{task_id:str}/retry",
    status_code=200,
    sync_to_thread=True,
    opt=needs(OPERATE),
    tags=["tasks"],
    summary="Retry a failed task: its failed steps run again (attempts reset, history kept)",
    responses=_errors(403, 404, 409),
)
def retry_task(host: NamedDependency[Host], caller: NamedDependency[Caller], task_id: FromPath[str]) -> Response[TaskView]:
    host.retry(task_id, caller=caller)
    return _json(host.task_view(task_id, caller))


@post(
    "/tasks/{task_id:str}/steps/{step:str}/resolve",
    dto=CattrsDTO[ResolveRequest],
    return_dto=None,
    status_code=200,
    sync_to_thread=True,
    opt=needs(OPERATE, body=True),
    tags=["tasks"],
    summary="Resolve a step by hand with a result: its dependants treat it as completed",
    responses=_errors(403, 404, 409, 413, 422),
)
def resolve_step(
    data: JSONBody[ResolveRequest],
    host: NamedDependency[Host],
    caller: NamedDependency[Caller],
    task_id: FromPath[str],
    step: FromPath[str],
) -> Response[TaskView]:
    host.resolve_step(task_id, step, data.result, caller=caller)
    return _json(host.task_view(task_id, caller))


# -- audit and tokens --------------------------------------------------------------------------


@get(
    "/audit",
    sync_to_thread=True,
    opt=needs(READ),
    tags=["access"],
    summary="The audit trail, newest first: every row for an admin token, else the token's namespaces'",
    responses=_errors(403),
)
def audit(
    host: NamedDependency[Host],
    caller: NamedDependency[Caller],
    namespace: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, QueryParameter(description="`next_cursor` of the previous page")] = None,
) -> Response[AuditPage]:
    return _json(host.audit(caller=caller, namespace=namespace, limit=limit, cursor=cursor))


@get(
    "/tokens",
    sync_to_thread=True,
    opt=needs(ADMIN),
    tags=["access"],
    summary="Every token, without its secret",
    responses=_errors(403),
)
def list_tokens(host: NamedDependency[Host]) -> Response[Tokens]:
    return _json(host.list_tokens())


# Each token route has a path of its own: Litestar 2.25 mixes up two handlers of one path
# (a sync GET answers with a coroutine, OPTIONS lists only the first method).
@put(
    "/tokens/{name:str}",
    dto=CattrsDTO[TokenRequest],
    return_dto=None,
    status_code=201,
    sync_to_thread=True,
    opt=needs(ADMIN, body=True),
    tags=["access"],
    summary="Create the token NAME; the answer holds its secret, shown this once",
    responses={
        201: ResponseSpec(IssuedToken, description="The token and its secret", generate_examples=False),
        **_errors(403, 409),
    },
)
def create_token(
    data: JSONBody[TokenRequest], host: NamedDependency[Host], caller: NamedDependency[Caller], name: FromPath[str]
) -> Response[IssuedToken]:
    expires_s = parse_duration(data.expires) if data.expires is not None else None
    issued = host.create_token(
        name, data.namespaces, data.scopes, identity=data.identity, expires_s=expires_s, caller=caller
    )
    return _json(issued, 201)


@post(
    "/tokens/{name:str}/revoke",
    status_code=200,
    sync_to_thread=True,
    opt=needs(ADMIN),
    tags=["access"],
    summary="Revoke a token: every host refuses it within seconds, and its admin sessions end",
    responses=_errors(403, 404),
)
def revoke_token(host: NamedDependency[Host], caller: NamedDependency[Caller], name: FromPath[str]) -> Response[TokenView]:
    return _json(host.revoke_token(name, caller))


# -- plugins, health, metrics ------------------------------------------------------------------


@get(
    "/plugins",
    sync_to_thread=True,
    opt=needs(None),
    tags=["registry"],
    responses=_errors(),
    summary="The load report: plugins, refusals, conflicts, drift, and tasks no worker here can serve",
)
def plugins(host: NamedDependency[Host]) -> Response[LoadReportView]:
    return _json(host.load_report())


@get("/health/live", tags=["health"], summary="The process answers")
async def live() -> Health:
    return Health(status="ok")


@get(
    "/health/ready",
    tags=["health"],
    summary="The database answers, its schema is current, and every unfinished task can be served",
    responses={
        503: ResponseSpec(Health, description="Not ready; `reasons` says why", generate_examples=False)
    },
)
async def ready(host: NamedDependency[Host], request: Request[Any, Any, Any]) -> Response[Any]:
    """With access control on, a request without a valid token is told only the status."""
    health = await anyio.to_thread.run_sync(host.readiness)
    status = 503 if health.reasons else 200
    if host.access.enabled():
        scheme, _sep, secret = request.headers.get("authorization", "").partition(" ")
        principal = None
        if scheme.lower() == "bearer":
            principal = await anyio.to_thread.run_sync(host.access.authenticate, secret.strip())
        if principal is None:
            return Response({"status": health.status}, status_code=status)
    return _json(health, status)


@get(
    "/metrics",
    sync_to_thread=True,
    opt=needs(METRICS),
    media_type="text/plain",
    tags=["health"],
    summary="Prometheus metrics: tasks by workflow version and status, load problems, HTTP latency",
    responses=_errors(403),
)
def metrics_text(metrics: NamedDependency[Metrics]) -> Response[bytes]:
    # The classic text format every Prometheus server reads; Litestar appends the charset.
    return Response(metrics.render(), media_type="text/plain; version=0.0.4")


# -- errors ------------------------------------------------------------------------------------


def _code(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "http_error"


def _error(
    request: Request[Any, Any, Any], status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response[Any]:
    if request.url.path.startswith("/admin"):
        return admin.error_response(request, status, body, headers)
    return Response(body, status_code=status, headers=headers)


def on_teamflow_error(request: Request[Any, Any, Any], exc: TeamflowError) -> Response[Any]:
    if exc.status >= 500:
        logger.warning("{} {}: {}", request.method, request.url.path, exc.detail)
    return _error(request, exc.status, exc.to_dict(), exc.headers)


def on_invalid_body(request: Request[Any, Any, Any], exc: InvalidBody) -> Response[Any]:
    return _error(request, exc.status, exc.to_dict())


def _problem(item: Any) -> str:
    """One of Litestar's parameter problems as a readable line."""
    if not isinstance(item, dict):
        return str(item)
    source = getattr(item.get("source"), "value", item.get("source")) or "request"
    if source == "body" and item.get("key") == "data":
        return "the body is empty: send a JSON object with Content-Type: application/json"
    return f"{item.get('message', 'invalid value')} @ {source} parameter {item.get('key')!r}"


def on_http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """Litestar's own errors (routing, parameters, body size, auth) in teamflow's shape."""
    status = exc.status_code
    headers = dict(exc.headers or {})
    where = f"{request.method} {request.url.path}"
    if isinstance(exc, ValidationException):
        problems = [
            _problem(item)
            for item in (exc.extra if isinstance(exc.extra, list) else [exc.extra or exc.detail])
        ]
        body = {"error": "invalid_request", "detail": f"{where}: {'; '.join(problems)}", "errors": problems}
    elif status == 404:
        body = {"error": "not_found", "detail": f"no route {where}; the API is described at /openapi.json"}
    elif status == 405:
        allowed = headers.get("Allow") or headers.get("allow") or ""
        body = {
            "error": "method_not_allowed",
            "detail": f"{where} is not allowed; allowed: {allowed or 'none'}",
            "allowed": [m.strip() for m in allowed.split(",") if m.strip()],
        }
    else:
        body = {"error": _code(status), "detail": str(exc.detail)}
    return _error(request, status, body, headers or None)


def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A bug: one log line under an incident id (the error and where it was raised, never the
    values it held); the client gets the id in the error shape, never the trace."""
    incident = uuid.uuid4().hex[:12]
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""
    logger.error(
        "incident {}: unhandled {} on {} {}{}: {}", incident, type(exc).__name__, request.method, request.url.path,
        where, str(exc)[:500],
    )
    return _error(
        request,
        500,
        {
            "error": "internal_error",
            "detail": f"the server failed on this request; its log has the details under incident {incident}",
            "incident": incident,
        },
    )


# -- the app -----------------------------------------------------------------------------------


def create_app(host: Host) -> Litestar:
    """The API and admin pages over ``host``; the caller owns the host (and closes it)."""
    from importlib.metadata import version

    metrics = Metrics(host)

    def provide_host() -> Host:
        return host

    def provide_metrics() -> Metrics:
        return metrics

    return Litestar(
        route_handlers=[
            execute,
            execute_batch,
            list_workflows,
            namespace_workflows,
            workflow_versions,
            workflow_version,
            approve_version,
            set_rollout,
            clear_rollout,
            list_tasks,
            get_task,
            cancel_task,
            retry_task,
            resolve_step,
            audit,
            list_tokens,
            create_token,
            revoke_token,
            plugins,
            Router("/", route_handlers=registry_routes.ROUTES, opt=needs(None)),
            live,
            ready,
            metrics_text,
            *admin.ROUTES,
            *pages.ROUTES,
        ],
        dependencies={
            "host": Provide(provide_host, use_cache=True, sync_to_thread=False),
            "metrics": Provide(provide_metrics, use_cache=True, sync_to_thread=False),
            "caller": Provide(provide_caller, sync_to_thread=False),
        },
        exception_handlers={
            TeamflowError: on_teamflow_error,
            InvalidBody: on_invalid_body,
            HTTPException: on_http_error,
            Exception: on_unexpected,
        },
        middleware=[metrics.middleware],
        before_request=checked,
        request_max_body_size=MAX_BODY_BYTES,
        on_shutdown=[host.stopping.set],
        state=State({"host": host}),
        openapi_config=OpenAPIConfig(
            title="teamflow",
            version=version("teamflow"),
            description="Workflows from many teams: namespaced, versioned and owned. Every error is "
            '`{"error": code, "detail": text, ...facts}`.',
            # The JSON renderer is the default plugin, served at the config's root: /openapi.json.
            path="/openapi.json",
            render_plugins=[JsonRenderPlugin(path="/")],
            tags=[Tag(name="tasks"), Tag(name="workflows"), Tag(name="registry"), Tag(name="access"), Tag(name="health")],
        ),
        logging_config=None,
        debug=False,
    )
