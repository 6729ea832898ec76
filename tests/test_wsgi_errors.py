"""wsgi.errors and a daemonized brimd's stderr reach the log, under the request's txn;
a traceback is one record (issue 21, item 4).

Real daemonized brimd (``brimd start``: fds 0-2 are /dev/null) with a file
sink the test reads; real HTTP requests. A Flask view that raises makes
Flask log its traceback into wsgi.errors with one write: in JSON that is one
line, in text one record whose continuation lines carry the txn.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
from pathlib import Path

from brimd_harness import free_port, wait_for

HERE = Path(__file__).resolve().parent
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} brim"
RECORD_START = re.compile(STAMP + r" (DEBUG|INFO|NOTICE|WARNING|ERROR|CRITICAL) ")


def _start(brimd, app: str, fmt: str = "text") -> tuple[int, Path]:
    shutil.copy(HERE / "errors_app.py", brimd.root / "errors_app.py")
    shutil.copy(HERE / "frameworks" / "flask_app.py", brimd.root / "flask_app.py")
    port = free_port()
    log = brimd.root / "brim.log"
    brimd.use(f"[wsgi]\napps = app\nworkers = 2\n\n[app]\ncall = {app}\n",
              brimd.local(port=port, log_sink="file", log_file=log, log_format=fmt))
    brimd.start()  # daemonized: stderr is /dev/null from here on
    wait_for(lambda: _get(port, "/")[0] in (200, 404), what="brimd serving")
    return port, log


def _get(port: int, target: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", target)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _lines_with(log: Path, *needles: str) -> list[str]:
    def found() -> list[str]:
        return [x for x in log.read_text().splitlines() if all(n in x for n in needles)]

    return wait_for(found, what=f"log lines with {needles}")


def test_what_an_app_writes_to_wsgi_errors_is_logged_under_its_txn(brimd):
    port, log = _start(brimd, "errors_app:app")
    status, body = _get(port, "/lines")
    assert status == 200
    txn = body.decode()
    for text in ("first line from the app", "second line, written in two",
                 "printed to wsgi.errors", "no newline at the end"):
        [line] = _lines_with(log, f" ERROR {text} txn:{txn}")
        assert RECORD_START.match(line), line
    # A block written at once is one record: its first line, then its other
    # lines marked as its continuation, each with the txn.
    status, body = _get(port, "/block")
    txn = body.decode()
    first = _lines_with(log, f" ERROR a block txn:{txn}")[0]
    lines = log.read_text().splitlines()
    at = lines.index(first)
    assert lines[at + 1].endswith(f" brim ERROR txn:{txn} | of three"), lines[at:at + 3]
    assert lines[at + 2].endswith(f" brim ERROR txn:{txn} | lines"), lines[at:at + 3]


def test_a_daemonized_workers_stderr_is_logged_not_lost(brimd):
    port, log = _start(brimd, "errors_app:app")
    status, body = _get(port, "/stderr")
    assert status == 200
    _lines_with(log, f" ERROR stderr: printed to sys.stderr txn:{body.decode()}")


def _request_txn(log: Path, target: str) -> str:
    """The txn of the request log's line for target (JSON)."""
    def found() -> str | None:
        for line in log.read_text().splitlines():
            record = json.loads(line)
            if record.get("path") == target:
                return record["txn"]
        return None

    return wait_for(found, what=f"the request log line of {target}")


def test_a_flask_traceback_in_json_mode_is_one_record(brimd):
    port, log = _start(brimd, "flask_app:app", fmt="json")
    assert _get(port, "/fail")[0] == 500
    txn = _request_txn(log, "/fail")
    records = [json.loads(line) for line in log.read_text().splitlines()]  # every line JSON
    tracebacks = [r for r in records if "Traceback" in (r.get("message") or "")]
    assert len(tracebacks) == 1, tracebacks
    [record] = tracebacks
    assert record["txn"] == txn and record["level"] == "ERROR"
    message = record["message"]
    assert "Exception on /fail [GET]" in message.splitlines()[0]
    assert "Traceback (most recent call last):" in message
    assert message.rstrip().endswith("RuntimeError: the Flask view failed on purpose")
    assert message.count("\n") >= 5  # the whole traceback, in the one field
    # No other record holds a piece of it.
    assert not [r for r in records if r is not record and "File " in (r.get("message") or "")]


def test_a_flask_traceback_in_text_is_one_record_whose_lines_carry_the_txn(brimd):
    port, log = _start(brimd, "flask_app:app")
    assert _get(port, "/fail")[0] == 500
    first = _lines_with(log, " ERROR ", "Exception on /fail [GET] txn:")[0]
    txn = first.rsplit("txn:", 1)[1]
    _lines_with(log, f"txn:{txn} | RuntimeError: the Flask view failed on purpose")
    lines = log.read_text().splitlines()
    at = lines.index(first)
    rest = lines[at + 1:]
    block = []
    for line in rest:
        if f" brim ERROR txn:{txn} | " not in line:
            break
        block.append(line.split(" | ", 1)[1])
    assert block[0] == "Traceback (most recent call last):"
    assert block[-1] == "RuntimeError: the Flask view failed on purpose"
    for line in lines:  # every line a reader sees is a record or a marked continuation
        assert RECORD_START.match(line), line
    assert os.path.getsize(log) > 0
