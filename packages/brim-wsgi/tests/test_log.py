"""brim.wsgi.log: levels, facilities, syslog over UDP, txn tagging per green thread."""

from __future__ import annotations

import logging
import socket

import pytest

from brim.wsgi.log import (
    NOTICE,
    current_txn,
    escape_text,
    format_request_line,
    log_quote,
    set_txn,
    setup_logging,
    txn_logger,
)


@pytest.fixture
def udp_listener():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


def test_notice_level_is_registered():
    assert NOTICE == 25
    assert logging.getLevelName(NOTICE) == "NOTICE"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"level": "LOUD"}, "invalid log_level 'LOUD'"),
    ({"facility": "LOCAL9"}, "invalid log_facility 'LOCAL9'"),
    ({"address": "nowhere"}, "invalid log address 'nowhere'"),
])
def test_bad_settings_raise_a_clear_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        setup_logging("brim-test-bad", **kwargs)


def test_udp_syslog_with_facility_priority_and_txn(udp_listener):
    port = udp_listener.getsockname()[1]
    logger = setup_logging("brim-test-udp", "INFO", "LOCAL3", address=f"127.0.0.1:{port}")
    logger.debug("not sent")
    logger.log(NOTICE, "a notice")
    data = udp_listener.recv(4096)
    # <priority> = facility * 8 + severity; LOCAL3 = 19, notice = 5
    assert data.startswith(b"<157>brim-test-udp: a notice")
    set_txn("abc123")
    try:
        txn_logger(logger).error("oops %s", "there")
        assert udp_listener.recv(4096).startswith(b"<155>brim-test-udp: oops there txn:abc123")
        logger.warning("plain logger too")
        assert b"plain logger too txn:abc123" in udp_listener.recv(4096)
    finally:
        set_txn(None)
    logger.info("after")
    assert udp_listener.recv(4096).rstrip(b"\x00").endswith(b"after")


def test_setup_twice_does_not_double_lines(capsys):
    for _ in range(2):
        logger = setup_logging("brim-test-twice", stderr=True, syslog=False)
    logger.info("once")
    assert capsys.readouterr().err.count("once") == 1


def test_txn_is_per_green_thread():
    from brim.wsgi import green

    seen = {}

    def worker(name):
        set_txn(name)
        green.sleep(0.01)  # the others run and set their own meanwhile
        seen[name] = current_txn()

    pool = green.GreenPool()
    for name in ("t1", "t2", "t3"):
        pool.spawn(worker, name)
    pool.waitall()
    assert seen == {"t1": "t1", "t2": "t2", "t3": "t3"}


def test_quoting_and_request_line():
    assert log_quote("") == "-"
    assert log_quote(None) == "-"
    assert log_quote("/a b\x00\u00e9") == "/a%20b%00%C3%A9"
    # '%' is escaped too, so an escaped space and a literal '%20' read apart.
    assert log_quote("/already%20quoted?x=1") == "/already%2520quoted?x=1"
    assert log_quote("a b") == "a%20b" and log_quote("a%20b") == "a%2520b"
    line = format_request_line("1.2.3.4", "GET", "/p q", 404, 0, 10, 0.5, "tx", None, "",
                               ["app:", "a b"], [("Host", "h")])
    assert line == "1.2.3.4 GET /p%20q 404 0 10 0.50000 tx - - app: a%20b headers: Host:h"


def test_log_headers_redacts_credentials():
    headers = [("Host", "h"), ("Authorization", "Bearer s1"), ("cookie", "id=s2"),
               ("Proxy-Authorization", "Basic s3"), ("Set-Cookie", "id=s4")]
    line = format_request_line("1.2.3.4", "GET", "/", 200, 0, 0, 0.5, "tx", None, None,
                               None, headers)
    assert line.endswith("headers: Host:h Authorization:[redacted] cookie:[redacted] "
                         "Proxy-Authorization:[redacted] Set-Cookie:[redacted]")


def test_escape_text_leaves_no_line_break():
    text = "a\nb\rc\x85d\u2028e\u2029f\x0bg\x0ch\x1ci\x1bj\tk\\l"
    escaped = escape_text(text)
    assert escaped.splitlines() == [escaped]
    assert escaped == "a\\nb\\rc\\x85d\\u2028e\\u2029f\\x0bg\\x0ch\\x1ci\\x1bj\tk\\l"
    assert escape_text("plain /path") == "plain /path"
