"""LineUpper: a TCP app for brimd that answers each line with the line in capitals.

The example of the TCP guide (docs/tcp.rst). One instance is built per worker
with ``(name, conf)``; each connection is then served by a call in its own
green thread, so a slow client holds up nobody else.
"""

from __future__ import annotations

from typing import Any


class LineUpper:
    """Read lines, send each back upper-cased, until the client says QUIT or goes away."""

    def __init__(self, name: str, conf: dict[str, Any]) -> None:
        self.name = name
        self.max_line = conf["max_line"]
        self.idle_timeout = conf["idle_timeout"]

    def __call__(self, sock: Any, address: Any, env: dict[str, Any]) -> None:
        logger, stats = env["brim.logger"], env["brim.stats"]
        sock.settimeout(self.idle_timeout)
        buffered = b""
        try:
            while True:
                data = sock.recv(4096)
                if not data:
                    return
                # Every ended line, and what is left of one not ended yet.
                *lines, buffered = (buffered + data).split(b"\n")
                for line in lines:
                    if len(line) > self.max_line:
                        return self._too_long(sock, logger, address)
                    if line.strip() == b"QUIT":
                        sock.sendall(b"BYE\n")
                        return
                    sock.sendall(line.upper() + b"\n")
                    stats.incr(f"{self.name}.lines")
                if len(buffered) > self.max_line:  # too long before it even ends
                    return self._too_long(sock, logger, address)
        except (TimeoutError, ConnectionError):
            return  # silent for too long, or gone: brimd closes the socket

    def _too_long(self, sock: Any, logger: Any, address: Any) -> None:
        logger.warning("%s: line over %d bytes from %s", self.name, self.max_line, address[0])
        sock.sendall(b"ERROR line too long\n")

    @classmethod
    def parse_conf(cls, name: str, conf: Any) -> dict[str, Any]:
        return {
            "max_line": conf.get_int(name, "max_line", 1024, minimum=1),
            "idle_timeout": conf.get_float(name, "idle_timeout", 30.0, minimum=0.1),
        }

    @classmethod
    def stats_conf(cls, name: str, conf: dict[str, Any]) -> list[tuple[str, str]]:
        return [(f"{name}.lines", "sum")]
