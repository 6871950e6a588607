"""``GET /metrics``: the Prometheus text format, through ``prometheus-client``.

One registry per server (so that tests can run several in one process): the
server's own collector (:class:`app.metrics.HubCollector`, handed in: this
shell knows no Hub) plus the library's process collector (CPU, memory, open
file descriptors).  Rendering
runs in the loop; it reads a few counters and is bounded by the number of
open connections (one pass for the byte totals).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response


def metrics_endpoint(collector: Collector) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint that renders *collector* (and the process collector)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    ProcessCollector(namespace="trio_echo", registry=registry)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return metrics
