"""``--feed``: which feed backend a server uses, parsed from its URL.

Rules of this module:

* Pure: no trio, no sockets, no Redis library; the CLI calls :func:`parse_feed`
  before anything starts, so a bad URL is one line and exit 1.
* ``""`` or ``memory`` is the in-process ring (today's behaviour);
  ``redis://[:PASSWORD@]HOST[:PORT][/DB][?stream=NAME]`` is one Redis Stream
  shared by every instance that names it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_PORT: Final = 6379
DEFAULT_STREAM: Final = "trio-echo:feed"
# Redis allows keys up to 512 MiB; ours is named on a command line and logged.
MAX_STREAM_NAME: Final = 200
_STREAM_NAME: Final = re.compile(r"^[A-Za-z0-9_.:{}\-]+$")


class BadFeedURL(ValueError):
    """``--feed`` is not a feed URL we can use; the message says what was expected."""


@dataclass(frozen=True, slots=True)
class RedisFeedURL:
    """Where the shared feed lives: a Redis server, a database, a stream key."""

    host: str
    port: int = DEFAULT_PORT
    db: int = 0
    stream: str = DEFAULT_STREAM
    password: str | None = None

    @property
    def counter(self) -> str:
        """The key of the stream's sequence counter (see :mod:`app.feed.entries`)."""
        return f"{self.stream}:seq"

    def __str__(self) -> str:
        """The URL without its password, for logs and the page."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"redis://{host}:{self.port}/{self.db}?stream={self.stream}"


def parse_feed(url: str) -> RedisFeedURL | None:
    """``None`` for the in-process feed, else where the Redis Stream is.

    Raises:
        BadFeedURL: not ``memory`` nor a ``redis://`` URL with a host, a port
            in 1..65535, a database 0..15 and a stream name of letters, digits
            and ``_.:{}-``.
    """
    text = url.strip()
    if text in ("", "memory"):
        return None
    expected = "expected 'memory' or redis://HOST[:PORT][/DB][?stream=NAME]"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise BadFeedURL(f"--feed: {expected}, got {text!r} ({exc})") from None
    if parts.scheme != "redis":
        raise BadFeedURL(f"--feed: {expected}, got scheme {parts.scheme or 'none'!r}")
    if not parts.hostname:
        raise BadFeedURL(f"--feed: {expected}, got no host in {text!r}")
    path = parts.path.strip("/")
    if path and (not path.isdigit() or not 0 <= int(path) <= 15):
        raise BadFeedURL(f"--feed: the database must be 0..15, got {path!r}")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - {"stream"}
    if unknown:
        raise BadFeedURL(f"--feed: the only query parameter is stream, got {sorted(unknown)}")
    stream = query.get("stream", [DEFAULT_STREAM])[-1]
    if not _STREAM_NAME.match(stream) or len(stream) > MAX_STREAM_NAME:
        raise BadFeedURL(
            f"--feed: stream must be 1..{MAX_STREAM_NAME} of letters, digits and _.:{{}}-, "
            f"got {stream!r}"
        )
    return RedisFeedURL(
        host=parts.hostname,
        port=port or DEFAULT_PORT,
        db=int(path) if path else 0,
        stream=stream,
        password=unquote(parts.password) if parts.password else None,
    )
