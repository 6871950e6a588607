"""The timeline's pure modules (static/timeline-model.js, timeline-layout.js) on their own.

They import no DOM, so they are tested like the server's pure core: events in, rows out, no
loop, no drawing. Chromium runs them (it is the one JavaScript engine every test machine has
here); each test imports the modules the page itself serves.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page

pytestmark = pytest.mark.browser

# Builds a model from a list of events and lays it out; `shape` is one line per row.
SETUP = """
const { TimelineModel } = await import("/timeline-model.js");
const layout = await import("/timeline-layout.js");
const model = new TimelineModel();
// What a server's hello says (app/feed/protocol.py): the page keeps no copy of these facts.
model.learn({
    final_states: ["done", "cancelled", "timeout", "error"],
    echo_run: "echo",
    scenarios: [{ name: "many-tasks", lanes: false }],
});
const shape = (rows) => rows.map((r) =>
    r.type === "lane" ? `${r.depth} ${r.lane.name}`
    : r.type === "nursery" ? `${r.depth} [${r.key} ${r.lanes.length} ${r.collapsed ? "+" : "-"}]`
    : r.type === "more" ? `${r.depth ?? ""} +${r.hidden}`
    : r.type);
const spawn = (run, task, name, parent, nursery = 0) =>
    model.onSpawn({ run, task, name, parent, nursery, t: 1 });
model.onRunStart({ run: "w1", scenario: "app.py", t: 0 });
"""


def run_js(page: Page, body: str, arg: Any = None) -> Any:
    """Run *body* (an async function body after SETUP, given `arg`) in the page."""
    return page.evaluate(f"async (arg) => {{ {SETUP}\n{body} }}", arg)


def test_tasks_without_nursery_ids_are_indented_under_their_parent(page: Page) -> None:
    """serve's scenarios say only `parent`: one implied nursery per task, no nursery rows."""
    shape = run_js(
        page,
        """
        spawn("w1", 1, "spawn-join", 99);  // 99: the runner's task, not in the run
        for (const k of [1, 2, 3]) spawn("w1", 1 + k, `f(4) #${k}`, 1);
        spawn("w1", 5, "inner", 3);
        return shape(layout.buildRows(model).rows);
        """,
    )
    assert shape == ["group", "0 spawn-join", "1 f(4) #1", "1 f(4) #2", "2 inner", "1 f(4) #3"]


@pytest.mark.parametrize(("children", "collapsed"), [(200, False), (201, True)])
def test_a_nursery_over_the_threshold_starts_collapsed(
    page: Page, children: int, collapsed: bool
) -> None:
    """COLLAPSE_ABOVE = 200: a nursery of 201 is one row with its count; 200 are lanes."""
    result = run_js(
        page,
        """
        spawn("w1", 1, "main", 0);
        for (let k = 0; k < arg; k += 1) spawn("w1", 10 + k, `w${k}`, 1, 5);
        const { rows } = layout.buildRows(model);
        return { limit: layout.COLLAPSE_ABOVE, shape: shape(rows).slice(0, 4), rows: rows.length };
        """,
        children,
    )
    assert result["limit"] == 200
    if collapsed:
        assert result["shape"] == ["group", "0 main", "1 [n5 201 +]"]
    else:
        assert result["shape"] == ["group", "0 main", "1 w0", "1 w1"]
        assert result["rows"] == 2 + children


def test_toggles_and_the_expanded_cap(page: Page) -> None:
    """A click expands a collapsed nursery (at most MAX_EXPANDED lanes) or collapses one."""
    result = run_js(
        page,
        """
        spawn("w1", 1, "main", 0);
        for (let k = 0; k < 1200; k += 1) spawn("w1", 10 + k, `w${k}`, 1, 5);
        const open = new Map([[layout.toggleKey("w1", "n5"), false]]);
        const expanded = shape(layout.buildRows(model, { collapsed: open }).rows);
        const shut = new Map([[layout.toggleKey("w1", "n5"), true]]);
        return {
            cap: layout.MAX_EXPANDED,
            expanded: [expanded.length, ...expanded.slice(0, 3), expanded.at(-1)],
            shut: shape(layout.buildRows(model, { collapsed: shut }).rows),
        };
        """,
    )
    cap = result["cap"]
    assert cap == 500
    assert result["expanded"] == [3 + cap + 1, "group", "0 main", "1 [n5 1200 -]", "2 +700"]
    assert result["shut"] == ["group", "0 main", "1 [n5 1200 +]"]


