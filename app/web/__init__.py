"""The web side: the Hypercorn front, the ASGI app, and its websocket endpoints."""
