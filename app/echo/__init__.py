"""Echo (RFC 862): the connection table and every engine that serves it.

What all engines share lives here; what only the epoll-multiplexed ones share lives in
:mod:`app.echo.multiplex`, which needs epoll (Linux) and is imported only where it runs.
"""

from typing import Final

# Largest single read, for every echo engine.  Reads of 128 KiB or more make glibc
# allocate with mmap/munmap on every call; 64 KiB matches Trio's own default receive size.
RECV_SIZE: Final = 64 * 1024
