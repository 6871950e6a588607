"""The agent ``trio-echo watch`` puts inside the program it watches.

It is its own top-level package, not part of ``app``: it runs inside
somebody else's process, next to their code, so it imports only the
standard library, trio and (when the program has them) stackscope and
msgspec, and never ``app``.  ``trio-echo watch`` loads it through
``_site/sitecustomize.py`` on ``PYTHONPATH`` (as viztracer does); see
docs/watch.md.

Modules: :mod:`.boot` (install: patch ``trio.run``, wrap stdout/stderr),
:mod:`.probe` (the instrument and the stall watchdog), :mod:`.tee` (output
attribution), :mod:`.exporter` (bounded buffer, the thread that sends it),
:mod:`.snapshot` (task tree and stacks), :mod:`.wire` (the messages, for the
parent side).
"""

from __future__ import annotations

from typing import Final

#: Environment variable holding the Unix socket path the agent connects to.
SOCKET_ENV: Final = "TRIO_ECHO_AGENT_SOCKET"
#: Environment variable holding the stall threshold (seconds, a float).
STALL_ENV: Final = "TRIO_ECHO_AGENT_STALL"
#: Environment variable holding the block threshold (seconds, a float).
BLOCK_ENV: Final = "TRIO_ECHO_AGENT_BLOCK"
