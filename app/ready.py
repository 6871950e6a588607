"""The readiness lines ``serve`` prints once it listens, and the one parser everybody uses.

Rules of this module:

* Pure: no trio, no sockets.  ``serve`` prints these lines (stdout, in this
  order, each flushed) only once every listener is bound; the supervisor of
  ``--workers N`` waits for them from each worker and prints the same two
  itself; tests, the benchmarks and the developer tools wait for them
  instead of sleeping.  A change of wording happens here or nowhere.
* The shape is a contract with scripts (README): ``tcp echo listening on
  HOST:PORT`` then ``web listening on http://HOST:PORT``, IPv6 hosts in
  brackets.  A worker adds a third line with its private web URL.  With UDP echo
  on, ``udp echo listening on HOST:PORT`` comes last (after a worker's private
  line, which its supervisor reads as the third).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

TCP_LINE: Final = "tcp echo listening on "
WEB_LINE: Final = "web listening on "
#: The third line of a worker of ``--workers N``: its own web URL.
PRIVATE_LINE: Final = "worker web listening on "
#: The line of UDP echo (RFC 862), last, unless ``--no-udp``.
UDP_LINE: Final = "udp echo listening on "

_READY: Final = re.compile(
    rf"^{re.escape(TCP_LINE)}(?P<tcp>\S+)\n{re.escape(WEB_LINE)}(?P<web>\S+)\n"
    rf"(?:{re.escape(PRIVATE_LINE)}(?P<private>\S+)\n)?"
    rf"(?:{re.escape(UDP_LINE)}(?P<udp>\S+)\n)?",
    re.MULTILINE,
)


def bracket(host: str) -> str:
    """*host* as it stands before ``:port`` in an address or URL: IPv6 in brackets (RFC 3986)."""
    return f"[{host}]" if ":" in host else host


def ready_lines(
    tcp_address: str, web_url: str, private_url: str = "", udp_address: str = ""
) -> str:
    """The lines to print, newline-terminated; *private_url* only for a worker, *udp_address*
    only with UDP echo on."""
    text = f"{TCP_LINE}{tcp_address}\n{WEB_LINE}{web_url}\n"
    text += f"{PRIVATE_LINE}{private_url}\n" if private_url else ""
    return text + (f"{UDP_LINE}{udp_address}\n" if udp_address else "")


@dataclass(frozen=True, slots=True)
class Ready:
    """What the readiness lines say: ``tcp`` is ``host:port``, ``web`` and ``private`` URLs."""

    tcp: str
    web: str
    #: A worker's own web URL; "" for a single server or a supervisor.
    private: str = ""
    #: ``host:port`` of UDP echo; "" when off (or not printed yet).
    udp: str = ""

    @property
    def tcp_port(self) -> int:
        """The TCP echo port."""
        return int(self.tcp.rsplit(":", 1)[1])

    @property
    def web_port(self) -> int:
        """The web port."""
        return int(self.web.rsplit(":", 1)[1])


def parse_ready(output: str | bytes, *, private: bool = False) -> Ready | None:
    """The readiness lines found in *output* (anything printed before them is skipped).

    Returns None until the lines are complete (each ends with a newline);
    with *private*, until the worker's third line is in too.
    """
    text = output.decode(errors="replace") if isinstance(output, bytes) else output
    match = _READY.search(text)
    if match is None or (private and match["private"] is None):
        return None
    return Ready(match["tcp"], match["web"], match["private"] or "", match["udp"] or "")
