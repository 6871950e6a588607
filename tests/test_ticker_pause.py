"""A pause of the whole process (SIGSTOP, a VM pause) is not blamed on a task.

The pure rule (app/lagstats.process_paused) with the arithmetic, then a real
``serve`` child stopped with SIGSTOP and continued with SIGCONT.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import trio

from app.lagstats import process_paused

from procs import start_serve

POLL = 0.1  # the watchdog's heartbeat


NONE = (0.0, 0.0)  # no silence of the thread yet


@pytest.mark.parametrize(
    ("lag_start", "lag_end", "cpu", "last_beat", "silence", "paused"),
    [
        # Stopped 2 s from t=10: no CPU; the thread's last beat was just before (not woken yet).
        (10.0, 12.0, 0.001, 9.95, NONE, True),
        # The same, but the thread woke first: its silence spans the whole lag.
        (10.0, 12.0, 0.001, 12.01, (9.95, 12.01), True),
        # The thread woke and beat twice before the loop asked (a loaded host): the silence
        # still covers the lag but its last 0.3 s (the loop catching up).
        (10.0, 12.3, 0.01, 12.2, (9.95, 12.1), True),
        # time.sleep(2) in a task: no CPU either, but the thread kept beating every 0.1 s.
        (10.0, 12.0, 0.001, 11.95, NONE, False),
        # The same, with an old silence (a pause long before) that does not cover this lag.
        (10.0, 12.0, 0.001, 11.95, (5.0, 7.0), False),
        # A task computing for 2 s: the thread may starve of the GIL, but CPU time advanced.
        (10.0, 12.0, 1.9, 9.95, NONE, False),
        # 0.25 s is under three polls: a late beat cannot be told from a pause.
        (10.0, 10.25, 0.0, 9.95, NONE, False),
        # 1 s with 0.05 s of CPU (the probe interval before the stop was busy): still a pause.
        (10.0, 11.0, 0.05, 11.0, (9.9, 11.0), True),
    ],
)
def test_process_paused(
    lag_start: float,
    lag_end: float,
    cpu: float,
    last_beat: float,
    silence: tuple[float, float],
    paused: bool,
) -> None:
    got = process_paused(
        lag_start=lag_start,
        lag_end=lag_end,
        cpu=cpu,
        last_beat=last_beat,
        silence=silence,
        poll=POLL,
    )
    assert got is paused


async def test_sigstop_is_reported_as_a_pause_of_the_process_not_a_task(tmp_path: Path) -> None:
    proc, _, _ = await start_serve(tmp_path)
    assert proc.stderr is not None
    err = b""
    try:
        with trio.fail_after(30):
            await trio.sleep(0.5)  # the ticker and the watchdog are running
            proc.send_signal(signal.SIGSTOP)
            await trio.sleep(1.5)
            proc.send_signal(signal.SIGCONT)
            while b"was paused" not in err:
                chunk = await proc.stderr.receive_some(65536)
                assert chunk, err
                err += chunk
            await trio.sleep(0.3)  # anything else it would say about those 1.5 s
            proc.send_signal(signal.SIGTERM)
            while chunk := await proc.stderr.receive_some(65536):
                err += chunk
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = err.decode()
    [line] = [line for line in text.splitlines() if "was paused" in line]
    assert "WARNING" in line and "no task held the event loop" in line, line
    ms = int(line.split("paused for about ")[1].split(" ms")[0])
    assert 1000 <= ms <= 3000, line  # the 1.5 s stop, as late as the probe saw it
    assert "event loop stalled" not in text, text  # no task is blamed
    assert "Traceback" not in text
