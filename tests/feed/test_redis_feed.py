"""The shared feed on a real ``redis-server``: two instances, one page; and every Redis fault.

Each test starts its own ``redis-server`` (no persistence) on a free loopback
port, and real ``trio-echo serve`` processes (``--feed redis://...``) where
two instances must differ (an instance is host/pid/worker).  Skipped when
``redis-server`` is absent, failed instead under ``CI=true``.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import WebSocketConnection

from app.child import self_command
from app.feed.events import Notice, Output, decode
from app.feed.live import LinkStats
from app.feed.redis import RedisFeed, backoff_delay
from app.feed.redis_url import parse_feed
from app.feed.ring import Gap

from conftest import start_server, wait_until
from netclient import http_request, ws_connect
from procs import read_stderr, start_serve
from sysprocs import RedisServer, free_port, need, start_redis

Event = dict[str, Any]


@pytest.fixture
async def redis() -> AsyncIterator[RedisServer]:
    server = await start_redis()
    try:
        yield server
    finally:
        await server.kill()


async def stop(proc: trio.Process) -> bytes:
    """SIGTERM, wait, and return what it logged."""
    proc.send_signal(signal.SIGTERM)
    with trio.fail_after(10):
        err = await read_stderr(proc)
        assert await proc.wait() == 0, err.decode(errors="replace")
    return err


async def messages_until(
    ws: WebSocketConnection, done: Callable[[list[Event]], bool], *, wait: float = 20
) -> list[Event]:
    """Every event and gap message (gaps as ``{"type": "gap", ...}``) until *done*."""
    seen: list[Event] = []
    with trio.fail_after(wait):
        while not done(seen):
            msg = json.loads(await ws.get_message())
            if msg["type"] == "events":
                seen.extend(msg["events"])
            elif msg["type"] == "gap":
                seen.append(msg)
    return seen


async def echo_once(port: int, data: bytes = b"ping") -> None:
    async with await trio.open_tcp_stream("127.0.0.1", port) as s:
        await s.send_all(data)
        assert await s.receive_some(100) == data


def of(proc: trio.Process) -> Callable[[Event], bool]:
    return lambda e: isinstance(e.get("inst"), str) and e["inst"].split("/")[1] == str(proc.pid)


async def test_two_instances_one_page_and_since_resumes_on_the_other(
    tmp_path: Path, redis: RedisServer
) -> None:
    a, a_tcp, a_http = await start_serve(tmp_path, extra=["--feed", redis.url])
    b, b_tcp, b_http = await start_serve(tmp_path, extra=["--feed", redis.url])
    try:
        async with ws_connect(f"ws://127.0.0.1:{b_http}/ws/events") as page_b:
            hello = json.loads(await page_b.get_message())
            assert hello["feed"].startswith("redis://127.0.0.1:") and hello["instances"]
            assert hello["instances"][0]["pid"] == b.pid
            await echo_once(a_tcp, b"from a")
            await echo_once(b_tcp, b"from b")
            seen = await messages_until(
                page_b,
                lambda s: (
                    any(e.get("kind") == "conn_close" and of(a)(e) for e in s)
                    and any(e.get("kind") == "conn_close" and of(b)(e) for e in s)
                ),
            )
        closed_a = next(e for e in seen if e.get("kind") == "conn_close" and of(a)(e))
        assert closed_a["bytes_in"] == len(b"from a")
        # One order for everyone: seq grows; lanes of different instances do not collide.
        seqs = [e["seq"] for e in seen if "seq" in e]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        lanes_a = {e["task"] for e in seen if e.get("kind") == "conn_open" and of(a)(e)}
        lanes_b = {e["task"] for e in seen if e.get("kind") == "conn_open" and of(b)(e)}
        assert lanes_a and lanes_b and not lanes_a & lanes_b

        # hello lists every instance seen; ?since=SEQ taken on B resumes on A at that event.
        since = closed_a["seq"] - 1
        async with ws_connect(f"ws://127.0.0.1:{a_http}/ws/events?since={since}") as page_a:
            hello = json.loads(await page_a.get_message())
            assert {i["pid"] for i in hello["instances"]} >= {a.pid, b.pid}
            resumed = await messages_until(page_a, lambda s: len(s) >= 1)
        assert resumed[0]["seq"] == closed_a["seq"]
        assert resumed[0]["kind"] == "conn_close" and of(a)(resumed[0])
    finally:
        await stop(a)
        await stop(b)


async def test_redis_down_at_start_serves_locally_then_joins(tmp_path: Path) -> None:
    redis = RedisServer(need("redis-server", "/usr/bin/redis-server"))
    proc, tcp, http = await start_serve(tmp_path, extra=["--feed", redis.url])
    try:
        async with ws_connect(f"ws://127.0.0.1:{http}/ws/events") as page:
            hello = json.loads(await page.get_message())
            assert hello["type"] == "hello"
            await echo_once(tcp)
            local = await messages_until(
                page, lambda s: any(e.get("kind") == "conn_close" for e in s)
            )
            assert any(e.get("kind") == "notice" and "unavailable" in e["text"] for e in local)
            await redis.start()
            # Reconnects within the backoff (at most 5 s), then our own events come back
            # through the stream: an echo after that is seen with a stream seq.
            joined = await messages_until(
                page,
                lambda s: any(e.get("kind") == "notice" and "is back" in e["text"] for e in s),
            )
            assert any(e.get("kind") == "notice" for e in joined)
            last = max(e["seq"] for e in local + joined if "seq" in e)
            await echo_once(tcp)
            after = await messages_until(
                page, lambda s: any(e.get("kind") == "conn_close" for e in s)
            )
            assert all(e["seq"] > last for e in after if "seq" in e)
    finally:
        err = await stop(proc)
        await redis.kill()
    lines = err.decode().splitlines()
    # One line for the outage however many retries it took, one when connected.
    assert sum("unavailable" in line for line in lines) == 1, lines
    assert any("connected to redis://" in line for line in lines), lines


async def test_redis_killed_and_restarted_mid_run_notice_gap_resume(
    tmp_path: Path, redis: RedisServer
) -> None:
    # A small outbox on A, and more events during the outage than it holds: a counted gap.
    a, a_tcp, _ = await start_serve(tmp_path, extra=["--feed", redis.url, "--feed-outbox", "100"])
    b, _, b_http = await start_serve(tmp_path, extra=["--feed", redis.url])
    try:
        async with ws_connect(f"ws://127.0.0.1:{b_http}/ws/events") as page_b:
            json.loads(await page_b.get_message())
            await echo_once(a_tcp)
            await messages_until(
                page_b, lambda s: any(e.get("kind") == "conn_close" and of(a)(e) for e in s)
            )
            await redis.kill()
            down = await messages_until(
                page_b,
                lambda s: any(e.get("kind") == "notice" and "unavailable" in e["text"] for e in s),
            )
            assert not any(e.get("type") == "gap" for e in down)
            for _ in range(80):  # 160 events on A (open + close), while its outbox holds 100
                await echo_once(a_tcp)
            await redis.start()
            back = await messages_until(
                page_b,
                lambda s: (
                    any(e.get("kind") == "conn_close" and of(a)(e) for e in s)
                    and any(e.get("type") == "gap" for e in s)
                ),
                wait=30,
            )
        gaps = [e for e in back if e.get("type") == "gap"]
        assert sum(g["missed"] for g in gaps) >= 60
        assert any(e.get("kind") == "notice" and "is back" in e["text"] for e in back)
        lines = (await stop(a)).decode().splitlines()
        # One line when the link went, one when it came back; the retries between are quiet.
        assert sum("feed: lost redis://" in line for line in lines) == 1, lines
        assert sum("is back" in line for line in lines) == 1, lines
        assert not any("unavailable" in line for line in lines), lines
    finally:
        for proc in (a, b):
            if proc.returncode is None:
                await stop(proc)


async def test_outbox_bound_holds_while_redis_is_stalled(redis: RedisServer) -> None:
    url = parse_feed(redis.url)
    assert url is not None
    writer = RedisFeed(url, outbox=100, host="writer")
    reader = RedisFeed(url, host="reader")
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        await nursery.start(reader.run)
        with trio.fail_after(10):
            await wait_until(lambda: link(writer).online and link(reader).online)
        assert redis.process is not None
        redis.process.send_signal(signal.SIGSTOP)  # Redis hangs: every call waits
        try:
            with trio.testing.assert_no_checkpoints():
                for i in range(1_000):
                    writer.publish(Output(text=f"line {i}"))
            assert link(writer).outbox_depth <= 100
            assert link(writer).outbox_dropped >= 900
        finally:
            redis.process.send_signal(signal.SIGCONT)
        with trio.fail_after(30):
            await wait_until(lambda: "line 999" in texts(reader))
        # Every event reached the reader or is counted in its gaps; nothing else is a gap.
        assert len(texts(reader)) + link(reader).lost == 1_000
        assert link(reader).lost == link(writer).outbox_dropped
        nursery.cancel_scope.cancel()


def link(feed: RedisFeed) -> LinkStats:
    return feed.link_statistics()


def texts(feed: RedisFeed) -> list[str]:
    """The text of every output event a reader of the feed's ring gets, walking over its gaps."""
    out: list[str] = []
    cursor = 0
    while True:
        batch = feed.read_encoded(cursor, 10_000)
        if isinstance(batch, Gap):
            cursor = batch.resume
            continue
        if not batch:
            return out
        events = [decode(data) for data in batch]
        out += [e.text for e in events if isinstance(e, Output)]
        cursor += len(batch)


