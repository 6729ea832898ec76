"""brim.stats: lock-free shared-memory stats for pre-forked programs, and the app that reports them.

A StatsStore is built in the parent before it forks, from the groups of
processes the program describes (:class:`Group`); each child takes its own
StatsBucket and is that bucket's only writer, so counting costs a dict lookup
and a memory write, never a lock or a syscall. Any process can read every
bucket at any time; snapshot() rolls them up per the declared stat types.

Stdlib only, so any forking program can use it, not just brimd. Nothing here
knows what the program's processes are for: the Group records say it.
"""

from ._app import Stats
from ._bucket import StatsBucket
from ._declare import PID, STAT_TYPES, StatDecl, StatsError, check_stats, is_counter, stat_help
from ._group import DAEMON, GROUP_KINDS, WORKERS, Group
from ._histogram import BOUNDS as HISTOGRAM_BOUNDS
from ._histogram import SUM as HISTOGRAM_SUM
from ._histogram import Histogram, quantile
from ._prometheus import prometheus_text
from ._store import DEPARTED, Carry, StatsStore

__all__ = [
    "DAEMON",
    "DEPARTED",
    "GROUP_KINDS",
    "HISTOGRAM_BOUNDS",
    "HISTOGRAM_SUM",
    "PID",
    "STAT_TYPES",
    "WORKERS",
    "Carry",
    "Group",
    "Histogram",
    "StatDecl",
    "Stats",
    "StatsBucket",
    "StatsError",
    "StatsStore",
    "check_stats",
    "is_counter",
    "prometheus_text",
    "quantile",
    "stat_help",
]
