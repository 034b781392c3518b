"""The admin pages: server-rendered HTML over the same views as the API and the CLI.

Jinja2 with autoescaping on: namespaces, descriptions, contexts, results and errors come
from plugins and callers, and are always escaped. No JavaScript, no external assets.

With access control on, a person signs in with a token (``/admin/sign-in``) into a session
(``teamflow.api.sessions``); every page then sees what that token sees (its namespaces'
tasks; every definition), and offers the operator and approval forms its scopes allow.
With access control off the pages are read-only and need no sign-in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import anyio
import msgspec
from jinja2 import Environment, PackageLoader, StrictUndefined
from litestar import Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.enums import MediaType, RequestEncodingType
from litestar.params import Body, FromPath, FromQuery
from litestar.response import Redirect
from markupsafe import Markup

from teamflow import views
from teamflow.api import dag
from teamflow.api.sessions import (
    HOME,
    SIGN_IN,
    Viewer,
    address,
    check_csrf,
    cleared_cookie,
    is_https,
    provide_viewer,
    route_of,
    safe_next,
    session_cookie,
    session_id,
    sign_in_allowed,
    signed_in,
    throttled,
    viewer_of,
)
from teamflow.errors import Forbidden, TeamflowError
from teamflow.host import Host
from teamflow.registry import CONFIG_OWNER
from teamflow.tokens import APPROVE, OPERATE, READ, Caller
from teamflow.views import TASK_STATUSES

PAGE_SIZE = 50
# Pages that may hold a session's CSRF value are never stored by a cache nor framed by another site.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}


def _when(at: datetime | None) -> str:
    return "—" if at is None else views.shown_time(at)  # the CLI's zone and format


def _duration(started: datetime | None, finished: datetime | None) -> str:
    if started is None or finished is None:
        return ""
    seconds = (finished - started).total_seconds()
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _segment(value: Any) -> str:
    """One URL path segment (a version constraint such as ``^2.0`` included)."""
    return quote(str(value), safe="")


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("teamflow.api", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=_when, duration=_duration, pretty=_pretty, seg=_segment, mailto=lambda v: quote(v, safe="@")
    )
    return env


_env = _environment()


def render(
    template: str,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
    *,
    viewer: Viewer | None,
    **context: Any,
) -> Response[str]:
    """A page; ``viewer`` (None: not known yet) decides the header's sign-in line and forms."""
    html = _env.get_template(template).render(viewer=viewer, **context)
    return Response(
        html, status_code=status_code, media_type=MediaType.HTML, headers={**PAGE_HEADERS, **(headers or {})}
    )


def error_page(
    status: int,
    body: Mapping[str, Any],
    headers: Mapping[str, str] | None = None,
    viewer: Viewer | None = None,
) -> Response[str]:
    """The one error shape, rendered for a person (same code, detail and facts)."""
    facts = {k: v for k, v in body.items() if k not in ("error", "detail")}
    return render(
        "error.html",
        status_code=status,
        headers=headers,
        viewer=viewer,
        status=status,
        error=body.get("error", ""),
        detail=body.get("detail", ""),
        facts=facts,
    )


