"""The stats a WSGI worker keeps for itself: their names, types and meaning.

These are brim-wsgi's names (its HTTP server counts them, see
:class:`brim.wsgi.state.Counters`), so they are declared here rather than in
brim-stats, which only stores whatever a program declares. Each declaration
carries the help text Prometheus shows for it.
"""

from __future__ import annotations

from collections.abc import Iterable

from brim.stats import StatsError

from .settings import HTTPSettings

REQUEST_COUNT = "request_count"
"""Requests answered, including those the server refused itself."""

START_COUNT = "start_count"
"""Times a worker process started (brim.stats counts it in mark_started)."""


PID = "pid"
"""The worker's process id (set by mark_started); reports add its RSS and CPU from /proc."""

REQUEST_DURATION = "request_duration_seconds"
"""Histogram of request durations (see brim.wsgi.metrics for what each gauge means)."""

IN_FLIGHT = "requests_in_flight"
CONNECTIONS_OPEN = "connections_open"
CONNECTIONS_IDLE = "connections_idle"
BUSY_SLOTS = "busy_slots"


def status_class_stat(digit: int) -> str:
    """The stat counting responses whose status starts with ``digit`` (2 -> status_2xx_count)."""
    return f"status_{digit}xx_count"


def status_code_stat(code: int) -> str:
    """The stat counting responses with exactly this status (404 -> status_404_count)."""
    return f"status_{code}_count"


def server_stats(
    count_status_codes: Iterable[int] = HTTPSettings.count_status_codes,
) -> list[tuple[str, str, str]]:
    """The stats a WSGI subserver keeps for itself, in the order they are reported.

    ``start_time`` is a ``worker`` stat: each worker has its own, and the
    overall value is the server's start (see StatsStore.snapshot).
    ``start_count`` counts the worker's starts, so restarts show. The rest
    are counters of answered requests: all of them, by status class, then
    the request-duration histogram and the load gauges (brim.wsgi.metrics),
    then a counter for each code in ``count_status_codes`` (3-digit ints, or
    StatsError). ``pid`` gets the worker's RSS and CPU into reports.
    """
    stats = [
        ("start_time", "worker", "When this worker process last started, in seconds since the "
         "epoch (0 if it has not started yet)"),
        (PID, "worker", "Process id of the worker now in this slot (0: never started)"),
        (START_COUNT, "sum", "Times this worker process started; more than once means it "
         "was restarted"),
        (REQUEST_COUNT, "sum", "Requests answered, including those refused by the server "
         "itself (malformed, timed out)"),
    ]
    stats.extend((status_class_stat(n), "sum", f"Responses with a {n}xx status")
                 for n in range(2, 6))
    stats += [
        (REQUEST_DURATION, "histogram", "Seconds from a request's head to its end (the "
         "duration of its log line)"),
        (IN_FLIGHT, "sum", "Requests being served now"),
        (CONNECTIONS_OPEN, "sum", "Client connections open now"),
        (CONNECTIONS_IDLE, "sum", "Open client connections with no request in flight"),
        (BUSY_SLOTS, "sum", "Serving slots (green or OS threads) in use now"),
    ]
    for code in count_status_codes:
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 999:
            raise StatsError(f"count_status_codes: {code!r} is not a 3-digit HTTP status code")
        stats.append((status_code_stat(code), "sum", f"Responses with status {code}"))
    return stats
