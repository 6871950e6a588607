"""Random garbage on the live control channel: every message answered, nothing else disturbed."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import start_server
from netclient import http_request, ws_connect

# Shapes that reach deeper into the validator than random text does.
near_misses = st.fixed_dictionaries(
    {"type": st.sampled_from(["start", "cancel", "stop", "", None, 1])},
    optional={
        "scenario": st.sampled_from(["spawn-join", "many-tasks", "nope", ""]) | st.integers(),
        "params": st.dictionaries(
            st.sampled_from(["tasks", "n", "sleep", "mode", "seed", "zzz"]),
            st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=5) | st.none(),
            max_size=3,
        )
        | st.lists(st.integers(), max_size=2),
        "run": st.text(max_size=5) | st.integers(),
        "id": st.integers() | st.text(max_size=70) | st.lists(st.integers(), max_size=2),
    },
)
garbage = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    near_misses.map(lambda d: json.dumps(d, default=str)),
)


@settings(max_examples=40, deadline=None)
@given(messages=st.lists(garbage, min_size=1, max_size=8))
async def test_garbage_gets_answers_and_the_server_stays_well(messages: list[Any]) -> None:
    # Each example runs in a fresh Trio loop (pytest-trio and Hypothesis), so
    # each gets a fresh server too.
    async with trio.open_nursery() as nursery:
        running = await start_server(nursery, log_level="warning")
        with trio.fail_after(10):
            async with ws_connect(running.url("/ws/events")) as ws:
                assert json.loads(await ws.get_message())["type"] == "hello"
                for message in messages:
                    await ws.send_message(message)
                answers = 0
                while answers < len(messages):
                    reply = json.loads(await ws.get_message())
                    if reply["type"] in ("reply", "error"):
                        answers += 1
                        assert reply["type"] == "reply" or reply["message"]
            status, _, _ = await http_request(running.ports.http, "/healthz")
            assert status == 200
        running.server.stop()


async def test_binding_beyond_loopback_warns(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    running = await start_server(nursery, host="0.0.0.0")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "listening on 0.0.0.0: the echo server and the page are reachable from the network"
    ]
    running.server.stop()
