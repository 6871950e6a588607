"""``/ws/events``: hello, replay, live batches, gaps, resume, and the Origin rule."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from trio_websocket import WebSocketConnection

from app.feed.events import Notice
from app.feed.live import Feed
from app.server import Server

from conftest import Running, make_settings, wait_until
from netclient import upgrade_status, ws_connect


async def next_json(ws: WebSocketConnection) -> dict[str, Any]:
    message = await ws.get_message()
    assert isinstance(message, str), "the feed speaks text"
    decoded: dict[str, Any] = json.loads(message)
    return decoded


async def events_until(ws: WebSocketConnection, done: Any) -> list[dict[str, Any]]:
    """Collect events from batches until *done(events)* is true."""
    seen: list[dict[str, Any]] = []
    while not done(seen):
        msg = await next_json(ws)
        assert msg["type"] == "events", msg
        seen.extend(msg["events"])
    return seen


async def test_hello_then_replay_then_live_events(ws_server: Running) -> None:
    feed = ws_server.hub.feed
    feed.publish(Notice(level="info", text="before anyone watched"))
    with trio.fail_after(5):
        async with ws_connect(ws_server.url("/ws/events")) as ws:
            hello = await next_json(ws)
            assert hello["type"] == "hello"
            assert hello["version"] and hello["started_at"] > 0
            assert isinstance(hello["scenarios"], list)
            assert hello["listeners"]["tcp"].endswith(f":{ws_server.ports.tcp}")
            # The server's facts the page would otherwise copy: from here, never hard-coded.
            assert hello["final_states"] == ["done", "cancelled", "timeout", "error"]
            assert hello["echo_run"] == "echo"
            assert hello["limits"]["block_threshold"] == ws_server.hub.settings.block_threshold
            lanes = {s["name"]: s["lanes"] for s in hello["scenarios"]}
            assert lanes["many-tasks"] is False and lanes["spawn-join"] is True
            replay = await events_until(ws, lambda seen: any(e["kind"] == "notice" for e in seen))
            assert [e["text"] for e in replay if e["kind"] == "notice"] == ["before anyone watched"]
            # Live: an echo connection appears as a task, with its totals when it closes.
            async with await trio.open_tcp_stream(*ws_server.tcp) as s:
                await s.send_all(b"hey")
                assert await s.receive_some(10) == b"hey"
            live = await events_until(ws, lambda seen: any(e["kind"] == "conn_close" for e in seen))
    opened = next(e for e in live if e["kind"] == "conn_open")
    closed = next(e for e in live if e["kind"] == "conn_close")
    assert opened["task"] == closed["task"] and opened["run"] == "echo"
    assert (closed["bytes_in"], closed["bytes_out"]) == (3, 3)
    seqs = [e["seq"] for e in replay + live]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


async def test_reader_behind_the_ring_gets_a_gap_then_the_rest(nursery: trio.Nursery) -> None:
    server = Server(make_settings(), feed=Feed(capacity=64))
    ports = await nursery.start(server.run)
    feed = server.hub.feed
    for i in range(200):
        feed.publish(Notice(level="info", text=f"n{i}"))
    first = feed.last_seq - 64 + 1  # the ring is full: it holds the last 64
    with trio.fail_after(5):
        async with ws_connect(f"ws://127.0.0.1:{ports.http}/ws/events?since=0") as ws:
            assert (await next_json(ws))["type"] == "hello"
            gap = await next_json(ws)
            assert gap == {"type": "gap", "missed": first - 1, "resume": first - 1}
            batch = await next_json(ws)
            assert batch["events"][0]["seq"] == first


async def test_resume_with_since_continues_where_the_reader_left(ws_server: Running) -> None:
    feed = ws_server.hub.feed
    feed.publish(Notice(level="info", text="one"))
    with trio.fail_after(5):
        async with ws_connect(ws_server.url("/ws/events")) as ws:
            await next_json(ws)
            seen = await events_until(ws, lambda s: any(e.get("text") == "one" for e in s))
        last = seen[-1]["seq"]
        for text in ("two", "three"):
            feed.publish(Notice(level="info", text=text))
        async with ws_connect(ws_server.url(f"/ws/events?since={last}")) as ws:
            await next_json(ws)
            resumed = await events_until(ws, lambda s: any(e.get("text") == "three" for e in s))
    assert resumed[0]["seq"] == last + 1
    assert [e["text"] for e in resumed if e["kind"] == "notice"] == ["two", "three"]


@pytest.mark.parametrize(
    ("path", "origin", "status"),
    [
        ("/ws/events", "http://evil.example", 403),
        ("/ws/events", "http://127.0.0.1:1", 403),  # same host, other port: another origin
        ("/ws/events", "{own}", 101),
        ("/ws/events", None, 101),  # not a browser
        ("/ws/events?since=yesterday", None, 400),
        ("/ws/events?since=-1", None, 400),
    ],
)
async def test_origin_rule_and_query_validation(
    ws_server: Running, path: str, origin: str | None, status: int
) -> None:
    own = f"http://127.0.0.1:{ws_server.ports.http}"
    headers = [] if origin is None else [("Origin", origin.format(own=own))]
    with trio.fail_after(5):
        assert await upgrade_status(ws_server.ports.http, path, headers) == status


async def test_subscribers_are_counted(ws_server: Running) -> None:
    feed = ws_server.hub.feed
    with trio.fail_after(5):
        async with ws_connect(ws_server.url("/ws/events")) as ws:
            await next_json(ws)
            assert feed.subscribers == 1
        await wait_until(lambda: feed.subscribers == 0)
