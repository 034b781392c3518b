"""``GET /registry/export``: the loaded registry in the registry export format, the same
document ``teamflow registry export`` writes and ``teamflow check --against`` reads.

Definitions are readable by any valid token (callers need providers' schemas): ``app.py``
adds ``ROUTES`` under a router whose option (``needs(None)``) asks for one.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Response, get
from litestar.di import NamedDependency
from litestar.enums import MediaType
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import QueryParameter

from teamflow.api.schemas import ErrorBody
from teamflow.host import Host
from teamflow.registry.export import RegistryExport
from teamflow.serialization import encode_view

_ERRORS = {
    400: "A query parameter the route does not take, or one given twice",
    401: "A valid bearer token is required (none, unknown, revoked and expired are answered alike)",
    404: "Unknown namespace; the body lists those that exist",
    429: "Too many requests without a valid token from this address: wait `Retry-After` seconds",
    503: "The database is unreachable, or the server is stopping",
}


@get(
    "/registry/export",
    sync_to_thread=False,
    tags=["registry"],
    summary="The loaded registry as a registry export (what `teamflow check --against` reads)",
    responses={
        code: ResponseSpec(data_container=ErrorBody, description=text, generate_examples=False)
        for code, text in _ERRORS.items()
    },
)
def export_registry(
    host: NamedDependency[Host],
    namespace: Annotated[str | None, QueryParameter(description="export only this namespace")] = None,
) -> Response[RegistryExport]:
    """Namespaces, policies, versions, steps, fingerprints, context schemas, declared calls
    with their examples, and distributions (format version 1: see the README)."""
    answer: Response[Any] = Response(encode_view(host.export_registry(namespace)), media_type=MediaType.JSON)
    return answer


ROUTES = [export_registry]
