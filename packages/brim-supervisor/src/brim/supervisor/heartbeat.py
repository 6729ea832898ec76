"""A tiny shared-memory slot per worker: its heartbeat and a drain request.

Why shared memory: the worker proves it is alive by storing a timestamp,
which costs no system call and no master wake-up; the master reads it only
when it checks for hung workers. The same slot carries the master's "drain
now" flag, so a worker can learn it is being retired by reading memory,
without relying on its own signal handlers.

Layout (16 bytes, one anonymous shared mapping made before each fork):
offset 0 a double, the worker's last ``time.monotonic()``; offset 8 one byte,
1 once the master asked the worker to drain; offset 9 one byte, 1 once the
worker said it is up (it also says so on the control pipe, which wakes the
master; the byte makes sure a dropped message cannot lose it); offset 10 one
byte, 1 once the master said the service is going away (the drain delay:
still serving, but a readiness check should say "not ready").
CLOCK_MONOTONIC is system-wide, so the master can compare the worker's
timestamps with its own clock.

A group may ask for *notes* as well (``notes_size`` bytes, a second
anonymous shared mapping): a region the worker writes as it pleases and the
master reads after the worker has exited, killed or not. Shared memory
outlives the process, so whatever a worker noted there (the requests it had
in flight, say) is still there when the master reaps it. Pages are only
backed by memory once the worker touches them.
"""

from __future__ import annotations

import mmap
import struct
import time

_STAMP = struct.Struct("d")
_DRAIN_OFFSET = 8
_READY_OFFSET = 9
_UNREADY_OFFSET = 10
_SIZE = 16


class HeartbeatSlot:
    """One worker's slot; created by the master, inherited by the child at fork."""

    __slots__ = ("_mm", "notes")

    def __init__(self, notes_size: int = 0) -> None:
        self._mm: mmap.mmap | None = mmap.mmap(-1, _SIZE)  # MAP_SHARED | MAP_ANONYMOUS
        #: The worker's notes (see the module doc); None when the group has none.
        self.notes: mmap.mmap | None = mmap.mmap(-1, notes_size) if notes_size > 0 else None
        self.beat()

    def beat(self) -> None:
        """Store the current monotonic time: "I am alive and making progress"."""
        if self._mm is not None:
            _STAMP.pack_into(self._mm, 0, time.monotonic())

    def last(self) -> float:
        """The monotonic time of the last beat (0.0 once closed)."""
        if self._mm is None:
            return 0.0
        return _STAMP.unpack_from(self._mm, 0)[0]

    def request_drain(self) -> None:
        if self._mm is not None:
            self._mm[_DRAIN_OFFSET] = 1

    def drain_requested(self) -> bool:
        return self._mm is not None and self._mm[_DRAIN_OFFSET] == 1

    def mark_ready(self) -> None:
        if self._mm is not None:
            self._mm[_READY_OFFSET] = 1

    def is_ready(self) -> bool:
        return self._mm is not None and self._mm[_READY_OFFSET] == 1

    def mark_unready(self) -> None:
        if self._mm is not None:
            self._mm[_UNREADY_OFFSET] = 1

    def unready(self) -> bool:
        return self._mm is not None and self._mm[_UNREADY_OFFSET] == 1

    def take_notes(self) -> bytes:
        """A copy of the notes (b"" without any): what the master reads once the worker went."""
        return bytes(self.notes) if self.notes is not None else b""

    def close(self) -> None:
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        if self.notes is not None:
            self.notes.close()
            self.notes = None
