"""``serve --workers N``: N server processes sharing both ports, under one supervising Trio run.

Why processes: one Trio run uses one core.  Each worker is a whole
``trio-echo serve`` (its own root nursery, feed, limits) bound to the same
TCP and HTTP ports with ``SO_REUSEPORT``, so the kernel spreads new
connections between them.  Each worker also listens on a private web port,
so the page of one worker can link to the others (``hello.peers``).

The supervisor is structured like everything else: one Trio nursery with a
task per worker process.

* Ports: when a port is 0, the supervisor picks it by binding (without
  listening, so it never receives a connection) with ``SO_REUSEPORT``, and
  holds it until every worker listens.
* Start: all workers start at once; each is ready when it printed its
  listening lines.  Then the supervisor prints the same two lines as a
  single server, and tells each worker the others' private URLs (one JSON
  line on its stdin).
* Stop: SIGINT or SIGTERM is forwarded once, as SIGTERM, to every worker
  (workers run in their own session, so a terminal's Ctrl-C reaches only
  the supervisor); each drains as a single server does; whoever is still
  running after the grace is killed.  A second signal kills at once.  A
  worker that dies on its own stops the others, and the exit code is 1.
* A worker whose supervisor disappears sees EOF on its stdin and stops.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import trio

from app import portability
from app.child import self_command
from app.config import SERVE_OPTIONS, Settings
from app.errors import PEER_GONE
from app.net import bind_port
from app.ready import bracket, parse_ready, ready_lines

log = logging.getLogger(__name__)

# A worker must have printed its listening lines by then (imports, binding).
READY_TIMEOUT: Final = 30.0
# After the drain a worker gets this much longer before it is killed.
STOP_MARGIN: Final = 0.4
# Bytes of worker output read while waiting for its lines.
READ_SIZE: Final = 4096


class WorkerFailed(Exception):
    """A worker could not start, or ended on its own; the message says which and how."""


@dataclass(frozen=True, slots=True)
class Worker:
    """A started worker process."""

    index: int
    process: trio.Process
    #: Its private web URL, e.g. ``http://127.0.0.1:40123``.
    url: str


def worker_argv(settings: Settings, tcp_port: int, http_port: int, index: int) -> list[str]:
    """The command line of worker *index*: the same settings, the chosen ports."""
    argv = self_command("serve")
    for opt in SERVE_OPTIONS:
        value = getattr(settings, opt.name)
        if opt.name == "tcp_port":
            value = tcp_port
        elif opt.name == "http_port":
            value = http_port
        elif isinstance(value, bool):
            value = "on" if value else "off"
        argv += [opt.flag, str(value)]
    return [*argv, "--worker-index", str(index)]


async def supervise(settings: Settings) -> int:
    """Run ``settings.workers`` workers until a signal; the exit code (0, or 1 if one failed).

    Prints the same two listening lines as a single server once every worker
    is ready.
    """
    code = 1
    try:
        code = await _supervise(settings)
    except* WorkerFailed as group:
        for exc in group.exceptions:
            log.error("%s", exc)
    return code


async def _supervise(settings: Settings) -> int:
    n = settings.workers
    with (
        bind_port(settings.host, settings.tcp_port, "tcp echo", reuse_port=True) as tcp_hold,
        bind_port(settings.host, settings.http_port, "web", reuse_port=True) as http_hold,
    ):
        tcp_port = tcp_hold.getsockname()[1]
        http_port = http_hold.getsockname()[1]
        with trio.open_signal_receiver(*portability.stop_signals()) as signals:
            async with trio.open_nursery() as nursery:
                supervisor = _Supervisor(settings, nursery)
                async with trio.open_nursery() as starting:
                    for index in range(1, n + 1):
                        argv = worker_argv(settings, tcp_port, http_port, index)
                        starting.start_soon(supervisor.start_worker, index, argv)
                tcp_hold.close()
                http_hold.close()
                workers = sorted(supervisor.workers, key=_index)
                host = bracket(settings.host)
                # Every worker binds the same UDP number with SO_REUSEPORT.
                udp_port = tcp_port if settings.udp_port < 0 else settings.udp_port
                udp = f"{host}:{udp_port}" if settings.udp else ""
                print(
                    ready_lines(f"{host}:{tcp_port}", f"http://{host}:{http_port}", "", udp), end=""
                )
                sys.stdout.flush()
                log.info(
                    "%d workers: %s",
                    n,
                    ", ".join(f"{w.index} pid {w.process.pid} {w.url}" for w in workers),
                )
                await supervisor.tell_peers()
                async for signum in signals:
                    if supervisor.stopping:
                        log.info("second signal: killing the workers")
                        supervisor.kill_all()
                        break
                    log.info("%s received; stopping %d workers", signal.Signals(signum).name, n)
                    supervisor.stop_all()
                    nursery.start_soon(supervisor.wait_all_then_cancel)
    return 1 if supervisor.failed else 0


class _Supervisor:
    """The running workers and what to do with all of them."""

    def __init__(self, settings: Settings, nursery: trio.Nursery) -> None:
        self._settings = settings
        self._nursery = nursery
        self.workers: list[Worker] = []
        self.stopping = False
        self.failed = False

    async def start_worker(self, index: int, argv: list[str]) -> None:
        """Start worker *index* and wait until it listens; it then runs in the main nursery.

        Raises:
            WorkerFailed: it exited or printed nothing usable within :data:`READY_TIMEOUT`.
        """
        worker = await self._nursery.start(self._run_worker, index, argv)
        self.workers.append(worker)

    async def _run_worker(
        self, index: int, argv: list[str], task_status: trio.TaskStatus[Worker]
    ) -> None:
        process = await trio.lowlevel.open_process(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
        )
        try:
            assert process.stdout is not None
            output = ""
            with trio.move_on_after(READY_TIMEOUT):
                while (ready := parse_ready(output, private=True)) is None:
                    chunk = await process.stdout.receive_some(READ_SIZE)
                    if not chunk:
                        break
                    output += chunk.decode(errors="replace")
            if ready is None:
                raise WorkerFailed(f"worker {index} did not start: {output.strip()!r}")
            task_status.started(Worker(index, process, ready.private))
            code = await process.wait()
            if not self.stopping:
                self.failed = True
                log.error("worker %d (pid %d) exited with %d; stopping", index, process.pid, code)
                self.stop_all()
                self._nursery.start_soon(self.wait_all_then_cancel)
            elif code != 0:
                self.failed = True
                log.error("worker %d (pid %d) exited with %d", index, process.pid, code)
        finally:
            if process.returncode is None:
                process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()

    async def tell_peers(self) -> None:
        """Send every worker the list of all workers' private URLs (one JSON line)."""
        peers = [{"worker": w.index, "url": w.url} for w in sorted(self.workers, key=_index)]
        line = (json.dumps({"peers": peers}) + "\n").encode()
        for worker in self.workers:
            assert worker.process.stdin is not None
            try:
                await worker.process.stdin.send_all(line)
            except PEER_GONE:
                pass  # it is exiting: its own task reports that

    def stop_all(self) -> None:
        """Ask every worker to drain (SIGTERM)."""
        self.stopping = True
        for worker in self.workers:
            if worker.process.returncode is None:
                worker.process.send_signal(signal.SIGTERM)

    def kill_all(self) -> None:
        """SIGKILL the workers still running (a second signal, or their grace is over)."""
        for worker in self.workers:
            if worker.process.returncode is None:
                worker.process.kill()

    async def wait_all_then_cancel(self) -> None:
        """Give the workers the drain's grace, kill what is left, then end the supervisor."""
        with trio.move_on_after(self._settings.graceful_timeout + STOP_MARGIN):
            for worker in self.workers:
                await worker.process.wait()
        self.kill_all()
        self._nursery.cancel_scope.cancel()


def _index(worker: Worker) -> int:
    return worker.index


async def read_peers(
    on_peers: Callable[[list[dict[str, Any]]], None], on_eof: Callable[[], None]
) -> None:
    """A worker's side: read the supervisor's JSON lines on stdin; EOF means it is gone.

    *on_peers* gets each ``peers`` list; *on_eof* is called once stdin ends.

    Cancellation: safe; stdin is left open.
    """
    stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    buffer = b""
    async with stream:
        while chunk := await stream.receive_some(READ_SIZE):
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                try:
                    message = json.loads(line)
                    on_peers(list(message["peers"]))
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("worker: ignoring a bad line from the supervisor: %s", exc)
    on_eof()
