"""The HTTP surface: the JSON API, the admin pages and the metrics (``create_app``, ``serve``).

Thin by design: every handler calls the host and renders a ``teamflow.views`` dictionary.
Import ``teamflow.api.app`` or ``teamflow.api.server``; this package imports nothing itself.
"""
