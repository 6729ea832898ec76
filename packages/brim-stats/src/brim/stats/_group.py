"""Groups as the program that owns the processes describes them.

brim.stats does not know what a program's processes are for. The program
tells it, once, with one :class:`Group` per set of processes: how many
buckets, which stats, whether the processes are interchangeable workers
(rolled up together) or one process on its own, what a report calls it, and
which labels its Prometheus samples carry. Everything is checked here, in the
parent, before anything forks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from ._declare import StatDecl, StatsError, check_stats

WORKERS = "workers"
"""Kind of a group of interchangeable processes: reported rolled up, plus one
``worker_N`` entry (and one Prometheus series) per bucket."""

DAEMON = "daemon"
"""Kind of a group that is one process on its own: its single bucket is
reported as it is, with no roll-up and no ``worker`` label."""

GROUP_KINDS = (WORKERS, DAEMON)

WORKER_LABEL = "worker"
"""The label brim.stats adds to each bucket's samples in a ``workers`` group."""

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_WORKER_KEY = re.compile(r"worker_[0-9]+")


@dataclass(frozen=True)
class Group:
    """One group of buckets, described by the program that forks its processes.

    ``name``
        What the program asks for buckets by (``store.bucket(name, i)``).
    ``count``
        How many buckets, one per process.
    ``stats``
        The declarations: ``(name, type)`` or ``(name, type, help)``.
    ``kind``
        ``'workers'`` (the default): interchangeable processes, reported
        rolled up with a ``worker_N`` entry per bucket. ``'daemon'``: one
        process on its own (``count`` must be 1), reported as its bucket is.
    ``labels``
        The Prometheus labels of the group's samples; by default
        ``{'group': name}``. A ``workers`` group's samples also get
        ``worker="<n>"``, so ``worker`` may not be one of them.
    ``key``
        The key the group is reported under in another group's JSON report;
        by default its name.
    ``reported_by_all``
        Whether every report includes this group, not only reports that ask
        for everything. Set it for processes that have no reporter of their
        own (no HTTP endpoint, say), so they are seen from one that has.
    ``spare``
        Buckets beyond ``count`` for processes the program may add while it
        runs (a worker count raised at run time). A spare bucket is reported
        once a process has started in it (``mark_started``), and from then on.
    """

    name: str
    count: int = 1
    stats: Sequence[StatDecl] = ()
    kind: str = WORKERS
    labels: Mapping[str, str] | None = None
    key: str | None = None
    reported_by_all: bool = False
    spare: int = 0


def check_groups(
    groups: Iterable[Group] | Mapping[str, tuple[int, Sequence[StatDecl]]],
) -> list[Group]:
    """The groups given to StatsStore, validated, with every default filled in.

    A mapping of ``name -> (count, stats)`` is accepted as shorthand for
    plain ``workers`` groups. The stats of each group are checked with
    check_stats (``start_time`` first, repeats merged); labels and report
    keys must tell the groups apart, since two groups reported alike would
    be one series or one JSON entry.
    """
    if isinstance(groups, Mapping):
        listed = [_from_pair(name, spec) for name, spec in groups.items()]
    elif isinstance(groups, (str, bytes)) or not isinstance(groups, Iterable):
        raise StatsError(f"groups must be Group records or a mapping, not {groups!r}")
    else:
        listed = list(groups)
    if not listed:
        raise StatsError("groups: at least one group is needed")
    checked = [_check(group) for group in listed]
    _check_distinct(checked)
    return checked


def _from_pair(name: str, spec: tuple[int, Sequence[StatDecl]]) -> Group:
    """A plain workers group from the mapping shorthand; its parts are checked by _check."""
    try:
        count, stats = spec
    except (TypeError, ValueError):
        raise StatsError(
            f"group {name!r}: expected (bucket count, [(stat_name, stat_type), ...]), "
            f"got {spec!r}"
        ) from None
    return Group(name, count, stats)


def _check(group: object) -> Group:
    if not isinstance(group, Group):
        raise StatsError(f"groups must be Group records or a mapping, found {group!r}")
    name, count = group.name, group.count
    if not isinstance(name, str) or not name:
        raise StatsError(f"group name must be a non-empty str, not {name!r}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise StatsError(f"group {name!r}: bucket count must be an int >= 1, not {count!r}")
    if group.kind not in GROUP_KINDS:
        raise StatsError(
            f'group {name!r}: kind must be one of {", ".join(GROUP_KINDS)}, not {group.kind!r}'
        )
    spare = group.spare
    if isinstance(spare, bool) or not isinstance(spare, int) or spare < 0:
        raise StatsError(f"group {name!r}: spare must be an int >= 0, not {spare!r}")
    if group.kind == DAEMON and (count != 1 or spare):
        raise StatsError(f"group {name!r}: a daemon group has one bucket, not {count}")
    key = name if group.key is None else group.key
    if not isinstance(key, str) or not key or _WORKER_KEY.fullmatch(key):
        raise StatsError(
            f"group {name!r}: key must be a non-empty str not like worker_<n>, not {key!r}"
        )
    labels = _check_labels(name, {"group": name} if group.labels is None else group.labels,
                           group.kind)
    stats = check_stats(group.stats, f"group {name!r}")
    return replace(group, stats=tuple(stats), labels=labels, key=key,
                   reported_by_all=bool(group.reported_by_all))


def _check_labels(name: str, labels: object, kind: str) -> dict[str, str]:
    if not isinstance(labels, Mapping):
        raise StatsError(f"group {name!r}: labels must be a mapping, not {labels!r}")
    for label, value in labels.items():
        if not isinstance(label, str) or not _LABEL_NAME.fullmatch(label) \
                or label.startswith("__"):
            raise StatsError(f"group {name!r}: {label!r} is not a Prometheus label name")
        if kind == WORKERS and label == WORKER_LABEL:
            raise StatsError(
                f"group {name!r}: label {WORKER_LABEL!r} is added per bucket by brim.stats"
            )
        if not isinstance(value, str):
            raise StatsError(f"group {name!r}: label {label!r} must be a str, not {value!r}")
    return dict(labels)


def _check_distinct(groups: list[Group]) -> None:
    """No two groups share a name, a report key or a set of labels; no key is a stat name."""
    names: set[str] = set()
    keys: dict[str, str] = {}
    labels: dict[tuple[tuple[str, str], ...], str] = {}
    stat_names = {decl[0] for g in groups for decl in g.stats}
    for g in groups:
        assert g.key is not None and g.labels is not None  # filled in by _check
        if g.name in names:
            raise StatsError(f"group {g.name!r} is declared twice")
        names.add(g.name)
        if g.key in keys:
            raise StatsError(f"groups {keys[g.key]!r} and {g.name!r} have the same key {g.key!r}")
        if g.key in stat_names:
            raise StatsError(f"group {g.name!r}: key {g.key!r} is also a stat name")
        keys[g.key] = g.name
        pairs = tuple(sorted(g.labels.items()))
        if pairs in labels:
            raise StatsError(
                f"groups {labels[pairs]!r} and {g.name!r} have the same labels {dict(pairs)!r}"
            )
        labels[pairs] = g.name
