"""Stat declarations: the four stat types, and checking what a program declares.

Everything here runs in the parent process before any worker forks, so a bad
declaration stops the program with one clear line instead of surfacing later
as a missing number.

A declaration is a ``(name, type)`` pair, or a ``(name, type, help)`` triple
whose third item says in words what the number means. The help text is what
Prometheus shows for the metric, so a stat that is scraped should carry one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, overload

STAT_TYPES = ("worker", "sum", "min", "max", "histogram")
"""How a stat is rolled up over a group's buckets.

``worker``: per bucket only, no overall value. ``sum``/``min``/``max``: the
overall value is the sum, smallest or largest of the buckets' values.
``histogram``: durations in seconds counted in fixed buckets (see
:data:`brim.stats.HISTOGRAM_BOUNDS`), rolled up bucket by bucket.
"""

START_TIME = "start_time"
"""The one stat every bucket has whether declared or not: when its process started."""

START_TIME_HELP = ("When this process last started, in seconds since the epoch "
                   "(0 if it has not started yet)")
"""What start_time means, unless its declaration says otherwise."""

START_COUNT = "start_count"
"""Times a bucket's process started (StatsBucket.mark_started counts it when declared):
its value minus the number of workers is how many restarts there were."""

PID = "pid"
"""When declared, StatsBucket.mark_started sets it to the process id, and reports add
the process' RSS and CPU seconds (read from /proc) beside it."""

StatDecl = tuple[str, str] | tuple[str, str, str]
"""One stat's declaration: ``(name, type)`` or ``(name, type, help)``."""

_WORKER_KEY = re.compile(r"worker_[0-9]+")


def is_counter(name: str, stat_type: str) -> bool:
    """Whether a stat only ever grows: a ``sum`` stat named ``*_count``, or a histogram.

    These are what Prometheus treats as counters, so they are what a store
    carries over from the one it replaces (:meth:`StatsStore.carry_from`)
    and what a departed process leaves behind; every other stat is a gauge.
    """
    return stat_type == "histogram" or (stat_type == "sum" and name.endswith("_count"))


class StatsError(Exception):
    """The one error brim.stats raises: a bad declaration, group, bucket or value."""


def stat_help(decl: StatDecl) -> str:
    """The declaration's help text, or a plain one naming the stat and its type.

    The fallback is there so every metric has a HELP line that at least says
    where the number comes from; a declaration should say what it means.
    ``start_time``, which brim.stats itself keeps, has a text of its own.
    """
    if len(decl) == 3 and decl[2]:
        return decl[2]
    if decl[0] == START_TIME:
        return START_TIME_HELP
    return f"{decl[0]} ({decl[1]} stat; declared without a description)"


@overload
def check_stats(stats: Iterable[tuple[str, str]], owner: str) -> list[tuple[str, str]]: ...


@overload
def check_stats(stats: Iterable[StatDecl], owner: str) -> list[StatDecl]: ...


def check_stats(stats: Iterable[StatDecl], owner: str) -> list[Any]:
    """Checked declarations, with start_time first and repeats merged.

    Names must be non-empty strs, types one of STAT_TYPES, a help text (when
    given) a str, and a name may not be declared with two types. A name
    declared twice with the same type is kept once, with the first help text
    any of its declarations gave. Each declaration comes back as a tuple of
    the same length as given (pairs in, pairs out), so a caller can still
    find its own in the list.
    ``owner`` starts every error message (for example ``group 'web'`` or
    ``[helloworld] stats_conf``), so the one who declared the stat knows it
    was theirs.
    """
    merged: dict[str, StatDecl] = {START_TIME: (START_TIME, "worker")}
    if isinstance(stats, (str, bytes)) or not isinstance(stats, Iterable):
        raise StatsError(f"{owner}: stats must be a list of (name, type) pairs")
    for decl in stats:
        name, typ, text = _unpack(decl, owner)
        known = merged.get(name)
        if known is None:
            merged[name] = (name, typ) if text is None else (name, typ, text)
            continue
        if known[1] != typ:
            if name == START_TIME:
                raise StatsError(
                    f'{owner}: {START_TIME!r} is reserved and can only be '
                    f'declared as type "worker", not {typ!r}'
                )
            raise StatsError(
                f"{owner}: stat {name!r} declared twice, as {known[1]!r} and as {typ!r}"
            )
        if text and not (len(known) == 3 and known[2]):
            merged[name] = (name, typ, text)
    return list(merged.values())


def _unpack(decl: object, owner: str) -> tuple[str, str, str | None]:
    """``(name, type, help)`` from one declaration, each part checked; help None if not given."""
    if isinstance(decl, (str, bytes)) or not isinstance(decl, Sequence) or len(decl) not in (2, 3):
        raise StatsError(
            f"{owner}: stat declaration {decl!r} is not a (name, type) pair "
            "or a (name, type, help) triple"
        )
    name, typ = decl[0], decl[1]
    text = decl[2] if len(decl) == 3 else None
    if not isinstance(name, str) or not name:
        raise StatsError(f"{owner}: stat name must be a non-empty str, not {name!r}")
    if _WORKER_KEY.fullmatch(name) or name == "departed":
        raise StatsError(f"{owner}: stat name {name!r} is reserved for per-worker reports")
    if typ not in STAT_TYPES:
        raise StatsError(
            f'{owner}: stat {name!r} has unknown type {typ!r} '
            f'(expected one of {", ".join(STAT_TYPES)})'
        )
    if text is not None and not isinstance(text, str):
        raise StatsError(f"{owner}: stat {name!r}: help must be a str, not {text!r}")
    return name, typ, text
