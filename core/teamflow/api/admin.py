"""The admin pages: server-rendered HTML over the same views as the API and the CLI.

Jinja2 with autoescaping on: namespaces, descriptions, contexts, results and errors come
from plugins and callers, and are always escaped. No JavaScript, no external assets.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined
from litestar import Response, get
from litestar.di import NamedDependency
from litestar.enums import MediaType
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect
from markupsafe import Markup

from teamflow import views
from teamflow.api import dag
from teamflow.errors import TeamflowError
from teamflow.host import Host
from teamflow.views import TASK_STATUSES

PAGE_SIZE = 50


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def _duration(started: float | None, finished: float | None) -> str:
    if started is None or finished is None:
        return ""
    seconds = finished - started
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
    template: str, status_code: int = 200, headers: Mapping[str, str] | None = None, **context: Any
) -> Response[str]:
    html = _env.get_template(template).render(**context)
    return Response(html, status_code=status_code, media_type=MediaType.HTML, headers=dict(headers or {}))


def error_page(
    status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> Response[str]:
    """The one error shape, rendered for a person (same code, detail and facts)."""
    facts = {k: v for k, v in body.items() if k not in ("error", "detail")}
    return render(
        "error.html",
        status_code=status,
        headers=headers,
        status=status,
        error=body.get("error", ""),
        detail=body.get("detail", ""),
        facts=facts,
    )


class InvalidFilter(TeamflowError):
    code = "invalid_request"


# -- pages ----------------------------------------------------------------------------------


@get("/admin", include_in_schema=False)
async def admin_root() -> Redirect:
    return Redirect("/admin/workflows")


@get("/admin/workflows", sync_to_thread=True, include_in_schema=False)
def registry_page(host: NamedDependency[Host]) -> Response[str]:
    """Every namespace with its owner and policy, every workflow with its versions; problems first."""
    by_namespace: dict[str, list[views.WorkflowView]] = {}
    for row in views.workflows(host.registry):
        by_namespace.setdefault(row.namespace, []).append(row)
    return render(
        "workflows.html",
        report=host.load_report(),
        namespaces=views.namespaces(host.registry),
        workflows=by_namespace,
    )


@get(
    "/admin/workflows/{namespace:str}/{name:str}/{version:str}", sync_to_thread=True, include_in_schema=False
)
def version_page(
    host: NamedDependency[Host], namespace: FromPath[str], name: FromPath[str], version: FromPath[str]
) -> Response[str]:
    """One version: its DAG, steps, who calls it, fingerprint and context schema."""
    entry = host.registry.resolve(namespace, name, version)
    detail = views.version_detail(host.registry, entry)
    nodes = [dag.Node(s.name, tuple(s.depends_on), title=s.description or s.name) for s in detail.steps]
    others = views.workflow(host.registry, namespace, name).versions
    svg = Markup(dag.render(nodes, label=f"steps of {detail.reference}"))  # dag.render escapes all text
    return render(
        "version.html",
        v=detail,
        requested=version,
        others=others,
        svg=svg,
        tasks_link="/admin/tasks?"
        + urlencode({"namespace": namespace, "name": name, "version": entry.version.text}),
    )


@get("/admin/tasks", sync_to_thread=True, include_in_schema=False)
def tasks_page(
    host: NamedDependency[Host],
    status: FromQuery[str | None] = None,
    namespace: FromQuery[str | None] = None,
    name: FromQuery[str | None] = None,
    version: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
) -> Response[str]:
    """Recent tasks, newest first, filtered by status (and workflow), a page at a time."""
    status, namespace, name, version, cursor = (v or None for v in (status, namespace, name, version, cursor))
    if status is not None and status not in TASK_STATUSES:
        raise InvalidFilter(
            f"unknown status {status!r}; one of {', '.join(TASK_STATUSES)}", statuses=list(TASK_STATUSES)
        )
    page = host.list_tasks(
        namespace=namespace, name=name, version=version, status=status, limit=PAGE_SIZE, cursor=cursor
    )
    filters = {
        k: v
        for k, v in (("status", status), ("namespace", namespace), ("name", name), ("version", version))
        if v
    }
    return render(
        "tasks.html",
        rows=page.tasks,
        filters=filters,
        statuses=TASK_STATUSES,
        namespaces=sorted(host.registry.namespaces),
        next_link=("/admin/tasks?" + urlencode({**filters, "cursor": page.next_cursor})) if page.next_cursor else None,
    )


@get("/admin/tasks/{task_id:str}", sync_to_thread=True, include_in_schema=False)
def task_page(host: NamedDependency[Host], task_id: FromPath[str]) -> Response[str]:
    """One task: each step's status, attempts, result or error, child tasks, the parent, the audit trail."""
    task = host.task_view(task_id)
    nodes = [
        dag.Node(
            s.name, tuple(s.depends_on), status=s.status, note=f"{s.status} · {s.attempts}x", title=s.name
        )
        for s in task.steps
    ]
    svg = Markup(dag.render(nodes, label=f"steps of task {task.id}"))  # dag.render escapes all text
    return render("task.html", t=task, children={c.id: c for c in task.children}, svg=svg)


ROUTES = [admin_root, registry_page, version_page, tasks_page, task_page]
