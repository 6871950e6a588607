"""Pure: an agent's messages become feed events with feed ids; ``ps``/``pstree`` text."""

from __future__ import annotations

import itertools
from typing import Any

from app.feed import events as ev
from app.watch.pstext import ps, pstree
from app.watch.session import Session
from trio_echo_agent import wire


def make_session() -> tuple[Session, list[ev.Event]]:
    published: list[ev.Event] = []
    ids = itertools.count(100)
    runs = itertools.count(1)

    def publish(event: ev.Event, at: float | None = None) -> ev.Event:
        published.append(event)
        return event

    session = Session(publish, lambda: next(ids), lambda t: t - 1000.0, lambda: f"w{next(runs)}")
    return session, published


def feed_one_run(session: Session) -> None:
    for msg in (
        wire.Hello(pid=42, argv=["app.py"]),
        wire.RunStart(run=1, t=1000.0),
        wire.Spawn(run=1, task=1, name="main", parent=0, nursery=2, t=1000.1),
        wire.Spawn(run=1, task=3, name="child", parent=1, nursery=4, t=1000.2),
        wire.Output(run=1, task=3, stream="stdout", text="hi", t=1000.3),
        wire.Stall(
            run=1,
            task=3,
            name="child",
            t=1000.3,
            seconds=1.2,
            frames=[wire.Frame("app.py", 7, "child")],
        ),
    ):
        session.handle(msg)


def test_ids_are_mapped_to_feed_lanes_and_runs() -> None:
    session, published = make_session()
    feed_one_run(session)
    start, main, child, out, stall = published
    assert isinstance(start, ev.RunStart) and start.run == "w1" and start.scenario == "watch"
    assert start.params == {"pid": 42, "argv": ["app.py"]}
    assert isinstance(main, ev.Spawn) and isinstance(child, ev.Spawn)
    assert child.parent == main.task and main.parent == 0
    assert child.nursery != main.nursery and child.nursery > 0
    assert isinstance(out, ev.Output) and out.task == child.task and out.stream == "stdout"
    assert isinstance(stall, ev.Stall) and stall.task == child.task
    assert stall.frames == [ev.StackFrame("app.py", 7, "child")]


def test_a_snapshot_is_translated_and_a_run_end_forgets_the_run() -> None:
    session, published = make_session()
    feed_one_run(session)
    child_lane = session.lane(1, 3)
    reply: list[dict[str, Any]] = [
        {
            "run": 1,
            "pid": 42,
            "tasks": [
                {"id": 3, "name": "child", "parent": 1, "nursery": 4, "state": "waiting"},
                {"id": 99, "name": "unknown", "parent": 1, "nursery": 4, "state": "waiting"},
            ],
        }
    ]
    (run,) = session.translate(reply)
    assert run["run"] == "w1" and run["pid"] == 42
    (task,) = run["tasks"]  # a task the feed never heard of is left out
    assert task["id"] == child_lane and task["parent"] == session.lane(1, 1)
    assert session.find(child_lane) == (1, 3)
    session.handle(wire.Exit(run=1, task=3, t=1001.0, steps=2, busy=0.1))
    session.handle(wire.RunEnd(run=1, t=1002.0, error="ValueError"))
    end = published[-1]
    assert isinstance(end, ev.RunEnd) and end.state == "error" and end.error == "ValueError"
    assert session.translate(reply) == [] and session.lane(1, 1) == 0


def test_a_process_that_dies_inside_trio_run_ends_its_runs() -> None:
    session, published = make_session()
    feed_one_run(session)
    session.close()
    end = published[-1]
    assert isinstance(end, ev.RunEnd) and end.state == "error"


def test_dropped_records_are_counted_and_shown() -> None:
    session, published = make_session()
    session.handle(wire.Dropped(count=5))
    session.handle(wire.Dropped(count=3))
    assert session.dropped == 8
    assert isinstance(published[-1], ev.Notice) and "8 in all" in published[-1].text


RUNS = [
    {
        "run": "w1",
        "pid": 42,
        "tasks": [
            {
                "id": 1,
                "name": "main",
                "parent": 0,
                "nursery": 2,
                "state": "waiting",
                "where": [{"file": "/x/app.py", "line": 9, "function": "main"}],
            },
            {
                "id": 3,
                "name": "a",
                "parent": 1,
                "nursery": 4,
                "state": "waiting",
                "where": [
                    {"file": "/x/app.py", "line": 5, "function": "work"},
                    {"file": "/v/trio/_timeouts.py", "line": 71, "function": "sleep_forever"},
                ],
            },
            {"id": 5, "name": "b", "parent": 1, "nursery": 6, "state": "stalled", "where": []},
            {"id": 7, "name": "gone", "parent": 1, "nursery": 4, "state": "exited", "where": []},
        ],
    }
]


def test_ps_is_a_table_with_where_each_task_waits() -> None:
    header, *rows = ps(RUNS).splitlines()
    assert header.split() == ["RUN", "PID", "TASK", "PARENT", "STATE", "NAME", "WHERE"]
    a = next(r for r in rows if " a " in r)
    assert a.split()[:6] == ["w1", "42", "3", "1", "waiting", "a"]
    assert a.endswith("work /x/app.py:5 -> sleep_forever")
    assert len(rows) == 4


def test_pstree_nests_tasks_under_their_parent_and_nursery() -> None:
    tree = pstree(RUNS).splitlines()
    assert tree == [
        "run w1 (pid 42, 3 tasks)",
        "└── main [1] waiting at main /x/app.py:9",
        "    ├── nursery 4",
        "    │   └── a [3] waiting at work /x/app.py:5 -> sleep_forever",
        "    └── nursery 6",
        "        └── b [5] stalled",
    ]
