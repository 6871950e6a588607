"""``/ws/echo`` on the ASGI app: each message comes back as it came, text as text, binary as binary.

The size limit is enforced before a message reaches this endpoint (Hypercorn
closes an oversized one with 1009), so a message here is already bounded.
"""

from __future__ import annotations

import logging

import trio

from app.echo.conns import ConnTable
from app.web.wsapi import NORMAL, WebSocket, WebSocketClosed

log = logging.getLogger(__name__)


async def echo(ws: WebSocket, table: ConnTable) -> None:
    """Echo messages until the peer closes, the connection idles out, or the server drains.

    *table* holds the websocket echo connections (limit, counters, idle sweep).
    """
    scope = trio.CancelScope()
    conn = table.admit(ws.peer, lambda _reason: scope.cancel())
    if conn is None:
        await ws.reject(503)
        return
    reason = "closed"
    try:
        await ws.accept()
        with scope:
            while True:
                data = await ws.receive()
                size = len(data) if isinstance(data, bytes) else len(data.encode())
                conn.bytes_in += size
                conn.msgs += 1
                await ws.send(data)
                conn.bytes_out += size
        if scope.cancelled_caught:
            reason = conn.abort_reason
            await ws.close(NORMAL, conn.abort_reason)
    except WebSocketClosed as exc:
        reason = f"closed {exc.code}"
    finally:
        table.close(conn, reason)
