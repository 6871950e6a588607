"""The agent's parts in this process: the probe's records match the wire, the watchdog names a
stuck step with its line, the tee passes output through unchanged, the buffer is bounded."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

from trio_echo_agent import wire
from trio_echo_agent.exporter import CAPACITY, Exporter
from trio_echo_agent.probe import LoopClock, Probe, Watchdog
from trio_echo_agent.snapshot import take
from trio_echo_agent.tee import MAX_LINE_CHARS, LineTee


def run_probed(async_fn: Any) -> list[tuple[Any, ...]]:
    """Run *async_fn* under a fresh trio.run with a Probe; return its records."""
    records: list[tuple[Any, ...]] = []
    probe = Probe(1, records.append, block_threshold=0.05)
    probe.steps_on = True

    async def main() -> None:
        await async_fn(probe)

    trio.run(main, instruments=[probe, probe.step_hooks])
    return records


def test_probe_records_decode_as_wire_messages() -> None:
    async def program(probe: Probe) -> None:
        async def child() -> None:
            await trio.sleep(0.001)
            time.sleep(0.06)  # noqa: ASYNC251 - a block on purpose

        async with trio.open_nursery() as nursery:
            nursery.start_soon(child, name="kid")

    records = run_probed(program)
    decoded = [wire.decode(wire.encode_line(r).rstrip(b"\n")) for r in records]
    spawns = {m.name: m for m in decoded if isinstance(m, wire.Spawn)}
    assert set(spawns) == {"test_agent.run_probed.<locals>.main", "kid"}
    main = spawns["test_agent.run_probed.<locals>.main"]
    assert main.parent == 0 and spawns["kid"].parent == main.task
    assert spawns["kid"].nursery != main.nursery
    blocks = [m for m in decoded if isinstance(m, wire.Block)]
    assert [b.name for b in blocks] == ["kid"] and blocks[0].dur >= 0.06
    steps = [m for m in decoded if isinstance(m, wire.Step) and m.task == spawns["kid"].task]
    assert sum(s.count for s in steps) == 2  # the kid ran twice: before and after its sleep
    exits = {m.task for m in decoded if isinstance(m, wire.Exit)}
    assert exits == {main.task, spawns["kid"].task}


def test_in_loop_snapshot_names_tasks_scopes_and_lines() -> None:
    taken: list[list[dict[str, Any]]] = []

    async def program(probe: Probe) -> None:
        async def sleeper() -> None:
            with trio.move_on_after(60):
                await trio.sleep_forever()  # SLEEPER

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sleeper, name="sleeper")
            await trio.testing.wait_all_tasks_blocked()
            assert probe.root is not None
            taken.append(take(probe.root, probe.task_id, probe.nursery_id)[0])
            sleeper_id = next(e["id"] for e in taken[0] if e["name"] == "sleeper")
            taken.append(take(probe.root, probe.task_id, probe.nursery_id, only=sleeper_id)[0])
            nursery.cancel_scope.cancel()

    run_probed(program)
    listed, (detail,) = taken
    sleeper = next(e for e in listed if e["name"] == "sleeper")
    main = next(e for e in listed if e["name"].endswith(".main"))
    # The list: each task's await chain read from its coroutines, the nurseries it opened.
    assert sleeper["state"] == "waiting" and sleeper["parent"] == main["id"]
    assert sleeper["where"][0]["function"] == "sleeper"
    assert sleeper["where"][0]["file"] == __file__
    assert main["scopes"] == ["nursery (1 tasks)"]
    # One task: stackscope's full picture, with the cancel scope it sits in.
    assert detail["id"] == sleeper["id"] and detail["where"][0]["function"] == "sleeper"
    assert any(s.startswith("cancel scope, deadline in") for s in detail["scopes"])


@pytest.mark.parametrize("steps", [True, False], ids=["step-hooks", "sampled"])
def test_watchdog_names_the_stuck_line_while_stuck(steps: bool) -> None:
    seen: list[tuple[str, float, list[dict[str, Any]]]] = []
    # With the step hooks the clock knows the step exactly; without, the watchdog samples.
    records: list[tuple[Any, ...]] = []
    clock = Probe(1, records.append, block_threshold=0.05)
    instruments: list[trio.abc.Instrument] = [clock]
    if steps:
        instruments.append(clock.step_hooks)

    def on_stall(c: LoopClock, task: Any, start: float, held: float, frames: list[Any]) -> None:
        seen.append((task.name if task else "?", held, frames))

    watchdog = Watchdog(lambda: [clock], 0.1, on_stall)

    async def main() -> None:
        async def stuck() -> None:
            watchdog.start()
            time.sleep(0.5)  # noqa: ASYNC251  STUCK-HERE: the stall under test
            watchdog.stop()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(stuck, name="stuck")

    trio.run(main, instruments=instruments)
    assert seen, "the watchdog reported nothing"
    name, held, frames = seen[0]
    assert name == "stuck" and held >= 0.1
    assert frames[-1]["function"] == "stuck" and frames[-1]["file"] == __file__
    source = Path(__file__).read_text().splitlines()
    line = next(i for i, text in enumerate(source, 1) if "STUCK-HERE" in text)
    assert frames[-1]["line"] == line
    # One report per STALL_REPEAT (1 s): a 0.5 s stall is reported once.
    assert len(seen) == 1
    # Then the block with the full duration closes it (measured to within a poll if sampled).
    (block,) = [r for r in records if r[0] == "block"]
    assert block[3] == "stuck" and block[5] >= 0.5


def test_tee_passes_through_and_attributes_lines() -> None:
    out = io.StringIO()
    records: list[tuple[Any, ...]] = []
    owner = [(1, 7)]
    tee = LineTee(out, "stdout", lambda: owner[0], records.append)  # type: ignore[arg-type]
    tee.write("hel")
    tee.write("lo\nsecond")
    owner[0] = (1, 8)
    tee.write(" line from 8\n")
    tee.write("x" * (MAX_LINE_CHARS + 10))
    tee.flush_pending()
    assert out.getvalue() == "hello\nsecond line from 8\n" + "x" * (MAX_LINE_CHARS + 10)
    lines = [(r[2], r[4]) for r in records]
    assert lines == [
        (7, "hello"),
        (7, "second"),  # another task wrote: the unfinished line is handed over as is
        (8, " line from 8"),
        (8, "x" * MAX_LINE_CHARS),
        (8, "x" * 10),
    ]
    assert tee.encoding == out.encoding  # everything else is the wrapped stream's


def test_exporter_buffer_is_bounded_and_counts_drops() -> None:
    exporter = Exporter("/nonexistent/agent.sock", lambda request: None)
    for i in range(CAPACITY + 25):
        exporter.put(("out", 1, 0, "stdout", str(i), 0.0))
    assert exporter.dropped == 25
    exporter.start()  # cannot connect: gives up, keeps nothing from now on
    exporter.close()
    exporter.put(("out", 1, 0, "stdout", "late", 0.0))
    assert exporter.broken


@pytest.mark.parametrize("line", [b"[]", b'["spawn", 1]', b'{"op": "hello"}', b"not json"])
def test_wire_rejects_what_is_not_a_message(line: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        wire.decode(line)
