"""The ``teamflow`` command: thin, it calls the host and renders what it returns."""

from __future__ import annotations

import functools
import json
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from teamflow import views
from teamflow.errors import NoWorker, TeamflowError
from teamflow.models import TaskRequest, TaskResult
from teamflow.refs import parse_ref
from teamflow.serialization import unstructure

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

STATUS_STYLE = {
    "completed": "green",
    "resolved": "green",
    "failed": "red",
    "cancelled": "yellow",
    "in_progress": "cyan",
    "waiting": "magenta",
    "pending": "white",
}


def _config(ctx: click.Context) -> Any:
    """The configuration in force: the file or environment, with the command line's overrides."""
    import os

    from teamflow.config import load_config
    from teamflow.logs import configure_logging

    root = ctx.find_root().obj
    env = dict(os.environ)
    if root.get("database_url") is not None:  # checked like the variable it overrides
        env["TEAMFLOW_DATABASE_URL"] = root["database_url"]
    config = load_config(root.get("config"), env=env)
    configure_logging(config.log_format, root.get("log_level") or config.log_level)
    return config


def _host(ctx: click.Context, **kwargs: Any) -> Any:
    from teamflow.host import Host

    return Host(config=_config(ctx), **kwargs)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn teamflow's errors into one clear line on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TeamflowError as exc:
            err.print(Text.assemble(("error", "red"), f" ({exc.code}): {exc.detail}"))
            sys.exit(2)

    return wrapper


def _json(data: Any) -> None:
    """Print a view (or plain data) as JSON: the same shape the HTTP API answers."""
    click.echo(json.dumps(unstructure(data), indent=2, sort_keys=True, default=str))


