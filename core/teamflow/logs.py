"""Logging: loguru with task fields bound on every line, and a JSON mode."""

from __future__ import annotations

import sys
from typing import Any

from loguru import logger

TEXT_FORMAT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> <level>{level: <7}</level> "
    "{extra[where]}<level>{message}</level>"
)


def _where(record: Any) -> None:
    extra = record["extra"]
    parts = []
    if "namespace" in extra:
        parts.append(f"{extra['namespace']}/{extra.get('workflow', '?')}@{extra.get('version', '?')}")
    if "task_id" in extra:
        parts.append(f"task={extra['task_id']}")
    if "step" in extra:
        parts.append(f"step={extra['step']}")
    extra["where"] = (" ".join(parts) + " | ") if parts else ""


def configure_logging(log_format: str = "text", level: str = "INFO") -> None:
    """Send logs to stderr, as text for people or one JSON object per line (``json``)."""
    logger.remove()
    if log_format == "json":
        logger.add(sys.stderr, level=level, serialize=True)
    else:
        logger.configure(patcher=_where)
        logger.add(sys.stderr, level=level, format=TEXT_FORMAT)
