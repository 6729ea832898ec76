"""The shared state of one worker's HTTP server, in one explicit object.

Connections and exchanges read and change the server's state only through
this object: whether it is draining and until when, which connections are
waiting on their client (and may be shed when the worker is full), and the
status counters. Nothing on the request path reaches into the server's
privates.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from . import green
from .log import RequestLog, request_log
from .settings import HTTPSettings
from .sinks import FLUSH_EVERY
from .stats import REQUEST_COUNT, status_class_stat, status_code_stat

__all__ = ['DRAIN_IDLE', 'Counters', 'ServerState', 'Shed']

#: Seconds an idle keep-alive connection may still send one request once its
#: worker starts draining (see ServerState.drain).
DRAIN_IDLE = 2.0


class Shed(Exception):
    """Thrown into a waiting connection's green thread to end it.

    Used when the worker is full and needs the slot for a new connection,
    and when a draining worker closes the connections that stayed idle.
    """


class Counters:
    """The status counters of one stats bucket, looked up once.

    Each request then costs a few indexed increments: request_count, its
    status class (status_2xx_count ...) and, for the codes the conf names,
    status_<code>_count.
    """

    def __init__(self, stats: Any, codes: tuple[int, ...]) -> None:
        self._stats = stats
        self._request: int | None = None
        self._classes: list[int | None] = [None] * 10
        self._codes: dict[int, int] = {}
        if stats is None:
            return
        self._request = stats.index_of(REQUEST_COUNT)
        for n in range(1, 6):
            self._classes[n] = stats.index_of(status_class_stat(n))
        for code in codes:
            i = stats.index_of(status_code_stat(code))
            if i is not None:
                self._codes[code] = i

    def count(self, code: int) -> None:
        """Count one finished request with this status."""
        stats = self._stats
        if stats is None:
            return
        incr_at = stats.incr_at
        if self._request is not None:
            incr_at(self._request)
        i = self._classes[code // 100] if 0 < code < 1000 else None
        if i is not None:
            incr_at(i)
        i = self._codes.get(code)
        if i is not None:
            incr_at(i)


class ServerState:
    """What every connection of one worker's server shares.

    ``waiting_idle`` holds connections waiting for a first byte or idle
    between requests; ``waiting_head`` those part-way through a head. Both
    map the connection's green thread to the time it started waiting, in
    that order, so the oldest is first.
    """

    def __init__(self, settings: HTTPSettings, app: Any, logger: logging.Logger,
                 stats: Any, base_env: dict[str, Any]) -> None:
        self.settings = settings
        self.app = app
        self.logger = logger
        self.counters = Counters(stats, settings.count_status_codes)
        #: Where each request's line goes; None when NOTICE lines are off.
        self.request_log: RequestLog | None = request_log(logger)
        #: The environ items every request starts from.
        self.base_env = base_env
        self.draining = False
        #: When a draining worker stops waiting for idle clients (monotonic).
        self.drain_deadline = 0.0
        self.waiting_idle: dict[Any, float] = {}
        self.waiting_head: dict[Any, float] = {}
        #: Connections shed to make room, since the worker started.
        self.shed_count = 0

    def count(self, code: int) -> None:
        self.counters.count(code)

    def shed_one(self) -> bool:
        """End the longest-idle waiting connection to free a slot; False if none waits.

        An idle one is closed quietly (nothing was asked); failing that, the
        connection that has waited longest on a head in progress gets 408.
        """
        for waiting in (self.waiting_idle, self.waiting_head):
            for thread in waiting:
                del waiting[thread]
                self.shed_count += 1
                green.throw(thread, Shed)
                return True
        return False

    def drain(self) -> None:
        """Mark the server draining; idle connections get DRAIN_IDLE seconds, then end.

        Closing them the instant a drain starts races a client that is just
        sending its next request on the connection: the request would meet a
        closed socket. A client that asks within DRAIN_IDLE seconds is
        answered with ``Connection: close`` and reconnects (to a new worker,
        after a reload or restart); the rest are closed quietly.
        """
        self.draining = True
        self.drain_deadline = time.monotonic() + DRAIN_IDLE
        self.flush_log()
        green.spawn(self._close_idle_later)

    def flush_log(self) -> None:
        """Write out the request lines waiting in a buffered sink."""
        if self.request_log is not None:
            self.request_log.flush()

    def flush_log_forever(self) -> None:
        """Flush the request log every FLUSH_EVERY seconds (a green thread's loop).

        So a worker that is killed loses at most the lines of its last
        FLUSH_EVERY seconds.
        """
        while True:
            green.sleep(FLUSH_EVERY)
            self.flush_log()

    def _close_idle_later(self) -> None:
        green.sleep(DRAIN_IDLE)
        while self.waiting_idle:
            thread = next(iter(self.waiting_idle))
            del self.waiting_idle[thread]
            green.throw(thread, Shed)
