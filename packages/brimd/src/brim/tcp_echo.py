"""brim.tcp_echo.TCPEcho: a TCP subserver app that echoes what it receives.

The shape of every TCP app: built once per worker with ``(name, conf)``,
then called in its own green thread for each connection with the (green)
socket, the peer address and an env of ``brim.*`` items.
"""

from __future__ import annotations

from typing import Any

from brim.conf import Option, read_options


class TCPEcho:
    """Send back every byte received until the client closes or goes quiet."""

    def __init__(self, name: str, conf: dict[str, Any]) -> None:
        self.name = name
        self.chunk_read = conf["chunk_read"]
        self.idle_timeout = conf["idle_timeout"]
        self.stat = f"{name}.bytes"

    def __call__(self, sock: Any, address: Any, env: dict[str, Any]) -> None:
        stats = env["brim.stats"]
        sock.settimeout(self.idle_timeout)
        try:
            while True:
                data = sock.recv(self.chunk_read)
                if not data:
                    return
                sock.sendall(data)
                stats.set(self.stat, stats.get(self.stat) + len(data))
        except (TimeoutError, ConnectionError):
            return

    #: The app's own options; brimd refuses any other in its section (besides
    #: ``call`` and the TCP subserver's options).
    conf_options = (
        Option("chunk_read", "int", 65536, "Bytes read at a time.", minimum=1),
        Option("idle_timeout", "float", 60.0, "Seconds of client silence before hanging up.",
               minimum=0.001),
    )

    @classmethod
    def parse_conf(cls, name: str, conf: Any) -> dict[str, Any]:
        return read_options(conf, name, cls.conf_options)

    @classmethod
    def stats_conf(cls, name: str, conf: Any) -> list[tuple[str, str]]:
        return [(f"{name}.bytes", "sum")]
