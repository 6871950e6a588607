"""Settings resolution: flags > environment > defaults, bounds refused, not clamped."""

from __future__ import annotations

import argparse

import pytest

from app.config import SERVE_OPTIONS, ConfigError, Settings, add_options, resolve
from app.feed.events import Notice
from app.feed.live import Feed
from app.feed.ring import Gap
from app.hub import Hub


def parse(argv: list[str], env: dict[str, str] | None = None) -> Settings:
    parser = argparse.ArgumentParser()
    add_options(parser, SERVE_OPTIONS, Settings)
    return resolve(Settings, SERVE_OPTIONS, vars(parser.parse_args(argv)), env or {})


def test_defaults_match_the_tutorial_and_bind_loopback() -> None:
    s = parse([])
    assert (s.host, s.tcp_port, s.http_port, s.backlog) == ("127.0.0.1", 8001, 8000, 4096)
    assert (s.max_connections, s.max_web_connections) == (10_000, 1_000)
    assert (s.idle_timeout, s.max_message_size) == (300.0, 1_048_576)


def test_flag_beats_environment_beats_default() -> None:
    env = {"TRIO_ECHO_TCP_PORT": "9001", "TRIO_ECHO_HTTP_PORT": "9000"}
    s = parse(["--tcp-port", "7001"], env)
    assert s.tcp_port == 7001  # flag
    assert s.http_port == 9000  # environment
    assert s.max_connections == 10_000  # default


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--tcp-port", "70000"], {}, "--tcp-port: 70000 is outside 0..65535"),
        (["--idle-timeout", "soon"], {}, "--idle-timeout: expected a number, got 'soon'"),
        (
            [],
            {"TRIO_ECHO_MAX_CONNECTIONS": "0"},
            "TRIO_ECHO_MAX_CONNECTIONS: 0 is outside 1..1,000,000",
        ),
        (
            [],
            {"TRIO_ECHO_IDLE_TIMEOUT": "nan"},
            "TRIO_ECHO_IDLE_TIMEOUT: expected a number, got 'nan'",
        ),
        ([], {"TRIO_ECHO_TRACE": "maybe"}, "TRIO_ECHO_TRACE: expected on or off, got 'maybe'"),
        (
            [],
            {"TRIO_ECHO_ENGINE": "uvloop"},
            "TRIO_ECHO_ENGINE: expected one of epoll, tasks, trio, got 'uvloop'",
        ),
    ],
)
def test_bad_values_are_refused_with_a_message_naming_the_source(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse(argv, env)
    assert str(info.value) == message


def test_help_lists_every_option_with_default_and_environment_name() -> None:
    parser = argparse.ArgumentParser()
    add_options(parser, SERVE_OPTIONS, Settings)
    text = parser.format_help()
    for opt in SERVE_OPTIONS:
        assert opt.flag in text
        assert opt.env in text
    assert "default: 1,048,576; env TRIO_ECHO_MAX_MESSAGE_SIZE" in text.replace("\n", " ").replace(
        "  ", ""
    )


def test_allowed_origins_are_a_set_without_trailing_slashes() -> None:
    s = parse(["--allowed-origins", "http://a.example/, https://b.example"])
    assert s.origins == frozenset({"http://a.example", "https://b.example"})


def kept_by(feed: Feed, published: int) -> int:
    """How many of *published* events a reader from the very start still finds."""
    for i in range(published):
        feed.publish(Notice(level="info", text=str(i)))
    batch = feed.read_encoded(0, 1)
    return published - batch.missed if isinstance(batch, Gap) else published


def test_the_feed_ring_is_sized_by_feed_capacity() -> None:
    assert kept_by(Hub.create(parse([])).feed, 16_385) == 16_384
    hub = Hub.create(parse([], {"TRIO_ECHO_FEED_CAPACITY": "2048"}))
    assert kept_by(hub.feed, 3_000) == 2048
    with pytest.raises(ConfigError, match="feed"):
        parse(["--feed-capacity", "10"])
