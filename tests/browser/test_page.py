"""The page in a real browser against a real server: what a person sees is what the feed says.

Each test starts its own runs and finds them by the run id the page reports ("Started r7."),
because the server is shared by every test here. Where the assertion is about drawing (step
bars, blocks), it reads the counts the timeline publishes as data-* attributes for the frame
it drew, not pixels.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, WebSocketRoute, expect

from .harness import start_run

pytestmark = pytest.mark.browser

# One or more, as a data-* attribute: the count of what the last frame drew.
SOME = re.compile(r"^[1-9]\d*$")
ZERO = "0"
EVENTS_SOCKET = re.compile(r"/ws/events")


def run_item(page: Page, run: str) -> Locator:
    """The run's entry in the runs list."""
    return page.locator(f'[data-testid="run"][data-run="{run}"]')


def run_group(page: Page, run: str) -> Locator:
    """The run's group header in the timeline (it carries the drawn counts)."""
    return page.locator(f'[data-testid="lane-group"][data-run="{run}"]')


def wait_done(page: Page, run: str, state: str = "done") -> None:
    """Wait until the runs list shows *run* ended in *state*."""
    expect(run_item(page, run)).to_have_attribute("data-state", state)


def console_texts(page: Page, run: str) -> list[str]:
    """The console lines *run* printed, top to bottom."""
    return page.locator(f'[data-testid="console-line"][data-run="{run}"] .text').all_inner_texts()


def label_rows(page: Page) -> list[dict[str, str]]:
    """The timeline's label column, row by row: group headers and lanes, in drawing order."""
    rows: list[dict[str, str]] = page.get_by_test_id("tl-labels").evaluate(
        """root => [...root.children].map(row => ({
            kind: row.dataset.testid || "", run: row.dataset.run || "",
            task: row.dataset.task || "", parent: row.dataset.parent || "",
            depth: row.dataset.depth || "", name: row.textContent.trim(),
        }))"""
    )
    return rows


def test_spawn_join_lanes_and_console_rounds(page: Page) -> None:
    """spawn-join with a sleep: three lanes under the run's task, lines in rounds."""
    expect(page.get_by_test_id("peers")).to_be_hidden()  # no `peers` in hello: nothing shown
    run = start_run(page, "spawn-join", tasks=3, n=4, sleep=0.2)
    lanes = page.locator(f'[data-testid="lane"][data-run="{run}"]')
    expect(lanes).to_have_count(4)  # the scenario's own task and its three f(4) children
    lines = page.locator(f'[data-testid="console-line"][data-run="{run}"]')
    expect(lines).to_have_count(12)
    wait_done(page, run)

    # The lanes sit under the run's header, children indented under the task whose nursery
    # holds them.
    rows = label_rows(page)
    start = rows.index(next(r for r in rows if r["kind"] == "lane-group" and r["run"] == run))
    mine = rows[start + 1 : start + 5]
    assert [r["kind"] for r in mine] == ["lane"] * 4
    root, *children = mine
    assert (root["name"], root["depth"]) == ("spawn-join", "0")
    assert sorted(r["name"] for r in children) == ["f(4) #1", "f(4) #2", "f(4) #3"]
    assert {(r["depth"], r["parent"]) for r in children} == {("1", root["task"])}

    # Every task prints i before any prints i+1 (the order *within* a round is Trio's).
    texts = console_texts(page, run)
    parsed = [re.fullmatch(r"<Task f\(4\) #([1-3])> ([0-3])", text) for text in texts]
    assert all(parsed), texts
    pairs = [(int(m.group(2)), int(m.group(1))) for m in parsed if m]
    assert [i for i, _ in pairs] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3], texts
    for i in range(4):
        assert {k for j, k in pairs if j == i} == {1, 2, 3}, texts
    # Coloured by task: one colour per task, the same for all of its lines.
    colours = lines.evaluate_all(
        "nodes => nodes.map(n => [n.dataset.task, n.style.getPropertyValue('--task-colour')])"
    )
    assert len({c for _, c in colours}) == 3
    assert len({tuple(pair) for pair in colours}) == 3


