"""web/'s rule, enforced: its shells and endpoints take what they need, never the whole Hub.

The root (app/server.py) hands each part a connection table, the feed, a few settings; a
module under app/web/ that imported app.hub could reach into every other part again.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import app.web

WEB = Path(app.web.__file__).parent


def app_imports(source: str) -> set[str]:
    """The ``app.`` modules *source* imports (top-level and inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("app."))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("app."):
            found.add(node.module)
    return found


@pytest.mark.parametrize("module", sorted(p.name for p in WEB.glob("*.py")))
def test_a_web_module_does_not_take_the_hub(module: str) -> None:
    assert "app.hub" not in app_imports((WEB / module).read_text())


def test_the_check_sees_the_hub() -> None:
    assert app_imports("def f():\n    from app.hub import Hub\n") == {"app.hub"}
    assert app_imports("import app.hub\n") == {"app.hub"}
