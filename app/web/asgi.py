"""The ASGI app Hypercorn serves: the page, ``/healthz`` and the websocket endpoints.

Starlette does the routing and serves the page's files from the installed
package (``app/static``, copied there from the repository's ``static/`` at
build time), with its traversal guard.  The websocket endpoints are written
once against :class:`app.web.wsapi.WebSocket`; here they are mounted as ASGI
routes through :mod:`app.web.wsasgi`, and :func:`websocket_endpoints` gives
the same table to the front's fast path.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from app.feed.chrome_trace import chrome_trace
from app.hub import Hub
from app.web.ws_echo import echo
from app.web.ws_events import events
from app.web.wsapi import Endpoint, WebSocket
from app.web.wsasgi import AsgiEndpoint


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


def websocket_endpoints(hub: Hub) -> dict[str, Endpoint]:
    """The websocket endpoints by path, shared by the ASGI routes and the front's fast path."""

    async def echo_endpoint(ws: WebSocket) -> None:
        await echo(ws, hub)

    async def events_endpoint(ws: WebSocket) -> None:
        await events(ws, hub)

    return {"/ws/echo": echo_endpoint, "/ws/events": events_endpoint}


def build_app(hub: Hub) -> Starlette:
    """The ASGI app of one server."""

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "status": "draining" if hub.draining.is_set() else "ok",
                "version": hub.version,
                "pid": hub.pid,
                "worker": hub.worker,
                "uptime": round(hub.feed.now(), 3),
                "time": time.time(),
                "tcp": {
                    "connections": len(hub.tcp),
                    "limit": hub.tcp.limit,
                    "engine": hub.settings.engine,
                },
                "web": {
                    "connections": hub.web_connections,
                    "limit": hub.settings.max_web_connections,
                },
                "ws_echo": {"connections": len(hub.ws)},
                "feed": {"seq": hub.feed.last_seq, "subscribers": hub.feed.subscribers},
            }
        )

    async def trace(request: Request) -> Response:
        record = hub.runner.get(request.path_params["run"])
        if record is None:
            return JSONResponse(
                {"error": "no such run (only recent runs are kept)"}, status_code=404
            )
        body = chrome_trace(record.events, title=f"trio-echo {record.id} {record.scenario}")
        return JSONResponse(
            body,
            headers={"Content-Disposition": f'attachment; filename="trio-echo-{record.id}.json"'},
        )

    # -- issue 10 (watch): the task tree with stacks, of this loop or of the watched child --
    async def tasks_source(lane: int) -> list[dict[str, Any]]:
        if hub.task_source is None:
            return []
        return await hub.task_source(lane)

    async def tasks(request: Request) -> JSONResponse:
        return JSONResponse({"runs": await tasks_source(0)})

    async def one_task(request: Request) -> JSONResponse:
        lane = request.path_params["task"]
        for run in await tasks_source(lane):
            for task in run["tasks"]:
                if task["id"] == lane:
                    return JSONResponse({"run": run["run"], "pid": run["pid"], "task": task})
        return JSONResponse({"error": f"no live task {lane}"}, status_code=404)

    sockets = [
        WebSocketRoute(path, AsgiEndpoint(endpoint, hub.draining))
        for path, endpoint in websocket_endpoints(hub).items()
    ]
    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/api/runs/{run:str}/trace.json", trace),
            Route("/api/tasks", tasks),
            Route("/api/tasks/{task:int}", one_task),
            *sockets,
            Mount("/", StaticFiles(directory=static_dir(), html=True)),
        ]
    )
