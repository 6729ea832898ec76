"""The load a WSGI worker is under, kept in its stats bucket as it changes.

Why counted where they change rather than sampled: a scrape or ``brimd top``
reads the shared store from another process, which cannot see this one's
objects, and a sampler green thread would lag a second behind and stop with
a worker that is stuck. Each change is one or two word writes.

- ``requests_in_flight``: requests between their head and their log line.
- ``connections_open``: client connections this worker holds.
- ``connections_idle``: those of them with no request in flight (waiting for
  the next request, or reading its head): ``open - in flight``.
- ``busy_slots``: the worker's serving slots in use (green threads today;
  OS threads in a threads model). A slot holds its connection for the
  connection's life, so with green threads this equals connections_open.
- ``request_duration_seconds``: a histogram of each request's time from its
  head to its end (the duration its log line shows).

A worker that starts sets its gauges to 0: one killed while busy leaves its
numbers behind in the bucket, and its replacement must not inherit them.
"""

from __future__ import annotations

import time
from typing import Any

from .stats import BUSY_SLOTS, CONNECTIONS_IDLE, CONNECTIONS_OPEN, IN_FLIGHT, REQUEST_DURATION

__all__ = ["Metrics"]


class Metrics:
    """One worker's gauges and request-duration histogram, in its bucket (``stats``)."""

    __slots__ = ("_at", "_hist", "_set_at", "busy", "in_flight", "open")

    def __init__(self, stats: Any) -> None:
        self.in_flight = 0
        self.open = 0
        self.busy = 0
        self._hist = None
        self._set_at = None
        #: Positions of in flight, open, idle and busy in the bucket (None: undeclared).
        self._at: tuple[int | None, ...] = (None,) * 4
        if stats is None or not hasattr(stats, "set_at"):
            return
        self._hist = stats.histogram(REQUEST_DURATION)
        self._at = tuple(stats.index_of(n)
                         for n in (IN_FLIGHT, CONNECTIONS_OPEN, CONNECTIONS_IDLE, BUSY_SLOTS))
        self._set_at = stats.set_at
        for i in self._at:
            if i is not None:
                stats.set_at(i, 0)

    def request_started(self) -> None:
        self.in_flight += 1
        self._publish()

    def request_finished(self, start: float) -> None:
        """A request that began at ``start`` (time.time()) has ended: its duration is observed."""
        self.in_flight -= 1
        if self._hist is not None:
            self._hist.observe(time.time() - start)
        self._publish()

    def connection_opened(self) -> None:
        self.open += 1
        self._publish()

    def connection_closed(self) -> None:
        self.open -= 1
        self._publish()

    def slot_taken(self) -> None:
        self.busy += 1
        self._publish()

    def slot_freed(self) -> None:
        self.busy -= 1
        self._publish()

    def _publish(self) -> None:
        set_at = self._set_at
        if set_at is None:
            return
        flight, opened, idle, busy = self._at
        if flight is not None:
            set_at(flight, self.in_flight)
        if opened is not None:
            set_at(opened, self.open)
        if idle is not None:
            set_at(idle, max(0, self.open - self.in_flight))
        if busy is not None:
            set_at(busy, self.busy)
