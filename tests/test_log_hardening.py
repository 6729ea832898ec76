"""What a client can make brimd write in its log (issue 19): forged lines, credentials,
ambiguous escapes.

Real brimd with one worker logging to a file the test reads; the client
sends the attack, then the test checks the answer, that the worker is the
same process, that the next request is served, and what the file holds.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
from pathlib import Path

import pytest
from brimd_harness import free_port, wait_for

HERE = Path(__file__).resolve().parent
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} brim"
# A request line as a log reader would take it: stamp, NOTICE, then the client.
REQUEST_LINE = re.compile(STAMP + r" NOTICE (\S+) (\S+) (\S+) (\d{3}) ")
RECORD_START = re.compile(STAMP + r" (DEBUG|INFO|NOTICE|WARNING|ERROR|CRITICAL) ")
FORGED = ("2026-12-04 17:00:00,000 brim NOTICE 6.6.6.6 GET /admin 200 0 0 0.00100 "
          "0123456789abcdef0123456789abcdef - -")


def _start(brimd, **options: object) -> tuple[int, Path]:
    shutil.copy(HERE / "hostile_apps.py", brimd.root / "hostile_apps.py")
    port = free_port()
    log = brimd.root / "brim.log"
    brimd.use("[wsgi]\napps = app\nworkers = 1\n\n[app]\ncall = hostile_apps.RaisePath\n",
              brimd.local(port=port, log_sink="file", log_file=log, **options))
    brimd.start()
    wait_for(lambda: _get(port, "/")[0] == 200, what="brimd serving")
    return port, log


def _get(port: int, target: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", target, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _served_by(port: int) -> int:
    status, body = _get(port, "/")
    assert status == 200
    return int(body)


def _lines_with(log: Path, *needles: str) -> list[str]:
    def found() -> list[str]:
        return [x for x in log.read_text().splitlines() if all(n in x for n in needles)]

    return wait_for(found, what=f"log lines with {needles}")


#: Every line break a log reader may split on, each followed by the forged line.
BREAKS = ["%0a", "%0d%0a", "%0d", "%0b", "%0c", "%1e", "%c2%85", "%e2%80%a8", "%e2%80%a9"]


def test_line_breaks_in_a_message_or_traceback_forge_no_log_line(brimd):
    port, log = _start(brimd)
    worker = _served_by(port)
    forged = FORGED.replace(" ", "%20")
    status, _ = _get(port, "/raise" + "".join(brk + forged for brk in BREAKS))
    assert status == 500
    assert _served_by(port) == worker
    failed = _lines_with(log, "ERROR WSGI app failed txn:")[0]
    txn = failed.rsplit("txn:", 1)[1]
    _lines_with(log, f"ERROR txn:{txn} | ValueError: no such thing: /raise")
    text = log.read_text()
    # However a reader splits lines (str.splitlines breaks on all six), each is a
    # record of its own or a continuation of the one with the txn.
    for line in text.splitlines():
        assert RECORD_START.match(line), line
        if not line.startswith(failed[:23]) or " ERROR " not in line:
            continue
        assert line == failed or f" ERROR txn:{txn} | " in line, line
    requests = [m.groups() for m in map(REQUEST_LINE.match, text.splitlines()) if m]
    assert requests and all(client == "127.0.0.1" for client, *_ in requests), requests
    assert "6.6.6.6" not in {c for c, *_ in requests}
    # The app's own message with the path: escaped in place, one line.
    warning = _lines_with(log, "WARNING about to fail on /raise")[0]
    assert "6.6.6.6 GET /admin" in warning and warning.endswith(f"txn:{txn}")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_log_headers_redacts_credentials_and_percent_is_escaped(brimd, fmt):
    port, log = _start(brimd, log_headers="yes", log_format=fmt)
    worker = _served_by(port)
    status, _ = _get(port, "/p%20q", headers={
        "Authorization": "Bearer s3cret-a", "Cookie": "session=s3cret-c",
        "Proxy-Authorization": "Basic s3cret-p", "User-Agent": "a b", "Referer": "a%20b",
        "X-Other": "visible"})
    assert status == 200
    assert _served_by(port) == worker
    line = _lines_with(log, "/p%2520q" if fmt == "text" else '"/p%20q"')[0]
    assert "s3cret" not in log.read_text()
    if fmt == "json":
        fields = json.loads(line)
        headers = dict(fields["headers"])
        assert headers["Authorization"] == headers["Cookie"] == "[redacted]"
        assert headers["Proxy-Authorization"] == "[redacted]"
        assert headers["X-Other"] == "visible"
        return
    words = line.split(" NOTICE ", 1)[1].split()
    # The client's literal '%20' reads apart from an escaped space.
    assert words[2] == "/p%2520q" and words[8:10] == ["a%20b", "a%2520b"]
    assert {"Authorization:[redacted]", "Cookie:[redacted]",
            "Proxy-Authorization:[redacted]", "X-Other:visible"} <= set(words)
