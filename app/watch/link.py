"""The parent's end of the agent link: a Unix socket, a task per watched process.

Every process started under ``trio-echo watch`` (the child, and any Python
process it starts in turn, which inherits the environment) connects once
its first ``trio.run`` begins.  :meth:`Link.serve` accepts them; each
connection's task reads JSON lines (:mod:`trio_echo_agent.wire`), hands them
to its :class:`~app.watch.session.Session` (which publishes into the feed),
and routes replies to :meth:`Link.tasks` requests.

Bounded: at most :data:`MAX_AGENTS` connections, lines up to
``wire.MAX_LINE``; a connection that sends something else is closed with
one log line and the rest go on.
"""

from __future__ import annotations

import itertools
import logging
import os
import select
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import msgspec
import trio

from app.feed.live import Feed
from app.tracer import TaskWatcher
from app.watch.session import Session
from trio_echo_agent import wire

log = logging.getLogger(__name__)

# Watched processes connected at once (a test suite that forks workers has a few).
MAX_AGENTS: Final = 64
# How long a request for stacks waits for a process (its agent waits 0.5 s for its loop).
REPLY_TIMEOUT: Final = 2.0
# Bytes read at once from an agent.
RECEIVE_SIZE: Final = 256 * 1024
# Poll interval of settle() (seconds), which runs once per session.
SETTLE_POLL: Final = 0.01


class _Agent:
    def __init__(self, stream: trio.SocketStream, session: Session) -> None:
        self.stream = stream
        self.session = session
        self.replies: dict[int, trio.MemorySendChannel[list[dict[str, Any]]]] = {}
        self.send_lock = trio.Lock()


class PageDemand(TaskWatcher):
    """The hub's tracer under ``watch``: while a page watches (``/ws/events`` enters
    :meth:`stepping`), the watched program hooks every step; otherwise it does not."""

    def __init__(self, feed: Feed, link: Link) -> None:
        super().__init__(feed)
        self._link = link

    @contextmanager
    def stepping(self) -> Iterator[None]:
        self._link.want_steps(+1)
        try:
            yield
        finally:
            self._link.want_steps(-1)