async def test_publish_never_waits_on_redis(redis: RedisServer) -> None:
    url = parse_feed(f"redis://127.0.0.1:{free_port()}/0?stream=nobody")
    assert url is not None
    feed = RedisFeed(url, outbox=100)
    with trio.testing.assert_no_checkpoints():
        for _ in range(500):
            feed.publish(Notice(level="info", text="x"))
    assert (link(feed).outbox_depth, link(feed).outbox_dropped) == (100, 400)


@pytest.mark.parametrize(
    "url", ["redis://", "http://127.0.0.1:6379", "redis://127.0.0.1:99999", "redis://h/99"]
)
async def test_a_bad_feed_url_is_a_usage_error_exit_2(tmp_path: Path, url: str) -> None:
    result = await trio.run_process(
        [*self_command("serve"), "--tcp-port", "0", "--http-port", "0", "--feed", url],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )
    # A flag's value is wrong: argparse's form, like every usage error (tests/test_cli_errors.py).
    assert result.returncode == 2
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("trio-echo serve: error: --feed"), stderr


def test_backoff_doubles_up_to_a_cap_and_is_jittered_down_to_half() -> None:
    assert backoff_delay(1, lambda: 1.0) == pytest.approx(0.1)
    assert backoff_delay(3, lambda: 1.0) == pytest.approx(0.4)
    assert backoff_delay(100, lambda: 1.0) == pytest.approx(5.0)
    assert backoff_delay(100, lambda: 0.0) == pytest.approx(2.5)


