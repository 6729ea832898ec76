"""whoami: a WSGI app that answers with who brimd says the client is.

The examples of docs/proxy.rst run it behind nginx and HAProxy: what it
prints is what any app behind the proxy sees (the client's address, not the
proxy's; ``https`` when the client used HTTPS to reach the proxy; the Host
the client asked for). ``tests/test_proxy_examples.py`` checks exactly that.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

#: The environ items that tell who the client is and how it reached us.
SHOWN = ("REMOTE_ADDR", "REMOTE_PORT", "wsgi.url_scheme", "HTTP_HOST", "SERVER_NAME",
         "SERVER_PORT", "HTTP_X_FORWARDED_FOR")


def application(env: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
    """One JSON object: each item of SHOWN (None when absent)."""
    body = json.dumps({key: env.get(key) for key in SHOWN}).encode() + b"\n"
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