class Link:
    """The socket the agents connect to, and the sessions of those connected."""

    def __init__(self, feed: Feed) -> None:
        self._feed = feed
        self._dir = tempfile.mkdtemp(prefix="trio-echo-watch-")
        #: The socket path, for the child's environment.
        self.path = os.path.join(self._dir, "agent.sock")
        self._agents: set[_Agent] = set()
        self._requests = itertools.count(1)
        self._runs = itertools.count(1)
        #: Processes that connected, and runs they began, in total.
        self.processes = 0
        self.runs = 0
        self._sock: trio.socket.SocketType | None = None
        # Who wants every step (page subscribers, --trace): the agents hook steps only then.
        self._steps_demand = 0
        self._steps_changed = trio.Event()

    def _new_run(self) -> str:
        self.runs += 1
        return f"w{next(self._runs)}"

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on :attr:`path`, report ready, and serve agents until cancelled.

        Cancellation: closes every connection and removes the socket file.
        """
        sock = self._sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            await sock.bind(self.path)
            os.chmod(self.path, 0o600)  # only this user's processes may report to us
            sock.listen(MAX_AGENTS)
            listener = trio.SocketListener(sock)
            task_status.started()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._announce_steps, name="steps demand")
                while True:
                    stream = await listener.accept()
                    if len(self._agents) >= MAX_AGENTS:
                        log.warning("watch: more than %d processes report; closing one", MAX_AGENTS)
                        await stream.aclose()
                        continue
                    nursery.start_soon(self._serve_agent, stream, name="agent link")
        finally:
            sock.close()
            try:
                os.unlink(self.path)
                os.rmdir(self._dir)
            except OSError:
                pass  # already gone; nothing else to clean

    def want_steps(self, delta: int) -> None:
        """Add *delta* (+1, -1) to the demand for steps; agents hear when it crosses zero.

        Never blocks (the announcement is sent by the link's own task).
        """
        before = self._steps_demand > 0
        self._steps_demand += delta
        if (self._steps_demand > 0) != before:
            self._steps_changed.set()

    async def _announce_steps(self) -> None:
        while True:
            await self._steps_changed.wait()
            self._steps_changed = trio.Event()
            request = wire.StepsRequest(self._steps_demand > 0)
            for agent in list(self._agents):
                await self._send(agent, request)

    async def _send(self, agent: _Agent, msg: wire.TasksRequest | wire.StepsRequest) -> None:
        """Send one request to *agent*; a process that is gone is left to its reader."""
        try:
            async with agent.send_lock:
                await agent.stream.send_all(wire.encode_line(msg))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the reading task sees the end and closes the session

    async def _serve_agent(self, stream: trio.SocketStream) -> None:
        session = Session(
            self._feed.publish, self._feed.new_id, self._feed.to_feed_time, self._new_run
        )
        agent = _Agent(stream, session)
        self._agents.add(agent)
        self.processes += 1
        if self._steps_demand > 0:
            await self._send(agent, wire.StepsRequest(True))
        buffer = bytearray()
        # The start of the last stall told in the terminal: a stall still going is
        # reported again every second (for the page), but told there once.
        told_stall = -1.0
        try:
            while chunk := await stream.receive_some(RECEIVE_SIZE):
                # Only the new bytes are searched: a big reply (a snapshot of thousands of
                # tasks) arrives in many chunks and is not rescanned for each.
                scan = len(buffer)
                buffer += chunk
                lines = []
                start = 0
                while (end := buffer.find(b"\n", scan)) >= 0:
                    lines.append(bytes(buffer[start:end]))
                    start = scan = end + 1
                del buffer[:start]
                if len(buffer) > wire.MAX_LINE:
                    raise ValueError(f"a line over {wire.MAX_LINE} bytes")
                for line in lines:
                    msg = wire.decode(line)
                    if isinstance(msg, wire.TasksReply):
                        channel = agent.replies.pop(msg.id, None)
                        if channel is not None:
                            channel.send_nowait(session.translate(msg.runs))
                    else:
                        session.handle(msg)
                        if isinstance(msg, wire.Stall) and msg.t != told_stall:
                            told_stall = msg.t
                            _tell_stall(session.pid, msg)
        except (msgspec.DecodeError, ValueError) as exc:
            log.warning(
                "watch: pid %d sent something else (%s); closing its link", session.pid, exc
            )
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the process is gone
        finally:
            self._agents.discard(agent)
            session.close()
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def settle(self, grace: float) -> None:
        """Wait (at most *grace* s) until every agent has hung up and none waits to be accepted.

        Called once the child has exited, so that its last records (sent at
        exit) are in the feed before the session is summed up.  The backlog
        is not observable as an event, hence the short polls; this runs once.
        """
        with trio.move_on_after(grace):
            while self._agents or self._backlog():  # noqa: ASYNC110 - the backlog has no Event
                await trio.sleep(SETTLE_POLL)

    def _backlog(self) -> bool:
        sock = self._sock
        if sock is None or sock.fileno() < 0:
            return False
        readable, _, _ = select.select([sock.fileno()], [], [], 0)
        return bool(readable)

    @property
    def runs_seen(self) -> int:
        """``trio.run`` calls seen in all processes (0: nothing was traced)."""
        return self.runs

    async def tasks(self, lane: int = 0) -> list[dict[str, Any]]:
        """Every live run's tasks with stacks, from every process (or only *lane*'s task).

        Asks each connected process and waits up to :data:`REPLY_TIMEOUT` for
        each; a process that does not answer in time is left out.
        Cancellation: safe; a late reply is dropped.
        """
        runs: list[dict[str, Any]] = []
        async with trio.open_nursery() as nursery:
            for agent in list(self._agents):
                detail = 0
                if lane:
                    found = agent.session.find(lane)
                    if found is None:
                        continue
                    detail = found[1]
                nursery.start_soon(self._ask, agent, detail, runs)
        return runs

    async def _ask(self, agent: _Agent, detail: int, runs: list[dict[str, Any]]) -> None:
        req = next(self._requests)
        send, receive = trio.open_memory_channel[list[dict[str, Any]]](1)
        agent.replies[req] = send
        try:
            with trio.move_on_after(REPLY_TIMEOUT):
                await self._send(agent, wire.TasksRequest(req, detail))
                runs.extend(await receive.receive())
        finally:
            agent.replies.pop(req, None)


def _tell_stall(pid: int, msg: wire.Stall) -> None:
    """One warning line in watch's terminal for a stall that began: who, for how long, where.

    The page and ``ps`` show it too; the terminal is where a user without them looks.
    """
    where = ""
    if msg.frames:
        frame = msg.frames[-1]
        where = f", at {frame.file}:{frame.line} in {frame.function}"
    log.warning(
        "watch: pid %d: task %s has held the event loop for %.1f s%s (still going)",
        pid,
        msg.name or "?",
        msg.seconds,
        where,
    )
