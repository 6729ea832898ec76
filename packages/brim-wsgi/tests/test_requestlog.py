"""brim.wsgi.requestlog: quoting and the request line; txn ids per green thread."""

from __future__ import annotations

from brim.log import current_txn, set_txn
from brim.wsgi.requestlog import format_request_line, log_quote


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
