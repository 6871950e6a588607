"""The ASGI app Hypercorn serves: the page, ``/healthz`` and the websocket endpoints.

Starlette does the routing and serves the page's files from the installed
package (``app/static``, copied there from the repository's ``static/`` at
build time), with its traversal guard.  The websocket endpoints are written
once against :class:`app.web.wsapi.WebSocket`; here they are mounted as ASGI
routes through :mod:`app.web.wsasgi`, and :func:`websocket_endpoints` gives
the same table to the front's fast path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import trio
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from app.echo.conns import ConnTable
from app.feed.chrome_trace import chrome_trace
from app.scenarios.runner import RunRecord
from app.web.info import EchoApp, ServerIdentity, info_endpoint, ws_info_endpoint
from app.web.metrics import metrics_endpoint
from app.web.ws_echo import echo
from app.web.ws_events import FeedChannel, events
from app.web.wsapi import Endpoint, WebSocket
from app.web.wsasgi import AsgiEndpoint, DeflateLimits


def static_dir() -> Path:
    """Where the page's files are: inside the installed package, else beside it in a checkout.

    Raises:
        RuntimeError: neither exists (a broken install); loud, not a 404 per file.
    """
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "static", here.parent / "static"):
        if (candidate / "index.html").is_file():
            return candidate
    raise RuntimeError(f"the page's files are missing: no static/index.html in or beside {here}")


def websocket_endpoints(echo_table: ConnTable, channel: FeedChannel) -> dict[str, Endpoint]:
    """The websocket endpoints by path, shared by the ASGI routes and the front's fast path.

    *echo_table* holds ``/ws/echo`` connections; *channel* is what ``/ws/events`` needs.
    """

    async def echo_endpoint(ws: WebSocket) -> None:
        await echo(ws, echo_table)

    async def events_endpoint(ws: WebSocket) -> None:
        await events(ws, channel)

    return {"/ws/echo": echo_endpoint, "/ws/events": events_endpoint}


def build_app(
    *,
    health: Callable[[], dict[str, Any]],
    find_run: Callable[[str], RunRecord | None],
    websockets: Mapping[str, Endpoint],
    draining: trio.Event,
    metrics: Collector,
    identity: ServerIdentity,
    deflate: DeflateLimits | None = None,
    tasks: Callable[[int], Awaitable[list[dict[str, Any]]]] | None = None,
) -> Starlette:
    """The ASGI app of one server.

    *health* gives the ``/healthz`` body, *find_run* a recent run for its trace
    download, *websockets* the endpoints mounted as ASGI routes (closed with
    1001 once *draining* is set), their permessage-deflate bounded by *deflate*
    (default: on, 12 window bits, memLevel 5, 1 MiB messages), *metrics* what
    ``GET /metrics`` reports, *tasks* the task snapshot of ``/api/tasks``
    (``(task id or 0) -> runs``: this loop's under ``serve``, the watched
    program's under ``watch``; none: an empty list), *identity* the ``server``
    part of the info routes (issue 11).
    """

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse(health())

    async def trace(request: Request) -> Response:
        record = find_run(request.path_params["run"])
        if record is None:
            return JSONResponse(
                {"error": "no such run (only recent runs are kept)"}, status_code=404
            )
        body = chrome_trace(record.events, title=f"trio-echo {record.id} {record.scenario}")
        return JSONResponse(
            body,
            headers={"Content-Disposition": f'attachment; filename="trio-echo-{record.id}.json"'},
        )

    metrics_route = metrics_endpoint(metrics)

    # -- issue 10 (watch): the task tree with stacks, of this loop or of the watched child --
    async def tasks_source(lane: int) -> list[dict[str, Any]]:
        return [] if tasks is None else await tasks(lane)

    async def all_tasks(request: Request) -> JSONResponse:
        return JSONResponse({"runs": await tasks_source(0)})

    async def one_task(request: Request) -> JSONResponse:
        lane = request.path_params["task"]
        for run in await tasks_source(lane):
            for task in run["tasks"]:
                if task["id"] == lane:
                    return JSONResponse({"run": run["run"], "pid": run["pid"], "task": task})
        return JSONResponse({"error": f"no live task {lane}"}, status_code=404)

    sockets = [
        WebSocketRoute(path, AsgiEndpoint(endpoint, draining, deflate))
        for path, endpoint in websockets.items()
    ]
    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/metrics", metrics_route),
            Route("/api/runs/{run:str}/trace.json", trace),
            Route("/api/tasks", all_tasks),
            Route("/api/tasks/{task:int}", one_task),
            # Issue 11: the info routes (app/web/info.py).
            Route("/info", info_endpoint(identity)),
            Route("/echo", EchoApp(identity)),
            WebSocketRoute("/ws/info", ws_info_endpoint(identity)),
            *sockets,
            Mount("/", StaticFiles(directory=static_dir(), html=True)),
        ]
    )
