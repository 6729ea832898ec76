"""brim.wsgi_echo.WSGIEcho: echoes the request body back, a sample and a probe.

Handy to check a brimd install end to end, and a short example of an app
that uses ``parse_conf``, ``stats_conf`` and ``env['brim.stats']``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from brim.conf import Option, read_options


def _check_path(path: str) -> None:
    if not path.startswith("/"):
        raise ValueError(f"{path!r} must start with '/'")


class WSGIEcho:
    """Answer requests on ``path`` (default ``/echo``) with their own body.

    Bodies over ``max_echo`` bytes (default 65536) get 413 rather than a cut
    echo, so a client never mistakes a partial echo for the whole.
    """

    def __init__(self, name: str, conf: dict[str, Any], next_app: Callable) -> None:
        self.name = name
        self.path = conf["path"]
        self.max_echo = conf["max_echo"]
        self.next_app = next_app
        self.stat = f"{name}.requests"

    def __call__(self, env: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if env["PATH_INFO"] != self.path:
            return self.next_app(env, start_response)
        env["brim.stats"].incr(self.stat)
        body = env["wsgi.input"].read(self.max_echo + 1)
        if len(body) > self.max_echo:
            message = f"413 Request body over {self.max_echo} bytes\n".encode()
            start_response(
                "413 Payload Too Large",
                [("Content-Type", "text/plain"), ("Content-Length", str(len(message)))],
            )
            return [message]
        content_type = env.get("CONTENT_TYPE") or "application/octet-stream"
        start_response(
            "200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        )
        return [body]

    #: The options of its section (besides ``call``); brimd refuses any other.
    conf_options = (
        Option("path", "str", "/echo", "The path answered; other paths go on down the chain.",
               validator=_check_path),
        Option("max_echo", "int", 65536, "Larger request bodies get 413.", minimum=0),
    )

    @classmethod
    def parse_conf(cls, name: str, conf: Any) -> dict[str, Any]:
        return read_options(conf, name, cls.conf_options)

    @classmethod
    def stats_conf(cls, name: str, conf: Any) -> list[tuple[str, str]]:
        return [(f"{name}.requests", "sum")]
