"""HelloWorld: the WSGI app of the brimd development guide (docs/wsgi.rst), finished.

Run it from the root of a clone, with the examples folder on the import path::

    PYTHONPATH=packages/brimd/examples \
        brimd -c packages/brimd/examples/helloworld.conf -p - foreground

then ``curl http://127.0.0.1:8080/hello`` says ``Hello World!``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any


class HelloWorld:
    """Say hello on one path; pass every other request down the chain."""

    def __init__(self, name: str, conf: str, next_app: Callable) -> None:
        # conf is whatever parse_conf returned: here, the path to answer on.
        self.name = name
        self.path = conf
        self.next_app = next_app

    def __call__(self, env: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if env["PATH_INFO"] != self.path:
            return self.next_app(env, start_response)
        env["brim.stats"].incr(f"{self.name}.requests")
        env["brim.stats"].set(f"{self.name}.last_called", time.time())
        body = b"Hello World!\n"
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    @classmethod
    def parse_conf(cls, name: str, conf: Any) -> str:
        """Runs once, in the master, before any worker starts: refuse a bad conf here."""
        path = conf.get(name, "path")
        if not path:
            raise Exception(f"[{name}] you must configure a path to serve.")
        return path

    @classmethod
    def stats_conf(cls, name: str, conf: str) -> list[tuple[str, str]]:
        """The stats this app writes, and how they roll up over the workers."""
        return [(f"{name}.requests", "sum"), (f"{name}.last_called", "max")]
