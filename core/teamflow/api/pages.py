"""The two pages outside the API and the admin pages: ``GET /`` and the interactive API page.

Neither holds data: ``/`` sends a browser to the registry browser, and ``/api`` is Swagger
UI over ``/openapi.json`` (its "Authorize" button takes a token; the page itself needs none).
"""

from __future__ import annotations

from litestar import Response, get
from litestar.enums import MediaType
from litestar.response import Redirect

SWAGGER_UI = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5"
API_PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>teamflow API</title>
<link rel="stylesheet" href="{SWAGGER_UI}/swagger-ui.css">
</head>
<body>
<div id="api"></div>
<script src="{SWAGGER_UI}/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({{url: "/openapi.json", dom_id: "#api", persistAuthorization: false}});</script>
</body>
</html>
"""


@get("/", include_in_schema=False)
async def root() -> Redirect:
    """The service's address, opened in a browser: the registry browser."""
    return Redirect("/admin/workflows")


@get("/api", include_in_schema=False)
async def api_page() -> Response[str]:
    """Swagger UI over /openapi.json: try every route with a token."""
    return Response(API_PAGE, media_type=MediaType.HTML)


ROUTES = [root, api_page]
