"""What the browser tests and the screenshot command share: the server process and Chromium.

Rules:

* The server is the installed package run as a real process (``python -m app serve``) from
  an empty working directory, so the page comes from the package, not from this checkout.
* Ports are 0 (the server picks); the URL is read from its ``web listening on`` line.
* The browser is Debian's Chromium, never a downloaded one (the network is closed).
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import pytest
from playwright.sync_api import Page, expect

from app.child import self_command
from app.ready import parse_ready

CHROMIUM: Final = Path("/usr/bin/chromium")
# No sandbox (root in a container), no GPU, and nothing that phones home: with the network
# closed, background fetches would only add delays and console noise.
CHROMIUM_ARGS: Final = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT: Final = {"width": 1280, "height": 800}
# The server binds and prints its two lines in well under a second; 15 s covers a slow CI box.
STARTUP_TIMEOUT: Final = 15.0
# Polling the server's stdout file while it starts (a file, not a pipe: nobody has to keep
# draining it afterwards, so a chatty server can never block on a full pipe).
STARTUP_POLL: Final = 0.02
# SIGTERM drains in < 1 s (tests/test_shutdown.py); after this long it is killed.
STOP_TIMEOUT: Final = 10.0


def require_chromium(path: Path, ci: str | None) -> None:
    """Skip when *path* is missing, except under CI (``CI=true``), where that is a failure.

    Raises:
        pytest.skip.Exception: no browser, locally.
        pytest.fail.Exception: no browser, under CI: the browser tests must not silently vanish.
    """
    if path.exists():
        return
    message = (
        f"{path} not found: the browser tests need Debian's chromium (apt-get install chromium)"
    )
    if ci == "true":
        pytest.fail(
            f"{message}; under CI a missing browser fails instead of skipping", pytrace=False
        )
    pytest.skip(message)


@contextmanager
def running_server(workdir: Path, *extra: str) -> Iterator[str]:
    """Run ``python -m app serve`` in *workdir*; yield its web URL; SIGTERM it on exit.

    Raises:
        RuntimeError: the server exited or printed no URL within :data:`STARTUP_TIMEOUT`
            (the message holds its stderr).
    """
    out_path = workdir / "serve.stdout"
    err_path = workdir / "serve.stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(
            self_command("serve", "--tcp-port", "0", "--http-port", "0", *extra),
            cwd=workdir,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
        try:
            yield _wait_for_url(process, out_path, err_path)
        finally:
            _stop(process)


def _wait_for_url(process: subprocess.Popen[bytes], out_path: Path, err_path: Path) -> str:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        ready = parse_ready(out_path.read_text(errors="replace"))
        if ready is not None:
            return ready.web
        if process.poll() is not None:
            break
        time.sleep(STARTUP_POLL)
    raise RuntimeError(
        f"trio-echo serve printed no URL (exit code {process.poll()}); stderr:\n"
        + err_path.read_text(errors="replace")
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the graceful drain), then SIGKILL if it takes longer than STOP_TIMEOUT."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# The form's status line once the server accepted a run.
STARTED: Final = re.compile(r"^Started (r\d+)\.$")


def start_run(page: Page, scenario: str, **params: Any) -> str:
    """Fill the form for *scenario* with *params*, press Run, and return the new run's id."""
    page.get_by_test_id("scenario-select").select_option(scenario)
    for name, value in params.items():
        field = page.get_by_test_id(f"param-{name}")
        if field.evaluate("node => node.tagName") == "SELECT":
            field.select_option(str(value))
        else:
            field.fill(str(value))
    page.get_by_test_id("run-button").click()
    # The click sets "Starting…" at once, so an older "Started rN." cannot match here.
    status = page.get_by_test_id("form-status")
    expect(status).to_have_text(STARTED)
    match = STARTED.match(status.inner_text())
    assert match is not None
    return match.group(1)
