"""``trio-echo watch`` settings: bare switches, the --trace alias, the environment, bounds."""

from __future__ import annotations

import argparse

import pytest

from app.cli import build_parser
from app.config import WATCH_OPTIONS, ConfigError, WatchSettings, resolve


def watch_settings(argv: list[str], env: dict[str, str] | None = None) -> WatchSettings:
    args = build_parser().parse_args(["watch", *argv])
    return resolve(WatchSettings, WATCH_OPTIONS, vars(args), env or {})


def test_defaults_bind_loopback_with_a_one_second_stall_threshold() -> None:
    s = watch_settings(["--", "python", "app.py"])
    assert (s.host, s.stall_threshold, s.no_web, s.exit, s.trace_file) == (
        "127.0.0.1",
        1.0,
        False,
        False,
        "",
    )


def test_switches_alias_and_command_after_double_dash() -> None:
    args = build_parser().parse_args(
        ["watch", "--no-web", "--exit", "--trace", "t.json", "--", "python", "-m", "pkg", "--x"]
    )
    s = resolve(WatchSettings, WATCH_OPTIONS, vars(args), {})
    assert s.no_web and s.exit and s.trace_file == "t.json"
    assert args.child_argv[-4:] == ["python", "-m", "pkg", "--x"]


def test_environment_fills_what_flags_leave() -> None:
    s = watch_settings(["--", "x"], {"TRIO_ECHO_STALL_THRESHOLD": "2.5", "TRIO_ECHO_NO_WEB": "on"})
    assert s.stall_threshold == 2.5 and s.no_web


def test_out_of_bounds_threshold_is_refused() -> None:
    with pytest.raises(ConfigError, match="--stall-threshold"):
        watch_settings(["--stall-threshold", "0", "--", "x"])


def test_help_lists_the_watch_flags() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[
        "watch"
    ]
    text = sub.format_help()
    for flag in ("--stall-threshold", "--trace", "--no-web", "--exit", "--http-port", "--host"):
        assert flag in text
