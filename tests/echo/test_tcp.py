"""TCP echo (RFC 862) over real sockets, once per engine: exact, complete, bounded."""

from __future__ import annotations

import logging
import os

import pytest
import trio

from conftest import ENGINES, Running, read_all, start_server, wait_until
from netclient import rst_close


async def connect(running: Running) -> trio.SocketStream:
    return await trio.open_tcp_stream(*running.tcp)


async def test_echoes_a_line(engine_server: Running) -> None:
    with trio.fail_after(5):
        async with await connect(engine_server) as s:
            await s.send_all(b"hello\n")
            assert await s.receive_some(100) == b"hello\n"


async def test_every_byte_value_round_trips_and_eof_follows_half_close(
    engine_server: Running,
) -> None:
    payload = bytes(range(256)) * 64
    with trio.fail_after(5):
        async with await connect(engine_server) as s:
            await s.send_all(payload)
            await s.send_eof()
            assert await read_all(s) == payload


async def test_multi_mib_half_close_round_trip_while_still_sending(engine_server: Running) -> None:
    """8 MiB sent while the echo flows back, then half-close: all returns in order, then EOF."""
    payload = os.urandom(8 * 1024 * 1024)
    received = bytearray()
    with trio.fail_after(30):
        s = await connect(engine_server)

        async def send() -> None:
            view = memoryview(payload)
            for i in range(0, len(payload), 100_000):  # uneven chunks on purpose
                await s.send_all(view[i : i + 100_000])
            await s.send_eof()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            received += await read_all(s)
        await s.aclose()
    assert len(received) == len(payload)
    assert received == payload


async def test_thousand_connections_echo_at_once(engine_server: Running) -> None:
    count = 1000
    results: dict[int, bytes] = {}

    async def one(i: int) -> None:
        async with await connect(engine_server) as s:
            msg = f"conn {i} ".encode() * 10
            await s.send_all(msg)
            await s.send_eof()
            results[i] = await read_all(s)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for i in range(count):
                nursery.start_soon(one, i)
    assert len(results) == count
    assert all(results[i] == f"conn {i} ".encode() * 10 for i in range(count))


async def test_reset_mid_echo_harms_no_other_connection(engine_server: Running) -> None:
    with trio.fail_after(10):
        bystander = await connect(engine_server)
        victim = await connect(engine_server)
        await victim.send_all(os.urandom(4 * 1024 * 1024))  # echo still in flight
        rst_close(victim)
        for _ in range(20):
            await bystander.send_all(b"still here")
            assert await bystander.receive_some(100) == b"still here"
        # The reset connection is gone from the table, the bystander is not.
        await wait_until(lambda: len(engine_server.hub.tcp) == 1)
        await bystander.aclose()


async def closed_by_server(stream: trio.SocketStream) -> bool:
    """True when the server closed *stream* without echoing: EOF, or a reset."""
    try:
        return await stream.receive_some(10) == b""
    except trio.BrokenResourceError:
        return True


@pytest.mark.parametrize("engine", ENGINES)
async def test_connection_over_the_limit_is_closed_at_once(
    nursery: trio.Nursery, engine: str
) -> None:
    running = await start_server(nursery, engine=engine, max_connections=2)
    with trio.fail_after(5):
        a = await connect(running)
        b = await connect(running)
        await a.send_all(b"a")
        assert await a.receive_some(10) == b"a"
        await b.send_all(b"b")
        assert await b.receive_some(10) == b"b"
        async with await connect(running) as extra:
            assert await closed_by_server(extra)
        assert running.hub.tcp.refusals.total == 1
        # The two inside the limit are untouched, and a freed slot is reusable.
        await a.send_all(b"again")
        assert await a.receive_some(10) == b"again"
        await b.aclose()
        await wait_until(lambda: len(running.hub.tcp) == 1)
        async with await connect(running) as c:
            await c.send_all(b"c")
            assert await c.receive_some(10) == b"c"
        await a.aclose()


@pytest.mark.parametrize("engine", ENGINES)
async def test_idle_connection_is_closed(nursery: trio.Nursery, engine: str) -> None:
    running = await start_server(nursery, engine=engine, idle_timeout=0.3)
    with trio.fail_after(5):
        busy = await connect(running)
        # Before connecting: the server's idle clock starts at its accept, after this.
        start = trio.current_time()
        idle = await connect(running)
        async with trio.open_nursery() as inner:

            async def keep_busy() -> None:
                while True:
                    await busy.send_all(b"x")
                    assert await busy.receive_some(10) == b"x"
                    await trio.sleep(0.05)

            inner.start_soon(keep_busy)
            assert await idle.receive_some(10) == b""
            waited = trio.current_time() - start
            # The busy one was never idle, so it is still open.
            assert len(running.hub.tcp) == 1
            inner.cancel_scope.cancel()
        await busy.aclose()
        await idle.aclose()
    assert waited >= 0.3


