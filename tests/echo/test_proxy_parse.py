"""The PROXY protocol parser, pure: bytes in, a header, NEED_DATA or an error out (no loop)."""

from __future__ import annotations

import logging

import pytest

from app.config import ConfigError
from app.echo.proxy import (
    LOG_BURST,
    MAX_V2_PAYLOAD,
    NEED_DATA,
    V2_SIGNATURE,
    Command,
    HeaderReader,
    ProxyHeader,
    ProxyProtocolError,
    ProxyRefusals,
    build_v1,
    build_v2,
    carried_peer,
    parse,
    proxy_policy,
)

ANY = frozenset({1, 2})


def v2(ver_cmd: int, fam: int, body: bytes) -> bytes:
    return V2_SIGNATURE + bytes([ver_cmd, fam]) + len(body).to_bytes(2, "big") + body


def test_v1_tcp4() -> None:
    data = b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 8001\r\nhello"
    header = parse(data, ANY)
    assert header == ProxyHeader(
        1, Command.PROXY, "TCP4", ("203.0.113.7", 56324), ("192.0.2.1", 8001), len(data) - 5
    )


def test_v1_tcp6() -> None:
    data = b"PROXY TCP6 2001:db8::1 ::1 65535 0\r\n"
    header = parse(data, ANY)
    assert isinstance(header, ProxyHeader)
    assert header.family == "TCP6"
    assert header.source == ("2001:db8::1", 65535)
    assert header.destination == ("::1", 0)
    assert header.length == len(data)


def test_v1_unknown_ignores_the_rest_of_the_line() -> None:
    data = b"PROXY UNKNOWN whatever is here\r\nxyz"
    header = parse(data, ANY)
    assert isinstance(header, ProxyHeader)
    assert (header.family, header.source, header.length) == ("UNKNOWN", None, len(data) - 3)


def test_v2_tcp4_with_tlvs_kept_in_order() -> None:
    tlvs = bytes([0x04, 0, 2]) + b"ab" + bytes([0xEE, 0, 0])
    data = build_v2(("198.51.100.9", 4242), ("192.0.2.1", 8001), tlvs) + b"payload"
    header = parse(data, ANY)
    assert header == ProxyHeader(
        2,
        Command.PROXY,
        "TCP4",
        ("198.51.100.9", 4242),
        ("192.0.2.1", 8001),
        len(data) - 7,
        ((0x04, b"ab"), (0xEE, b"")),
    )


def test_v2_tcp6() -> None:
    data = build_v2(("2001:db8::7", 1), ("2001:db8::8", 2))
    header = parse(data, ANY)
    assert isinstance(header, ProxyHeader)
    assert (header.family, header.source, header.destination) == (
        "TCP6",
        ("2001:db8::7", 1),
        ("2001:db8::8", 2),
    )
    assert header.length == 16 + 36


def test_v2_local_ignores_addresses() -> None:
    # A health check: LOCAL, here with (ignored) IPv4 addresses as HAProxy may send.
    data = v2(0x20, 0x11, bytes(12))
    header = parse(data, ANY)
    assert isinstance(header, ProxyHeader)
    assert (header.command, header.source, header.length) == (Command.LOCAL, None, 28)
    assert parse(build_v2(None, None), ANY) == ProxyHeader(
        2, Command.LOCAL, "UNKNOWN", None, None, 16
    )


def test_v2_unspec_and_unix_are_unknown() -> None:
    for fam, body in ((0x00, b""), (0x31, bytes(216))):
        header = parse(v2(0x21, fam, body), ANY)
        assert isinstance(header, ProxyHeader)
        assert (header.family, header.source) == ("UNKNOWN", None)


@pytest.mark.parametrize(
    "data",
    [
        build_v1(("203.0.113.7", 1), ("192.0.2.1", 2)),
        build_v2(("203.0.113.7", 1), ("192.0.2.1", 2), bytes([1, 0, 3]) + b"h2x"),
        build_v2(None, None),
    ],
    ids=["v1", "v2", "v2-local"],
)
def test_every_split_needs_data_until_whole(data: bytes) -> None:
    for cut in range(len(data)):
        assert parse(data[:cut], ANY) is NEED_DATA, cut
    assert isinstance(parse(data, ANY), ProxyHeader)


def test_reader_across_reads_keeps_the_leftover() -> None:
    policy = proxy_policy("any", "127.0.0.1")
    assert policy is not None
    data = build_v2(("203.0.113.7", 1000), ("192.0.2.1", 2)) + b"first bytes"
    reader = HeaderReader(policy)
    assert reader.receive_data(data[:5]) is NEED_DATA
    assert reader.receive_data(data[5:20]) is NEED_DATA
    header = reader.receive_data(data[20:])
    assert isinstance(header, ProxyHeader)
    assert reader.leftover == b"first bytes"
    assert carried_peer(header, "127.0.0.1:9") == "203.0.113.7:1000"


def test_reader_eof_before_the_header_is_an_error() -> None:
    policy = proxy_policy("v1", "")
    assert policy is not None
    reader = HeaderReader(policy)
    assert reader.receive_data(b"PROXY TCP4 1.2") is NEED_DATA
    with pytest.raises(ProxyProtocolError, match="closed after 14 bytes"):
        reader.receive_data(b"")


