"""One page, two instances (``--feed redis://``): the other instance's lanes, grouped by it.

Its own servers (two ``serve`` processes and a ``redis-server``), not the package's shared
one.  Skipped without redis-server or Chromium (failed under ``CI=true``).
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from .harness import VIEWPORT, running_server
from sysprocs import free_port, need

pytestmark = pytest.mark.browser

TCP_LINE = re.compile(r"^tcp echo listening on 127\.0\.0\.1:(\d+)$", re.MULTILINE)


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    argv = [need("redis-server", "/usr/bin/redis-server"), "--port", str(port)]
    argv += ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not listening(port):
            assert proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0?stream=page"
    finally:
        proc.kill()
        proc.wait()


def test_the_page_groups_another_instances_connections(
    browser: Browser, redis_url: str, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        a_dir, b_dir = tmp_path / "a", tmp_path / "b"
        a_dir.mkdir()
        b_dir.mkdir()
        stack.enter_context(running_server(a_dir, "--feed", redis_url))
        b_url = stack.enter_context(running_server(b_dir, "--feed", redis_url))
        match = TCP_LINE.search((a_dir / "serve.stdout").read_text())
        assert match, "instance A printed no TCP address"
        context = browser.new_context(viewport=VIEWPORT)
        stack.callback(context.close)
        page = context.new_page()
        page.goto(b_url)
        expect(page.get_by_test_id("status")).to_have_attribute("data-state", "connected")
        # An echo connection to A, held open: its lane shows on B's page, in A's echo group.
        conn = stack.enter_context(socket.create_connection(("127.0.0.1", int(match.group(1)))))
        conn.sendall(b"hello from a")
        assert conn.recv(100) == b"hello from a"
        other = page.locator('[data-testid="lane-group"][data-run^="echo@"]')
        expect(other).to_have_count(1)
        expect(other).to_contain_text("1 open")
        assert re.fullmatch(r".+/\d+/0", other.get_attribute("data-inst") or "")
        page.reload()
        expect(page.get_by_test_id("instances")).to_contain_text("2 instances")
