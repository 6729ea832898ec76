"""brim.udp_echo.UDPEcho: a UDP subserver app that sends each datagram back.

The shape of every UDP app: built once per worker with ``(name, conf)``,
then called in a green thread per datagram with the (green) socket to reply
on, the datagram, the sender's address and an env of ``brim.*`` items.
"""

from __future__ import annotations

from typing import Any


class UDPEcho:
    """Reply to each datagram with the same bytes."""

    #: No options of its own: brimd refuses any in its section but ``call`` and
    #: the UDP subserver's.
    conf_options: tuple[str, ...] = ()

    def __init__(self, name: str, conf: Any) -> None:
        self.name = name
        self.stat = f"{name}.datagrams"

    def __call__(self, sock: Any, datagram: bytes, address: Any, env: dict[str, Any]) -> None:
        env["brim.stats"].incr(self.stat)
        sock.sendto(datagram, address)

    @classmethod
    def stats_conf(cls, name: str, conf: Any) -> list[tuple[str, str]]:
        return [(f"{name}.datagrams", "sum")]