def test_websocket_echo_box_and_echo_panel(page: Page) -> None:
    """The echo box echoes text as text; TCP and websocket connections show in the panel."""
    text = "hello, trio ✓ <b>not markup</b>"
    page.get_by_test_id("echo-input").fill(text)
    page.get_by_test_id("echo-send").click()
    expect(page.locator('[data-testid="echo-out"] .text')).to_have_text([text])
    expect(page.locator('[data-testid="echo-in"] .text')).to_have_text([text])
    expect(page.locator('[data-testid="echo-conn"][data-transport="ws"]')).to_have_count(1)

    # A TCP client shows up too, and its bytes arrive with the next once-a-second stats.
    host, port = page.locator("#tcp-address").inner_text().rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as client:
        client.sendall(b"ping\n")
        assert client.recv(16) == b"ping\n"
        tcp_row = page.locator('[data-testid="echo-conn"][data-transport="tcp"]')
        expect(tcp_row).to_have_count(1)
        expect(tcp_row.locator("td.num").first).to_have_text("5 B")
    expect(tcp_row).to_have_count(0)  # closed: gone from the open connections


def test_cancel_a_long_run(page: Page) -> None:
    """A run that would take minutes is cancelled from the page and ends as cancelled."""
    run = start_run(page, "random-sleep", count=1000, scale=1)
    item = run_item(page, run)
    expect(item).to_have_attribute("data-state", "running")
    expect(page.locator(f'[data-testid="console-line"][data-run="{run}"]').first).to_be_visible()
    item.get_by_test_id("run-cancel").click()
    wait_done(page, run, "cancelled")
    expect(item.get_by_test_id("run-state")).to_have_text("cancelled")
    expect(item.get_by_test_id("run-cancel")).to_have_count(0)
    expect(run_group(page, run)).to_have_attribute("data-state", "cancelled")
    # The seed the server picked is reported in the summary.
    expect(item.get_by_test_id("run-summary")).to_contain_text("seed")


def test_bad_parameters_are_explained_not_crashed(page: Page) -> None:
    """Out of bounds: the form says so without sending; the server's refusal is shown too."""
    page.get_by_test_id("scenario-select").select_option("spawn-join")
    page.get_by_test_id("param-sleep").fill("-1")
    page.get_by_test_id("run-button").click()
    expect(page.get_by_test_id("param-sleep-error")).to_have_text("-1 is outside 0..10")
    expect(page.get_by_test_id("form-status")).to_contain_text("Not sent")
    expect(page.get_by_test_id("param-sleep")).to_have_attribute("aria-invalid", "true")

    # The server is the authority: a bad value that reaches it is refused with a message.
    sent = page.evaluate(
        "window.trioEcho.send({type: 'start', scenario: 'spawn-join', params: {sleep: 11}})"
    )
    assert isinstance(sent, int)
    error = page.get_by_test_id("error-message")
    expect(error).to_have_count(1)
    expect(error).to_contain_text("sleep: 11 is outside 0..10")
    page.evaluate("window.trioEcho.send({type: 'start', scenario: 'no-such-thing'})")
    expect(error.last).to_contain_text("no scenario 'no-such-thing'")
    # Still connected, still usable.
    expect(page.get_by_test_id("status")).to_have_attribute("data-state", "connected")
    page.get_by_test_id("param-sleep").fill("0")
    run = start_run(page, "spawn-join", tasks=1, n=1)
    wait_done(page, run)


def test_blocking_draws_steps_and_blocks(page: Page) -> None:
    """time.sleep: step bars and a block per sleep (2 workers x 2); to_thread: no block."""
    blocking = start_run(page, "blocking", mode="time.sleep", count=2, duration=0.2)
    wait_done(page, blocking)
    group = run_group(page, blocking)
    expect(group).to_have_attribute("data-bars", SOME)
    expect(group).to_have_attribute("data-blocks", re.compile(r"^([4-9]|\d{2,})$"))
    expect(page.get_by_test_id("legend-blocks")).not_to_have_text(ZERO)
    # The block markers sit on the workers' lanes: their names are the blocks' names.
    notes = page.locator(f'[data-testid="console-note"][data-run="{blocking}"]')
    expect(notes.filter(has_text="held the loop")).to_have_count(4)

    threaded = start_run(page, "blocking", mode="to_thread", count=2, duration=0.2)
    wait_done(page, threaded)
    group = run_group(page, threaded)
    expect(group).to_have_attribute("data-bars", SOME)
    expect(group).to_have_attribute("data-blocks", ZERO)


