"""Every error of the real ``trio-echo`` command in one form (argparse's), by subprocess.

A usage error (a flag's syntax or value, found by argparse or later) prints the
failing command's usage line, then ``trio-echo COMMAND: error: ...``, exit 2.  A
runtime error prints that error line alone, exit 1.  Never a traceback.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from app.child import self_command

# Ports and hosts given explicitly: the defaults may be taken on a shared machine.
SERVE = ("serve", "--tcp-port", "0", "--http-port", "0", "--no-udp")

USAGE_ERRORS = [
    (("serve", "--tcp-port", "x"), "serve", "--tcp-port: expected a whole number, got 'x'"),
    (
        (*SERVE, "--tls-cert", "/nonexistent"),
        "serve",
        "--tls-cert and --tls-key: give both, or neither",
    ),
    (
        (*SERVE, "--proxy-trusted", "bogus"),
        "serve",
        "--proxy-trusted: 'bogus' is not an address or network (CIDR)",
    ),
    ((*SERVE, "--feed", "redis://x:bad"), "serve", "--feed: expected 'memory' or redis://"),
    (("client", "--udp", "nohost"), "client", "unrecognized arguments: nohost"),
    (("client", "--ws", "foo"), "client", "--ws: expected a ws:// or wss:// URL, got 'foo'"),
    (
        ("client", "--tls", "--insecure", "--cafile", "x.pem"),
        "client",
        "--insecure and --cafile: give one, not both",
    ),
    (("bench", "--tls", "x"), "bench", "argument --tls: 'x': expected HOST:PORT"),
    (("bench", "--udp", "127.0.0.1:9", "--size", "70000"), "bench", "--udp: --size is at most"),
    (("watch",), "watch", "expected -- COMMAND [ARGS...], got no command"),
    (("watch", "--"), "watch", "expected -- COMMAND [ARGS...], got no command"),
    (("demo", "switch", "--rounds", "0"), "demo switch", "rounds: 0 is outside 1..1000"),
    # -- issue 11 follow-ups: flags that do not go together are refused, not ignored --
    (("client", "--tls", "--udp"), "client", "--udp and --tls: TLS runs over TCP"),
    (("client", "--ws", "ws://127.0.0.1:9/ws/echo", "--udp"), "client", "--udp and --ws"),
    (("client", "--ws", "ws://127.0.0.1:9/ws/echo", "--tls"), "client", "--tls and --ws"),
    (("client", "--insecure"), "client", "--insecure needs --tls or a wss:// URL"),
    (("client", "--cafile", "x.pem"), "client", "--cafile needs --tls or a wss:// URL"),
    (
        ("client", "--ws", "ws://127.0.0.1:9/ws/echo", "--insecure"),
        "client",
        "--insecure needs --tls or a wss:// URL",
    ),
    (("client", "--udp", "--send-proxy", "v1"), "client", "--udp and --send-proxy"),
    (("client", "--port", "0"), "client", "--port: 0 is outside 1..65535"),
    (("bench", "--tcp", "127.0.0.1:9", "--insecure"), "bench", "--insecure needs --tls"),
    (("bench", "--cafile", "x.pem"), "bench", "--cafile needs --tls"),
    (("bench", "--ws", "ws://127.0.0.1:9/ws/echo", "--insecure"), "bench", "--insecure needs"),
    (("bench", "--udp", "127.0.0.1:9", "--send-proxy", "v2"), "bench", "--send-proxy: a PROXY"),
    (
        ("bench", "--feed", "ws://127.0.0.1:9/ws/events", "--send-proxy", "v1"),
        "bench",
        "--send-proxy works with --tcp, --tls and --ws, not --feed",
    ),
    (("bench", "--tls", "127.0.0.1:9", "--udp", "127.0.0.1:9"), "bench", "argument --udp: not"),
    (("client", "--send-proxy", ""), "client", "argument --send-proxy: invalid choice: ''"),
    # -- end of issue 11 follow-ups --
]


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        self_command(*args),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        cwd=tmp_path,
    )


@pytest.mark.parametrize(
    ("args", "command", "says"), USAGE_ERRORS, ids=[" ".join(a) for a, _, _ in USAGE_ERRORS]
)
def test_usage_error_is_the_commands_usage_then_its_error_exit_2(
    tmp_path: Path, args: tuple[str, ...], command: str, says: str
) -> None:
    done = run_cli(tmp_path, *args)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert lines[0].startswith(f"usage: trio-echo {command} "), lines
    assert lines[-1].startswith(f"trio-echo {command}: error: {says}"), lines
    assert "Traceback" not in done.stderr and done.stdout == ""


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens there once the probe closes


def test_runtime_errors_are_one_error_line_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cases = [
            (
                ("serve", "--tcp-port", str(port), "--http-port", "0", "--no-udp"),
                "serve",
                f"tcp echo: cannot listen on 127.0.0.1:{port}",
            ),
            (
                (*SERVE, "--tls-cert", "/nonexistent", "--tls-key", "/nonexistent"),
                "serve",
                "tls: cannot read the certificate /nonexistent: No such file or directory",
            ),
            (
                ("client", "--host", "127.0.0.1", "--tcp-port", str(closed_port())),
                "client",
                "cannot connect to 127.0.0.1:",
            ),
            (
                ("bench", "--tcp", f"127.0.0.1:{closed_port()}", "--duration", "0.2"),
                "bench",
                "no connection to 127.0.0.1:",
            ),
            (("ps", f"http://127.0.0.1:{closed_port()}"), "ps", "http://127.0.0.1:"),
        ]
        for args, command, says in cases:
            done = run_cli(tmp_path, *args)
            lines = [
                line for line in done.stderr.strip().splitlines() if not line.startswith("bench: ")
            ]
            assert done.returncode == 1, (args, done.stderr)
            assert len(lines) == 1, (args, lines)
            assert lines[0].startswith(f"trio-echo {command}: error: "), lines
            assert says in lines[0], lines
