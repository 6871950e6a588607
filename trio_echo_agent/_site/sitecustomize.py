"""Loaded by Python at startup in every process ``trio-echo watch`` starts (this folder is on
``PYTHONPATH``): installs the agent when ``TRIO_ECHO_AGENT_SOCKET`` says so, then runs the
``sitecustomize`` this one shadows, if there is one.

The agent package is loaded from beside this folder by path, so that nothing else from
trio-echo's environment lands on the program's ``sys.path``.  Nothing here may fail the
program: an agent that cannot load says so in one line and the program runs unwatched.
"""

import importlib.machinery
import importlib.util
import os
import sys


def _load_agent() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    package = os.path.dirname(here)
    spec = importlib.util.spec_from_file_location(
        "trio_echo_agent",
        os.path.join(package, "__init__.py"),
        submodule_search_locations=[package],
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"no agent package in {package}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["trio_echo_agent"] = module
    spec.loader.exec_module(module)
    from trio_echo_agent.boot import install

    install()


def _chain() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


if os.environ.get("TRIO_ECHO_AGENT_SOCKET"):
    try:
        _load_agent()
    except Exception as exc:
        sys.stderr.write(f"trio-echo watch: agent not loaded ({type(exc).__name__}: {exc})\n")
_chain()
