"""``serve --workers N``: N processes behind the same ports, one supervisor, a clean stop."""

from __future__ import annotations

import dataclasses
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import trio

from app.child import self_command
from app.cli import build_parser
from app.config import SERVE_OPTIONS, Settings, resolve
from app.workers import worker_argv

from netclient import http_request, ws_connect


def test_a_worker_gets_the_same_settings_and_the_chosen_ports() -> None:
    settings = Settings(workers=3, trace=False, idle_timeout=12.5, ws_engine="asgi")
    argv = worker_argv(settings, 4001, 4002, 2)
    assert argv[:5] == self_command("serve")
    args = build_parser().parse_args(argv[4:])
    assert args.worker_index == 2
    again = resolve(Settings, SERVE_OPTIONS, vars(args), {})
    assert again == dataclasses.replace(settings, tcp_port=4001, http_port=4002)


IMPOSTOR = "an app/ package of the user's own ran instead of trio-echo"


def make_impostor(folder: Path) -> None:
    """Give *folder* its own ``app/`` package, the common project layout ``-m app`` would run."""
    package = folder / "app"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(f"import sys\nsys.exit({IMPOSTOR!r})\n")


def test_the_impostor_runs_under_plain_dash_m(tmp_path: Path) -> None:
    # The trap the workers must not fall into, shown once so the test below means something.
    make_impostor(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "app"], capture_output=True, text=True, cwd=tmp_path, timeout=20
    )
    assert IMPOSTOR in done.stderr


async def test_two_workers_share_the_ports_and_stop_together(tmp_path: Path) -> None:
    # Started from a folder with its own app/: every worker must still be trio-echo.
    make_impostor(tmp_path)
    serve = ["serve", "--workers", "2", "--tcp-port", "0", "--http-port", "0"]
    proc = await trio.lowlevel.open_process(
        self_command(*serve),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        out = b""
        with trio.fail_after(20):
            while out.count(b"\n") < 2:
                chunk = await proc.stdout.receive_some(1000)
                assert chunk, f"serve exited early: {out!r}"
                out += chunk
        tcp_line, web_line = out.decode().splitlines()[:2]
        tcp_port = int(tcp_line.rsplit(":", 1)[1])
        http_port = int(web_line.rsplit(":", 1)[1])
        with trio.fail_after(20):
            # The kernel spreads connections over both workers: both answer.
            pids: dict[int, int] = {}
            for _ in range(200):
                status, _, body = await http_request(http_port, "/healthz")
                assert status == 200
                health = json.loads(body)
                pids[health["pid"]] = health["worker"]
                if len(pids) == 2:
                    break
            assert sorted(pids.values()) == [1, 2]
            # Each tells the page about both, by their own ports.
            async with ws_connect(f"ws://127.0.0.1:{http_port}/ws/events") as ws:
                hello = json.loads(await ws.get_message())
            assert [p["worker"] for p in hello["peers"]] == [1, 2]
            for peer in hello["peers"]:
                own_port = int(peer["url"].rsplit(":", 1)[1])
                status, _, body = await http_request(own_port, "/healthz")
                assert json.loads(body)["worker"] == peer["worker"]
            # TCP echo works through the shared port.
            async with await trio.open_tcp_stream("127.0.0.1", tcp_port) as s:
                await s.send_all(b"ping")
                assert await s.receive_some(10) == b"ping"
        sent_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            code = await proc.wait()
        elapsed = time.monotonic() - sent_at
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    err = b""
    while chunk := await proc.stderr.receive_some(65536):
        err += chunk
    await proc.stdout.aclose()
    await proc.stderr.aclose()
    assert code == 0, err.decode()
    assert b"Traceback" not in err, err.decode()
    assert elapsed < 1.0
    assert b"stopping 2 workers" in err
    assert IMPOSTOR.encode() not in err


def test_a_taken_port_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        serve = ["serve", "--workers", "2", "--tcp-port", str(port), "--http-port", "0"]
        done = subprocess.run(
            self_command(*serve),
            capture_output=True,
            text=True,
            timeout=20,
            cwd=tmp_path,
        )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "trio-echo serve: error: [Errno 98] tcp echo: "
        f"cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