@pytest.mark.parametrize(
    ("data", "versions", "match"),
    [
        (b"hello world\n", ANY, "expected a PROXY protocol v1 or v2 header"),
        (b"GET / HTTP/1.1\r\n", ANY, "expected"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", frozenset({2}), "expected a PROXY protocol v2"),
        (build_v2(("1.2.3.4", 1), ("5.6.7.8", 2)), frozenset({1}), "expected a PROXY protocol v1"),
        (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", ANY, "TCP4, TCP6 or UNKNOWN"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", ANY, "5 fields"),
        (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", ANY, "5 fields"),
        (b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", ANY, "not an IPv4Address"),
        (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", ANY, "not an IPv4Address"),
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", ANY, "not an IPv6Address"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", ANY, "not a port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", ANY, "not a port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", ANY, "not a port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", ANY, "no CRLF"),
        (b"PROXY UNKNOWN " + b"x" * 100, ANY, "no CRLF within 107"),
        (V2_SIGNATURE[:11] + b"X" + bytes(4), ANY, "expected"),
        (v2(0x11, 0x11, bytes(12)), ANY, "version 1, expected 2"),
        (v2(0x22, 0x11, bytes(12)), ANY, "unknown command"),
        (v2(0x21, 0x41, bytes(12)), ANY, "unknown family"),
        (v2(0x21, 0x13, bytes(12)), ANY, "unknown family"),
        (v2(0x21, 0x11, bytes(11)), ANY, "cannot hold TCP4"),
        (v2(0x21, 0x21, bytes(12)), ANY, "cannot hold TCP6"),
        (v2(0x21, 0x11, bytes(12) + b"\x01\x00"), ANY, "TLV is cut off"),
        (v2(0x21, 0x11, bytes(12) + b"\x01\x00\x05ab"), ANY, "runs past"),
        (
            V2_SIGNATURE + b"\x21\x11" + (MAX_V2_PAYLOAD + 1).to_bytes(2, "big"),
            ANY,
            "over the 4096 accepted",
        ),
    ],
)
def test_malformed_headers_are_errors(data: bytes, versions: frozenset[int], match: str) -> None:
    with pytest.raises(ProxyProtocolError, match=match):
        parse(data, versions)


def test_an_oversized_v2_header_fails_before_its_bytes_arrive() -> None:
    # Only the fixed 16 bytes are in: the length alone is enough to refuse.
    head = V2_SIGNATURE + b"\x21\x11\xff\xff"
    with pytest.raises(ProxyProtocolError):
        parse(head, ANY)


def test_a_header_at_the_bound_is_accepted() -> None:
    tlv = bytes([0xE0]) + (MAX_V2_PAYLOAD - 12 - 3).to_bytes(2, "big")
    tlv += bytes(MAX_V2_PAYLOAD - 12 - 3)
    data = build_v2(("1.2.3.4", 1), ("5.6.7.8", 2), tlv)
    header = parse(data, ANY)
    assert isinstance(header, ProxyHeader)
    assert header.length == 16 + MAX_V2_PAYLOAD


def test_policy_trust() -> None:
    policy = proxy_policy("any", "127.0.0.0/8, ::1, 10.1.0.0/16")
    assert policy is not None
    assert policy.trusts("127.0.0.5")
    assert policy.trusts("::1")
    assert policy.trusts("::ffff:127.0.0.1")  # IPv4-mapped, as a dual-stack socket reports it
    assert policy.trusts("10.1.200.3")
    assert not policy.trusts("10.2.0.1")
    assert not policy.trusts("192.0.2.1")
    assert not policy.trusts("not an address")
    assert proxy_policy("off", "127.0.0.1") is None
    assert proxy_policy("v1", "").versions == frozenset({1})  # type: ignore[union-attr]


def test_policy_refuses_a_bad_network() -> None:
    with pytest.raises(ConfigError, match=r"--proxy-trusted: '10\.0\.0\.0/33'"):
        proxy_policy("v2", "127.0.0.1,10.0.0.0/33")


def test_a_bad_trusted_network_is_refused_even_when_off() -> None:
    with pytest.raises(ConfigError, match="--proxy-trusted"):
        proxy_policy("off", "not-a-network")


def test_refusals_are_logged_in_bursts_then_summed(caplog: pytest.LogCaptureFixture) -> None:
    refusals = ProxyRefusals("proxy protocol")
    tcp, web = refusals.listener("tcp"), refusals.listener("web")
    with caplog.at_level(logging.WARNING, logger="app.echo.proxy"):
        for i in range(LOG_BURST + 5):
            tcp.refuse(f"192.0.2.1:{i}", "bad")
        assert refusals.flush() == 5
        assert refusals.flush() == 0
        web.refuse_untrusted("192.0.2.2:1")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == LOG_BURST + 2
    assert "closed 5 more connections" in lines[LOG_BURST]
    assert "not in --proxy-trusted" in lines[-1]
    assert refusals.total == LOG_BURST + 6
