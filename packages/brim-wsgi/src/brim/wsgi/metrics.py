"""The load a WSGI worker is under, kept in its stats bucket as it changes.

Why counted where they change rather than sampled: a scrape or ``brimd top``
reads the shared store from another process, which cannot see this one's
objects, and a sampler green thread would lag a second behind and stop with
a worker that is stuck. Each change is a few word writes, straight into the
bucket's shared words (no method call per write: this runs twice a request).

- ``requests_in_flight``: requests between their head and their log line.
- ``connections_open``: client connections this worker holds.
- ``connections_idle``: those of them with no request in flight (waiting for
  the next request, or reading its head): ``open - in flight``.
- ``busy_slots``: the worker's serving slots in use (green threads today;
  OS threads in a threads model). A slot holds its connection for the
  connection's life, so with green threads this equals connections_open.
- ``request_duration_seconds``: a histogram of each request's time from its
  head to its end (the duration its log line shows): a bisect, one
  increment and one add.

A worker that starts sets its gauges to 0: one killed while busy leaves its
numbers behind in the bucket, and its replacement must not inherit them.
With no bucket, or one without these stats, nothing is kept.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from typing import Any

from brim.stats import HISTOGRAM_BOUNDS, HISTOGRAM_SUM

from .stats import BUSY_SLOTS, CONNECTIONS_IDLE, CONNECTIONS_OPEN, IN_FLIGHT, REQUEST_DURATION

__all__ = ["Metrics"]

_BOUNDS = HISTOGRAM_BOUNDS


class Metrics:
    """One worker's gauges and request-duration histogram, in its bucket (``stats``)."""

    __slots__ = ("_busy", "_first", "_flight", "_idle", "_open", "_sum", "_words", "busy",
                 "in_flight", "open")

    def __init__(self, stats: Any) -> None:
        self.in_flight = 0
        self.open = 0
        self.busy = 0
        self._words: Any = None
        self._flight = self._open = self._idle = self._busy = self._first = self._sum = 0
        if stats is None or not hasattr(stats, "words"):
            return
        at = [stats.index_of(n) for n in (IN_FLIGHT, CONNECTIONS_OPEN, CONNECTIONS_IDLE,
                                          BUSY_SLOTS)]
        first = stats.histogram_at(REQUEST_DURATION)
        if None in at or first is None:
            return
        words, base = stats.words()
        self._flight, self._open, self._idle, self._busy = (base + i for i in at)
        self._first = base + first
        self._sum = base + first + HISTOGRAM_SUM
        for i in (self._flight, self._open, self._idle, self._busy):
            words[i] = 0
        self._words = words

    def request_started(self) -> None:
        self.in_flight += 1
        words = self._words
        if words is not None:
            words[self._flight] = self.in_flight
            idle = self.open - self.in_flight
            words[self._idle] = idle if idle > 0 else 0

    def request_finished(self, start: float) -> None:
        """A request that began at ``start`` (time.time()) has ended: its duration is observed."""
        self.in_flight -= 1
        words = self._words
        if words is not None:
            took = time.time() - start
            words[self._first + bisect_left(_BOUNDS, took)] += 1
            if took > 0:
                words[self._sum] += int(took * 1_000_000)
            words[self._flight] = self.in_flight
            idle = self.open - self.in_flight
            words[self._idle] = idle if idle > 0 else 0

    def connection_opened(self) -> None:
        self.open += 1
        self._connections()

    def connection_closed(self) -> None:
        self.open -= 1
        self._connections()

    def slot_taken(self) -> None:
        self.busy += 1
        if self._words is not None:
            self._words[self._busy] = self.busy

    def slot_freed(self) -> None:
        self.busy -= 1
        if self._words is not None:
            self._words[self._busy] = self.busy

    def _connections(self) -> None:
        words = self._words
        if words is not None:
            words[self._open] = self.open
            words[self._idle] = max(0, self.open - self.in_flight)
