"""The feed's rule, enforced: its modules are pure data and logic, all but the waking ones.

Pure modules import no trio, no sockets, no web or Redis library (STYLE.md guideline 1), so
they are tested without a loop and reused by any shell. The waking :mod:`app.feed.live` (and
any future backend that does I/O) is named in :data:`WAKING` and exempt.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import app.feed

FEED = Path(app.feed.__file__).parent

# Modules of the feed that await or do I/O on purpose: the only ones allowed to.
WAKING = {"live.py", "redis.py"}

# Top-level modules that mean I/O, a loop, or a network library.
IMPURE = {
    "anyio",
    "asyncio",
    "coredis",
    "h11",
    "hypercorn",
    "select",
    "selectors",
    "socket",
    "ssl",
    "starlette",
    "trio",
    "trio_websocket",
    "websockets",
    "wsproto",
}


def impure_imports(source: str) -> set[str]:
    """The top-level names of *source*'s imports that are in :data:`IMPURE`, or a waking module."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            if name.split(".")[0] in IMPURE:
                found.add(name)
            if name.startswith("app.") and not name.startswith(("app.feed.", "app.units")):
                found.add(name)  # only the feed's own pure modules and the units
            if name.startswith("app.feed.") and name.rsplit(".", 1)[1] + ".py" in WAKING:
                found.add(name)
    return found


PURE = sorted(p.name for p in FEED.glob("*.py") if p.name not in WAKING)


@pytest.mark.parametrize("module", PURE)
def test_a_pure_feed_module_imports_no_io(module: str) -> None:
    assert impure_imports((FEED / module).read_text()) == set()


def test_the_check_sees_what_it_forbids() -> None:
    # Without this, a checker that found nothing would pass every module above.
    assert "trio" in impure_imports((FEED / "live.py").read_text())
    assert impure_imports("import socket\nfrom app.web.front import WebFront\n") == {
        "socket",
        "app.web.front",
    }
    assert impure_imports("from app.feed.live import Feed\n") == {"app.feed.live"}
