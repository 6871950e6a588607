"""Every job of the project, one nox session each.

Extra arguments go to the tool: ``nox -s tests -- -k tcp``.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

LINT_TOOLS = ["ruff>=0.6"]
TYPE_TOOLS = ["mypy>=1.11"]


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite, browser tests included, against the installed package."""
    session.install(".[test]")
    # pytest as a script, not `python -m pytest`: the checkout must not shadow
    # the installed package (the page is served from the package).
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install(*LINT_TOOLS)
    session.run("ruff", "check", ".", *session.posargs)
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install(".", *TYPE_TOOLS)
    session.run("mypy", "--strict", "app", *session.posargs)


@nox.session
def soak(session: nox.Session) -> None:
    """Minutes of well-behaved and hostile clients against one server; not in the default run.

    ``nox -s soak -- --seconds 300``.  Prints RSS and fd samples, well-behaved errors (must be
    0) and their p99 latency under attack; fails if any of them saw an error or memory grew.
    """
    session.install(".[test]")
    session.run("python", "tests/soak/soak_run.py", *session.posargs)


@nox.session
def fmt(session: nox.Session) -> None:
    """Rewrite the code in the house format (ruff format, import order)."""
    session.install(*LINT_TOOLS)
    session.run("ruff", "check", "--select", "I", "--fix", ".")
    session.run("ruff", "format", ".")
