"""A WSGI app for the end-to-end request log tests (test_request_log).

The tests copy this file into the brimd's own directory, which is on the
workers' PYTHONPATH, and name the class in the conf (``call =
log_apps.TxnEcho``). The test process imports it too, for EXTRA_WORDS.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

#: What /extra appends to env['brim.additional_request_log_info']: quotes,
#: backslashes, control bytes, a newline, a tab, non-ASCII, a percent sign and
#: an empty word. A JSON request line must give each back exactly.
EXTRA_WORDS = [
    'say "hi"',
    "back\\slash\\\\",
    "ctl\x01\x1b[31m\x7f",
    "new\nline\r\n",
    "tab\there",
    "caf\u00e9 \u2603 \U0001f600 \u00ff\u0080",
    "%41%zz%",
    "",
    '{"json": [1, 2]}',
]


class TxnEcho:
    """Answers every request 200 with its own txn id as the body (and X-Pid: the worker's).

    The request body is read (so bytes_in is the whole body) and dropped;
    a request for /extra adds EXTRA_WORDS to the request log line.
    """

    def __init__(self, name: str, conf: Any, next_app: Callable) -> None:
        self.next_app = next_app

    def __call__(self, env: dict, start_response: Callable) -> Any:
        while env["wsgi.input"].read(65536):
            pass
        if env["PATH_INFO"] == "/extra":
            env["brim.additional_request_log_info"].extend(EXTRA_WORDS)
        body = env["brim.txn"].encode("ascii")
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Pid", str(os.getpid())),
                                  ("Content-Length", str(len(body)))])
        return [body]
