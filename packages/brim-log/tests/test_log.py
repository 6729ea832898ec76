"""brim.log: levels, facilities, syslog over UDP, txn tagging per green thread."""

from __future__ import annotations

import logging
import socket
import threading

import pytest

from brim.log import NOTICE, current_txn, escape_text, set_txn, setup_logging, txn_logger


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


def test_txn_is_per_thread():
    seen = {}
    started = threading.Barrier(3, timeout=5)

    def worker(name):
        set_txn(name)
        started.wait()  # all three have set their own before any reads back
        seen[name] = current_txn()

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("t1", "t2", "t3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert seen == {"t1": "t1", "t2": "t2", "t3": "t3"}
    assert current_txn() is None


def test_escape_text_leaves_no_line_break():
    text = "a\nb\rc\x85d\u2028e\u2029f\x0bg\x0ch\x1ci\x1bj\tk\\l"
    escaped = escape_text(text)
    assert escaped.splitlines() == [escaped]
    assert escaped == "a\\nb\\rc\\x85d\\u2028e\\u2029f\\x0bg\\x0ch\\x1ci\\x1bj\tk\\l"
    assert escape_text("plain /path") == "plain /path"
