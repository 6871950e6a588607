"""Who may drive the server from a browser: the websocket ``Origin`` check.

Browsers send ``Origin`` on every websocket handshake, and a page from any
site can open a websocket to 127.0.0.1.  So a handshake that carries an
``Origin`` is only trusted when it is the page's own origin (the same
``host:port`` the request was sent to) or one the operator allowed.  Tools
that are not browsers (the CLI, curl, the tests) send no ``Origin`` and are
not a cross-site risk.
"""

from __future__ import annotations

from urllib.parse import urlsplit


def origin_allowed(origin: str | None, host: str | None, allowed: frozenset[str]) -> bool:
    """True when a handshake with this ``Origin`` and ``Host`` may control the server."""
    if origin is None:
        return True
    origin = origin.strip().rstrip("/")
    if origin in allowed:
        return True
    if not host:
        return False
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    default = 443 if parts.scheme == "https" else 80
    try:
        port = parts.port or default
    except ValueError:
        return False
    origin_netloc = f"{parts.hostname}:{port}"
    host_parts = urlsplit("//" + host.strip())
    try:
        host_port = host_parts.port or default
    except ValueError:
        return False
    return (host_parts.hostname or "") + f":{host_port}" == origin_netloc.lower()
