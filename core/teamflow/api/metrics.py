"""Prometheus metrics of one app: the host's stats read at scrape time, the load report,
and HTTP request counts and latencies.

Each app has its own ``CollectorRegistry`` (never the process-global one), so several
apps, e.g. in tests, never clash over metric names.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send

    from teamflow.host import Host


class HostCollector(Collector):
    """Asks the host for its stats and load report on every scrape; nothing is cached in between."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def describe(self) -> list[Metric]:
        return []  # registering must not query the database

    def collect(self) -> Iterator[Metric]:
        stats = self.host.stats()
        for metric, what, rows in (("teamflow_tasks", "Tasks", stats.tasks), ("teamflow_steps", "Steps", stats.steps)):
            family = GaugeMetricFamily(
                metric,
                f"{what} in the store by workflow version and status",
                labels=["namespace", "workflow", "version", "status"],
            )
            for row in rows:
                family.add_metric([row.namespace, row.name, row.version, row.status], row.count)
            yield family

        durations = HistogramMetricFamily(
            "teamflow_step_duration_seconds",
            "Run time of completed steps (last attempt, from claim to completion) by workflow version",
            labels=["namespace", "workflow", "version"],
        )
        for h in stats.durations:
            buckets = [(repr(b), c) for b, c in zip(stats.buckets, h.buckets, strict=True)]
            durations.add_metric([h.namespace, h.name, h.version], [*buckets, ("+Inf", h.count)], h.total_s)
        yield durations

        unservable = GaugeMetricFamily(
            "teamflow_unservable_tasks",
            "Unfinished tasks whose workflow version this host does not hold",
            labels=["reference"],
        )
        for problem in stats.unservable:
            unservable.add_metric([problem.reference], problem.tasks)
        yield unservable

        versions = GaugeMetricFamily(
            "teamflow_workflow_versions", "Workflow versions loaded, by namespace", labels=["namespace"]
        )
        for namespace, count in stats.versions.items():
            versions.add_metric([namespace], count)
        yield versions

        report = self.host.plugins
        plugins = GaugeMetricFamily(
            "teamflow_plugin",
            "Installed plugins (1 per entry point)",
            labels=["distribution", "version", "status"],
        )
        for record in report.plugins:
            plugins.add_metric([record.distribution, record.version, record.status], 1)
        yield plugins

        problems = GaugeMetricFamily(
            "teamflow_load_problems",
            "Load failures, refusals, conflicts, drift and declared calls that do not hold, found at start-up",
            labels=["kind"],
        )
        for kind, count in (
            ("failed", len(report.failed)),
            ("refusal", len(report.refusals)),
            ("conflict", len(report.conflicts)),
            ("drift", len(report.drift)),
            ("call", sum(c.severity == "problem" for c in report.calls)),
        ):
            problems.add_metric([kind], count)
        yield problems


class Metrics:
    """The registry of one app and the instruments its middleware feeds."""

    def __init__(self, host: Host) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(HostCollector(host))
        self.requests = Counter(
            "teamflow_http_requests",
            "HTTP requests by route template, method and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "teamflow_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """ASGI middleware counting each routed request by its route template (never the raw path)."""

        async def measured(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            status = 500
            started = time.perf_counter()

            async def sending(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, sending)
            finally:
                route: Any = scope.get("path_template") or "unrouted"
                method = cast("HTTPScope", scope)["method"]
                self.requests.labels(method, route, str(status)).inc()
                self.latency.labels(method, route).observe(time.perf_counter() - started)

        return measured