def test_a_crowded_run_collapses_its_small_nurseries(page: Page) -> None:
    """Over CROWDED_RUN tasks, nurseries over CROWDED_COLLAPSE_ABOVE (8) start collapsed.

    main's nursery of 111 pools, each pool's nursery of 9 workers: 1,111 tasks. Opened by
    hand, main's nursery lists the pools, each with its workers folded.
    """
    shape = run_js(
        page,
        """
        spawn("w1", 1, "main", 0);
        let task = 2;
        for (let pool = 0; pool < 111; pool += 1) {
            const owner = task++;
            spawn("w1", owner, `pool ${pool}`, 1, 1);
            for (let k = 0; k < 9; k += 1) spawn("w1", task++, `p${pool} w${k}`, owner, 100 + pool);
        }
        const folded = shape(layout.buildRows(model).rows);
        const open = new Map([[layout.toggleKey("w1", "n1"), false]]);
        return [folded, shape(layout.buildRows(model, { collapsed: open }).rows)];
        """,
    )
    folded, opened = shape
    assert folded == ["group", "0 main", "1 [n1 111 +]"]
    assert opened[:6] == ["group", "0 main", "1 [n1 111 -]", "2 pool 0", "3 [n100 9 +]", "2 pool 1"]
    assert len(opened) == 3 + 2 * 111


def test_one_runs_rows_are_capped(page: Page) -> None:
    """3,000 one-task nurseries under one task: MAX_RUN_ROWS rows, then one "+N more"."""
    result = run_js(
        page,
        """
        spawn("w1", 1, "main", 0);
        for (let k = 0; k < 3000; k += 1) spawn("w1", 10 + k, `w${k}`, 1, 10 + k);
        const { rows } = layout.buildRows(model);
        const lanes = rows.filter((r) => r.type === "lane").length;
        return { cap: layout.MAX_RUN_ROWS, rows: rows.length, lanes, last: shape(rows).at(-1) };
        """,
    )
    # The run's rows: main, then (nursery, lane) pairs until the cap; the header and the
    # "+N more" row are outside it.
    assert result["rows"] == 1 + result["cap"] + 1
    assert result["last"] == f"0 +{3001 - result['lanes']}"


def test_the_filter_keeps_the_path_to_each_match_and_opens_its_nursery(page: Page) -> None:
    """Matches (case-insensitive) with every task above them; other runs' rows go."""
    result = run_js(
        page,
        """
        model.onRunStart({ run: "w2", scenario: "other.py", t: 5 });
        spawn("w2", 900, "unrelated", 0);
        spawn("w1", 1, "main", 0);
        spawn("w1", 2, "server", 1, 1);
        spawn("w1", 3, "ticker", 1, 2);
        for (let k = 0; k < 300; k += 1) spawn("w1", 10 + k, `Handler ${k}`, 2, 3);
        const found = layout.buildRows(model, { filter: "handler 29" });
        const none = layout.buildRows(model, { filter: "nothing like it" });
        return {
            shape: shape(found.rows),
            matches: found.matches,
            none: [none.matches, none.rows.length],
        };
        """,
    )
    assert result["matches"] == 11  # handler 29 and 290..299
    # main opened two nurseries (one row each; the ticker's has no match, so it goes), and
    # the server's nursery of 300 is open, with its count, listing the matches only.
    assert result["shape"][:5] == ["group", "0 main", "1 [n1 1 -]", "2 server", "3 [n3 300 -]"]
    assert result["shape"][5:7] == ["4 Handler 29", "4 Handler 290"]
    assert len(result["shape"]) == 5 + 11
    assert result["none"] == [0, 0]


