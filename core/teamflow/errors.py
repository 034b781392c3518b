"""Error types. Each carries the structured facts and a message that says what to do."""

from __future__ import annotations

from typing import Any


class RetryableError(Exception):
    """Raised by a handler: the step may succeed if tried again (optionally after ``retry_after`` s)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class PermanentError(Exception):
    """Raised by a handler: the step fails at once, without retries."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TeamflowError(Exception):
    """Base of the host's own errors; ``code`` is the stable machine-readable name."""

    code = "teamflow_error"
    status = 400
    headers: dict[str, str] | None = None  # for HTTP: WWW-Authenticate, Retry-After

    def __init__(self, detail: str, **facts: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.facts = facts

    def with_headers(self, headers: dict[str, str]) -> TeamflowError:
        self.headers = headers
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.detail, **self.facts}

    def for_item(self, index: int) -> TeamflowError:
        """The same error about item ``index`` of a batch (counted from 0)."""
        error = type(self)(f"item {index}: {self.detail}", **{**self.facts, "index": index})
        error.status = self.status
        return error


class ConfigError(TeamflowError):
    code = "config_error"


class InvalidReference(TeamflowError):
    code = "invalid_reference"


class InvalidVersion(TeamflowError):
    code = "invalid_version"


class NotFound(TeamflowError):
    code = "not_found"
    status = 404


class NamespaceNotFound(NotFound):
    code = "namespace_not_found"


class WorkflowNotFound(NotFound):
    code = "workflow_not_found"


class VersionNotFound(NotFound):
    code = "version_not_found"


class WorkflowRefused(NotFound):
    """The requested workflow version was registered but refused at load (drift in strict
    mode, a conflict, an invalid definition): the message says which refusal and its fix."""

    code = "workflow_refused"


class TaskNotFound(NotFound):
    code = "task_not_found"


class StepNotFound(NotFound):
    """A step name the task's workflow version does not have."""

    code = "step_not_found"


class InvalidCursor(TeamflowError):
    code = "invalid_cursor"


class TooLarge(TeamflowError):
    """A context, a result or a batch past its documented maximum (``teamflow.limits``)."""

    code = "too_large"
    status = 413


class TooLong(TeamflowError):
    """An identifier (a version, a key) past its documented maximum length."""

    code = "too_long"
    status = 422


class InvalidText(TeamflowError):
    """Text no database stores: a NUL character (PostgreSQL text cannot hold one), a lone surrogate."""

    code = "invalid_text"
    status = 422


class VersionTooLong(InvalidVersion):
    code = "too_long"
    status = 422


class ContextInvalid(TeamflowError):
    code = "context_invalid"
    status = 422


class NotApproved(TeamflowError):
    code = "not_approved"
    status = 403


class ApprovalNotRequired(TeamflowError):
    """An approval asked for in a namespace whose policy requires none."""

    code = "approval_not_required"
    status = 409


class CallerNotAllowed(TeamflowError):
    code = "caller_not_allowed"
    status = 403


class IdempotencyConflict(TeamflowError):
    code = "idempotency_conflict"
    status = 409


class TaskStateError(TeamflowError):
    code = "invalid_task_state"
    status = 409


class StoreError(TeamflowError):
    code = "store_error"
    status = 503


class NotAuthenticated(TeamflowError):
    """No token, or one unknown, revoked or expired: one answer for all four."""

    code = "unauthorized"
    status = 401


class Forbidden(TeamflowError):
    """A valid token without the scope (or the namespace) the action needs."""

    code = "forbidden"
    status = 403


class TooManyFailures(TeamflowError):
    code = "too_many_requests"
    status = 429


class NoWorker(TeamflowError):
    """A task waited for that neither this process nor any live worker can run."""

    code = "no_worker"
    status = 503


class ExportInvalid(TeamflowError):
    """A file given to ``teamflow check --against`` that is not a registry export this teamflow reads."""

    code = "invalid_export"


class RolloutRefused(TeamflowError):
    """A rollout to a version that cannot take requests (not loaded, deprecated, unapproved, blocked)."""

    code = "rollout_refused"
    status = 409
