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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from brim.log.sinks import FLUSH_BACKLOG_EVERY, FLUSH_EVERY

from .body import NoBody
from .inflight import TARGET_BYTES, InFlightTable
from .metrics import Metrics
from .requestlog import RequestLog, request_log
from .settings import HTTPSettings
from .stats import REQUEST_COUNT, status_class_stat, status_code_stat

if TYPE_CHECKING:
    from .engine import Engine
    from .exchange import Exchange
    from .request import Request

__all__ = ["DRAIN_IDLE", "Counters", "ServerState", "Shed", "shed_longest"]

#: Seconds an idle keep-alive connection may still send one request once its
#: worker starts draining (see ServerState.drain).
DRAIN_IDLE = 2.0


class Shed(Exception):
    """Thrown into a waiting connection's thread (green or OS) to end it.

    Used when the worker is full and needs the slot for a new connection
    (WSGI and TCP), and when a draining WSGI worker closes the connections
    that stayed idle.
    """


def shed_longest(throw: Callable[[Any, type[BaseException]], bool],
                 *queues: dict[Any, float]) -> bool:
    """Throw Shed into the thread that has waited longest in the first queue that has
    one; False when no thread in any queue could be shed.

    A queue maps a waiting thread (green or OS: an engine's ``current()``)
    to when it started waiting, oldest first; ``throw`` is the engine's.
    What WSGI connections and TCP connections (see
    :func:`brim.wsgi.green.green_socket`) share for shedding. With OS
    threads a queue changes under the loop, and a thread whose bytes came
    meanwhile is not waiting any more: the engine's throw says so, and the
    next one is tried.
    """
    for waiting in queues:
        while waiting:
            try:
                thread = next(iter(waiting))
            except (StopIteration, RuntimeError):  # emptied or changed by a thread
                continue
            if waiting.pop(thread, None) is None:
                continue  # it stopped waiting meanwhile
            if throw(thread, Shed):
                return True
    return False


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
        #: The positions each status code is counted at, worked out on its first use.
        self._by_code: dict[int, tuple[int, ...]] = {}
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
        at = self._by_code.get(code) if self._stats is not None else ()
        if at is None:
            at = self._by_code[code] = self._positions(code)
        if at:
            incr_at = self._stats.incr_at
            for i in at:
                incr_at(i)

    def _positions(self, code: int) -> tuple[int, ...]:
        found = (self._request, self._classes[code // 100] if 0 < code < 1000 else None,
                 self._codes.get(code))
        return tuple(i for i in found if i is not None)


class ServerState:
    """What every connection of one worker's server shares.

    ``waiting_idle`` holds connections waiting for a first byte or idle
    between requests; ``waiting_head`` those part-way through a head. Both
    map the connection's green thread to the time it started waiting, in
    that order, so the oldest is first.
    """

    def __init__(self, settings: HTTPSettings, app: Any, logger: logging.Logger,
                 stats: Any, base_env: dict[str, Any], engine: Engine,
                 notes: Any = None) -> None:
        #: The worker model's engine: everything that spawns, waits or wakes.
        self.engine = engine
        #: Guards what a worker's connections share (gauges, counters, the
        #: request log's memos) where OS threads could interleave on it.
        self.lock = engine.lock()
        #: The same lock for the bookkeeping every request does as it starts
        #: and ends; None where the engine's threads never preempt each other
        #: (green): taking even a lock that never blocks costs two C calls
        #: with argument parsing, twice a request, for nothing.
        self.request_lock = self.lock if engine.PREEMPTIVE else None
        self.settings = settings
        #: The body of every request without one, on any connection (see NoBody).
        self.no_body = NoBody(settings)
        self.app = app
        self.logger = logger
        self.counters = Counters(stats, settings.count_status_codes)
        #: Load gauges and the request-duration histogram, in the stats bucket.
        self.metrics = Metrics(stats)
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
        #: Request heads already parsed, and the Request each gave (parse_head's cache).
        self.heads: dict[bytes, Request] = {}
        #: Requests until on_request_limit is called (see limit_requests).
        self.requests_left: int | None = None
        self.on_request_limit: Callable[[], None] | None = None
        #: The exchanges being served, oldest first (values unused): each
        #: registers itself when it starts serving and leaves in finish().
        self.in_flight: dict[Exchange, None] = {}
        #: The same requests in shared memory, for the master to log if it kills
        #: this worker (``notes`` from the supervisor; None: not kept).
        self.table = InFlightTable(notes) if notes is not None else None

    def started(self, ex: Exchange) -> None:
        """An exchange starts serving: listed for stack dumps, counted in flight."""
        lock = self.request_lock  # OS threads start at once; the gauges are not atomic
        if lock is not None:
            lock.acquire()
        try:
            self.in_flight[ex] = None
            self.metrics.request_started()
        finally:
            if lock is not None:
                lock.release()
        # Outside the lock: the table's rows come from a free list whose pop
        # and append are atomic on their own (see brim.wsgi.inflight).
        table = self.table
        if table is not None:
            req = ex.req
            if req is not None:
                recorded = req.recorded
                if recorded is None:
                    recorded = req.recorded = (req.method.encode("latin-1"),
                                               req.target.encode("latin-1")[:TARGET_BYTES])
                method, target = recorded
            else:  # refused before an app saw it
                err = ex.error
                method = (err.method or "").encode("latin-1", "replace") if err else b""
                target = (err.target or "")[:TARGET_BYTES].encode("latin-1", "replace") \
                    if err else b""
            ex.row = table.claim(ex.start, ex.txn, method, target, ex.conn.client_recorded)

    def finished(self, ex: Exchange) -> None:
        """An exchange has ended (finish()): no longer in flight; its duration is observed."""
        if ex in self.in_flight:
            del self.in_flight[ex]
            self.metrics.request_finished(ex.start)
            if self.table is not None:
                self.table.release(ex.row)

    def count(self, code: int) -> None:
        self.counters.count(code)
        if self.requests_left is not None:
            self.requests_left -= 1
            if self.requests_left == 0 and self.on_request_limit is not None:
                self.on_request_limit()

    def limit_requests(self, count: int, then: Callable[[], None]) -> None:
        """Call ``then`` once, when the ``count``-th request from now has finished.

        How ``max_requests`` recycles a worker: ``then`` asks the master for
        a replacement, and this worker serves on until it is told to drain.
        """
        self.requests_left = count
        self.on_request_limit = then

    def requests_in_flight(self) -> list[str]:
        """One line per request being served now, oldest first, for a stack dump.

        Method, target, txn, seconds since it arrived, and the client.
        """
        now = time.time()
        lines = []
        try:
            exchanges = list(self.in_flight)
        except RuntimeError:  # changed by another OS thread meanwhile: once more
            exchanges = list(self.in_flight)
        for ex in exchanges:
            req = ex.req
            method: str | None
            target: str | None
            if req is not None:
                method, target = req.method, req.target
            else:  # refused before an app saw it
                method = ex.error.method if ex.error else None
                target = ex.error.target if ex.error else None
            lines.append(f'{method or "-"} {target or "-"} txn:{ex.txn} '
                         f'for {now - ex.start:.2f}s from {ex.client or "-"}')
        return lines

    def shed_one(self) -> bool:
        """End the longest-idle waiting connection to free a slot; False if none waits.

        An idle one is closed quietly (nothing was asked); failing that, the
        connection that has waited longest on a head in progress gets 408.
        """
        if shed_longest(self.engine.throw, self.waiting_idle, self.waiting_head):
            self.shed_count += 1
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
        self.engine.spawn(self._close_idle_later)

    def flush_log(self) -> None:
        """Write out the request lines waiting in a buffered sink."""
        if self.request_log is not None:
            with self.lock:
                self.request_log.flush()

    def flush_log_forever(self) -> None:
        """Flush the request log every FLUSH_EVERY seconds (a thread's loop).

        So a worker that is killed loses at most the lines of its last
        FLUSH_EVERY seconds. While a sink holds a backlog (a syslog daemon
        that was down, now taking lines as fast as it reads them) the flushes
        come every FLUSH_BACKLOG_EVERY seconds, or a backlog of thousands of
        lines would drain one daemon queue (10 lines by default) per
        FLUSH_EVERY, behind every new line, long after the load has gone.
        """
        log = self.request_log
        while True:
            self.engine.sleep(FLUSH_BACKLOG_EVERY if log is not None and log.backlog()
                              else FLUSH_EVERY)
            self.flush_log()

    def _close_idle_later(self) -> None:
        self.engine.sleep(DRAIN_IDLE)
        while self.waiting_idle:
            try:
                thread = next(iter(self.waiting_idle))
            except (StopIteration, RuntimeError):
                continue
            if self.waiting_idle.pop(thread, None) is not None:
                self.engine.throw(thread, Shed)