async def test_metrics_show_the_redis_link(nursery: trio.Nursery, redis: RedisServer) -> None:
    running = await start_server(nursery, feed=redis.url, feed_outbox=123)
    with trio.fail_after(10):
        await wait_until(
            lambda: isinstance(running.hub.feed, RedisFeed) and link(running.hub.feed).online
        )
        _, _, body = await http_request(running.ports.http, "/metrics")
    values = {
        s.name: s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
    assert values["trio_echo_feed_redis_up"] == 1
    assert values["trio_echo_feed_redis_outbox_capacity_events"] == 123
    assert values["trio_echo_feed_redis_reconnects_total"] == 0
    assert "trio_echo_feed_redis_lost_events_total" in values


async def test_json_logs_one_object_per_line_with_connection_fields(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    proc, tcp, _ = await start_serve(
        tmp_path, extra=["--log-format", "json", "--feed", dead, "--idle-timeout", "0.2"]
    )
    try:
        with trio.fail_after(10):
            async with await trio.open_tcp_stream("127.0.0.1", tcp) as s:
                assert await s.receive_some(10) == b""  # closed for idling
    finally:
        err = await stop(proc)
    records = [json.loads(line) for line in err.decode().splitlines()]
    assert records and all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    idle = next(r for r in records if "idle" in r["message"])
    assert idle["transport"] == "tcp" and idle["peer"].startswith("127.0.0.1:")
    assert isinstance(idle["conn"], int)
    assert any(r["level"] == "warning" and r["logger"] == "app.feed.redis" for r in records)


async def test_workers_share_one_feed(tmp_path: Path, redis: RedisServer) -> None:
    proc, _, http = await start_serve(tmp_path, extra=["--workers", "2", "--feed", redis.url])
    try:
        async with ws_connect(f"ws://127.0.0.1:{http}/ws/events") as page:
            json.loads(await page.get_message())
            # Each worker publishes its stats once a second: both reach any worker's page.
            seen = await messages_until(
                page, lambda s: len({e.get("inst") for e in s if e.get("kind") == "stats"}) >= 2
            )
        workers = {e["inst"].rsplit("/", 1)[1] for e in seen if e.get("kind") == "stats"}
        assert workers == {"1", "2"}
    finally:
        await stop(proc)
