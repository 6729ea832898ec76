"""The Prometheus text exposition format (version 0.0.4) for a store's groups.

Naming: a stat becomes ``brim_`` + its name with every character outside
``[a-zA-Z0-9_:]`` replaced by ``_`` (``helloworld.requests`` ->
``brim_helloworld_requests``).

Types: a ``sum`` stat whose name ends in ``_count`` is a counter and gets the
conventional ``_total`` suffix (``request_count`` -> ``brim_request_count_total``):
only increments are expected of those, and they are never zeroed when a
worker restarts, so they behave as Prometheus counters must. Every other stat
is a gauge, since an app may ``set`` it to anything. (prometheus_client's
parser strips ``_total`` from a counter family's name and keeps it on the
samples, which is what it expects.)

Series: one per bucket and nothing else. A ``workers`` group's samples carry
the group's labels plus ``worker="<n>"``; a ``daemon`` group's carry its
labels alone. There are no rolled-up samples beside them, so ``sum()`` over
a metric is the true total and no query has to filter anything out first.
The roll-ups are left to PromQL (``sum``, ``max``, ``min`` by the group's
labels); the one overall value PromQL cannot rebuild, when the store was
made, has a metric of its own: ``brim_store_start_time``.

Histograms: a ``histogram`` stat is a Prometheus histogram of the same
name: ``_bucket{le="..."}`` (cumulative, the fixed bounds of
:data:`brim.stats.HISTOGRAM_BOUNDS` then ``+Inf``), ``_sum`` (seconds) and
``_count``, per bucket like every other stat, so ``sum by (le)`` over the
workers is the group's histogram.

Departed: a ``workers`` group's counters and histograms also have a series
with ``worker="departed"``: what processes that are gone counted (see
StatsStore.carry_from), so sums over the workers never go backwards when
a reload replaces the store.

Process usage: for a group that declares ``pid``, ``brim_process_resident_memory_bytes``
and ``brim_process_cpu_seconds`` (gauges: each is the current process'
own, and a restarted process starts again from 0), read from /proc when
the text is made.

HELP: the declaration's help text, or one naming the stat and its type.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ._declare import stat_help
from ._group import WORKER_LABEL, WORKERS

if TYPE_CHECKING:
    from ._store import StatsStore

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

PREFIX = "brim_"
"""What every metric name starts with."""

STORE_START_TIME = PREFIX + "store_start_time"
STORE_START_TIME_HELP = ("When the stats store was made, in seconds since the epoch "
                         "(usually when the program started)")

RSS = PREFIX + "process_resident_memory_bytes"
CPU = PREFIX + "process_cpu_seconds"
_USAGE = {RSS: ("rss_bytes", "Resident memory of the process, in bytes (from /proc)"),
          CPU: ("cpu_seconds", "CPU time (user + system) the process has used, in seconds "
                "(from /proc; starts again from 0 when the process is restarted)")}

_BAD_CHARS = re.compile(r"[^a-zA-Z0-9_:]")


class _Family:
    """One metric's TYPE, HELP and samples, gathered from every group before writing."""

    __slots__ = ("help", "kind", "lines")

    def __init__(self, kind: str, help_text: str) -> None:
        self.kind = kind
        self.help = help_text
        self.lines: list[str] = []


def prometheus_text(store: StatsStore, group: str | None = None) -> str:
    """The store in the Prometheus text format: every group, or the report for one.

    With ``group``, the groups are those of ``store.report_groups(group)``:
    the group itself and every group described as ``reported_by_all``, as
    the Stats app reports them. Use this to expose a store from any program.
    """
    groups = store.groups() if group is None else store.report_groups(group)
    return render(store, groups)


def metric_name(stat: str, stat_type: str) -> tuple[str, str]:
    """``(metric name, 'counter' | 'gauge')`` for a stat."""
    name = PREFIX + _BAD_CHARS.sub("_", stat)
    if stat_type == "histogram":
        return name, "histogram"
    if stat_type == "sum" and stat.endswith("_count"):
        return name + "_total", "counter"
    return name, "gauge"


def render(store: StatsStore, groups: Iterable[str]) -> str:
    """Exposition text for the named groups of ``store``: one sample per bucket and stat.

    All samples of one metric are written together, as the format requires,
    even when they come from different groups; the HELP text is that of the
    first declaration met. Two stats that sanitise to the same metric name
    with different types cannot share a family: the later one is left out,
    with a comment.
    """
    start = _Family("gauge", STORE_START_TIME_HELP)
    start.lines.append(f"{STORE_START_TIME} {store.start_time}")
    families = {STORE_START_TIME: start}
    skipped: list[str] = []
    for group in groups:
        desc = store.group(group)
        base = dict(desc.labels or {})
        values: list[dict[str, object]] = list(store.values(group))
        if desc.kind == WORKERS:
            labels = [_labels({**base, WORKER_LABEL: str(n)}) for n in range(len(values))]
            departed = store.departed(group)
            if departed is not None:
                values.append(departed)
                labels.append(_labels({**base, WORKER_LABEL: "departed"}))
        else:
            labels = [_labels(base)] * len(values)
        for decl in desc.stats:
            stat, typ = decl[0], decl[1]
            name, kind = metric_name(stat, typ)
            family = families.get(name)
            if family is None:
                family = families[name] = _Family(kind, stat_help(decl))
            elif family.kind != kind:
                skipped.append(f"# brim: stat {stat!r} left out: {name} is already a {family.kind}")
                continue
            for label_text, bucket in zip(labels, values, strict=True):
                if stat not in bucket:  # a gauge, not kept for the departed
                    continue
                if kind == "histogram":
                    family.lines.extend(_histogram_lines(name, label_text, bucket[stat]))
                else:
                    family.lines.append(f"{name}{label_text} {bucket[stat]}")
        for name, (key, help_text) in _USAGE.items():
            lines = [f"{name}{label_text} {bucket[key]}"
                     for label_text, bucket in zip(labels, values, strict=True) if key in bucket]
            if lines:
                families.setdefault(name, _Family("gauge", help_text)).lines.extend(lines)
    out = []
    for name, family in families.items():
        if not family.lines:
            continue
        out.append(f"# HELP {name} {_escape_help(family.help)}")
        out.append(f"# TYPE {name} {family.kind}")
        out.extend(family.lines)
    out.extend(skipped)
    return "\n".join(out) + "\n"


def _histogram_lines(name: str, labels: str, hist: object) -> list[str]:
    """One histogram's samples: cumulative buckets by ``le``, then _sum and _count."""
    assert isinstance(hist, dict)
    inner = labels[1:-1] + "," if labels else ""
    lines = [f'{name}_bucket{{{inner}le="{le}"}} {n}' for le, n in hist["buckets"].items()]
    lines.append(f"{name}_sum{labels} {hist['sum']!r}")
    lines.append(f"{name}_count{labels} {hist['count']}")
    return lines


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items()) + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")
