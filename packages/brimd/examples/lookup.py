"""Lookup: a UDP app for brimd that answers a key with its value from the conf.

The example of the UDP guide (docs/udp.rst). The table is read once, by
``parse_conf`` in the master, and every worker shares it after the fork.
"""

from __future__ import annotations

from typing import Any


class Lookup:
    """Reply to a datagram holding a key with that key's value, or with '?'."""

    def __init__(self, name: str, conf: dict[bytes, bytes]) -> None:
        self.name = name
        self.table = conf

    def __call__(self, sock: Any, datagram: bytes, address: Any, env: dict[str, Any]) -> None:
        value = self.table.get(datagram.strip())
        if value is None:
            env["brim.stats"].incr(f"{self.name}.misses")
            value = b"?"
        sock.sendto(value + b"\n", address)

    @classmethod
    def parse_conf(cls, name: str, conf: Any) -> dict[bytes, bytes]:
        table = {}
        for entry in conf.get_list(name, "entries"):
            key, sep, value = entry.partition("=")
            if not sep or not key:
                raise conf.error(name, "entries", f"{entry!r} is not key=value")
            table[key.encode()] = value.encode()
        return table

    @classmethod
    def stats_conf(cls, name: str, conf: dict[bytes, bytes]) -> list[tuple[str, str]]:
        return [(f"{name}.misses", "sum")]
