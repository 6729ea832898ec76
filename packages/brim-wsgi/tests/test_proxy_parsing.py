"""brim.wsgi.proxy: forwarding headers and PROXY preambles, parsed without a socket."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brim.wsgi.errors import BadRequest
from brim.wsgi.proxy import (
    NOT_A_PREAMBLE,
    PROXY_V2,
    Forwarded,
    Preamble,
    TrustedProxies,
    forwarded,
    parse_preamble,
)

LOCAL = TrustedProxies(["127.0.0.1", "::1"])
LAN = TrustedProxies(["127.0.0.1", "10.0.0.0/8"])


def test_trusted_proxies_words():
    assert LAN.trusts("10.200.1.1") and LAN.trusts("127.0.0.1")
    assert not LAN.trusts("192.0.2.1") and not LAN.trusts("") and not LAN.trusts("/tmp/s")
    assert LOCAL.trusts("::1") and LOCAL.trusts("::ffff:127.0.0.1")
    assert TrustedProxies(["*"]).trusts("203.0.113.5")
    assert TrustedProxies(["::1", "127.0.0.1/32"]) == TrustedProxies(["127.0.0.1 ::1"]) != LAN
    assert TrustedProxies(["10.0.0.1,10.0.0.2"]).trusts("10.0.0.2")
    none = TrustedProxies([])
    assert not none and not none.trusts("127.0.0.1")
    with pytest.raises(ValueError, match=r"'proxy\.example' is not an address"):
        TrustedProxies(["proxy.example"])


def test_unix_word_trusts_unix_socket_peers_only():
    unix = TrustedProxies(["unix"])
    assert unix and unix.trusts_peer("", unix=True) and unix.trusts_peer("/run/x", unix=True)
    assert not unix.trusts_peer("127.0.0.1", unix=False) and not unix.trusts("")
    # Without the word, a Unix peer is trusted only by *.
    assert not LOCAL.trusts_peer("", unix=True)
    assert TrustedProxies(["*"]).trusts_peer("", unix=True)
    assert LOCAL.trusts_peer("::1", unix=False)
    assert TrustedProxies(["127.0.0.1 ::1 UNIX"]) == TrustedProxies(["unix", "::1/128",
                                                                      "127.0.0.1"]) != LOCAL
    assert repr(TrustedProxies(["unix", "10.0.0.0/8"])) == (
        "TrustedProxies(['10.0.0.0/8', 'unix'])")


def test_the_default_trusts_this_host_only():
    from brim.wsgi.settings import HTTPSettings

    default = HTTPSettings().trusted_proxies
    assert default == TrustedProxies(["127.0.0.1", "::1", "unix"])
    assert default.trusts_peer("", unix=True) and default.trusts("127.0.0.1")
    assert not default.trusts("10.0.0.1") and not default.trusts("127.0.0.2")


def test_no_forwarding_headers_say_nothing():
    assert forwarded({"HTTP_HOST": "x"}, LAN) is None


def test_x_forwarded_for_rightmost_untrusted_hop_is_the_client():
    env = {"HTTP_X_FORWARDED_FOR": "198.51.100.1, 203.0.113.9, 10.1.2.3"}
    assert forwarded(env, LAN) == Forwarded("203.0.113.9")
    # A client cannot push itself further left: its own entries stay left of the real hop.
    env = {"HTTP_X_FORWARDED_FOR": "10.9.9.9, 203.0.113.9"}
    assert forwarded(env, LAN).client == "203.0.113.9"
    # Every hop trusted: the leftmost is the client.
    assert forwarded({"HTTP_X_FORWARDED_FOR": "10.0.0.7, 10.0.0.8"}, LAN).client == "10.0.0.7"
    assert forwarded({"HTTP_X_FORWARDED_FOR": "[2001:db8::5]:443"}, LAN) == Forwarded(
        "2001:db8::5", "443")
    assert forwarded({"HTTP_X_FORWARDED_FOR": "2001:db8::5"}, LAN).client == "2001:db8::5"


def test_x_forwarded_proto_and_host_line_up_with_the_client_hop():
    env = {"HTTP_X_FORWARDED_FOR": "203.0.113.9, 10.1.2.3", "HTTP_X_FORWARDED_PROTO": "HTTPS, http",
           "HTTP_X_FORWARDED_HOST": "example.com:8443"}
    assert forwarded(env, LAN) == Forwarded("203.0.113.9", None, "https", "example.com:8443")
    # Lists that do not line up: the entry the nearest proxy added.
    env = {"HTTP_X_FORWARDED_FOR": "203.0.113.9, 10.1.2.3", "HTTP_X_FORWARDED_PROTO": "https"}
    assert forwarded(env, LAN).scheme == "https"
    assert forwarded({"HTTP_X_FORWARDED_PROTO": "https"}, LAN) == Forwarded(scheme="https")


def test_forwarded_header():
    env = {"HTTP_FORWARDED": 'for=198.51.100.1, for="[2001:db8:cafe::17]:4711";proto=https;'
                             'host="example.com", for=10.0.0.2;proto=http',
           "HTTP_X_FORWARDED_FOR": "192.0.2.66"}  # Forwarded wins over X-Forwarded-*
    assert forwarded(env, LAN) == Forwarded("2001:db8:cafe::17", "4711", "https", "example.com")
    assert forwarded({"HTTP_FORWARDED": "For=unknown;Proto=https"}, LAN) == Forwarded(
        "unknown", None, "https")
    assert forwarded({"HTTP_FORWARDED": "for=_hidden, for=10.0.0.1"}, LAN).client == "_hidden"
    assert forwarded({"HTTP_FORWARDED": "proto=https"}, LAN) == Forwarded(scheme="https")


@pytest.mark.parametrize("env", [
    {"HTTP_X_FORWARDED_FOR": "not-an-ip"},
    {"HTTP_X_FORWARDED_FOR": "203.0.113.9,,10.0.0.1"},
    {"HTTP_X_FORWARDED_FOR": "999.1.1.1"},
    {"HTTP_X_FORWARDED_FOR": "203.0.113.9:99999"},
    {"HTTP_X_FORWARDED_FOR": "[203.0.113.9]"},
    {"HTTP_X_FORWARDED_PROTO": "gopher"},
    {"HTTP_X_FORWARDED_HOST": "a b"},
    {"HTTP_X_FORWARDED_HOST": "x:70000"},
    {"HTTP_FORWARDED": "for"},
    {"HTTP_FORWARDED": 'for="unterminated'},
    {"HTTP_FORWARDED": "for=1.2.3.4;for=5.6.7.8"},
    {"HTTP_FORWARDED": "for=1.2.3.4;;proto=http"},
    {"HTTP_FORWARDED": "for=[::1]"},
    {"HTTP_FORWARDED": "proto=ftp"},
    {"HTTP_FORWARDED": "host=bad/host"},
])
def test_malformed_forwarding_headers_are_bad_requests(env):
    with pytest.raises(BadRequest):
        forwarded(env, LAN)


_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xff), max_size=60)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["HTTP_FORWARDED", "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO",
                        "HTTP_X_FORWARDED_HOST"]), _TEXT)
def test_any_forwarding_value_is_read_or_refused(key, value):
    try:
        result = forwarded({key: value}, LAN)
    except BadRequest:
        return
    assert isinstance(result, Forwarded)
    if result.client is not None and key == "HTTP_X_FORWARDED_FOR":
        ipaddress.ip_address(result.client)


def _v2(command: int, family: int, block: bytes, extra: bytes = b"") -> bytes:
    body = block + extra
    return PROXY_V2 + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


def _inet(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (ipaddress.ip_address(src).packed + ipaddress.ip_address(dst).packed
            + struct.pack("!HH", sport, dport))


def test_v1_preambles():
    line = b"PROXY TCP4 192.0.2.1 192.0.2.2 5555 80\r\n"
    assert parse_preamble(line + b"GET / HTTP/1.1") == Preamble(len(line), 1, ("192.0.2.1", 5555))
    line6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 65535 443\r\n"
    assert parse_preamble(line6).client == ("2001:db8::1", 65535)
    assert parse_preamble(b"PROXY UNKNOWN\r\n") == Preamble(15, 1)
    assert parse_preamble(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n").client is None
    # Incomplete: how much more may be read without reading past it.
    assert parse_preamble(b"") == 1
    assert parse_preamble(b"PRO") == 3
    assert parse_preamble(line[:20]) == 1


def test_v2_preambles():
    block = _inet("198.51.100.7", "10.0.0.1", 4242, 80)
    whole = _v2(1, 0x11, block, b"\x04\x00\x01x")  # with a TLV, skipped
    assert parse_preamble(whole + b"GET") == Preamble(len(whole), 2, ("198.51.100.7", 4242))
    block6 = _inet("2001:db8::7", "2001:db8::1", 1, 443)
    assert parse_preamble(_v2(1, 0x21, block6)).client == ("2001:db8::7", 1)
    assert parse_preamble(_v2(0, 0x00, b"")) == Preamble(16, 2)  # LOCAL: the peer stands
    assert parse_preamble(_v2(1, 0x31, b"\0" * 216)) == Preamble(232, 2)  # a Unix socket
    assert parse_preamble(whole[:10]) == 6
    assert parse_preamble(whole[:20]) == len(whole) - 20


def test_not_preambles():
    for data in (b"GET / HTTP/1.1\r\n", b"POST / HTTP/1.1", b"PROPFIND /", b"\r\nGET /",
                 b"\x16\x03\x01\x02\x00"):
        assert parse_preamble(data) == NOT_A_PREAMBLE


@pytest.mark.parametrize("data", [
    b"PROXY TCP4 192.0.2.1 192.0.2.2 5555\r\n",
    b"PROXY TCP4 192.0.2.1 2001:db8::2 5555 80\r\n",
    b"PROXY TCP6 192.0.2.1 192.0.2.2 5555 80\r\n",
    b"PROXY TCP4 192.0.2.1 192.0.2.2 70000 80\r\n",
    b"PROXY TCP4 192.0.2.1 192.0.2.2 0080 80\r\n",
    b"PROXY TCP4 192.0.2.300 192.0.2.2 1 80\r\n",
    b"PROXY UDP4 192.0.2.1 192.0.2.2 1 80\r\n",
    b"PROXY TCP4  192.0.2.1 192.0.2.2 1 80\r\n",
    b"PROXY TCP4 192.0.2.1 192.0.2.2 1 80\n",
    b"PROXY " + b"x" * 120,
    PROXY_V2 + b"\x11\x11\x00\x0c" + b"\0" * 12,  # version 1 in a v2 signature
    PROXY_V2 + b"\x22\x11\x00\x0c" + b"\0" * 12,  # command 2
    PROXY_V2 + b"\x21\x41\x00\x0c" + b"\0" * 12,  # family 4
    PROXY_V2 + b"\x21\x11\x00\x04" + b"\0" * 4,  # INET address block too short
])
def test_malformed_preambles_are_bad_requests(data):
    with pytest.raises(BadRequest):
        parse_preamble(data)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=120),
                 st.binary(max_size=80).map(lambda b: b"PROXY " + b),
                 st.binary(max_size=80).map(lambda b: PROXY_V2 + b)))
def test_any_bytes_give_a_preamble_a_count_or_a_bad_request(data):
    try:
        found = parse_preamble(data)
    except BadRequest:
        return
    if isinstance(found, int):
        assert found > 0
    else:
        assert 0 <= found.length <= len(data)
