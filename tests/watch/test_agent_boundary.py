"""The agent runs inside somebody else's process: it imports only the standard library, trio,
stackscope and msgspec (the last two only where the program has them), never ``app``; and the
parent's pure parts (the session, ps/pstree text) import no I/O."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import app.watch
import trio_echo_agent
from app.watch.supervisor import agent_site

AGENT = Path(trio_echo_agent.__file__).parent
ALLOWED = set(sys.stdlib_module_names) | {"trio", "stackscope", "msgspec", "trio_echo_agent"}
# Optional in the watched program's environment: only imported inside try/except ImportError
# or on first use (wire.py is the parent's side of the contract).
OPTIONAL_OK = {"exporter.py": {"msgspec"}, "snapshot.py": {"stackscope"}, "wire.py": {"msgspec"}}


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted(AGENT.rglob("*.py")), ids=lambda p: p.name)
def test_agent_imports_only_what_a_watched_program_has(path: Path) -> None:
    names = imported(path)
    assert "app" not in names
    assert names <= ALLOWED, names - ALLOWED


@pytest.mark.parametrize("name", ["session.py", "pstext.py"])
def test_parent_pure_parts_do_no_io(name: str) -> None:
    names = imported(Path(app.watch.__file__).parent / name)
    assert not names & {"trio", "socket", "select", "hypercorn", "starlette"}


def test_the_agent_loads_without_app_and_patches_trio_run_on_import(tmp_path: Path) -> None:
    # A program in a folder with its own app/ package: the agent must not import it.
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("raise SystemExit('wrong app imported')\n")
    code = (
        "import sys, trio\n"
        "print(hasattr(trio.run, '__wrapped__'), 'app' in sys.modules,"
        " 'trio_echo_agent.boot' in sys.modules)\n"
    )
    env = {"PYTHONPATH": str(agent_site()), "TRIO_ECHO_AGENT_SOCKET": str(tmp_path / "none.sock")}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [b"True", b"False", b"True"]
