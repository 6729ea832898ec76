"""The requests a worker has in flight, kept in shared memory the master reads after a kill.

Why: a worker killed by its master (hung, or still busy when ``grace`` ran
out) takes its requests with it, and a killed process logs nothing. Shared
memory outlives the process, so the master reads this table once it has
reaped the worker and logs a line for each request still in it (see
brimd's ``killed`` module).

Layout: a 16-byte header (a magic word, the capacity, and a count of
requests that found every row taken), then ``capacity`` rows of 512 bytes:
start time (a double, 0.0 for a free row), txn (32 bytes), method (16),
client (64), target (392). Longer values are cut to fit; the reader
escapes them as it escapes any logged field. The capacity is
``concurrent_per_worker`` capped at :data:`MAX_ROWS`: a worker rarely has
more requests in flight than that, and the overflow count says how many
went unrecorded if it does.

Cost per request: one ``pack_into`` of the row (the method and target are
encoded once per distinct head, cached on the parsed request) and, at the
end, one store of 0.0 into its start time. Rows are claimed from a free
list: ``list.pop`` and ``list.append`` are each atomic under the GIL, so
green threads and OS threads of one worker share a table without a lock.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any, NamedTuple

__all__ = ["MAX_ROWS", "TARGET_BYTES", "InFlightTable", "LostRequest", "read_in_flight",
           "table_size"]

#: The most rows a worker's table has, whatever concurrent_per_worker says.
MAX_ROWS = 256

#: The bytes of a target the table keeps (the rest is cut).
TARGET_BYTES = 392

_MAGIC = 0x62726966  # "brif"
_HEADER = struct.Struct("=IIQ")  # magic, capacity, overflow
_ROW = struct.Struct("=d32s16s64s392s")
_START = struct.Struct("=d")


def table_size(concurrency: int) -> int:
    """Bytes of notes a worker serving ``concurrency`` requests at once needs."""
    return _HEADER.size + _ROW.size * max(1, min(concurrency, MAX_ROWS))


class LostRequest(NamedTuple):
    """One request a worker still had in flight when it went."""

    start: float
    txn: str
    method: str | None
    client: str
    target: str | None


class InFlightTable:
    """One worker's table, over its shared notes (``buf``, from the supervisor)."""

    __slots__ = ("_buf", "_free")

    def __init__(self, buf: Any) -> None:
        rows = (len(buf) - _HEADER.size) // _ROW.size
        self._buf = buf
        _HEADER.pack_into(buf, 0, _MAGIC, rows, 0)
        for n in range(rows):
            _START.pack_into(buf, _HEADER.size + n * _ROW.size, 0.0)
        # Popped from the end: the lowest rows are used first, so only the
        # pages a worker's real concurrency needs are ever touched.
        self._free = [_HEADER.size + n * _ROW.size for n in reversed(range(rows))]

    def claim(self, start: float, txn: str, method: bytes, target: bytes, client: bytes) -> int:
        """Record a request; its row's offset for :meth:`release` (-1 when the table is full).

        ``txn`` is a txn id (hex digits); ``client`` comes encoded, as it is
        the same for every request of a connection.
        """
        try:
            at = self._free.pop()
        except IndexError:
            buf = self._buf
            _HEADER.pack_into(buf, 0, _MAGIC, (len(buf) - _HEADER.size) // _ROW.size,
                              _HEADER.unpack_from(buf, 0)[2] + 1)
            return -1
        # encode() with no arguments: the codec lookup an encoding name
        # costs is more than the encoding of 32 hex digits.
        _ROW.pack_into(self._buf, at, start, txn.encode(), method, client, target)
        return at

    def release(self, at: int) -> None:
        """The request in the row at ``at`` has ended."""
        if at >= 0:
            _START.pack_into(self._buf, at, 0.0)
            self._free.append(at)


def _text(field: bytes) -> str:
    return field.rstrip(b"\0").decode("latin-1")


def read_in_flight(notes: bytes) -> tuple[list[LostRequest], int]:
    """The requests a table holds, oldest first, and its overflow count ([], 0: no table)."""
    if len(notes) < _HEADER.size:
        return [], 0
    magic, rows, overflow = _HEADER.unpack_from(notes, 0)
    if magic != _MAGIC:
        return [], 0
    return sorted(_rows(notes, rows)), overflow


def _rows(notes: bytes, rows: int) -> Iterator[LostRequest]:
    for n in range(rows):
        at = _HEADER.size + n * _ROW.size
        if at + _ROW.size > len(notes):
            return
        start, txn, method, client, target = _ROW.unpack_from(notes, at)
        if start > 0.0:
            yield LostRequest(start, _text(txn), _text(method) or None, _text(client),
                              _text(target) or None)
