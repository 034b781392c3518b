"""The admin pages' sign-in: a server-held session in a cookie, and forms safe from other sites.

A browser signs in once with a token's secret (``Access.sign_in``); from then on it carries
only a random session id, in a cookie sent to ``/admin/`` alone (``HttpOnly``,
``SameSite=Strict``, ``Secure`` over https). The session lives on the server, bound to its
token: revoking the token, its expiry or ``session_idle_s`` without a request ends it
(``Access.session``). The JSON API never reads this cookie and the admin pages never read
the ``Authorization`` header, so a stolen page session cannot drive the API and a script
holding a bearer token cannot ride a person's session.

Every admin form is posted form-encoded and, once signed in, carries the session's CSRF
value; a POST whose ``Origin`` is another site is refused before anything else. The guards
here decide each admin request before its handler runs and leave a ``Viewer`` (who is
looking, and with which CSRF value) for the handler and the templates.
"""

from __future__ import annotations

import math
import secrets
from typing import Any, cast
from urllib.parse import urlencode, urlsplit

import anyio
import attrs
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from teamflow.errors import Forbidden, NotAuthenticated, TeamflowError, TooManyFailures
from teamflow.tokens import Caller, Principal

COOKIE = "teamflow_session"
COOKIE_PATH = "/admin/"
VIEWER = "teamflow_viewer"  # where the guard leaves the request's Viewer (ASGI scope)
HOME = "/admin/workflows"
SIGN_IN = "/admin/sign-in"
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
MAX_NEXT = 2000  # characters of a ``next`` path kept; a longer one goes home


@attrs.frozen
class Viewer:
    """Who looks at an admin page: the caller the host is asked as, and the session's CSRF
    value (``csrf`` is None and ``principal`` None while access control is off)."""

    caller: Caller
    csrf: str | None = None
    access_on: bool = True

    @property
    def principal(self) -> Principal | None:
        return self.caller.principal

    def may(self, scope: str, namespace: str) -> bool:
        """Whether a form acting with ``scope`` on ``namespace`` is offered (never without a session)."""
        return self.principal is not None and self.principal.may(scope, namespace)


class SignInRequired(TeamflowError):
    """A page asked for without a live session: the browser is sent to the sign-in form."""

    code = "sign_in_required"
    status = 303


class UnsupportedForm(TeamflowError):
    code = "unsupported_media_type"
    status = 415


# -- the cookie ---------------------------------------------------------------------------------


