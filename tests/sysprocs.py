"""Real system daemons for tests: ``redis-server`` and ``haproxy`` on loopback ports.

A test that needs one calls :func:`need`: it skips when the binary is absent,
unless ``CI=true``, where the absence is a failure (``.ci/run`` installs them).
Neither binary takes port 0, so a free port is found by binding one first;
the tiny race with another process is retried by the callers that care.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

READY_TIMEOUT = 10.0


def need(binary: str, *extra_paths: str) -> str:
    """The path of *binary*; skip the test if absent (fail under ``CI=true``)."""
    path = shutil.which(binary) or next((p for p in extra_paths if Path(p).exists()), None)
    if path:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail(f"{binary} is required under CI=true (.ci/run installs it)")
    pytest.skip(f"{binary} is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_listening(port: int, process: trio.Process, what: str) -> None:
    with trio.fail_after(READY_TIMEOUT):
        while True:
            assert process.returncode is None, f"{what} exited with {process.returncode}"
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.02)
                continue
            await stream.aclose()
            return


@dataclass
class RedisServer:
    """A ``redis-server`` without persistence on a loopback port; restartable on that port."""

    binary: str
    port: int = field(default_factory=free_port)
    process: trio.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0?stream=test"

    async def start(self) -> None:
        self.process = await trio.lowlevel.open_process(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await wait_listening(self.port, self.process, "redis-server")

    async def kill(self) -> None:
        """SIGKILL: the stream and the counter are gone with it (no persistence)."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            with trio.CancelScope(shield=True):
                await self.process.wait()
        self.process = None


async def start_redis() -> RedisServer:
    server = RedisServer(need("redis-server", "/usr/bin/redis-server"))
    await server.start()
    return server