def test_a_stall_lasts_until_its_block_or_the_runs_end(page: Page) -> None:
    """The model keeps the last `stall` of each loop until the `block` that closes it."""
    result = run_js(
        page,
        """
        const frames = [{ file: "a.py", line: 3, function: "spin" }];
        model.onStall({ run: "w1", task: 7, name: "spin", seconds: 1.5, t: 10, frames });
        const during = { ...model.stalls.get("w1") };
        model.onStall({ run: "w1", task: 7, name: "spin", seconds: 2.5, t: 11, frames });
        const later = model.stalls.get("w1").seconds;
        model.onBlock({ run: "w1", task: 7, name: "spin", t: 8.5, dur: 3.0 });
        const afterBlock = model.stalls.size;
        // A report that arrives after its block (published through the stuck loop itself)
        // is old news: not kept. A later stall of the same task is new.
        const late = model.onStall({ run: "w1", task: 7, name: "spin", seconds: 2.9, t: 11.6 });
        const afterLate = model.stalls.size;
        const fresh = model.onStall({ run: "w1", task: 7, name: "spin", seconds: 1, t: 15 });
        model.onBlock({ run: "w1", task: 7, name: "spin", t: 14, dur: 1.2 });
        model.onStall({ run: "w1", task: 8, name: "spin2", seconds: 1, t: 20, frames });
        model.onRunEnd({ run: "w1", state: "error", t: 21 });
        return {
            during, later, afterBlock, late, afterLate, fresh, afterEnd: model.stalls.size,
        };
        """,
    )
    assert (result["late"], result["afterLate"], result["fresh"]) == (False, 0, True)
    assert result["during"]["since"] == pytest.approx(8.5)
    assert result["during"]["frames"] == [{"file": "a.py", "line": 3, "function": "spin"}]
    assert result["later"] == 2.5
    assert result["afterBlock"] == 0
    assert result["afterEnd"] == 0


def test_a_run_known_only_from_steps_is_counted_then_adopted(page: Page) -> None:
    """Steps of tasks (and a run) the page never saw start: counted, then adopted (/api/tasks)."""
    result = run_js(
        page,
        """
        model.groups.delete("w1");  // SETUP's run: this test is about another one
        for (const task of [5, 6, 6, 7]) model.onStep({ run: "w9", task, t: 3, dur: 0.01 });
        model.onExit({ run: "w9", task: 7, t: 3.5 });  // gone: nothing to load for it
        model.onStep({ run: "echo", task: 99, t: 3, dur: 0.01 });  // a connection: not a task
        const before = shape(layout.buildRows(model).rows);
        const unseen = [...model.groups.get("w9").unseen];
        const added = model.adoptTasks([{ run: "w9", pid: 77, tasks: [
            { id: 5, name: "main", parent: 0, nursery: 1, state: "waiting" },
            { id: 6, name: "child", parent: 5, nursery: 2, state: "running" },
            { id: 8, name: "done", parent: 5, nursery: 2, state: "exited" },
        ] }], 4);
        const group = model.groups.get("w9");
        return {
            before, unseen, added, state: group.state, scenario: group.scenario,
            after: shape(layout.buildRows(model).rows), left: group.unseen.size,
        };
        """,
    )
    assert result["before"] == ["group", "unseen"]
    assert result["unseen"] == [5, 6]
    assert result["added"] == 2
    assert (result["state"], result["scenario"]) == ("running", "pid 77")
    assert result["after"] == ["group", "0 main", "1 child"]
    assert result["left"] == 0


def test_serves_own_answer_fills_the_scenario_runs(page: Page) -> None:
    """serve answers /api/tasks as one run ("serve"): its tasks go to the runs that named them."""
    result = run_js(
        page,
        """
        model.onRunStart({ run: "r3", scenario: "spawn-join", t: 1 });
        model.onStep({ run: "r3", task: 41, t: 2, dur: 0.01 });
        const added = model.adoptTasks([{ run: "serve", pid: 1, tasks: [
            { id: 2, name: "ticker", parent: 0, nursery: 0, state: "waiting" },
            { id: 41, name: "f(5) #1", parent: 40, nursery: 0, state: "waiting" },
        ] }], 3);
        return {
            added,
            run: model.lanes.get(41)?.run,
            plumbing: model.lanes.has(2),
            groups: [...model.groups.keys()],
        };
        """,
    )
    assert result == {"added": 1, "run": "r3", "plumbing": False, "groups": ["w1", "r3"]}


def test_a_watched_runs_title_is_its_command(page: Page) -> None:
    """A run whose params carry `argv` is called by its command, folders left out, cut."""
    titles = run_js(
        page,
        """
        const { runTitle } = await import("/timeline-model.js");
        return [
            runTitle({ scenario: "spawn-join", params: { tasks: 3 } }),
            runTitle({ scenario: "watch", params: { pid: 7, argv: ["/srv/app/main.py", "-v"] } }),
            runTitle({ scenario: "watch", params: { argv: ["x".repeat(60)] } }),
        ];
        """,
    )
    assert titles[:2] == ["spawn-join", "main.py -v"]
    assert titles[2] == "x" * 47 + "…"


