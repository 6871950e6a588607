"""Issue 11's settings: TLS on/off, the certificate flags that go together, the client's --tls."""

from __future__ import annotations

import argparse

import pytest

from app.config import (
    CLIENT_OPTIONS,
    SERVE_OPTIONS,
    ClientSettings,
    ConfigError,
    Settings,
    add_options,
    resolve,
)


def serve(argv: list[str], env: dict[str, str] | None = None) -> Settings:
    parser = argparse.ArgumentParser()
    add_options(parser, SERVE_OPTIONS, Settings)
    return resolve(Settings, SERVE_OPTIONS, vars(parser.parse_args(argv)), env or {})


def client(argv: list[str], env: dict[str, str] | None = None) -> ClientSettings:
    parser = argparse.ArgumentParser()
    add_options(parser, CLIENT_OPTIONS, ClientSettings)
    return resolve(ClientSettings, CLIENT_OPTIONS, vars(parser.parse_args(argv)), env or {})


def test_tls_is_off_by_default_with_its_ports() -> None:
    s = serve([])
    assert not s.tls_enabled
    assert (s.tls_port, s.https_port, s.tls_handshake_timeout) == (8002, 8443, 10.0)


def test_self_signed_or_files_turn_it_on() -> None:
    assert serve(["--tls", "self-signed"]).tls_enabled
    assert serve(["--tls-cert", "c.pem", "--tls-key", "k.pem"]).tls_enabled
    assert serve([], {"TRIO_ECHO_TLS": "self-signed"}).tls_enabled


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tls-cert", "c.pem"], "--tls-cert and --tls-key: give both, or neither"),
        (["--tls-key", "k.pem"], "--tls-cert and --tls-key: give both, or neither"),
        (
            ["--tls", "self-signed", "--tls-cert", "c.pem", "--tls-key", "k.pem"],
            "--tls self-signed and --tls-cert: give one of them",
        ),
        (["--tls-handshake-timeout", "0.05"], "--tls-handshake-timeout: 0.05 is outside 0.1..600"),
    ],
)
def test_contradictions_are_refused(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        serve(argv)
    assert str(info.value) == message


def test_client_tls_switch_and_its_default_port() -> None:
    assert (client([]).tls, client([]).tcp_port) == (False, 8001)
    c = client(["--tls"])
    assert (c.tls, c.tcp_port, c.insecure) == (True, 8002, False)
    assert client(["--tls", "--port", "9999"]).tcp_port == 9999
    assert client([], {"TRIO_ECHO_CLIENT_TLS": "off"}).tls is False
    assert client([], {"TRIO_ECHO_CLIENT_TLS": "on", "TRIO_ECHO_CLIENT_INSECURE": "yes"}).insecure
    # serve's variables mean other things (TLS=self-signed): the client does not read them.
    assert client([], {"TRIO_ECHO_TLS": "self-signed", "TRIO_ECHO_TCP_PORT": "0"}) == client([])
    assert client(["--tls", "--insecure"]).insecure
