"""A WSGI app that writes to wsgi.errors and sys.stderr, for tests/test_wsgi_errors.py.

The test copies this file into the brimd's own directory (on the workers'
PYTHONPATH) and serves it as ``errors_app:app``. Nothing here is imported by
the test process. Each answer's body is the request's txn, so the test knows
which log records must carry it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any


def app(env: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    errors = env["wsgi.errors"]
    path = env["PATH_INFO"]
    if path == "/lines":
        errors.write("first line from the app\n")
        errors.write("second ")
        errors.write("line, written in two\n")
        print("printed to wsgi.errors", file=errors)
        errors.write("no newline at the end")  # written when the request ends
    elif path == "/block":
        errors.write("a block\nof three\nlines\n")  # one record
        errors.flush()
    elif path == "/stderr":
        print("printed to sys.stderr", file=sys.stderr)
        sys.stderr.flush()
    body = env["brim.txn"].encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
