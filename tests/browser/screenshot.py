"""Make docs/screenshot.png: the page at 1280x800 while scenarios run.

Usage, from the repository root (the server is the installed package, as in the tests)::

    python -m tests.browser.screenshot docs/screenshot.png

It starts a server, opens two TCP echo clients and the page's websocket echo box, runs
``spawn-join`` (sleep 0.25) beside ``blocking`` (time.sleep), and shoots once the
blocking run has ended, so that the stall bands, the silenced lanes and the console's
rounds are all in the picture.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from .harness import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, running_server, start_run


def shoot(url: str, out: Path) -> None:
    """Drive the page at *url* into an interesting state and save it to *out*."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(url)
        expect(page.get_by_test_id("status")).to_have_attribute("data-state", "connected")
        host, port = page.locator("#tcp-address").inner_text().rsplit(":", 1)
        clients = [socket.create_connection((host, int(port)), timeout=5) for _ in range(2)]
        try:
            for i, client in enumerate(clients):
                client.sendall(b"hello from the >>: client\n" * (i + 1))
                client.recv(4096)
            page.get_by_test_id("echo-input").fill("text stays text ✓")
            page.get_by_test_id("echo-send").click()
            expect(page.locator('[data-testid="echo-in"]')).to_have_count(1)
            start_run(page, "spawn-join", tasks=3, n=8, sleep=0.25)
            blocking = start_run(page, "blocking", mode="time.sleep", count=3, duration=0.3)
            run = page.locator(f'[data-testid="run"][data-run="{blocking}"]')
            expect(run).to_have_attribute("data-state", "done", timeout=15_000)
            page.get_by_test_id("scenario-select").select_option("blocking")
            page.screenshot(path=str(out))
        finally:
            for client in clients:
                client.close()
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="where to write the PNG")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir, running_server(Path(workdir)) as url:
        shoot(url, args.out.resolve())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