@pytest.mark.parametrize("engine", ENGINES)
async def test_client_that_never_reads_gets_backpressure(
    nursery: trio.Nursery, engine: str
) -> None:
    """The server stops reading from a peer that does not read, instead of buffering for it."""
    running = await start_server(nursery, engine=engine)
    with trio.fail_after(20):
        hog = await connect(running)
        sent = 0
        chunk = b"x" * 65536
        with trio.move_on_after(2):
            while True:
                await hog.send_all(chunk)
                sent += len(chunk)
        # The sender was blocked: the kernel buffers on both sides are full and
        # the server holds at most one read of it.
        assert sent < 64 * 1024 * 1024
        conn = next(iter(running.hub.tcp))
        read_then = conn.bytes_in
        await trio.sleep(0.3)
        assert conn.bytes_in == read_then, "server kept reading from a peer that does not read"
        assert conn.bytes_in - conn.bytes_out <= 64 * 1024
        # Everyone else is served meanwhile.
        async with await connect(running) as other:
            await other.send_all(b"ping")
            assert await other.receive_some(10) == b"ping"
        # And once the hog reads, the stream resumes where it stopped.
        got = 0
        while got < 1024 * 1024:
            got += len(await hog.receive_some(65536))
        await hog.aclose()


async def test_feed_reports_open_and_close_with_totals(running: Running) -> None:
    from app.feed.events import ConnClose, ConnOpen

    feed = running.hub.feed
    cursor = feed.last_seq
    with trio.fail_after(5):
        async with await connect(running) as s:
            await s.send_all(b"12345")
            await s.send_eof()
            assert await read_all(s) == b"12345"
        while True:
            events = [e for e in running.events if e.seq > cursor]
            closes = [e for e in events if isinstance(e, ConnClose)]
            if closes:
                break
            await trio.sleep(0.01)
    opens = [e for e in events if isinstance(e, ConnOpen)]
    assert len(opens) == 1 and opens[0].transport == "tcp"
    close = closes[0]
    assert close.task == opens[0].task
    assert (close.bytes_in, close.bytes_out, close.reason) == (5, 5, "eof")


async def test_eof_then_reset_is_routine_not_an_error(
    engine_server: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """A peer that half-closes and resets at once (a client exiting) is no error for the log."""
    with trio.fail_after(20):
        for _ in range(200):
            s = await connect(engine_server)
            await s.send_all(b"bye")
            await s.send_eof()
            rst_close(s)
        await wait_until(lambda: len(engine_server.hub.tcp) == 0)
    # The ticker may warn of a loop stall on a loaded machine (200 connects in a row): that
    # is its job and says nothing about how the connections ended.
    noted = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name != "app.ticker"]
    assert not noted


async def _read_to_close(stream: trio.SocketStream) -> None:
    """Read until the server's close shows: EOF, or a reset (it closed with unread data)."""
    try:
        while await stream.receive_some(65536):
            pass
    except trio.BrokenResourceError:
        pass


@pytest.mark.parametrize("engine", ENGINES)
async def test_abort_all_cuts_parked_readers_and_blocked_writers(
    nursery: trio.Nursery, engine: str
) -> None:
    """Shutdown's abort ends a connection waiting to read and one waiting for room to write.

    With ``--engine tasks`` both are woken with STOP (no ``Cancelled``); every engine must
    close them with the reason given, and keep serving new connections.
    """
    from app.feed.events import ConnClose

    running = await start_server(nursery, engine=engine)
    with trio.fail_after(20):
        reader = await connect(running)
        await reader.send_all(b"hi")
        assert await reader.receive_some(10) == b"hi"  # now parked, waiting to read
        hog = await connect(running)
        with trio.move_on_after(1):
            while True:  # never reads: the server's send to it stops part way
                await hog.send_all(b"x" * 65536)
        # The hog's echo is part-sent: its bytes out lag its bytes in.
        await wait_until(lambda: any(c.bytes_in > c.bytes_out for c in running.hub.tcp))
        running.hub.tcp.abort_all("shutdown")
        await _read_to_close(reader)
        await _read_to_close(hog)
        await wait_until(lambda: len(running.hub.tcp) == 0)
        async with await connect(running) as other:
            await other.send_all(b"ping")
            assert await other.receive_some(10) == b"ping"
        await reader.aclose()
        await hog.aclose()
    reasons = [e.reason for e in running.events if isinstance(e, ConnClose)]
    assert reasons[:2] == ["shutdown", "shutdown"], reasons


async def test_waker_stop_wakes_a_parked_task_with_stop_only() -> None:
    """``Waker.stop`` returns the parked task STOP (no exception); no task parked: False."""
    import select
    import socket

    from app.echo.tasks import STOP, Waker

    a, b = socket.socketpair()
    with a, b, select.epoll() as ep, trio.fail_after(5):
        waker = Waker(ep)
        fd = a.fileno()
        waker.add(fd)
        got: list[object] = []
        assert not waker.stop(fd)  # nobody parked yet: the caller would cancel instead
        async with trio.open_nursery() as inner:
            inner.start_soon(waker.run)

            async def park() -> None:
                got.append(await waker.wait(fd, waker.aborter(fd)))

            inner.start_soon(park)
            await wait_until(lambda: fd in waker._parked)
            assert waker.stop(fd)
            await wait_until(lambda: bool(got))
            b.send(b"x")  # news after the stop wakes nobody
            inner.cancel_scope.cancel()
        waker.remove(fd)
    assert got == [STOP]