def error_response(
    request: Request[Any, Any, Any], status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> Response[str]:
    """An error on an admin path, as a page showing who is signed in (when a guard knew)."""
    return error_page(status, body, headers, viewer_of(request))


class InvalidFilter(TeamflowError):
    code = "invalid_request"


class InvalidForm(TeamflowError):
    code = "invalid_request"


_VIEWER = {"viewer": Provide(provide_viewer, sync_to_thread=False)}


def _back_to_task(task_id: str) -> Redirect:
    """After an action: the task page again, showing the state the action left (no flash message)."""
    return Redirect(f"/admin/tasks/{_segment(task_id)}", status_code=303)


# -- signing in and out ----------------------------------------------------------------------


class SignInForm(msgspec.Struct):
    secret: str = ""
    next: str = ""


def _sign_in_form(
    status: int, next_path: str, problem: str | None = None, headers: Mapping[str, str] | None = None
) -> Response[str]:
    """The sign-in form (again, with what went wrong): it comes back to ``next_path`` after."""
    return render("sign_in.html", status_code=status, headers=headers, viewer=None, next=next_path, problem=problem)


@get(SIGN_IN, include_in_schema=False)
async def sign_in_page(host: NamedDependency[Host], next: FromQuery[str | None] = None) -> Response[Any]:
    """The sign-in form (with access control off there is nothing to sign in to: go on).

    Async, unlike the other pages: Litestar 2.25 answers a ``sync_to_thread`` GET that shares
    its path with a POST with a 500 (the coroutine is never awaited)."""
    target = safe_next(next)
    if not await anyio.to_thread.run_sync(host.access.enabled):
        return Redirect(target, status_code=303)
    return _sign_in_form(200, target)


@post(SIGN_IN, sync_to_thread=True, guards=[sign_in_allowed], include_in_schema=False, status_code=303)
def sign_in(
    host: NamedDependency[Host],
    request: Request[Any, Any, Any],
    data: Annotated[SignInForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Response[Any]:
    """A token's secret in, a new session out: its id in the cookie (the secret is never
    stored in the browser), and on to the page asked for. A wrong secret is counted, like a
    bad bearer token, and an address past its failures is told to wait."""
    target = safe_next(data.next)
    access = host.access
    if not access.enabled():
        return Redirect(target, status_code=303)
    refusal = throttled(request)
    if refusal is not None:
        return _sign_in_form(429, target, refusal.detail, refusal.headers)
    started = access.sign_in(data.secret.strip()) if data.secret.strip() else None
    if started is None:
        access.failed(address(request))
        access.refused(address(request), None, route_of(request), 401)
        return _sign_in_form(
            401, target, "that token is unknown, revoked or expired: paste a valid token's secret (tf_...), "
            "or ask an admin for one (`teamflow tokens create`)"
        )
    previous = session_id(request)
    if previous:
        access.sign_out(previous)  # one browser, one session
    new_id, _csrf, _principal = started
    return Redirect(target, status_code=303, headers={"Set-Cookie": session_cookie(new_id, secure=is_https(request))})


@post("/admin/sign-out", guards=[sign_in_allowed], include_in_schema=False, status_code=303)
async def sign_out(host: NamedDependency[Host], request: Request[Any, Any, Any]) -> Response[Any]:
    """End the session (its CSRF value required, so no other page can sign a person out)
    and drop the cookie; a session that already ended only loses its cookie."""
    access = host.access
    if not await anyio.to_thread.run_sync(access.enabled):
        return Redirect(HOME, status_code=303)
    sid = session_id(request)
    live = await anyio.to_thread.run_sync(access.session, sid) if sid else None
    if live is not None and sid is not None:
        principal, csrf = live
        await check_csrf(request, Viewer(Caller(principal.actor, principal, address(request)), csrf))
        await anyio.to_thread.run_sync(access.sign_out, sid)
    return Redirect(SIGN_IN, status_code=303, headers={"Set-Cookie": cleared_cookie(secure=is_https(request))})


# -- pages ----------------------------------------------------------------------------------


@get("/admin", include_in_schema=False)
async def admin_root() -> Redirect:
    """No session needed: it only points at the registry (whose cookie path is ``/admin/``)."""
    return Redirect(HOME)


@get(HOME, sync_to_thread=True, guards=[signed_in(None)], dependencies=_VIEWER, include_in_schema=False)
def registry_page(host: NamedDependency[Host], viewer: NamedDependency[Viewer]) -> Response[str]:
    """Every namespace with its owner and policy, every workflow with its versions; problems first."""
    by_namespace: dict[str, list[views.WorkflowView]] = {}
    for row in views.workflows(host.registry):
        by_namespace.setdefault(row.namespace, []).append(row)
    return render(
        "workflows.html",
        viewer=viewer,
        report=host.load_report(),
        namespaces=views.namespaces(host.registry),
        workflows=by_namespace,
    )


@get(
    "/admin/workflows/{namespace:str}",
    sync_to_thread=True,
    guards=[signed_in(None)],
    dependencies=_VIEWER,
    include_in_schema=False,
)
def namespace_page(
    host: NamedDependency[Host], viewer: NamedDependency[Viewer], namespace: FromPath[str]
) -> Response[str]:
    """One namespace: its owner and policy; every workflow with its versions (the default,
    deprecated, pre-release and approval state of each, its unfinished tasks and rollout
    share); and links to its tasks and audit rows. A namespace that does not exist (or is
    blocked) is the registry's NamespaceNotFound, a 404 naming those that exist. Definitions
    are visible to every session, as on the registry page."""
    ns = views.namespace_view(host.registry, namespace)
    waiting = {w.reference for w in host.waiting_approval()} if ns.requires_approval else set()
    rows = [host.workflow_view(ns.name, w.name) for w in views.workflows(host.registry, ns.name)]
    tasks = "/admin/tasks?" + urlencode({"namespace": ns.name})
    return render(
        "namespace.html",
        viewer=viewer,
        ns=ns,
        platform=ns.owner_distribution == CONFIG_OWNER,
        compatibility=host.registry.namespaces[ns.name].policy.compatibility,
        workflows=rows,
        drain={(w.name, d.version): d for w in rows for d in w.drain or []},
        waiting=waiting,
        tasks_link=tasks,
        failed_link=tasks + "&" + urlencode({"status": "failed"}),
        running_link=tasks + "&" + urlencode({"status": "in_progress"}),
        audit_link="/admin/audit?" + urlencode({"namespace": ns.name}),
        # without access control every page is open; with it, the tasks page needs scope read there
        may_read=not viewer.access_on or viewer.may(READ, ns.name),
    )


@get(
    "/admin/workflows/{namespace:str}/{name:str}/{version:str}",
    sync_to_thread=True,
    guards=[signed_in(None)],
    dependencies=_VIEWER,
    include_in_schema=False,
)
def version_page(
    host: NamedDependency[Host],
    viewer: NamedDependency[Viewer],
    namespace: FromPath[str],
    name: FromPath[str],
    version: FromPath[str],
) -> Response[str]:
    """One version: its DAG, steps, who calls it, fingerprint and context schema; the approve
    form where the namespace requires approval and the session may approve there."""
    entry = host.registry.resolve(namespace, name, version)
    detail = host.version_view(namespace, name, version)
    nodes = [dag.Node(s.name, tuple(s.depends_on), title=s.description or s.name) for s in detail.steps]
    others = views.workflow(host.registry, namespace, name).versions
    svg = Markup(dag.render(nodes, label=f"steps of {detail.reference}"))  # dag.render escapes all text
    return render(
        "version.html",
        viewer=viewer,
        v=detail,
        requested=version,
        others=others,
        svg=svg,
        drain=next(d for d in host.workflow_view(namespace, name).drain or [] if d.version == entry.version.text),
        may_approve=detail.approval is not None
        and detail.approval.status == "waiting"
        and viewer.may(APPROVE, detail.namespace),
        tasks_link="/admin/tasks?"
        + urlencode({"namespace": namespace, "name": name, "version": entry.version.text}),
    )


@post(
    "/admin/workflows/{namespace:str}/{name:str}/{version:str}/approve",
    sync_to_thread=True,
    guards=[signed_in(APPROVE, form=True)],
    dependencies=_VIEWER,
    include_in_schema=False,
    status_code=303,
)
def approve_version(
    host: NamedDependency[Host],
    viewer: NamedDependency[Viewer],
    namespace: FromPath[str],
    name: FromPath[str],
    version: FromPath[str],
) -> Redirect:
    """Approve this version's current fingerprint as the session token's identity; the host
    refuses an identity that is not one of the namespace's approvers."""
    entry = host.registry.resolve(namespace, name, version)
    principal = viewer.principal
    if principal is not None and not principal.sees(entry.namespace):
        raise Forbidden(
            f"token {principal.name!r} does not reach namespace {entry.namespace!r} (its namespaces: "
            f"{', '.join(principal.namespaces)}): sign in with a token with scope 'approve' on {entry.namespace!r}",
            token=principal.name,
            namespace=entry.namespace,
        )
    host.approve(entry.ref, principal.identity if principal else None, caller=viewer.caller)
    return Redirect(
        f"/admin/workflows/{_segment(entry.namespace)}/{_segment(entry.name)}/{_segment(entry.version.text)}",
        status_code=303,
    )


@get("/admin/tasks", sync_to_thread=True, guards=[signed_in(READ)], dependencies=_VIEWER, include_in_schema=False)
def tasks_page(
    host: NamedDependency[Host],
    viewer: NamedDependency[Viewer],
    status: FromQuery[str | None] = None,
    namespace: FromQuery[str | None] = None,
    name: FromQuery[str | None] = None,
    version: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
) -> Response[str]:
    """Recent tasks of the session's namespaces, newest first, filtered by status (and
    workflow), a page at a time."""
    status, namespace, name, version, cursor = (v or None for v in (status, namespace, name, version, cursor))
    if status is not None and status not in TASK_STATUSES:
        raise InvalidFilter(
            f"unknown status {status!r}; one of {', '.join(TASK_STATUSES)}", statuses=list(TASK_STATUSES)
        )
    page = host.list_tasks(
        namespace=namespace,
        name=name,
        version=version,
        status=status,
        limit=PAGE_SIZE,
        cursor=cursor,
        caller=viewer.caller,
    )
    filters = {
        k: v
        for k, v in (("status", status), ("namespace", namespace), ("name", name), ("version", version))
        if v
    }
    return render(
        "tasks.html",
        viewer=viewer,
        rows=page.tasks,
        filters=filters,
        statuses=TASK_STATUSES,
        namespaces=sorted(ns for ns in host.registry.namespaces if viewer.caller.sees(ns)),
        next_link=("/admin/tasks?" + urlencode({**filters, "cursor": page.next_cursor})) if page.next_cursor else None,
    )


@get("/admin/audit", sync_to_thread=True, guards=[signed_in(READ)], dependencies=_VIEWER, include_in_schema=False)
def audit_page(
    host: NamedDependency[Host],
    viewer: NamedDependency[Viewer],
    namespace: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
) -> Response[str]:
    """The audit trail the session may read (its namespaces' rows; every row for admin)."""
    namespace, cursor = namespace or None, cursor or None
    page = host.audit(caller=viewer.caller, namespace=namespace, limit=PAGE_SIZE, cursor=cursor)
    query = {k: v for k, v in (("namespace", namespace), ("cursor", page.next_cursor)) if v}
    return render(
        "audit.html",
        viewer=viewer,
        rows=page.rows,
        namespace=namespace,
        next_link=("/admin/audit?" + urlencode(query)) if page.next_cursor else None,
    )


@get(
    "/admin/tasks/{task_id:str}",
    sync_to_thread=True,
    guards=[signed_in(READ)],
    dependencies=_VIEWER,
    include_in_schema=False,
)
def task_page(host: NamedDependency[Host], viewer: NamedDependency[Viewer], task_id: FromPath[str]) -> Response[str]:
    """One task: each step's status, attempts, result or error, child tasks, the parent, the
    audit trail; and the cancel, retry and resolve forms the session may use. A task of a
    namespace the session does not reach is a 404, as in the API."""
    task = host.task_view(task_id, viewer.caller)
    nodes = [
        dag.Node(
            s.name, tuple(s.depends_on), status=s.status, note=f"{s.status} · {s.attempts}x", title=s.name
        )
        for s in task.steps
    ]
    svg = Markup(dag.render(nodes, label=f"steps of task {task.id}"))  # dag.render escapes all text
    operate = viewer.may(OPERATE, task.namespace)
    return render(
        "task.html",
        viewer=viewer,
        t=task,
        children={c.id: c for c in task.children},
        svg=svg,
        may_cancel=operate and task.status in CANCELLABLE,
        may_retry=operate and task.status == "failed",
        resolvable=_resolvable(task) if operate else set(),
    )


CANCELLABLE = ("pending", "in_progress")  # a task that has not ended
RESUMABLE = ("pending", "in_progress", "failed")  # a task whose open steps may be resolved by hand
SETTLED = ("completed", "resolved", "cancelled")  # a step that has its result, or will not run


def _resolvable(task: views.TaskView) -> set[str]:
    """The steps a resolve form is offered for: those still open in a task that can go on."""
    if task.status not in RESUMABLE:
        return set()
    return {s.name for s in task.steps if s.status not in SETTLED}


# -- operator actions ---------------------------------------------------------------------------


class ResolveForm(msgspec.Struct):
    result: str = ""


def _result(text: str) -> Any:
    """The resolve form's JSON result (blank: null), or a 400 saying what to fix."""
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidForm(
            f"the result is not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}): enter a JSON value "
            'such as {"refund_id": "re_1"}, a quoted "text", or leave it blank for null'
        ) from None
    except RecursionError:
        raise InvalidForm("the result nests too deeply: send a flatter JSON value") from None


def _action(path: str) -> post:
    """An operator form's route: a POST needing a session with scope ``operate``, its CSRF
    value and this server's origin, answered by a redirect to the task page."""
    return post(
        path,
        sync_to_thread=True,
        guards=[signed_in(OPERATE, form=True)],
        dependencies=_VIEWER,
        include_in_schema=False,
        status_code=303,
    )


@_action("/admin/tasks/{task_id:str}/cancel")
def cancel_task(host: NamedDependency[Host], viewer: NamedDependency[Viewer], task_id: FromPath[str]) -> Redirect:
    """Cancel a pending or running task (and its child tasks) as the session's token."""
    host.cancel(task_id, caller=viewer.caller)
    return _back_to_task(task_id)


@_action("/admin/tasks/{task_id:str}/retry")
def retry_task(host: NamedDependency[Host], viewer: NamedDependency[Viewer], task_id: FromPath[str]) -> Redirect:
    """Run a failed task's failed steps again as the session's token."""
    host.retry(task_id, caller=viewer.caller)
    return _back_to_task(task_id)


@_action("/admin/tasks/{task_id:str}/steps/{step:str}/resolve")
def resolve_step(
    host: NamedDependency[Host],
    viewer: NamedDependency[Viewer],
    task_id: FromPath[str],
    step: FromPath[str],
    data: Annotated[ResolveForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Redirect:
    """Resolve a step by hand with the form's JSON result: its dependants run as if it completed."""
    host.resolve_step(task_id, step, _result(data.result), caller=viewer.caller)
    return _back_to_task(task_id)


ROUTES = [
    audit_page,
    admin_root,
    sign_in_page,
    sign_in,
    sign_out,
    registry_page,
    namespace_page,
    version_page,
    approve_version,
    tasks_page,
    task_page,
    cancel_task,
    retry_task,
    resolve_step,
]