def test_server_facts_come_from_hello(page: Page) -> None:
    """Run states, the echo run and the scenarios without lanes are the server's (hello)."""
    result = run_js(
        page,
        """
        model.learn({
            final_states: ["finished"],
            echo_run: "conns",
            scenarios: [{ name: "quiet", lanes: false }, { name: "loud", lanes: true }],
        });
        model.onRunStart({ run: "r1", scenario: "quiet", t: 1 });
        model.onRunStart({ run: "r2", scenario: "loud", t: 2 });
        model.onSpawn({ run: "r2", task: 5, name: "t", parent: 0, t: 2 });
        model.onConnOpen({ run: "conns", task: 9, transport: "tcp", peer: "1.2.3.4:5", t: 3 });
        model.onRunEnd({ run: "r2", state: "finished", t: 4 });
        const rows = layout.buildRows(model).rows;
        return {
            shape: rows.map((r) => `${r.type} ${r.group.id}`),
            over: [model.isOver(model.groups.get("r2")), model.isOver({ state: "done" })],
            echo: model.echo?.isEcho,
        };
        """,
    )
    assert result["shape"] == [
        "group r2",
        "lane r2",
        "group r1",
        "summary r1",
        "group w1",
        "group conns",
        "lane conns",
    ]
    assert result["over"] == [True, False]
    assert result["echo"] is True


def test_another_instances_runs_and_connections_are_kept_apart(page: Page) -> None:
    """Shared feed: run ids repeat per instance, so another's are "r3@inst" groups, ours plain."""
    result = run_js(
        page,
        """
        model.learn({
            final_states: ["done"],
            echo_run: "echo",
            instances: [{ inst: "a/1/0" }, { inst: "b/2/0" }],
        });
        model.onRunStart({ run: "r3", inst: "a/1/0", scenario: "mine", t: 1 });
        model.onRunStart({ run: "r3", inst: "b/2/0", scenario: "theirs", t: 2 });
        model.onSpawn({ run: "r3", inst: "a/1/0", task: 5, name: "ours", parent: 0, t: 1 });
        model.onSpawn({ run: "r3", inst: "b/2/0", task: 6, name: "other", parent: 0, t: 2 });
        model.onStep({ run: "r3", inst: "b/2/0", task: 66, t: 2, dur: 0.1 });  // no lane
        const conn = (inst, task) =>
            model.onConnOpen({ run: "echo", inst, task, transport: "tcp", peer: "x", t: 3 });
        conn("b/2/0", 8);
        conn("a/1/0", 7);
        model.onStall({ run: "r3", inst: "b/2/0", task: 6, seconds: 1, t: 4 });
        model.onRunEnd({ run: "r3", inst: "a/1/0", state: "done", t: 5 });
        const rows = layout.buildRows(model).rows;
        const g = (id) => model.groups.get(id);
        return {
            shape: rows.map((r) => `${r.type} ${r.group.id} ${r.lane?.run ?? ""}`),
            states: [g("r3").state, g("r3@b/2/0").state],
            inst: [g("r3").inst, g("r3@b/2/0").inst, g("r3@b/2/0").run],
            inspectable: [g("r3").inspectable, g("r3@b/2/0").inspectable, g("echo").inspectable],
            unseen: g("r3@b/2/0").unseen.size,
            stalls: [...model.stalls.keys()],
        };
        """,
    )
    assert result["shape"] == [
        "group r3@b/2/0 ",
        "lane r3@b/2/0 r3@b/2/0",
        "group r3 ",
        "lane r3 r3",
        "group w1 ",
        "group echo ",
        "lane echo echo",
        "group echo@b/2/0 ",
        "lane echo@b/2/0 echo@b/2/0",
    ]
    assert result["states"] == ["done", "running"]
    assert result["inst"] == ["", "b/2/0", "r3"]
    assert result["inspectable"] == [True, False, False]
    # Another instance's tree cannot be loaded from this server: no "load the tree" offer.
    assert result["unseen"] == 0
    assert result["stalls"] == ["r3@b/2/0"]
