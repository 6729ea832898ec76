"""brim.server.health.Health: readiness and liveness answers for load balancers and
orchestrators.

Why it ships with brimd: only the server knows it is going away. From a
TERM on (through the ``drain_delay`` that follows it, while everything else
is still served), and in a worker that a reload, restart or recycle is
replacing, readiness answers 503, so a load balancer or a Kubernetes
readiness probe stops sending new requests before the listener closes.
Liveness answers 200 as long as the worker answers at all: a worker that
cannot is for the master's worker_timeout (or the orchestrator) to replace.

Put it first in a chain::

    [wsgi]
    apps = health myapp

    [health]
    call = brim.server.health.Health
    # ready_path = /readyz
    # live_path = /livez
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from brim.conf import Option, read_options


def _check_path(path: str) -> None:
    if not path.startswith("/"):
        raise ValueError(f"{path!r} must start with '/'")


class Health:
    """Answers ``ready_path`` (200 serving, 503 going away) and ``live_path``
    (always 200); every other request goes on down the chain."""

    conf_options = (
        Option("ready_path", "str", "/readyz", "The readiness path: 200 while serving, 503 "
               "from TERM on (drain_delay included) and while a worker is being replaced.",
               validator=_check_path),
        Option("live_path", "str", "/livez", "The liveness path: 200 whenever the worker "
               "answers.", validator=_check_path),
    )

    def __init__(self, name: str, conf: dict[str, Any], next_app: Callable[..., Any]) -> None:
        self.name = name
        self.ready_path = conf["ready_path"]
        self.live_path = conf["live_path"]
        self.next_app = next_app

    @classmethod
    def parse_conf(cls, name: str, conf: Any) -> dict[str, Any]:
        return read_options(conf, name, cls.conf_options)

    def __call__(self, env: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = env.get("PATH_INFO")
        if path == self.ready_path:
            server = env.get("brim.server")
            if getattr(server, "going_away", False):
                return _answer(env, start_response, "503 Service Unavailable",
                               b"going away\n")
            return _answer(env, start_response, "200 OK", b"ready\n")
        if path == self.live_path:
            return _answer(env, start_response, "200 OK", b"alive\n")
        return self.next_app(env, start_response)


def _answer(env: dict[str, Any], start_response: Callable[..., Any], status: str,
            body: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain"),
                            ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store")])
    return [] if env.get("REQUEST_METHOD") == "HEAD" else [body]
