"""TCP echo over TLS (issue 11), over real sockets: exact, half-closed by close_notify, bounded.

Rules as in conftest: loopback, port 0, every wait under ``trio.fail_after``.
The client side is Python's ``ssl`` (OpenSSL), verifying our certificate.  Every
server test runs twice: on the multiplexed engine (epoll), and on the portable
one that a system without epoll gets (the platform is made to look like one).
"""

from __future__ import annotations

import dataclasses
import gc
import os
import socket
import ssl
import struct
import subprocess
import time
import warnings
from pathlib import Path

import pytest
import trio

from app import portability
from app.child import self_command
from app.echo.tls import wrap_server_side
from app.feed.events import ConnClose, ConnOpen, Event, Exit

from conftest import Running, wait_until
from tlshelp import PROXY_BEFORE_TLS, CertFiles, TlsPipe, start_tls_server, write_cert


@pytest.fixture(params=["epoll", "portable"])
def platform(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The TLS engine under test, chosen the way the server chooses it: by the platform."""
    if request.param == "portable":
        no_epoll = dataclasses.replace(portability.CURRENT, epoll=False)
        monkeypatch.setattr(portability, "CURRENT", no_epoll)
    return str(request.param)


@pytest.fixture
async def tls(platform: str, nursery: trio.Nursery, tmp_path: Path) -> tuple[Running, CertFiles]:
    return await start_tls_server(nursery, tmp_path)


def events_since(running: Running, cursor: int) -> list[Event]:
    return [e for e in running.events if e.seq > cursor]


async def test_multi_mib_round_trip_then_close_notify_half_close(
    tls: tuple[Running, CertFiles],
) -> None:
    """6 MiB sent while the echo flows back, then close_notify: every byte returns in order,
    then the server's own close_notify (a clean EOF, not a TCP truncation)."""
    running, files = tls
    payload = os.urandom(6 * 1024 * 1024)
    cursor = running.hub.feed.last_seq
    with trio.fail_after(60):
        pipe = await TlsPipe.connect(running.ports.tls, files.client_context())
        received = bytearray()

        async def send() -> None:
            view = memoryview(payload)
            for i in range(0, len(payload), 100_003):  # uneven chunks, across record borders
                await pipe.send_all(view[i : i + 100_003])
            await pipe.send_eof()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            received += await pipe.read_all()  # ends at the server's close_notify
        await pipe.aclose()
        await wait_until(lambda: len(running.hub.tls) == 0)
    assert len(received) == len(payload)
    assert received == payload
    closes = [e for e in events_since(running, cursor) if isinstance(e, ConnClose)]
    assert [(c.transport, c.reason, c.bytes_in, c.bytes_out) for c in closes] == [
        ("tls", "eof", len(payload), len(payload))
    ]


async def test_conn_open_carries_version_cipher_sni(tls: tuple[Running, CertFiles]) -> None:
    running, files = tls
    cursor = running.hub.feed.last_seq
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = files.client_context(minimum_version=version, maximum_version=version)
        with trio.fail_after(10):
            async with await TlsPipe.connect(running.ports.tls, ctx, "localhost") as pipe:
                await pipe.send_all(b"ping")
                assert await pipe.receive_some() == b"ping"
    opens = [e for e in events_since(running, cursor) if isinstance(e, ConnOpen)]
    assert [(o.transport, o.tls and o.tls.version) for o in opens] == [
        ("tls", "TLSv1.2"),
        ("tls", "TLSv1.3"),
    ]
    for o in opens:
        assert o.tls is not None
        assert o.tls.sni == "localhost"
        assert o.tls.cipher  # e.g. ECDHE-ECDSA-AES256-GCM-SHA384, TLS_AES_256_GCM_SHA384
        assert o.tls.alpn is None  # the echo port offers no ALPN
    assert running.hub.handshakes["echo"].done == 2


async def test_tls_1_1_is_refused_and_counted(tls: tuple[Running, CertFiles]) -> None:
    running, files = tls
    ctx = files.client_context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the point of this test
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    # OpenSSL's default security level forbids TLS 1.1 on the client too; lower it for the test.
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with trio.fail_after(10):
        with pytest.raises(trio.BrokenResourceError):
            await TlsPipe.connect(running.ports.tls, ctx)
        await wait_until(lambda: running.hub.handshakes["echo"].failed == 1)
    assert len(running.hub.tls) == 0


async def test_plain_text_on_the_tls_port_fails_the_handshake_and_others_go_on(
    tls: tuple[Running, CertFiles], caplog: pytest.LogCaptureFixture
) -> None:
    running, files = tls
    caplog.set_level("DEBUG", logger="app.echo.tls")
    with trio.fail_after(10):
        async with await TlsPipe.connect(running.ports.tls, files.client_context()) as good:
            async with await trio.open_tcp_stream("127.0.0.1", running.ports.tls) as plain:
                await plain.send_all(b"GET / HTTP/1.0\r\n\r\n")
                # The server closes it (after an alert, perhaps; a reset if bytes were unread).
                try:
                    while await plain.receive_some(1000):
                        pass
                except trio.BrokenResourceError:
                    pass
            await good.send_all(b"still here")
            assert await good.receive_some() == b"still here"
    assert running.hub.handshakes["echo"].failed == 1
    failed = [r for r in caplog.records if "handshake with" in r.getMessage()]
    assert len(failed) == 1 and failed[0].levelname == "DEBUG"


async def test_slow_handshake_is_closed_counted_and_logged_at_debug(
    platform: str, nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="app.echo.tls")
    running, files = await start_tls_server(nursery, tmp_path, tls_handshake_timeout=0.3)
    with trio.fail_after(10):
        async with await trio.open_tcp_stream("127.0.0.1", running.ports.tls) as silent:
            # Half a ClientHello would be the same; nothing at all is the simplest slowloris.
            assert await silent.receive_some(1000) == b""  # closed by the server
        # A client that does its handshake in time is served after it.
        async with await TlsPipe.connect(running.ports.tls, files.client_context()) as pipe:
            await pipe.send_all(b"x")
            assert await pipe.receive_some() == b"x"
    assert running.hub.handshakes["echo"].timed_out == 1
    slow = [r for r in caplog.records if "did not finish its handshake" in r.getMessage()]
    assert len(slow) == 1 and slow[0].levelname == "DEBUG"


async def test_eof_without_close_notify_is_a_truncation(tls: tuple[Running, CertFiles]) -> None:
    running, files = tls
    cursor = running.hub.feed.last_seq
    with trio.fail_after(10):
        async with await TlsPipe.connect(running.ports.tls, files.client_context()) as pipe:
            await pipe.send_all(b"abc")
            assert await pipe.receive_some() == b"abc"
            await pipe.transport.send_eof()  # TCP FIN, no close_notify
            # OpenSSL 3 answers a truncation with a decode_error alert before closing.
            with pytest.raises(trio.BrokenResourceError):
                await pipe.receive_some()
        await wait_until(lambda: len(running.hub.tls) == 0)
    closes = [e for e in events_since(running, cursor) if isinstance(e, ConnClose)]
    assert [c.reason for c in closes] == ["eof (no close_notify)"]


async def test_handshakes_count_against_max_connections(
    platform: str, nursery: trio.Nursery, tmp_path: Path
) -> None:
    running, files = await start_tls_server(nursery, tmp_path, max_connections=1)
    with trio.fail_after(10):
        async with await trio.open_tcp_stream("127.0.0.1", running.ports.tls):  # handshaking
            with pytest.raises(trio.BrokenResourceError):
                await TlsPipe.connect(running.ports.tls, files.client_context())
            assert running.hub.tls.refusals.total == 1


async def test_shutdown_closes_tls_connections(
    platform: str, nursery: trio.Nursery, tmp_path: Path
) -> None:
    running, files = await start_tls_server(nursery, tmp_path)
    with trio.fail_after(10):
        async with await TlsPipe.connect(running.ports.tls, files.client_context()) as pipe:
            await pipe.send_all(b"a")
            assert await pipe.receive_some() == b"a"
            running.server.stop()
            # The server's close_notify: a clean end, not a truncation.
            assert await pipe.receive_some() == b""


async def test_backpressure_a_reader_that_stops_holds_bounded_memory(
    tls: tuple[Running, CertFiles],
) -> None:
    """A client that sends but never reads: the server stops reading it (its sends block),
    and it keeps at most one echo pending."""
    running, files = tls
    with trio.fail_after(30):
        async with await TlsPipe.connect(running.ports.tls, files.client_context()) as pipe:
            sent = 0
            chunk = b"z" * 65536
            with trio.move_on_after(2):
                while True:
                    await pipe.send_all(chunk)
                    sent += len(chunk)
            (conn,) = list(running.hub.tls)
            # Kernel buffers on both sides hold some MiB; the server holds one read more.
            assert conn.bytes_in < sent
            assert conn.bytes_in - conn.bytes_out <= 64 * 1024


# `serve` on ephemeral ports; a later --tls-port wins over this one (argparse keeps the last).
SERVE = [*self_command("serve"), "--tcp-port", "0", "--http-port", "0", "--https-port", "0"]
SERVE += ["--tls-port", "0"]


def _serve(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SERVE, *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
        check=False,
    )


def test_wrong_key_is_one_line_and_exit_1_and_the_key_is_not_shown(tmp_path: Path) -> None:
    one = write_cert(tmp_path)
    two_dir = tmp_path / "two"
    two_dir.mkdir()
    two = write_cert(two_dir)
    done = _serve(["--tls-cert", str(one.cert), "--tls-key", str(two.key)], tmp_path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "key values mismatch" in lines[0] and str(two.key) in lines[0]
    key_body = two.key.read_text().splitlines()[1]
    assert key_body not in done.stderr + done.stdout
    assert done.stdout == ""


@pytest.mark.parametrize("missing", ["cert", "key"])
def test_missing_file_is_one_line_and_exit_1(tmp_path: Path, missing: str) -> None:
    files = write_cert(tmp_path)
    gone = tmp_path / "nope.pem"
    cert = gone if missing == "cert" else files.cert
    key = gone if missing == "key" else files.key
    done = _serve(["--tls-cert", str(cert), "--tls-key", str(key)], tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "trio-echo serve: error: tls: cannot read the "
        f"{'certificate' if missing == 'cert' else 'key'} {gone}: No such file or directory"
    ]


def test_unreadable_key_is_one_line_and_exit_1(tmp_path: Path) -> None:
    files = write_cert(tmp_path)
    files.key.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    done = _serve(["--tls-cert", str(files.cert), "--tls-key", str(files.key)], tmp_path)
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("trio-echo serve: error: tls: cannot use the certificate")


def test_self_signed_prints_listeners_and_fingerprint(tmp_path: Path) -> None:
    with subprocess.Popen(
        [*SERVE, "--tls", "self-signed"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
    ) as proc:
        try:
            assert proc.stdout is not None
            lines = [proc.stdout.readline() for _ in range(5)]
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    assert lines[0].startswith("tcp echo listening on 127.0.0.1:")
    assert lines[1].startswith("web listening on http://127.0.0.1:")
    assert lines[2].startswith("tls echo listening on 127.0.0.1:")
    assert lines[3].startswith("web listening on https://127.0.0.1:")
    assert lines[4].startswith("tls certificate SHA-256 ")
    fingerprint = lines[4].split()[3]
    assert len(fingerprint.split(":")) == 32
    port = int(lines[2].rsplit(":", 1)[1])
    assert port > 0
    assert proc.returncode == 0


def test_tls_listener_port_in_use_is_one_line(tmp_path: Path) -> None:
    files = write_cert(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = ["--tls-port", str(port), "--tls-cert", str(files.cert), "--tls-key", str(files.key)]
        done = _serve(args, tmp_path)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.endswith(f"tls echo: cannot listen on 127.0.0.1:{port}: Address already in use")


async def test_idle_tls_connection_is_closed_with_close_notify(
    platform: str, nursery: trio.Nursery, tmp_path: Path
) -> None:
    running, files = await start_tls_server(nursery, tmp_path, idle_timeout=0.3)
    cursor = running.hub.feed.last_seq
    with trio.fail_after(10):
        async with await TlsPipe.connect(running.ports.tls, files.client_context()) as pipe:
            await pipe.send_all(b"one")
            assert await pipe.receive_some() == b"one"
            assert await pipe.receive_some() == b""  # the sweep closed it, cleanly
    closes = [e for e in events_since(running, cursor) if isinstance(e, ConnClose)]
    assert [(c.transport, c.reason) for c in closes] == [("tls", "idle")]


async def test_many_connections_echo_at_once(tls: tuple[Running, CertFiles]) -> None:
    """Handshakes and echoes of 200 clients interleave in the one engine task."""
    running, files = tls
    ctx = files.client_context()
    results: dict[int, bytes] = {}

    async def one(i: int) -> None:
        async with await TlsPipe.connect(running.ports.tls, ctx) as pipe:
            message = f"client {i} ".encode() * 50
            await pipe.send_all(message)
            await pipe.send_eof()
            results[i] = await pipe.read_all()

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for i in range(200):
                nursery.start_soon(one, i)
    assert results == {i: f"client {i} ".encode() * 50 for i in range(200)}
    assert running.hub.handshakes["echo"].done == 200


def test_encrypted_key_is_one_line_and_no_prompt(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    files = write_cert(tmp_path)
    key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    done = _serve(["--tls-cert", str(files.cert), "--tls-key", str(files.key)], tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"trio-echo serve: error: tls: the key {files.key} is encrypted; give an unencrypted key"
    ]


async def test_an_unforeseen_error_ends_that_connection_alone(
    platform: str,
    tls: tuple[Running, CertFiles],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug in serving one connection (here: reading its TLS parameters fails once) is logged
    in one line and closes that connection; the engine and the others go on."""
    import app.echo.tls
    import app.echo.tlstasks

    engine = app.echo.tls if platform == "epoll" else app.echo.tlstasks
    running, files = tls
    real = engine.tls_info
    calls = 0

    def fails_once(sock: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("injected")
        return real(sock)

    monkeypatch.setattr(engine, "tls_info", fails_once)
    with trio.fail_after(10):
        async with await TlsPipe.connect(running.ports.tls, files.client_context()) as doomed:
            try:  # closed: with a close_notify (portable engine) or without (epoll)
                assert await doomed.receive_some() == b""
            except trio.BrokenResourceError:
                pass
        async with await TlsPipe.connect(running.ports.tls, files.client_context()) as fine:
            await fine.send_all(b"ok")
            assert await fine.receive_some() == b"ok"
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.getMessage().split(" failed: ")[1] for r in errors] == ["RuntimeError: injected"]


async def test_engine_tasks_gives_each_tls_connection_a_watched_task(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """With --engine tasks, TLS echo runs a task per connection too, on its own lane."""
    running, files = await start_tls_server(nursery, tmp_path, engine="tasks")
    cursor = running.hub.feed.last_seq
    with trio.fail_after(10):
        async with await TlsPipe.connect(running.ports.tls, files.client_context()) as pipe:
            await pipe.send_all(b"watched")
            assert await pipe.receive_some() == b"watched"
            await pipe.send_eof()
            assert await pipe.receive_some() == b""
        await wait_until(lambda: any(isinstance(e, Exit) for e in events_since(running, cursor)))
    events = events_since(running, cursor)
    (opened,) = [e for e in events if isinstance(e, ConnOpen)]
    assert opened.transport == "tls"
    assert [e.task for e in events if isinstance(e, Exit)] == [opened.task]


async def test_handshakes_over_the_per_wake_cap_are_taken_at_later_wake_ups(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One handshake step per wake-up: the ready sockets left over stay readable and are
    served at the next ones, so every client gets through."""
    import app.echo.tls

    monkeypatch.setattr(app.echo.tls, "MAX_HANDSHAKE_STEPS", 1)
    running, files = await start_tls_server(nursery, tmp_path)
    ctx = files.client_context()
    done = 0

    async def one() -> None:
        nonlocal done
        async with await TlsPipe.connect(running.ports.tls, ctx) as pipe:
            await pipe.send_all(b"x")
            assert await pipe.receive_some() == b"x"
            done += 1

    with trio.fail_after(30):
        async with trio.open_nursery() as clients:
            for _ in range(30):
                clients.start_soon(one)
    assert done == 30


@pytest.mark.parametrize(("header", "client", "peer"), PROXY_BEFORE_TLS)
async def test_proxy_header_before_tls_carries_the_client_address(
    platform: str,
    nursery: trio.Nursery,
    tmp_path: Path,
    header: bytes,
    client: tuple[str, int] | None,
    peer: str | None,
) -> None:
    """--proxy-protocol on the TLS echo listener: the header comes before the handshake, and
    the address it carries is the connection's peer; no header is one refusal, closed."""
    running, files = await start_tls_server(nursery, tmp_path, proxy_protocol="any")
    cursor = running.hub.feed.last_seq
    with trio.fail_after(10):
        tcp = await trio.open_tcp_stream("127.0.0.1", running.ports.tls)
        local = f"127.0.0.1:{tcp.socket.getsockname()[1]}"
        await tcp.send_all(header)
        async with TlsPipe(tcp, files.client_context(), "localhost") as pipe:
            await pipe.do_handshake()
            await pipe.send_all(b"via a balancer")
            assert await pipe.receive_some() == b"via a balancer"
        # A client that starts TLS at once (no header) is refused and closed.
        with pytest.raises(trio.BrokenResourceError):
            await TlsPipe.connect(running.ports.tls, files.client_context())
        await wait_until(lambda: running.hub.proxy_refusals.total == 1)
    opens = [e for e in events_since(running, cursor) if isinstance(e, ConnOpen)]
    assert [(o.transport, o.peer) for o in opens] == [("tls", peer or local)]


def test_a_peer_reset_before_wrapping_leaves_no_descriptor_open(tmp_path: Path) -> None:
    """A connection reset between accept and the wrap is closed now, not by the GC later.

    CPython's ``wrap_socket`` would take the descriptor and raise, leaving an
    unclosed ``SSLSocket`` in a reference cycle (seen once in CI as a
    ResourceWarning under HAProxy's probes).
    """
    files = write_cert(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert, files.key)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
        accepted.setblocking(False)
        fd = accepted.fileno()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # an RST, before the server wraps its side
        deadline = time.monotonic() + 5
        while accepted.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
            # Wait until the RST has landed (it is at once on loopback, as a rule).
            assert time.monotonic() < deadline, "the reset never arrived"
            time.sleep(0.01)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResourceWarning)
            assert wrap_server_side(context, accepted, "reset peer") is None
            gc.collect()
    # The descriptor is closed now: nothing else holds it.
    with pytest.raises(OSError):
        os.fstat(fd)