def test_reconnect_resumes_without_duplicates(page: Page) -> None:
    """A dropped socket: reconnecting, then connected again with ?since=, no line twice."""
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    # Record every status the page shows, however briefly (the first retry is ~250 ms).
    page.evaluate(
        """() => {
            const status = document.querySelector('[data-testid="status"]');
            window.seenStates = [];
            new MutationObserver(() => window.seenStates.push(status.dataset.state))
                .observe(status, {attributes: true, attributeFilter: ['data-state']});
        }"""
    )
    run = start_run(page, "spawn-join", tasks=2, n=10, sleep=0.1)
    lines = page.locator(f'[data-testid="console-line"][data-run="{run}"]')
    expect(lines.nth(1)).to_be_attached()
    page.evaluate("window.trioEcho.dropSocket()")
    expect(page.get_by_test_id("status")).to_have_attribute("data-state", "connected")
    wait_done(page, run)
    expect(lines).to_have_count(20)

    states = page.evaluate("window.seenStates")
    assert states[:2] == ["reconnecting", "connected"], states
    assert any("/ws/events?since=" in url for url in sockets), sockets
    seqs = page.locator('[data-testid="console-line"]').evaluate_all(
        "nodes => nodes.map(n => Number(n.dataset.seq))"
    )
    assert len(seqs) == len(set(seqs)), "a console line was shown twice"
    assert seqs == sorted(seqs), "console lines out of feed order"
    assert sorted(console_texts(page, run)) == sorted(
        f"<Task f(10) #{k}> {i}" for k in (1, 2) for i in range(10)
    )


def test_trace_download(page: Page, tmp_path: Path) -> None:
    """A finished run offers its Chrome trace as a download, and the file is the run's."""
    run = start_run(page, "switch", rounds=2)
    wait_done(page, run)
    link = run_item(page, run).get_by_test_id("run-trace")
    expect(link).to_have_attribute("href", f"/api/runs/{run}/trace.json")
    expect(link).to_have_attribute("download", f"trio-echo-{run}.json")
    with page.expect_download() as download_info:
        link.click()
    target = tmp_path / "trace.json"
    download_info.value.save_as(target)
    events = json.loads(target.read_text())["traceEvents"]
    titles = [e["args"]["name"] for e in events if e["name"] == "process_name"]
    assert titles == [f"trio-echo {run} switch"]
    printed = [e["name"] for e in events if e["ph"] == "i" and e["name"] not in ("exit", "run")]
    assert printed[:4] == ["A 0", "B 0", "A 1", "B 1"], printed


def test_many_tasks_shows_a_summary_not_lanes(page: Page) -> None:
    """many-tasks: the run's summary (spawn, join, bytes per task); no lane per task."""
    run = start_run(page, "many-tasks", tasks=2000)
    wait_done(page, run)
    summary = run_item(page, run).get_by_test_id("run-summary")
    for key in ("spawn ms", "join ms", "bytes per task", "finished"):
        expect(summary).to_contain_text(key)
    expect(run_group(page, run)).to_be_visible()
    expect(page.locator(f'[data-testid="lane"][data-run="{run}"]')).to_have_count(0)


def test_loop_lag_and_task_count(page: Page) -> None:
    """The once-a-second stats reach the lag chart (ten probes each) and the task count."""
    chart = page.get_by_test_id("lag-chart")
    expect(chart).to_have_attribute("data-probes", re.compile(r"^([1-9]\d+)$"))
    expect(page.get_by_test_id("task-count")).to_have_text(re.compile(r"^\d+$"))
    expect(page.get_by_test_id("lag-worst")).to_have_text(re.compile(r"(µs|ms|s)$"))


