"""brim.stats: lock-free shared-memory stats for pre-forked servers, and the app that reports them.

A StatsStore is built in the parent before it forks; each child takes its own
StatsBucket and is that bucket's only writer, so counting costs a dict lookup
and a memory write, never a lock or a syscall. Any process can read every
bucket at any time; snapshot() rolls them up per the declared stat types.

Stdlib only, so any forking program can use it, not just brimd.
"""

from ._app import Stats
from ._bucket import StatsBucket
from ._declare import STAT_TYPES, StatsError, check_stats, server_stats
from ._prometheus import prometheus_text
from ._store import StatsStore

__all__ = [
    'STAT_TYPES',
    'Stats',
    'StatsBucket',
    'StatsError',
    'StatsStore',
    'check_stats',
    'prometheus_text',
    'server_stats',
]