def _styled(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{escape(status)}[/]"


def _line(label: str, style: str, text: str) -> None:
    """A labelled line whose text (from plugins, config, users) is never read as markup."""
    out.print(Text.assemble((label, style), " ", text))


@click.group()
@click.option(
    "--config", "config", type=click.Path(dir_okay=False), help="teamflow.toml to use ($TEAMFLOW_CONFIG)"
)
@click.option("--database-url", help="overrides database_url ($TEAMFLOW_DATABASE_URL)")
@click.option(
    "--log-level",
    type=click.Choice(["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"], case_sensitive=False),
    help="overrides log_level ($TEAMFLOW_LOG_LEVEL, default INFO)",
)
@click.version_option(package_name="teamflow")
@click.pass_context
def main(ctx: click.Context, config: str | None, database_url: str | None, log_level: str | None) -> None:
    """teamflow: workflows from many teams, namespaced, versioned and owned."""
    ctx.ensure_object(dict)
    ctx.obj.update(config=config, database_url=database_url, log_level=log_level.upper() if log_level else None)


# -- the registry ---------------------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
@handle_errors
def plugins(ctx: click.Context, as_json: bool) -> None:
    """List installed plugins, what each registered, and every refusal and conflict."""
    host = _host(ctx)
    if as_json:
        _json(host.load_report())
        return
    table = Table(title="teamflow plugins")
    for column in ("distribution", "version", "status", "namespaces", "workflows", "hooks"):
        table.add_column(column)
    for p in host.plugins.plugins:
        status = (
            Text("loaded", "green")
            if p.status == "loaded"
            else Text.assemble(("failed", "red"), f": {p.error}")
        )
        table.add_row(
            Text(p.distribution),
            Text(p.version),
            status,
            Text(", ".join(p.namespaces)),
            str(len(p.workflows)),
            ", ".join(h.removeprefix("teamflow_") for h in p.hooks),
        )
    out.print(table)
    _print_problems(host)


def _print_problems(host: Any) -> int:
    """Every load problem, each with the message and fix it carries; returns how many."""
    report = host.plugins
    for p in report.failed:
        _line("LOAD FAILED", "red", f"{p.message}\n  fix: {p.fix}")
    for c in report.conflicts:
        _line("CONFLICT", "yellow", f"{c.message}\n  fix: {c.fix}")
    for r in report.refusals:
        _line("REFUSED", "red", f"[{r.kind}] {r.message}")
    for d in report.drift:
        _line("DRIFT", "yellow", f"{d.message}\n  fix: {d.fix}")
    for c in report.calls:
        label, style = ("CALL", "red") if c.severity == "problem" else ("CALL WARNING", "yellow")
        _line(label, style, f"{c.message}\n  fix: {c.fix}")
    return int(report.problems)


@main.command()
@click.argument("namespace", required=False)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
@handle_errors
def workflows(ctx: click.Context, namespace: str | None, as_json: bool) -> None:
    """List namespaces and their workflow versions."""
    host = _host(ctx)
    listed = views.registry_view(host.registry, namespace)
    # each workflow with its versions' drain (unfinished tasks, callers)
    registry = views.RegistryView(listed.namespaces, [host.workflow_view(w.namespace, w.name) for w in listed.workflows])
    if as_json:
        _json(registry)
        return
    for ns in registry.namespaces:
        approval = " [magenta](requires approval)[/]" if ns.requires_approval else ""
        table = Table(
            title=f"{escape(ns.name)}: team {escape(ns.owner_team)} <{escape(ns.contact_email)}>, "
            f"{escape(ns.owner_distribution)}{approval}",
            title_justify="left",
        )
        for column in ("workflow", "versions (unfinished tasks)", "default", "distribution"):
            table.add_column(column)
        for row in registry.workflows:
            if row.namespace != ns.name:
                continue
            drained = {d.version: d.unfinished for d in row.drain or []}
            versions = ", ".join(
                escape(v.version) + (" [dim](deprecated)[/]" if v.deprecated else "")
                + (f" ({drained[v.version]})" if drained.get(v.version) else "")
                for v in row.versions
            )
            table.add_row(Text(row.name), versions, Text(row.latest or "-"), Text(row.versions[0].distribution))
        out.print(table)


@main.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
@handle_errors
def show(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Show one workflow version: steps, dependencies, owner, fingerprint, distribution."""
    host = _host(ctx)
    parsed = parse_ref(ref)
    data = host.version_view(parsed.namespace, parsed.name, parsed.version)
    if as_json:
        _json(data)
        return
    _line(data.reference, "bold", data.description)
    if data.deprecated:
        _line("deprecated:", "yellow", data.deprecated)
    out.print(Text(f"owner: team {data.owner_team} <{data.contact_email}>, namespace owned by {data.owner_distribution}"))
    out.print(Text(f"shipped by: {data.distribution} {data.distribution_version}"))
    out.print(Text(f"fingerprint: {data.fingerprint}"))
    table = Table()
    for column in ("step", "depends on", "handler", "retries", "timeout", "calls"):
        table.add_column(column)
    for s in data.steps:
        table.add_row(
            Text(s.name),
            Text(", ".join(s.depends_on) or "-"),
            Text(s.handler),
            str(s.retry_limit) + ("" if s.retryable else " (not retryable)"),
            f"{s.timeout_s}s" if s.timeout_s else "-",
            Text(", ".join(s.calls) or "-"),
        )
    out.print(table)
    for caller in data.called_by:
        out.print(Text(f"called by {caller.caller} step {caller.step} ({caller.call})"))
    _print_approval(data)


def _print_approval(data: views.VersionDetail) -> None:
    state = data.approval
    if state is None or state.status == "not_required":
        out.print("approval: not required")
        return
    if state.status == "waiting":
        _line("approval:", "yellow", f"waiting for one of {', '.join(state.approvers) or '(no approvers)'}")
    for a in state.approvals:
        when = views.shown_time(a.at)
        how = f"via {a.via}" if a.verified else "recorded without a verified identity"
        which = "the current fingerprint" if a.current else f"an earlier fingerprint {a.fingerprint[:12]}"
        _line("approved:" if a.current else "approved (stale):", "green" if a.current else "yellow",
              f"{a.approver} approved {which} at {when} ({how})")


@main.command()
@click.option(
    "--against",
    type=click.Path(exists=True, dir_okay=False),
    help="a registry export of the previous release (`teamflow registry export`): also exit 1 on each breaking change",
)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
@handle_errors
def check(ctx: click.Context, against: str | None, as_json: bool) -> None:
    """Exit 1 on any load failure, refusal, conflict, drift, task no worker can serve, or
    declared call that does not hold; with --against, on any breaking change too."""
    host = _host(ctx)
    release = host.check_against(_read_export(against), where=against) if against else None
    report = host.load_report()
    health = host.readiness()  # the same rules as GET /health/ready
    # A version waiting for approval cannot run: a problem in strict mode, else a warning.
    waiting_fails = bool(report.waiting_approval) and host.config.strict
    if as_json:
        _json(report if release is None else {**unstructure(report), "release": unstructure(release)})
    else:
        _print_problems(host)
        for reason in health.reasons:
            _line("NOT READY", "red", reason)
        for waiting in report.waiting_approval:
            _line("WAITING FOR APPROVAL" if waiting_fails else "waiting for approval:", "red" if waiting_fails else "yellow",
                  f"{waiting.reference} (fingerprint {waiting.fingerprint[:12]}) cannot run until {waiting.fix}")
        if release is not None:
            _print_release(release)
        if report.ok and not health.reasons and not waiting_fails and (release is None or release.ok):
            out.print(
                f"[green]ok[/]: {len(host.plugins.plugins)} plugin(s), {len(host.registry.namespaces)} "
                f"namespace(s), {len(host.registry)} workflow version(s)"
                + (f"; {len(release.judged)} new version(s) checked against {escape(against or '')}" if release else "")
            )
    sys.exit(0 if report.ok and not health.reasons and not waiting_fails and (release is None or release.ok) else 1)


def _read_export(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise click.UsageError(f"--against {path}: not a JSON registry export: {exc}") from None


def _print_release(release: Any) -> None:
    for f in release.findings:
        label, style = ("ALLOWED", "yellow") if f.allowed else ("BREAKING", "red")
        _line(label, style, f"[{f.rule}] {f.message}" + ("" if f.allowed else f"\n  fix: {f.fix}"))
    for c in release.callers:
        label, style = ("CALLER", "red") if c.severity == "problem" else ("CALLER WARNING", "yellow")
        _line(label, style, f"{c.message}\n  fix: {c.fix}")


@main.group()
def registry() -> None:
    """The loaded registry as data, for `teamflow check --against` in the next release's CI."""


@registry.command("export")
@click.option("--namespace", help="export only this namespace")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="write to FILE (default: stdout)")
@click.pass_context
@handle_errors
def registry_export(ctx: click.Context, namespace: str | None, output: str | None) -> None:
    """Write the loaded registry as JSON: namespaces, policies, versions, steps, fingerprints,
    context schemas, declared calls with examples, distributions (format: the README)."""
    host = _host(ctx)
    text = json.dumps(unstructure(host.export_registry(namespace)), indent=2, sort_keys=True) + "\n"
    host.close()
    if output is None:
        click.echo(text, nl=False)
        return
    Path(output).write_text(text, encoding="utf-8")
    err.print(Text(f"wrote the registry export to {output}"))


@main.command()
@click.argument("ref")
@click.option("--approver", required=True, help="the approver's email, one of the namespace's approvers")
@click.pass_context
@handle_errors
def approve(ctx: click.Context, ref: str, approver: str) -> None:
    """Approve a workflow version (its current fingerprint) in a namespace that requires approval;
    the OS user and host are recorded beside the approver."""
    host = _host(ctx)
    done = host.approve(ref, approver, caller=host.cli_caller())
    out.print(Text(f"approved {done.reference} fingerprint {done.fingerprint[:12]} by {done.approver} (via {done.via})"))


@main.command()
@click.argument("ref")
@click.option("--percent", type=click.FloatRange(0, 100, min_open=True), help="the share of requests, 0 < N <= 100")
@click.option("--clear", is_flag=True, help="end the rollout of REF's workflow")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
@handle_errors
def rollout(ctx: click.Context, ref: str, percent: float | None, clear: bool, as_json: bool) -> None:
    """Send --percent N of the requests for REF's workflow that name no exact version (and that
    REF's version satisfies) to REF's version, on every host; --clear ends it. Tasks already
    created keep their version."""
    if clear == (percent is not None):
        raise click.UsageError("give either --percent N or --clear")
    host = _host(ctx)
    done = host.clear_rollout(ref, caller=host.cli_caller()) if clear else host.set_rollout(
        ref, float(percent or 0), caller=host.cli_caller()
    )
    host.close()
    if as_json:
        _json(done)
    elif clear:
        out.print(Text(f"rollout of {done.namespace}/{done.name} cleared"))
    else:
        out.print(Text(f"{done.percent:g}% of {done.namespace}/{done.name} requests go to {done.version}"))


# -- tasks ----------------------------------------------------------------------------------


def _context_arg(value: str) -> dict[str, Any]:
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise click.BadParameter("the context must be a JSON object")
    return data


@main.command()
@click.argument("ref")
@click.option("--context", "context", default="{}", help="JSON object, or @file.json")
@click.option("--async", "is_async", is_flag=True, help="store the task for workers and print its id")
@click.option("--idempotency-key", help="the same key and request return the existing task")
@click.option(
    "--timeout",
    type=click.FloatRange(0, 86400, min_open=True),
    help="stop waiting after S seconds (exit 1); the task is left to the workers",
)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
@handle_errors
def run(
    ctx: click.Context,
    ref: str,
    context: str,
    is_async: bool,
    idempotency_key: str | None,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Run a workflow: namespace/name[@version-or-constraint]. Exits 0 when it completed, 1
    when it failed, was cancelled, nobody can run it, or --timeout ran out."""
    parsed = parse_ref(ref)
    try:
        payload = _context_arg(context)
    except (click.BadParameter, OSError) as exc:
        raise click.UsageError(f"--context: {exc}") from None
    host = _host(ctx)
    request = TaskRequest(
        name=parsed.name,
        namespace=parsed.namespace,
        version=parsed.version,
        context=payload,
        idempotency_key=idempotency_key,
    )
    if is_async:
        task_id = host.accept(request, host.cli_caller()).id
        if as_json:
            _json({"id": task_id, "status": "pending"})
        else:
            out.print(task_id)
        return
    try:
        result = _run_to_end(host, request, ref, timeout, quiet=as_json or not out.is_terminal)
    except NoWorker as exc:
        host.close()
        err.print(Text.assemble(("error", "red"), f" ({exc.code}): {exc.detail}"))
        sys.exit(1)
    if result.status not in ("completed", "failed", "cancelled"):
        host.close()
        err.print(Text(
            f"task {result.id} is still {result.status} after {timeout:g} s; the workers go on: "
            f"`teamflow task {result.id}`"
        ))
        if as_json:
            _json({"id": result.id, "status": result.status})
        sys.exit(1)
    if as_json:
        _json(host.task_view(result.id))
    else:
        _print_task(host, result)
    host.close()
    sys.exit(0 if result.status == "completed" else 1)


def _run_to_end(host: Any, request: TaskRequest, ref: str, timeout: float | None, *, quiet: bool) -> TaskResult:
    caller = host.cli_caller()
    if quiet:
        result: TaskResult = host.execute_sync(request, timeout=timeout, caller=caller)
        return result
    with out.status(f"running {ref}") as status:

        def progress(task: TaskResult) -> None:
            done = sum(1 for s in task.steps if s.status in ("completed", "resolved"))
            running = ", ".join(s.name for s in task.steps if s.status in ("in_progress", "waiting"))
            status.update(f"{task.ref} {done}/{len(task.steps)} steps done; running: {running or '-'}")

        result = host.execute_sync(request, timeout=timeout, progress=progress, caller=caller)
        return result


def _fmt_duration(step: Any) -> str:
    if step.started_at and step.finished_at and not step.resolved_by:
        return f"{(step.finished_at - step.started_at) * 1000:.0f} ms"
    return ""


def _task_tree(host: Any, task: TaskResult, tree: Tree, depth: int = 0) -> None:
    for step in task.steps:
        line = f"{escape(step.name)} {_styled(step.status)} attempts={step.attempts} {_fmt_duration(step)}"
        if step.resolved_by:
            line += f" resolved by {escape(step.resolved_by)}"
        node = tree.add(line)
        if step.result is not None:
            node.add(f"[dim]result:[/] {escape(json.dumps(step.result)[:300])}")
        if step.error:
            node.add(f"[red]error:[/] {escape(step.error)}")
        for child_id in step.children:
            child = host.get_task(child_id)
            sub = node.add(f"child {escape(child.ref)} {child.id} {_styled(child.status)}")
            if depth < 4:
                _task_tree(host, child, sub, depth + 1)


def _print_task(host: Any, task: TaskResult) -> None:
    tree = Tree(f"[bold]{escape(task.ref)}[/] {task.id} {_styled(task.status)}")
    _task_tree(host, task, tree)
    out.print(tree)
    if task.error_summary:
        out.print(Text(task.error_summary, "red"))


@main.command("task")
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
@handle_errors
def task_cmd(ctx: click.Context, task_id: str, as_json: bool) -> None:
    """Show a task: its steps as a tree with status, attempts, durations, results, errors, children."""
    host = _host(ctx)
    if as_json:
        _json(host.task_view(task_id))
    else:
        _print_task(host, host.get_task(task_id))


@main.command()
@click.option("--namespace")
@click.option("--name")
@click.option("--version")
@click.option("--status", type=click.Choice(["pending", "in_progress", "completed", "failed", "cancelled"]))
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 500))
@click.option("--cursor", help="next_cursor from the previous page")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
@handle_errors
def tasks(
    ctx: click.Context,
    namespace: str | None,
    name: str | None,
    version: str | None,
    status: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List tasks, newest first."""
    host = _host(ctx)
    page = host.list_tasks(namespace=namespace, name=name, version=version, status=status, limit=limit, cursor=cursor)
    if as_json:
        _json(page)
        return
    table = Table()
    # ids are never cut (they are what `teamflow task ID` takes); other columns fold instead
    table.add_column("id", no_wrap=True, min_width=36)
    table.add_column("workflow", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("created", overflow="fold")
    table.add_column("parent", overflow="fold")
    for r in page.tasks:
        created = views.shown_time(r.created_at)  # as the admin pages show it
        table.add_row(
            r.id,
            Text(f"{r.namespace}/{r.name}@{r.version}"),
            _styled(r.status),
            created,
            r.parent_id or "",
        )
    out.print(table)
    if page.next_cursor:
        out.print(f"more: --cursor {page.next_cursor}")


@main.command()
@click.argument("task_id")
@click.pass_context
@handle_errors
def cancel(ctx: click.Context, task_id: str) -> None:
    """Cancel a task: pending steps and child tasks are cancelled, steps in flight finish."""
    host = _host(ctx)
    result = host.cancel(task_id, caller=host.cli_caller())
    out.print(f"{result.id} {_styled(result.status)}")


@main.command()
@click.argument("task_id")
@click.pass_context
@handle_errors
def retry(ctx: click.Context, task_id: str) -> None:
    """Re-open a failed task's failed steps (attempts reset, history kept)."""
    host = _host(ctx)
    reopened = host.retry(task_id, caller=host.cli_caller())
    out.print(
        f"re-opened {', '.join(reopened)} of task {task_id}; a worker will pick them up "
        "(`teamflow worker`, or `teamflow serve`)"
    )


@main.command()
@click.argument("task_id")
@click.argument("step")
@click.option("--result", "result", default="null", help="the step's result as JSON")
@click.option("--by", "actor", default=None, help="who resolved it (default: $USER)")
@click.pass_context
@handle_errors
def resolve(ctx: click.Context, task_id: str, step: str, result: str, actor: str | None) -> None:
    """Mark a stuck step as resolved by hand; its dependants treat it as completed."""
    import getpass

    try:
        value = json.loads(result)
    except json.JSONDecodeError as exc:
        raise click.UsageError(f"--result: not JSON: {exc}") from None
    host = _host(ctx)
    # the step records the name given (or the OS user); the audit row, the OS user and host
    task = host.resolve_step(task_id, step, value, actor=actor or getpass.getuser())
    out.print(f"step {escape(step)} of {escape(task_id)} resolved; task is {_styled(task.status)}")


# -- processes --------------------------------------------------------------------------------


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


@main.command()
@click.option("--namespace", "namespaces", multiple=True, help="serve only this namespace (repeatable)")
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(1, 1024), help="steps run at once")
@click.pass_context
@handle_errors
def worker(ctx: click.Context, namespaces: tuple[str, ...], concurrency: int) -> None:
    """Claim and run ready steps until SIGTERM (then finish or release the steps in hand)."""
    host = _host(ctx)
    stop = _stop_on_signals()
    host.run_worker(concurrency=concurrency, namespaces=list(namespaces) or None, stop=stop)
    host.close()


@main.command()
@click.option("--host", "bind", default="127.0.0.1", show_default=True)
@click.option("--port", default=3000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers", default=2, show_default=True, type=click.IntRange(0, 1024), help="embedded worker concurrency (0: none)"
)
@click.option(
    "--insecure",
    is_flag=True,
    help="listen on a non-loopback address although access control is off (anyone reaching it can do anything)",
)
@click.pass_context
@handle_errors
def serve(ctx: click.Context, bind: str, port: int, workers: int, insecure: bool) -> None:
    """Run the HTTP API, the admin pages and embedded workers."""
    import ipaddress

    from loguru import logger

    from teamflow.api.server import serve as run_server

    host = _host(ctx)
    if not host.access.enabled():
        try:
            loopback = bind == "localhost" or ipaddress.ip_address(bind).is_loopback
        except ValueError:
            loopback = False
        if not loopback and not insecure:
            host.close()
            err.print(Text.assemble(
                ("error", "red"),
                f" (insecure): access control is off (no token exists and auth is not set), so anyone reaching "
                f"{bind}:{port} could read every team's tasks and run anything. Create a token first "
                "(`teamflow tokens create --name admin --namespace '*' --scope admin`), or pass --insecure "
                "to serve without access control anyway.",
            ))
            sys.exit(2)
        logger.warning(
            "access control is OFF: every route answers without a token. Turn it on with "
            "`teamflow tokens create --name admin --namespace '*' --scope admin` (or auth = true)"
        )
    run_server(host, bind=bind, port=port, workers=workers)


# -- access ----------------------------------------------------------------------------------


@main.group()
def tokens() -> None:
    """Access tokens: each reaches some namespaces with some scopes (see the README's Access)."""


@tokens.command("create")
@click.option("--name", required=True, help="the token's unique name (shown in audit rows and task histories)")
@click.option("--namespace", "namespaces", multiple=True, required=True, help="a namespace it reaches ('*': every one); repeatable")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(["read", "execute", "operate", "approve", "metrics", "admin"]),
    help="what it may do; repeatable",
)
@click.option("--identity", help="the e-mail it acts as (scope approve: one of the namespace's approvers)")
@click.option("--expires", help="its lifetime, such as 90d, 12h or 2w (default: the host's token_expires_s)")
@click.option("--rotate", is_flag=True, help="re-issue an existing token's secret under its name")
@click.option(
    "--overlap",
    default="1h",
    show_default=True,
    help="with --rotate: how long the old secret keeps working",
)
@click.option("--json", "as_json", is_flag=True, help="print JSON (the secret as `secret`)")
@click.pass_context
@handle_errors
def tokens_create(
    ctx: click.Context,
    name: str,
    namespaces: tuple[str, ...],
    scopes: tuple[str, ...],
    identity: str | None,
    expires: str | None,
    rotate: bool,
    overlap: str,
    as_json: bool,
) -> None:
    """Create a token and print its secret once (the last line of the output); only its
    SHA-256 is stored."""
    from teamflow.tokens import parse_duration

    host = _host(ctx, discover=False)
    expires_s = parse_duration(expires) if expires else None
    if rotate:
        issued = host.reissue_token(name, overlap_s=parse_duration(overlap), expires_s=expires_s, caller=host.cli_caller())
    else:
        issued = host.create_token(
            name, namespaces, scopes, identity=identity, expires_s=expires_s, caller=host.cli_caller()
        )
    host.close()
    if as_json:
        _json(issued)
        return
    t = issued.token
    err.print(
        Text(
            f"token {t.name}: namespaces {', '.join(t.namespaces)}; scopes {', '.join(t.scopes)}; expires "
            f"{views.shown_time(t.expires_at) if t.expires_at else 'never'}. "
            "Its secret follows; it is shown only now:"
        )
    )
    click.echo(issued.secret)


@tokens.command("list")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
@handle_errors
def tokens_list(ctx: click.Context, as_json: bool) -> None:
    """Every token with its namespaces, scopes, identity, expiry and last use (never a secret)."""
    host = _host(ctx, discover=False)
    listed = host.list_tokens()
    host.close()
    if as_json:
        _json(listed)
        return
    table = Table("name", "state", "namespaces", "scopes", "identity", "expires", "last used")
    for t in listed.tokens:
        table.add_row(
            Text(t.name), t.state, Text(", ".join(t.namespaces)), ", ".join(t.scopes), Text(t.identity or "-"),
            views.shown_time(t.expires_at), views.shown_time(t.last_used_at),
        )
    out.print(table)


@tokens.command("revoke")
@click.argument("name")
@click.pass_context
@handle_errors
def tokens_revoke(ctx: click.Context, name: str) -> None:
    """Revoke a token by name: every host refuses it within seconds; its admin sessions end."""
    host = _host(ctx, discover=False)
    token = host.revoke_token(name, host.cli_caller())
    host.close()
    out.print(Text(f"token {token.name} revoked"))


@main.command("audit")
@click.option("--namespace", help="only this namespace's rows")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 500))
@click.option("--cursor", help="next_cursor from the previous page")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
@handle_errors
def audit_cmd(ctx: click.Context, namespace: str | None, limit: int, cursor: str | None, as_json: bool) -> None:
    """Who approved, cancelled, retried, resolved, created or revoked what, and refused requests."""
    host = _host(ctx, discover=False)
    page = host.audit(namespace=namespace, limit=limit, cursor=cursor)
    host.close()
    if as_json:
        _json(page)
        return
    table = Table("when", "action", "actor", "namespace", "target", "from", "detail", "count")
    for r in page.rows:
        table.add_row(
            views.shown_time(r.at), r.action, Text(r.actor), Text(r.namespace or "-"),
            Text(r.target or "-"), Text(r.address or "-"), Text(r.detail or ""), str(r.count),
        )
    out.print(table)
    if page.next_cursor:
        out.print(Text(f"more: --cursor {page.next_cursor}"))


