"""``GET /metrics``: Prometheus' text format, read back by ``prometheus_client``'s own parser."""

from __future__ import annotations

import trio
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from conftest import Running, start_server, wait_until
from netclient import http_request


async def scrape(running: Running) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, headers, body = await http_request(running.ports.http, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    samples: list[Sample] = [
        s for family in text_string_to_metric_families(body.decode()) for s in family.samples
    ]
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in samples}


async def test_metrics_count_connections_bytes_runs_lag_and_build(running: Running) -> None:
    async with await trio.open_tcp_stream(*running.tcp) as s:
        await s.send_all(b"12345")
        assert await s.receive_some(10) == b"12345"
        record = running.hub.runner.start("spawn-join", {})
        await record.finished.wait()
        assert record.state == "done"
        await wait_until(lambda: running.hub.lag.count > 0)
        m = await scrape(running)
    assert m[("trio_echo_connections_open", (("transport", "tcp"),))] == 1
    assert m[("trio_echo_connections_accepted_total", (("transport", "tcp"),))] == 1
    assert m[("trio_echo_connections_refused_total", (("transport", "web"),))] == 0
    # Five bytes in, five out; one read.
    assert m[("trio_echo_echo_bytes_total", (("transport", "tcp"),))] == 10
    assert m[("trio_echo_echo_messages_total", (("transport", "tcp"),))] == 1
    assert m[("trio_echo_scenario_runs_total", (("state", "done"),))] == 1
    assert m[("trio_echo_scenario_runs_total", (("state", "error"),))] == 0
    assert m[("trio_echo_loop_lag_seconds_count", ())] >= 1
    assert m[("trio_echo_loop_lag_seconds_bucket", (("le", "+Inf"),))] >= 1
    assert m[("trio_echo_feed_events_total", ())] >= 3  # conn_open, run_start, run_end...
    build = [k for k in m if k[0] == "trio_echo_build_info"]
    assert build and ("feed", "memory") in build[0][1]
    assert not any(k[0].startswith("trio_echo_feed_redis") for k in m)  # no link, no link metrics
    assert m[("trio_echo_process_open_fds", ())] > 0


async def test_refusals_over_the_limit_are_counted(nursery: trio.Nursery) -> None:
    running = await start_server(nursery, max_connections=1)
    with trio.fail_after(10):
        async with await trio.open_tcp_stream(*running.tcp) as first:
            await first.send_all(b"x")
            assert await first.receive_some(10) == b"x"
            async with await trio.open_tcp_stream(*running.tcp) as second:
                assert await second.receive_some(10) == b""  # closed at accept
            m = await scrape(running)
    assert m[("trio_echo_connections_refused_total", (("transport", "tcp"),))] == 1
