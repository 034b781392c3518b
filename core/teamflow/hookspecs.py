"""Hook specifications: the whole contract between the host and team plugins.

Plugins import only ``teamflow.hookimpl``; the host owns ``hookspec``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from teamflow.events import TaskEvent
    from teamflow.models import Conflict, NamespacePolicy, Resolution, Workflow

PROJECT = "teamflow"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# -------------------------------------------------------------------------
# Registration: called once per plugin while the host starts
# -------------------------------------------------------------------------


@hookspec
def teamflow_namespaces() -> list[NamespacePolicy]:  # type: ignore[empty-body]
    """Return the namespaces this distribution owns, one policy each.

    Called once per plugin at host start-up, before ``teamflow_workflows``. The host
    attributes every policy to the distribution that returned it; a namespace declared
    by two distributions is a conflict settled by owner pins, recorded owners and then
    ``teamflow_resolve_conflict``.
    """


@hookspec
def teamflow_workflows() -> list[Workflow]:  # type: ignore[empty-body]
    """Return the workflow versions this distribution ships.

    Called once per plugin at host start-up. Each version is validated on its own: a
    bad name, version or step graph refuses only that version, and the refusal names
    the distribution, the workflow reference and the step.
    """


@hookspec(firstresult=True)
def teamflow_resolve_conflict(conflict: Conflict) -> Resolution | None:
    """Decide a load-time conflict between distributions.

    :param conflict: the kind (``namespace`` or ``workflow``), the key and every
        candidate distribution with its version and what it registered.

    Called at host start-up while the registry is built: once for each workflow version
    that two or more distributions register, and once for each namespace that two or more
    declare when no owner pin or recorded owner settles it. Only plugins named in the host configuration's ``conflict_resolvers`` are asked, in
    that order; the same hook in any other plugin is ignored and reported. The returned
    resolution must keep one of the candidates or none. When every resolver returns
    ``None`` the host's default applies: the namespace owner wins, else every candidate
    is refused.

    Stops at first non-None result.
    """


# -------------------------------------------------------------------------
# Execution: called by the engine after each committed lifecycle change
# -------------------------------------------------------------------------


@hookspec
def teamflow_task_event(event: TaskEvent) -> None:
    """Observe a task or step lifecycle change, for audit, metrics and notifications.

    :param event: the event kind (``task.created``, ``task.started``,
        ``task.completed``, ``task.failed``, ``task.cancelled``, ``step.started``,
        ``step.completed``, ``step.retrying``, ``step.failed``), the task id, namespace,
        workflow, version and, for step events, the step, attempt and error.

    Called after the change is committed, at most once per event, each implementation
    on its own: one that raises is logged and the others still run. The transitions
    table, not this hook, is the durable audit.
    """