def is_https(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    return connection.url.scheme == "https"


def session_cookie(session_id: str, *, secure: bool) -> str:
    """The ``Set-Cookie`` value holding a new session id: nothing else, sent to ``/admin/`` only."""
    return f"{COOKIE}={session_id}; HttpOnly; SameSite=Strict; Path={COOKIE_PATH}" + ("; Secure" if secure else "")


def cleared_cookie(*, secure: bool) -> str:
    """The ``Set-Cookie`` value that makes the browser drop its session id."""
    return (
        f"{COOKIE}=; HttpOnly; SameSite=Strict; Path={COOKIE_PATH}; Max-Age=0; "
        "Expires=Thu, 01 Jan 1970 00:00:00 GMT" + ("; Secure" if secure else "")
    )


def session_id(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    value = connection.cookies.get(COOKIE)
    return value or None


# -- where to go after signing in ---------------------------------------------------------------


def safe_next(target: str | None) -> str:
    """``target`` if it is an admin page of this server (a path, never another host, scheme or
    the sign-in form itself), else the registry: a sign-in link cannot send anyone away."""
    if not target or len(target) > MAX_NEXT or any(ord(c) < 32 or c == "\\" for c in target):
        return HOME
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith(COOKIE_PATH) or parts.path == SIGN_IN:
        return HOME
    return target


def sign_in_location(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The sign-in form, asked to come back to the page requested."""
    here = connection.url.path + (f"?{connection.url.query}" if connection.url.query else "")
    return f"{SIGN_IN}?{urlencode({'next': safe_next(here)})}"


# -- guards -------------------------------------------------------------------------------------


def address(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    return connection.client.host if connection.client else None


def route_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    return f"{connection.scope.get('method', 'GET')} {connection.scope.get('path_template') or connection.url.path}"


def _own_origin(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    return f"{connection.url.scheme}://{connection.headers.get('host', '')}".lower()


def check_origin(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """A POST sent by a page of another site is refused; one without ``Origin`` (older
    browsers, scripts) goes on to the session and CSRF checks."""
    origin = connection.headers.get("origin")
    if origin is not None and origin.strip().lower().rstrip("/") != _own_origin(connection):
        raise Forbidden(
            f"this form was posted from {origin!r}, not from this server ({_own_origin(connection)}): "
            "open the admin page on this server and submit the form there",
            origin=origin,
        )


def check_form_media(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """Admin forms are form-encoded (UTF-8), as a browser posts them; anything else is refused."""
    media, _sep, params = connection.headers.get("content-type", "").partition(";")
    charset = params.strip().lower().removeprefix("charset=").strip('"') if params.strip() else "utf-8"
    if media.strip().lower() != FORM_MEDIA_TYPE or charset not in ("utf-8", "utf8"):
        raise UnsupportedForm(
            f"send admin forms as Content-Type: {FORM_MEDIA_TYPE} (UTF-8), not {media.strip() or 'none'!r}: "
            "submit the form from the admin page"
        )


def _refuse(connection: ASGIConnection[Any, Any, Any, Any], token: str | None, status: int) -> None:
    """Count a refused admin request into the audit trail, as the JSON API does."""
    connection.app.state.host.access.refused(address(connection), token, route_of(connection), status)


def _lookup(connection: ASGIConnection[Any, Any, Any, Any]) -> Viewer | None:
    """The viewer of this request: anonymous when access control is off, the session's
    principal when it is on and the cookie names a live session, else None."""
    access = connection.app.state.host.access
    client = address(connection)
    if not access.enabled():
        return Viewer(Caller("anonymous", None, client), None, access_on=False)
    sid = session_id(connection)
    found = access.session(sid) if sid else None
    if found is None:
        return None
    principal, csrf = found
    return Viewer(Caller(principal.actor, principal, client), csrf)


def signed_in(scope: str | None, *, form: bool = False) -> Any:
    """A guard for an admin page (``form``: an admin form's POST). With access control on it
    needs a live session, whose principal holds ``scope`` (checked before anything is looked
    up); a form also needs this server's origin and the session's CSRF value. Without a
    session a page is sent to the sign-in form and a form is refused (401)."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if form:
            check_origin(connection)
            check_form_media(connection)
        viewer = await anyio.to_thread.run_sync(_lookup, connection)
        if viewer is None:
            if not form:
                raise SignInRequired(
                    "sign in with a token to see this page", sign_in=sign_in_location(connection)
                ).with_headers({"Location": sign_in_location(connection)})
            await anyio.to_thread.run_sync(_refuse, connection, None, 401)
            raise NotAuthenticated(
                f"no live session (signed out, idle for too long, or its token was revoked or expired): "
                f"sign in again at {SIGN_IN} and repeat the action"
            )
        connection.scope[VIEWER] = viewer  # type: ignore[literal-required]
        if form and not viewer.access_on:
            raise Forbidden(
                "access control is off, so the admin pages are read-only (a form without a session could be "
                "posted by any page): act with the CLI or the API, or turn access control on "
                "(`teamflow tokens create --scope admin ...`) and sign in"
            )
        if form:
            await check_csrf(connection, viewer)
        principal = viewer.principal
        if scope is not None and principal is not None and not principal.has(scope):
            await anyio.to_thread.run_sync(_refuse, connection, principal.name, 403)
            raise Forbidden(
                f"token {principal.name!r} lacks scope {scope!r} for {route_of(connection)} (its scopes: "
                f"{', '.join(principal.scopes)}): sign in with a token that has scope {scope!r}",
                token=principal.name,
                scope=scope,
            )

    guard.__name__ = f"signed_in_{scope or 'any'}{'_form' if form else ''}"
    return guard


async def check_csrf(connection: ASGIConnection[Any, Any, Any, Any], viewer: Viewer) -> None:
    """The form's hidden ``csrf`` field must be this session's value (compared in constant time)."""
    expected = viewer.csrf or ""
    given = (await cast("Request[Any, Any, Any]", connection).form()).getall("csrf", [])
    if not expected or len(given) != 1 or not secrets.compare_digest(str(given[0]).encode(), expected.encode()):
        principal = viewer.principal
        await anyio.to_thread.run_sync(_refuse, connection, principal.name if principal else None, 403)
        raise Forbidden(
            "this form's CSRF value is missing or not this session's: reload the admin page and submit "
            "the form again"
        )


async def sign_in_allowed(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """A guard for the sign-in form's POST: this server's origin, form-encoded (there is no
    session yet: SameSite keeps other sites' cookies out, ``Origin`` their posts)."""
    check_origin(connection)
    check_form_media(connection)


def throttled(connection: ASGIConnection[Any, Any, Any, Any]) -> TooManyFailures | None:
    """The refusal for an address past its failed sign-ins, counted; None if it may try."""
    access = connection.app.state.host.access
    wait = access.throttle(address(connection))
    if wait is None:
        return None
    _refuse(connection, None, 429)
    seconds = math.ceil(wait)
    error = TooManyFailures(
        f"too many failed sign-ins from {address(connection)}: wait {seconds} s and try again", retry_after_s=seconds
    )
    error.with_headers({"Retry-After": str(seconds)})
    return error


def viewer_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Viewer | None:
    """The viewer a guard left on this request, if one ran."""
    viewer = connection.scope.get(VIEWER)
    return viewer if isinstance(viewer, Viewer) else None


def provide_viewer(request: Request[Any, Any, Any]) -> Viewer:
    viewer = viewer_of(request)
    if viewer is None:  # every admin route that takes a viewer has the guard
        raise RuntimeError(f"{request.url.path}: an admin route without the signed_in guard")
    return viewer