@main.group()
def db() -> None:
    """Database schema."""


@db.command()
@click.pass_context
@handle_errors
def upgrade(ctx: click.Context) -> None:
    """Apply schema migrations to the configured database (idempotent)."""
    from teamflow.host import Host

    done = Host.upgrade_database(_config(ctx))
    applied = f" (applied migration {', '.join(map(str, done.applied))})" if done.applied else " (current)"
    out.print(Text(f"schema at version {done.schema_version}{applied}"))


# -- plugin authors ------------------------------------------------------------------------


@main.command("new-plugin")
@click.argument("name")
@click.option("--namespace", required=True, help="the namespace it owns: lower case letters, digits and _, e.g. billing")
@click.option("--owner-team", required=True, help="the team that owns the namespace")
@click.option("--contact", required=True, help="the e-mail address other teams write to about it")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path),
    help="the folder to write the distribution into, new or empty (default: ./NAME)",
)
@click.pass_context
@handle_errors
def new_plugin(
    ctx: click.Context, name: str, namespace: str, owner_team: str, contact: str, directory: Path | None
) -> None:
    """Write a new team plugin distribution, ready to install and test.

    NAME is the distribution's name, e.g. teamflow-billing; it owns the --namespace. A
    namespace that an installed plugin, an owner pin or the database gives to another
    distribution is refused, naming it."""
    from teamflow import scaffold

    spec = scaffold.plugin_spec(name, namespace, owner_team, contact)
    target = directory if directory is not None else Path(name)
    with _host(ctx) as host:
        written = scaffold.new_plugin(spec, target, owner_of=host.namespace_owner)
    out.print(Text(f"wrote {spec.distribution} (namespace {spec.namespace}, requires {spec.host_requirement}):"))
    for path in written:
        out.print(Text(f"  {path}"))
    # a bare folder name would be read by pip as a distribution to download
    folder = target.as_posix() if target.is_absolute() or "/" in target.as_posix() else f"./{target}"
    out.print(Text("next:"))
    out.print(Text(f"  pip install -e '{folder}[test]'"))
    out.print(Text(f"  cd {folder} && python -m pytest"))
    out.print(Text(f"  teamflow run {spec.example} --context '{{\"item\": \"widget\"}}'"))


if __name__ == "__main__":
    main()
