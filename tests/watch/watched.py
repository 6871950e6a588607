"""Run ``trio-echo watch -- python PROGRAM`` as a real process and read what it reports."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from trio_websocket import WebSocketConnection

from app.child import self_command

PROGRAMS = Path(__file__).parent / "programs"
STARTED = re.compile(rb"watching pid (\d+): ")
WEB = re.compile(rb"web listening on (http://127\.0\.0\.1:\d+)\n")


def line_of(program: str, marker: str) -> int:
    """The line number of the first line of *program* holding *marker*."""
    for number, text in enumerate((PROGRAMS / program).read_text().splitlines(), 1):
        if marker in text:
            return number
    raise AssertionError(f"{marker!r} not in {program}")


@dataclass
class Watched:
    """A running ``watch``; :meth:`collect` keeps reading its stdout and stderr."""

    proc: trio.Process
    pid: int
    url: str
    out: bytearray = field(default_factory=bytearray)
    err: bytearray = field(default_factory=bytearray)

    async def collect(self) -> None:
        assert self.proc.stdout is not None and self.proc.stderr is not None

        async def drain(stream: trio.abc.ReceiveStream, into: bytearray) -> None:
            while chunk := await stream.receive_some(65536):
                into += chunk

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain, self.proc.stdout, self.out)
                nursery.start_soon(drain, self.proc.stderr, self.err)
        finally:
            # A test that failed (its nursery cancelled) leaves no watch behind, nor its child.
            if self.proc.returncode is None:
                self.proc.kill()
                if self.pid:
                    try:
                        os.kill(self.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass  # the child had ended
                with trio.CancelScope(shield=True):
                    await self.proc.wait()

    async def wait_output(self, text: bytes) -> None:
        await _wait_for(text, self.out)

    async def wait_err(self, text: bytes) -> None:
        await _wait_for(text, self.err)


async def _wait_for(text: bytes, collected: bytearray) -> None:
    while text not in collected:  # noqa: ASYNC110 - a child's output announces nothing
        await trio.sleep(0.02)


async def start_watch(
    nursery: trio.Nursery,
    program: str,
    *args: str,
    options: tuple[str, ...] = (),
    command: list[str] | None = None,
) -> Watched:
    """Start ``watch`` on *program* (or *command*), wait for its two lines, collect the rest."""
    child = command or [sys.executable, str(PROGRAMS / program), *args]
    proc = await trio.lowlevel.open_process(
        [*self_command("watch", "--http-port", "0", *options, "--"), *child],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    head = b""
    with trio.fail_after(20):
        while not STARTED.search(head):
            chunk = await proc.stdout.receive_some(4096)
            assert chunk, f"watch exited early: {head!r}"
            head += chunk
    web = WEB.search(head)
    started = STARTED.search(head)
    assert started is not None
    watched = Watched(proc, int(started.group(1)), web.group(1).decode() if web else "")
    watched.out += head
    nursery.start_soon(watched.collect)
    return watched


async def events_until(
    ws: WebSocketConnection, done: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """Events from ``/ws/events`` batches (after ``hello``) until *done(events)*."""
    seen: list[dict[str, Any]] = []
    while not done(seen):
        msg = json.loads(await ws.get_message())
        if msg["type"] == "events":
            seen.extend(msg["events"])
    return seen


def kinds(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["kind"] == kind]


def spawned(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Spawn events by task name (the names in the test programs are unique)."""
    return {e["name"]: e for e in kinds(events, "spawn")}
