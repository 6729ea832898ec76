"""Why workers were replaced: the counters the master keeps per reason, in each bucket.

The master counts these, not the workers: a worker that crashed or hung
cannot say so. They sit in the bucket of the worker slot concerned (words
the worker itself never writes, so each word still has one writer), and
are counters in Prometheus: a reload carries them on like every counter.

Restarts (the worker went unasked): ``crash`` (it exited or was killed by
anyone but the master), ``hung`` (the master killed it for missing
heartbeats, see ``worker_timeout``). Recycles (the master replaced it on
purpose): ``max_requests``, ``lifetime`` (max_worker_lifetime), ``rss``
(max_worker_rss), ``reload`` (every worker, on each reload).

``killed_requests_count``: requests a worker had in flight when it went
without finishing them (see :mod:`brim.server.killed`); each also got a
request-log line.
"""

from __future__ import annotations

from brim.stats import StatDecl

RESTARTS = ("crash", "hung")
RECYCLES = ("max_requests", "lifetime", "rss", "reload")

#: What the supervisor's recycle reasons start with, and the reason counted for it.
_RECYCLE_PREFIXES = (("max_requests", "max_requests"), ("max_worker_lifetime", "lifetime"),
                     ("max_worker_rss", "rss"))


KILLED_STAT = "killed_requests_count"


def restart_stat(reason: str) -> str:
    return f"restart_{reason}_count"


def recycle_stat(reason: str) -> str:
    return f"recycle_{reason}_count"


def recycle_reason(text: str) -> str | None:
    """The counted reason for a supervisor recycle reason (``max_worker_rss: RSS ...``)."""
    for prefix, reason in _RECYCLE_PREFIXES:
        if text.startswith(prefix):
            return reason
    return None


EXIT_STATS: list[StatDecl] = [
    *((restart_stat(r), "sum", f"Times this worker was restarted after it went unasked: {r}")
      for r in RESTARTS),
    *((recycle_stat(r), "sum", f"Times this worker was replaced on purpose: {r}")
      for r in RECYCLES),
    (KILLED_STAT, "sum", "Requests in flight in this worker when it was killed or died "
     "(each logged: 504 hung, 503 killed past grace, 502 died otherwise)"),
]
