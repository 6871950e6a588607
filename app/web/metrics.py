"""``GET /metrics``: the Prometheus text format, through ``prometheus-client``.

One registry per server (so that tests can run several in one process): the
server's own collector (:class:`app.metrics.HubCollector`) plus the
library's process collector (CPU, memory, open file descriptors).  Rendering
runs in the loop; it reads a few counters and is bounded by the number of
open connections (one pass for the byte totals).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.process_collector import ProcessCollector
from starlette.requests import Request
from starlette.responses import Response

from app.hub import Hub
from app.metrics import HubCollector


def metrics_endpoint(
    hub: Hub,
) -> tuple[CollectorRegistry, Callable[[Request], Awaitable[Response]]]:
    """A registry for *hub* and the Starlette endpoint that renders it."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(HubCollector(hub))
    ProcessCollector(namespace="trio_echo", registry=registry)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return registry, metrics
