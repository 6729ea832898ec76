"""Requests a WSGI worker took with it: a request-log line for each, written by the master.

Each WSGI worker keeps the requests it has in flight in shared memory
(:mod:`brim.wsgi.inflight`). When the master reaps a worker, it reads that
table: a worker that ended normally left it empty; any request still in it
never got its own line, so the master writes one, under the request's txn,
in the worker's request log (same format as every request line), and
counts it (``killed_requests_count``). The status says how it was lost:

- 504 (Gateway Timeout): the worker was killed as hung (no heartbeat for
  ``worker_timeout``): the request's answer was not coming in time.
- 503 (Service Unavailable): the master killed a draining worker still busy
  when ``grace`` ran out (stop, reload, recycle such as max_worker_rss): the
  server was going away, not the request's fault.
- 502 (Bad Gateway): the worker died otherwise (it crashed, or something
  else killed it, such as the kernel's OOM killer).

The line's duration runs to the moment the master read the table, and its
extra field says why (``killed:hung``, ``killed:grace``, ``killed:died``).
Workers of a previous image, after a reload, are not covered: their tables
stayed with that image.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from brim.wsgi.inflight import read_in_flight
from brim.wsgi.requestlog import RequestLog, request_log

if TYPE_CHECKING:
    from .core import Server

__all__ = ["KilledRequests", "lost_status"]


def lost_status(cause: str, killed: bool) -> tuple[int, str]:
    """The status logged for a request lost with its worker, and the reason shown."""
    if cause == "hung":
        return 504, "killed:hung"
    if killed:
        return 503, "killed:grace"
    return 502, "killed:died"


class KilledRequests:
    """The master's side: reads a reaped worker's table and logs what it holds."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self._logs: dict[str, RequestLog | None] = {}

    def log(self, group: str, worker_id: int, pid: int, cause: str, killed: bool,
            notes: bytes) -> int:
        """Log each request the worker left in ``notes``; how many it lost (overflow too)."""
        lost, overflow = read_in_flight(notes)
        if not lost and not overflow:
            return 0
        status, why = lost_status(cause, killed)
        log = self._request_log(group)
        now = time.time()
        if log is not None:
            for req in lost:
                # Fields escaped by the line's format, as in every request line.
                log.write(req.client, req.method, req.target, status, 0, 0,
                          max(0.0, now - req.start), req.txn, None, None, [why], None, now)
            log.flush()
        self.server.logger.warning(
            "%s worker %d (pid %d) went with %d request(s) in flight%s: logged as %d (%s)",
            group, worker_id, pid, len(lost) + overflow,
            f" ({overflow} not recorded: table full)" if overflow else "", status, why)
        return len(lost) + overflow

    def _request_log(self, group: str) -> RequestLog | None:
        if group not in self._logs:
            server = self.server
            sub = next((s for s in server.subservers if s.group == group), None)
            logger: logging.Logger = server.logger
            if sub is not None and sub.log != server.log:
                logger = server.worker_logger(sub)
            self._logs[group] = request_log(logger)
        return self._logs[group]
