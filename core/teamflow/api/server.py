"""``teamflow serve``: the HTTP API under uvicorn, embedded workers, and a clean stop.

On SIGTERM or SIGINT: uvicorn stops accepting and finishes the requests in flight
(requests waiting for a task are answered at once with ``shutting_down``), then the
embedded worker finishes or releases the steps in hand, then the host closes the
database. The process then exits with status 0.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
from importlib.metadata import version
from types import FrameType
from typing import Any

import uvicorn
from loguru import logger

from teamflow.api.app import create_app
from teamflow.host import Host

GRACEFUL_S = 10  # longest wait for requests in flight once a stop is asked for


class _Server(uvicorn.Server):
    """uvicorn, telling the app that a stop began and logging the address it really bound."""

    def __init__(self, config: uvicorn.Config, stopping: threading.Event) -> None:
        super().__init__(config)
        self.stopping = stopping

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.stopping.set()
        super().handle_exit(sig, frame)

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            for server in self.servers:
                for sock in server.sockets:
                    host, port = sock.getsockname()[:2]
                    logger.info(
                        "listening on http://{}:{} (admin: /admin/workflows, API: /openapi.json)", host, port
                    )


class _ToLoguru(logging.Handler):
    """uvicorn logs through the standard library; send its records to loguru like ours."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(exception=record.exc_info).log(level, "{}", record.getMessage())


def _route_uvicorn_logs() -> None:
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        std = logging.getLogger(name)
        std.handlers = [_ToLoguru()]
        std.propagate = False
        std.setLevel(logging.WARNING)  # our own lines say where we listen and when we stop


def _announce(host: Host, workers: int) -> None:
    report = host.plugins
    loaded = [f"{p.distribution}-{p.version}" for p in report.plugins if p.status == "loaded"]
    logger.info("teamflow {} on {}", version("teamflow"), host.database)
    logger.info("plugins: {}", ", ".join(loaded) or "none")
    for p in report.failed:
        logger.error("plugin {} {} failed to load: {}", p.distribution, p.version, p.error)
    if report.problems:
        logger.warning(
            "{} load problem(s) (failures, refusals, conflicts, drift): see /admin/workflows, "
            "GET /plugins or `teamflow check`",
            report.problems,
        )
    if workers > 0:
        logger.info("embedded worker {} running {} step(s) at once", host.worker_id, workers)
    else:
        logger.info("no embedded worker (--workers 0): tasks sent without wait need `teamflow worker`")


def serve(host: Host, *, bind: str, port: int, workers: int) -> None:
    """Serve until SIGTERM or SIGINT, then stop uvicorn, the worker and the host, in that order."""
    app = create_app(host)
    # What start-up made (plugins, registry, app) lives as long as the process: frozen out
    # of the collector, a full collection under load pauses every request for ~9 ms, not ~65.
    gc.collect()
    gc.freeze()
    stopping = host.stopping
    config = uvicorn.Config(
        app,
        host=bind,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_S,
        server_header=False,
    )
    server = _Server(config, stopping)

    # Ours until uvicorn takes over (a signal during start-up still stops us), and again after:
    # uvicorn re-raises the signals it caught once it has stopped, and they must not kill us then.
    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        server.should_exit = True

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    _route_uvicorn_logs()
    _announce(host, workers)
    runner = None
    try:
        if workers > 0:
            runner = host.start_worker(concurrency=workers)
        server.run()
    finally:
        stopping.set()
        logger.info("stopping: releasing the steps in hand and closing the database")
        if runner is not None:
            runner.stop(timeout=host.config.shutdown_grace_s)
        host.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    logger.info("teamflow stopped")
