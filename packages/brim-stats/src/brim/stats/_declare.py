"""Stat declarations: the four stat types, checking what apps declare, the server's own stats.

Everything here runs in the master process before any worker forks, so a bad
declaration stops the server with one clear line instead of surfacing later as
a missing number.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

STAT_TYPES = ('worker', 'sum', 'min', 'max')
"""How a stat is rolled up over a group's buckets.

``worker``: per bucket only, no overall value. ``sum``/``min``/``max``: the
overall value is the sum, smallest or largest of the buckets' values.
"""

START_TIME = 'start_time'
"""The one stat every bucket has whether declared or not: when its process started."""

START_COUNT = 'start_count'
"""Times a bucket's process started (StatsBucket.mark_started counts it when declared):
its value minus the number of workers is how many restarts there were."""

DEFAULT_COUNT_STATUS_CODES = (404, 408, 499, 501)

_WORKER_KEY = re.compile(r'worker_[0-9]+')


class StatsError(Exception):
    """The one error brim.stats raises: a bad declaration, group, bucket or value."""


def server_stats(
    count_status_codes: Iterable[int] = DEFAULT_COUNT_STATUS_CODES,
) -> list[tuple[str, str]]:
    """The stats a WSGI subserver keeps for itself, in the order they are reported.

    ``start_time`` is a ``worker`` stat: each worker has its own, and the
    overall value is the server's start (see StatsStore.snapshot).
    ``start_count`` counts the worker's starts, so restarts show.
    """
    stats = [(START_TIME, 'worker'), (START_COUNT, 'sum'), ('request_count', 'sum')]
    stats.extend((f'status_{n}xx_count', 'sum') for n in range(2, 6))
    for code in count_status_codes:
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 999:
            raise StatsError(f'count_status_codes: {code!r} is not a 3-digit HTTP status code')
        stats.append((f'status_{code}_count', 'sum'))
    return stats


def check_groups(
    groups: Mapping[str, tuple[int, Sequence[tuple[str, str]]]],
) -> list[tuple[str, int, list[tuple[str, str]]]]:
    """Validate and normalise the groups given to StatsStore.

    Returns ``[(group, count, [(name, type), ...]), ...]`` in the given order,
    with ``start_time`` first in every group and duplicate declarations merged.
    """
    if not isinstance(groups, Mapping):
        raise StatsError(f'groups must be a mapping of name -> (count, stats), not {groups!r}')
    if not groups:
        raise StatsError('groups: at least one group is needed')
    checked = []
    for group, spec in groups.items():
        if not isinstance(group, str) or not group:
            raise StatsError(f'group name must be a non-empty str, not {group!r}')
        if group.startswith('daemon:') and group == 'daemon:':
            raise StatsError('group "daemon:" has no daemon name after the colon')
        try:
            count, stats = spec
        except (TypeError, ValueError):
            raise StatsError(
                f'group {group!r}: expected (bucket count, [(stat_name, stat_type), ...]), '
                f'got {spec!r}'
            ) from None
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise StatsError(f'group {group!r}: bucket count must be an int >= 1, not {count!r}')
        checked.append((group, count, check_stats(stats, f'group {group!r}')))
    return checked


def check_stats(stats: Iterable[tuple[str, str]], owner: str) -> list[tuple[str, str]]:
    """Checked ``(name, type)`` declarations, with start_time first and repeats merged.

    Names must be non-empty strs, types one of STAT_TYPES, and a name may not
    be declared with two types. ``owner`` starts every error message (for
    example ``group 'wsgi'`` or ``[helloworld] stats_conf``), so the one who
    declared the stat knows it was theirs.
    """
    types = {START_TIME: 'worker'}
    if isinstance(stats, (str, bytes)) or not isinstance(stats, Iterable):
        raise StatsError(f'{owner}: stats must be a list of (name, type) pairs')
    for pair in stats:
        try:
            name, typ = pair
        except (TypeError, ValueError):
            raise StatsError(
                f'{owner}: stat declaration {pair!r} is not a (name, type) pair'
            ) from None
        if not isinstance(name, str) or not name:
            raise StatsError(f'{owner}: stat name must be a non-empty str, not {name!r}')
        if _WORKER_KEY.fullmatch(name):
            raise StatsError(
                f'{owner}: stat name {name!r} is reserved for per-worker reports'
            )
        if typ not in STAT_TYPES:
            raise StatsError(
                f'{owner}: stat {name!r} has unknown type {typ!r} '
                f'(expected one of {", ".join(STAT_TYPES)})'
            )
        known = types.setdefault(name, typ)
        if known != typ:
            if name == START_TIME:
                raise StatsError(
                    f'{owner}: {START_TIME!r} is reserved and can only be '
                    f'declared as type "worker", not {typ!r}'
                )
            raise StatsError(
                f'{owner}: stat {name!r} declared twice, as {known!r} and as {typ!r}'
            )
    return list(types.items())