def test_peers_and_gap_notice(page: Page) -> None:
    """hello with `peers` shows "worker X of N"; a `gap` shows how many events were missed.

    The real server sends neither here (one worker; a page that keeps up), so the page's
    socket goes through a Playwright route that adds them to what the server says.
    """

    def add_peers_and_a_gap(route: WebSocketRoute) -> None:
        server = route.connect_to_server()

        def from_server(message: str | bytes) -> None:
            data = json.loads(message)
            if data["type"] != "hello":
                route.send(message)
                return
            data["worker"] = 2
            data["peers"] = [
                {"worker": 1, "url": "http://127.0.0.1:1/"},
                {"worker": 2, "url": "http://127.0.0.1:2/"},
                {"worker": 3, "url": "javascript:alert(1)"},  # not a web link: not linked
            ]
            route.send(json.dumps(data))
            route.send(json.dumps({"type": "gap", "missed": 1234, "resume": data["seq"]}))

        server.on_message(from_server)

    page.route_web_socket(EVENTS_SOCKET, add_peers_and_a_gap)
    page.reload()
    expect(page.get_by_test_id("worker-of")).to_have_text("worker 2 of 3")
    links = page.get_by_test_id("peer-link")
    expect(links).to_have_count(1)
    expect(links).to_have_attribute("href", "http://127.0.0.1:1/")
    gap = page.get_by_test_id("gap-notice")
    expect(gap).to_be_visible()
    expect(gap).to_contain_text("Missed 1,234 events")
    expect(page.get_by_test_id("status")).to_have_attribute("data-state", "connected")


def test_a_different_server_resets_the_page(page: Page) -> None:
    """After a reconnect, a hello from another server (new start time) starts the page over.

    Its seq numbers would start again at 1, so the page drops its cursor: it reconnects
    without ?since= to get the new server's history, and says why.
    """
    urls: list[str] = []

    def restarted_after_first(route: WebSocketRoute) -> None:
        urls.append(route.url)
        server = route.connect_to_server()
        later = len(urls) > 1

        def from_server(message: str | bytes) -> None:
            data = json.loads(message)
            if data["type"] == "hello" and later:
                data["started_at"] += 1000  # as if the server had been restarted
                message = json.dumps(data)
            route.send(message)

        server.on_message(from_server)

    page.route_web_socket(EVENTS_SOCKET, restarted_after_first)
    page.reload()
    run = start_run(page, "switch", rounds=1)
    wait_done(page, run)
    page.evaluate("window.trioEcho.dropSocket()")
    expect(page.get_by_test_id("notice-message")).to_contain_text("The server restarted")
    expect(page.get_by_test_id("status")).to_have_attribute("data-state", "connected")
    assert len(urls) == 3, urls
    assert "?since=" in urls[1], urls
    assert "since" not in urls[2], urls
    # The page starts over from the new server's replay: the run is shown again, once.
    expect(run_item(page, run)).to_have_count(1)
    expect(page.locator(f'[data-testid="console-line"][data-run="{run}"]')).to_have_count(2)


def test_console_keeps_a_bounded_tail(page: Page) -> None:
    """3,000 lines at once: the console keeps the newest 2,000, in order, the last one last."""
    run = start_run(page, "spawn-join", tasks=100, n=30)
    wait_done(page, run)
    log = page.get_by_test_id("console")
    expect(log.locator(".line")).to_have_count(2_000)  # static/console.js MAX_LINES
    texts = console_texts(page, run)
    # Without a checkpoint each task prints all of its lines in one step, one task after the
    # other: the kept tail ends with some task's last line.
    assert re.fullmatch(r"<Task f\(30\) #\d+> 29", texts[-1]), texts[-1]
    expect(page.locator(f'[data-testid="lane"][data-run="{run}"]')).to_have_count(101)


def view(page: Page) -> tuple[float, float]:
    """The window the timeline's last frame drew (start, end), in feed seconds."""
    canvas = page.get_by_test_id("tl-canvas")
    return float(canvas.get_attribute("data-view-start") or "nan"), float(
        canvas.get_attribute("data-view-end") or "nan"
    )


