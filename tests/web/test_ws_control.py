"""Starting and cancelling runs over /ws/events, and every refusal answered, not crashed."""

from __future__ import annotations

import json
from typing import Any

import trio
from trio_websocket import WebSocketConnection

from conftest import Running
from netclient import ws_connect


async def next_of(ws: WebSocketConnection, kind: str) -> dict[str, Any]:
    """The next message of *kind*, skipping event batches and others."""
    while True:
        message = json.loads(await ws.get_message())
        if message["type"] == kind:
            return message  # type: ignore[no-any-return]


async def events_until(ws: WebSocketConnection, kind: str, run: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    while True:
        message = json.loads(await ws.get_message())
        if message["type"] != "events":
            continue
        seen.extend(message["events"])
        if any(e["kind"] == kind and e.get("run") == run for e in message["events"]):
            return seen


async def test_start_a_run_and_watch_it_to_the_end(running: Running) -> None:
    with trio.fail_after(10):
        async with ws_connect(running.url("/ws/events")) as ws:
            hello = await next_of(ws, "hello")
            assert [s["name"] for s in hello["scenarios"]] == [
                "generators",
                "switch",
                "spawn-join",
                "random-sleep",
                "blocking",
                "many-tasks",
            ]
            await ws.send_message(
                json.dumps(
                    {"type": "start", "scenario": "switch", "params": {"rounds": 2}, "id": "a"}
                )
            )
            reply = await next_of(ws, "reply")
            assert reply["id"] == "a" and reply["result"]["state"] == "running"
            run = reply["run"]
            seen = await events_until(ws, "run_end", run)
    mine = [e for e in seen if e.get("run") == run]
    assert [e["text"] for e in mine if e["kind"] == "output"] == ["A 0", "B 0", "A 1", "B 1"]
    assert next(e for e in mine if e["kind"] == "run_end")["state"] == "done"
    assert {e["name"] for e in mine if e["kind"] == "spawn"} == {"switch", "A", "B"}


async def test_cancel_from_the_channel(running: Running) -> None:
    with trio.fail_after(10):
        async with ws_connect(running.url("/ws/events")) as ws:
            await next_of(ws, "hello")
            await ws.send_message(
                json.dumps({"type": "start", "scenario": "random-sleep", "params": {"count": 1000}})
            )
            run = (await next_of(ws, "reply"))["run"]
            await ws.send_message(json.dumps({"type": "cancel", "run": run, "id": 2}))
            assert (await next_of(ws, "reply"))["id"] == 2
            seen = await events_until(ws, "run_end", run)
    assert (
        next(e for e in seen if e["kind"] == "run_end" and e["run"] == run)["state"] == "cancelled"
    )


async def test_bad_messages_get_clear_errors_and_the_connection_lives_on(running: Running) -> None:
    bad = [
        ("not json", "expected a JSON object"),
        ('{"type": "start", "scenario": "nope", "id": 1}', "no scenario 'nope'"),
        (
            '{"type": "start", "scenario": "many-tasks", "params": {"tasks": 1000001}, "id": 2}',
            "outside 1..100,000",
        ),
        (
            '{"type": "start", "scenario": "spawn-join", "params": {"sleep": "1"}}',
            "expected a number",
        ),
        ('{"type": "cancel", "run": "r404"}', "no run 'r404'"),
        (json.dumps({"type": "start", "scenario": "x" * 20000}), "at most 16384 bytes"),
    ]
    with trio.fail_after(10):
        async with ws_connect(running.url("/ws/events")) as ws:
            await next_of(ws, "hello")
            for text, expected in bad:
                await ws.send_message(text)
                error = await next_of(ws, "error")
                assert expected in error["message"], (text, error)
            await ws.send_message(json.dumps({"type": "start", "scenario": "generators", "id": 9}))
            assert (await next_of(ws, "reply"))["id"] == 9
    assert running.hub.runner.runs()[-1]["scenario"] == "generators"


async def test_a_flood_of_control_messages_is_refused_past_the_rate(running: Running) -> None:
    with trio.fail_after(10):
        async with ws_connect(running.url("/ws/events")) as ws:
            await next_of(ws, "hello")
            for i in range(40):
                await ws.send_message(json.dumps({"type": "cancel", "run": "r0", "id": i}))
            answers = [await next_of(ws, "error") for _ in range(40)]
    limited = [a for a in answers if "too many control messages" in a["message"]]
    assert 15 <= len(limited) <= 25  # a burst of 20 went through, the rest were refused
    assert all(a["id"] is not None for a in answers)


async def test_the_trace_of_a_run_downloads(running: Running) -> None:
    from netclient import http_request

    record = running.hub.runner.start("spawn-join", {"n": 1})
    with trio.fail_after(5):
        await record.finished.wait()
        status, headers, body = await http_request(
            running.ports.http, f"/api/runs/{record.id}/trace.json"
        )
        assert status == 200
        assert "attachment" in headers["content-disposition"]
        trace = json.loads(body)
        names = [e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "thread_name"]
        assert sorted(names) == ["f(1) #1", "f(1) #2", "f(1) #3", "run", "spawn-join"]
        status, _, _ = await http_request(running.ports.http, "/api/runs/r999/trace.json")
        assert status == 404


async def test_hello_lists_finished_runs_with_their_summary_and_the_limits(
    running: Running,
) -> None:
    record = running.hub.runner.start("random-sleep", {"count": 1, "scale": 0.01, "seed": 7})
    with trio.fail_after(5):
        await record.finished.wait()
        async with ws_connect(running.url("/ws/events")) as ws:
            hello = await next_of(ws, "hello")
    listed = next(r for r in hello["runs"] if r["id"] == record.id)
    assert listed["state"] == "done" and listed["summary"] == {"seed": 7} and listed["error"] == ""
    assert hello["limits"]["block_threshold"] == running.hub.settings.block_threshold
    assert hello["limits"]["keep_runs"] >= 1
