"""``trio-echo ps URL`` and ``trio-echo pstree URL``: ``/api/tasks`` as text.

Pure but for :func:`fetch`.

Like Python 3.14's ``python -m asyncio ps/pstree``, for Trio: ``ps`` is a
table (run, pid, task id, name, parent, state, where it waits: the
innermost frame), ``pstree`` the tree of tasks as Trio holds it, each
nursery a level, each task with its state and innermost frame.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any, Final

# Seconds to wait for the server (a watched program's agent waits up to 0.5 s for its loop).
FETCH_TIMEOUT: Final = 10.0

Task = Mapping[str, Any]
# Trio's modules are all private (trio/_timeouts.py, trio/_core/_run.py): a frame in one is
# Trio's, and "where a task waits" is the last frame before it.
_TRIO_PRIVATE: Final = "/trio/_"


class FetchError(RuntimeError):
    """The URL did not answer with a task list; the message says what happened."""


def page_url(given: str) -> str:
    """The page's URL from what the user typed: a URL, or ``HOST:PORT`` (http:// assumed)."""
    return given if "://" in given else f"http://{given}"


def fetch(url: str) -> list[dict[str, Any]]:
    """GET ``URL/api/tasks`` and return its ``runs``.

    Raises:
        FetchError: unreachable, not JSON, or not a task list.
    """
    target = page_url(url).rstrip("/") + "/api/tasks"
    try:
        with urllib.request.urlopen(target, timeout=FETCH_TIMEOUT) as response:
            body = json.loads(response.read())
    except urllib.error.URLError as exc:
        # "<urlopen error [Errno 111] Connection refused>" says it twice: the reason alone.
        reason = exc.reason
        text = reason.strerror if isinstance(reason, OSError) and reason.strerror else reason
        raise FetchError(f"cannot reach {target}: {text}") from None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise FetchError(f"{target}: {exc}") from None
    runs = body.get("runs") if isinstance(body, dict) else None
    if not isinstance(runs, list):
        raise FetchError(f"{target}: expected {{'runs': [...]}}, got {str(body)[:80]!r}")
    return runs


def where(task: Task) -> str:
    """Where *task* waits: its innermost frame outside Trio as ``function file:line``, then
    the Trio call it waits in (``-> sleep_forever``); "" if no frame is known."""
    frames = task.get("where") or []
    if not frames:
        return ""
    own = [f for f in frames if _TRIO_PRIVATE not in f["file"].replace(os.sep, "/")]
    f = own[-1] if own else frames[-1]
    text = f"{f['function']} {_short(f['file'])}:{f['line']}"
    if f is not frames[-1]:
        text += f" -> {frames[-1]['function']}"
    return text


def _short(path: str) -> str:
    """*path* relative to the working folder when under it (as tracebacks read best)."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def ps(runs: Sequence[Mapping[str, Any]]) -> str:
    """The table, one line per task, header first."""
    rows = [("RUN", "PID", "TASK", "PARENT", "STATE", "NAME", "WHERE")]
    for run in runs:
        for task in run.get("tasks", []):
            rows.append(
                (
                    str(run["run"]),
                    str(run["pid"]),
                    str(task["id"]),
                    str(task.get("parent", 0)),
                    task.get("state", ""),
                    task.get("name", ""),
                    where(task),
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return (
        "\n".join(
            "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True))
            + "  "
            + row[-1]
            for row in rows
        ).rstrip()
        + "\n"
    )


def pstree(runs: Sequence[Mapping[str, Any]]) -> str:
    """The tree: per run, each task under its parent, its nursery's siblings together."""
    lines: list[str] = []
    for run in runs:
        tasks = [t for t in run.get("tasks", []) if t.get("state") != "exited"]
        lines.append(f"run {run['run']} (pid {run['pid']}, {len(tasks)} tasks)")
        ids = {t["id"] for t in tasks}
        children: dict[int, list[Task]] = {}
        for task in tasks:
            parent = task.get("parent", 0)
            children.setdefault(parent if parent in ids else 0, []).append(task)
        _branch(lines, children, 0, "")
    return "\n".join(lines) + "\n"


def _branch(lines: list[str], children: Mapping[int, list[Task]], parent: int, indent: str) -> None:
    kids = children.get(parent, [])
    nurseries: dict[int, list[Task]] = {}
    for task in kids:
        nurseries.setdefault(int(task.get("nursery", 0)), []).append(task)
    groups = list(nurseries.items())
    for gi, (nursery, tasks) in enumerate(groups):
        last_group = gi == len(groups) - 1
        inner = indent
        if len(groups) > 1 or parent:
            lines.append(f"{indent}{'└── ' if last_group else '├── '}nursery {nursery}")
            inner = indent + ("    " if last_group else "│   ")
        for ti, task in enumerate(tasks):
            last = ti == len(tasks) - 1
            place = where(task)
            lines.append(
                f"{inner}{'└── ' if last else '├── '}{task['name']} [{task['id']}] "
                f"{task.get('state', '')}{' at ' + place if place else ''}"
            )
            _branch(lines, children, int(task["id"]), inner + ("    " if last else "│   "))