def wait_view(page: Page, condition: str, arg: object = None) -> None:
    """Wait until *condition* (JS, given start, end and arg) holds for a drawn frame."""
    page.wait_for_function(
        f"""([arg]) => {{
            const canvas = document.querySelector('[data-testid="tl-canvas"]');
            const start = Number(canvas.dataset.viewStart);
            const end = Number(canvas.dataset.viewEnd);
            return {condition};
        }}""",
        arg=[arg],
    )


def next_stats(page: Page) -> None:
    """Wait for the next once-a-second `stats` event to reach the page (time has passed)."""
    probes = page.get_by_test_id("lag-chart").get_attribute("data-probes")
    expect(page.get_by_test_id("lag-chart")).not_to_have_attribute("data-probes", probes or "")


def test_timeline_pauses_scrolls_back_and_follows_again(page: Page) -> None:
    """Pause freezes the window; dragging goes back in time; a run's header fits the run."""
    run = start_run(page, "spawn-join", tasks=2, n=3, sleep=0.1)
    wait_done(page, run)
    canvas = page.get_by_test_id("tl-canvas")
    follow = page.get_by_test_id("tl-follow")
    follow.click()
    expect(follow).to_have_attribute("aria-pressed", "true")
    expect(canvas).to_have_attribute("data-following", "false")
    paused = view(page)
    next_stats(page)
    assert view(page) == paused  # time went on, the window did not

    # Drag right by 40% of the width: the window moves back by 40% of its span.
    box = canvas.bounding_box()
    assert box is not None
    y = box["y"] + 10
    page.mouse.move(box["x"] + box["width"] * 0.5, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.9, y, steps=4)
    page.mouse.up()
    span = paused[1] - paused[0]
    wait_view(page, "Math.abs(end - arg) < 0.02", paused[1] - 0.4 * span)

    run_group(page, run).click()  # fit: the whole run in view, still paused
    run_start = float(run_item(page, run).get_attribute("data-start") or "nan")
    run_end = float(run_item(page, run).get_attribute("data-end") or "nan")
    wait_view(page, "start <= arg[0] && arg[1] <= end", [run_start, run_end])
    expect(canvas).to_have_attribute("data-following", "false")

    follow.click()
    expect(canvas).to_have_attribute("data-following", "true")
    assert view(page)[1] > paused[1]


def test_echo_lanes_are_capped_and_the_rest_summarised(page: Page) -> None:
    """60 open TCP connections: 50 echo lanes drawn, the rest in one summary row."""
    host, port = page.locator("#tcp-address").inner_text().rsplit(":", 1)
    clients = [socket.create_connection((host, int(port)), timeout=5) for _ in range(60)]
    try:
        expect(page.locator('[data-testid="lane"][data-run="echo"]')).to_have_count(50)
        expect(page.get_by_test_id("echo-more")).to_have_text(
            re.compile(r"^\+\d+ more \(60 open in all\)$")
        )
        expect(page.get_by_test_id("echo-open")).to_have_text("60")
    finally:
        for client in clients:
            client.close()
    expect(page.get_by_test_id("echo-open")).to_have_text("0")


def test_udp_sources_show_beside_tcp(page: Page) -> None:
    """A UDP datagram: its source gets a row (transport udp) and the udp count says 1.

    Last in this file on purpose: a UDP lane lingers 10 s after its last datagram (UDP has no
    close), which would disturb the open-connection counts of the tests above.
    """
    host, port = page.locator("#tcp-address").inner_text().rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(b"hello udp", (host, int(port)))  # UDP echo shares the TCP port's number
        assert sock.recv(100) == b"hello udp"
        local = sock.getsockname()
        expect(page.get_by_test_id("echo-udp")).to_have_text("1")
        row = page.locator('[data-testid="echo-conn"][data-transport="udp"]')
        expect(row).to_have_count(1)
        expect(row.locator(".peer")).to_have_text(f"{host}:{local[1]}")
    # This server has no TLS listener: its counters are not drawn at all (not as zeros).
    expect(page.get_by_test_id("echo-udp-datagrams")).to_have_text(SOME)
    expect(page.get_by_test_id("echo-tls")).to_have_count(0)
