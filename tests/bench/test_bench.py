"""``trio-echo bench`` against real servers: it runs, verifies, and reports sane numbers.

Behaviour, not speed: nothing here asserts how fast anything is.
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest
import trio

from app.bench.load import Plan, add_lags, parse_batch, run_bench
from app.bench.stats import BUCKETS, Histogram, Summary, bucket_of, bucket_top, table
from app.child import self_command
from app.cli import main
from app.ready import parse_ready

from conftest import start_server


def test_buckets_are_ordered_and_tight() -> None:
    previous = -1
    for us in [*range(200), 1000, 1023, 1024, 99_999, 10**6, 10**9, 10**12]:
        index = bucket_of(us)
        assert 0 <= index < BUCKETS and index >= previous
        assert us <= bucket_top(index) <= max(us * 1.07, us + 1)
        previous = index


def test_percentiles_of_a_known_spread() -> None:
    h = Histogram()
    for us in range(1, 1001):  # 1 us .. 1 ms, one each
        h.add(us)
    assert h.total == 1000 and h.max_us == 1000
    assert 490 <= h.percentile(50) <= 520
    assert 980 <= h.percentile(99) <= 1000
    assert h.percentile(100) == 1000
    assert Histogram().percentile(99) == 0


def test_a_feed_frame_is_read_without_decoding_every_event() -> None:
    frame = (
        b'{"type":"events","events":[{"kind":"notice","seq":7,"t":1.5,"text":"\\"t\\":9"},'
        b'{"kind":"stats","seq":8,"t":1.75,"lag":0.0},{"kind":"output","seq":9,"t":2.0}]}'
    )
    assert parse_batch(frame) == (3, 1.5, 2.0)
    h = Histogram()
    add_lags(h, arrival=2.5, count=3, first=1.5, last=2.0)
    assert h.total == 3
    assert 500_000 <= h.percentile(1) <= h.max_us <= 1_000_000


async def check(summary: Summary, connections: int) -> None:
    assert summary.established == connections
    assert summary.errors == {}
    assert summary.messages > 0
    lat = summary.latency
    assert 0 < lat.p50 <= lat.p90 <= lat.p99 <= lat.max
    assert "msgs/s" in table(summary) or "events delivered/s" in table(summary)


@pytest.mark.parametrize("engine", ["epoll", "tasks"])
async def test_tcp_bench_against_a_real_server(nursery: trio.Nursery, engine: str) -> None:
    running = await start_server(nursery, engine=engine)
    plan = Plan("tcp", f"127.0.0.1:{running.ports.tcp}", connections=20, size=100, duration=1)
    lines: list[str] = []
    with trio.fail_after(20):
        summary = await run_bench(plan, lines.append)
    await check(summary, 20)
    assert summary.bytes == summary.messages * 100 * 2
    assert any("connections up" in line for line in lines), lines


@pytest.mark.parametrize("text", [False, True], ids=["binary", "text"])
async def test_ws_bench_against_a_real_server(nursery: trio.Nursery, text: bool) -> None:
    running = await start_server(nursery)
    plan = Plan("ws", running.url("/ws/echo"), connections=10, size=3000, duration=1, text=text)
    with trio.fail_after(20):
        summary = await run_bench(plan, lambda line: None)
    await check(summary, 10)


async def test_feed_bench_measures_lag_in_both_phases(nursery: trio.Nursery) -> None:
    running = await start_server(nursery)
    plan = Plan("feed", running.url("/ws/events"), connections=5, duration=1, rate=500)
    with trio.fail_after(30):
        summary = await run_bench(plan, lambda line: None)
    await check(summary, 5)
    assert [p["phase"] for p in summary.phases] == ["all reading", "one stalled"]
    for phase in summary.phases:
        assert phase["subscribers"] == 5
        assert phase["events_per_s"] > 0
        assert 0 < phase["lag_p99_median_us"] <= phase["lag_p99_worst_us"]


async def test_feed_bench_with_deflate_counts_3x_fewer_bytes_per_event(
    nursery: trio.Nursery,
) -> None:
    """issue 12: subscribers offering deflate as browsers do see the feed ~4x smaller."""
    running = await start_server(nursery)
    wire = {}
    for deflate in (False, True):
        plan = Plan(
            "feed", running.url("/ws/events"), connections=3, duration=1, rate=1000, deflate=deflate
        )
        with trio.fail_after(30):
            summary = await run_bench(plan, lambda line: None)
        await check(summary, 3)
        wire[deflate] = summary.phases[0]["wire_bytes_per_event"]
        assert "wire B/event" in table(summary)
    assert 0 < wire[True] * 3 <= wire[False], wire


def test_the_command_prints_one_json_line(tmp_path: Path) -> None:
    serve = subprocess.Popen(
        self_command("serve", "--tcp-port", "0", "--http-port", "0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
    )
    assert serve.stdout is not None
    try:
        ready = parse_ready(serve.stdout.readline() + serve.stdout.readline())
        assert ready is not None
        tcp = ready.tcp
        bench = subprocess.run(
            self_command("bench", "--tcp", tcp, "--duration", "0.5", "--json"),
            capture_output=True,
            text=True,
            timeout=30,
            cwd=tmp_path,
        )
    finally:
        serve.terminate()
        code = serve.wait(timeout=10)
        serve.stdout.close()
    assert code == 0
    assert bench.returncode == 0, bench.stderr
    result = json.loads(bench.stdout)
    assert result["mode"] == "tcp" and result["established"] == 100
    assert result["msgs_per_s"] > 0 and result["errors"] == {}
    assert "connections up" in bench.stderr  # progress went to stderr


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--tcp", "127.0.0.1:"], "expected HOST:PORT"),
        (["--tcp", "127.0.0.1:abc"], "expected HOST:PORT"),
        (["--tcp", "127.0.0.1"], "expected HOST:PORT"),
        (["--tcp", "127.0.0.1:70000"], "expected HOST:PORT"),
        (["--ws", "http://x"], "expected a ws:// or wss:// URL"),
        (["--feed", "ws://127.0.0.1:99999/ws/events"], "out of range"),
    ],
)
def test_a_malformed_target_is_a_usage_error_exit_2(
    flags: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bench", *flags, "--duration", "0.2", "--connections", "3"])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("usage: trio-echo bench "), err
    assert err[-1].startswith("trio-echo bench: error: argument "), err
    assert says in err[-1], err


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--tcp", "127.0.0.1:{closed}"], "no connection to"),
        (["--ws", "ws://127.0.0.1:{closed}/ws/echo"], "no connection to"),
        (["--feed", "ws://127.0.0.1:{closed}/ws/events"], "refused"),
    ],
)
def test_a_target_that_does_not_answer_is_one_error_line_exit_1(
    flags: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # nothing listens there once the probe closes
    args = [flag.format(closed=closed) for flag in flags]
    assert main(["bench", *args, "--duration", "0.2", "--connections", "3"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    lines = [line for line in err if not line.startswith("bench: ")]  # progress lines
    assert len(lines) == 1 and lines[0].startswith("trio-echo bench: error: "), err
    assert says in lines[0], lines[0]


async def test_udp_bench_against_a_real_server(nursery: trio.Nursery) -> None:
    running = await start_server(nursery)
    plan = Plan("udp", f"127.0.0.1:{running.ports.udp}", connections=8, size=512, duration=1)
    with trio.fail_after(20):
        summary = await run_bench(plan, lambda line: None)
    await check(summary, 8)
    assert summary.bytes == summary.messages * 512 * 2


async def test_tcp_bench_sends_proxy_headers(nursery: trio.Nursery) -> None:
    running = await start_server(nursery, proxy_protocol="v2")
    plan = Plan(
        "tcp", f"127.0.0.1:{running.ports.tcp}", connections=5, duration=0.5, send_proxy="v2"
    )
    with trio.fail_after(20):
        summary = await run_bench(plan, lambda line: None)
    await check(summary, 5)
    assert running.hub.proxy_refusals.total == 0


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_ws_bench_sends_proxy_headers(nursery: trio.Nursery, version: str) -> None:
    """Issue 11 follow-up: `bench --ws URL --send-proxy` sends the header before the upgrade."""
    running = await start_server(nursery, proxy_protocol=version)
    plan = Plan("ws", running.url("/ws/echo"), connections=5, duration=0.5, send_proxy=version)
    with trio.fail_after(20):
        summary = await run_bench(plan, lambda line: None)
    await check(summary, 5)
    assert running.hub.proxy_refusals.total == 0
