"""The Prometheus text exposition format (version 0.0.4) for a store's snapshot.

Naming: a stat becomes ``brim_`` + its name with every character outside
``[a-zA-Z0-9_:]`` replaced by ``_`` (``helloworld.requests`` ->
``brim_helloworld_requests``).

Types: a ``sum`` stat whose name ends in ``_count`` is a counter and gets the
conventional ``_total`` suffix (``request_count`` -> ``brim_request_count_total``):
brim only ever increments those and never zeroes them when a worker restarts,
so they behave as Prometheus counters must. Every other stat is a gauge, since
an app may ``set`` it to anything. (prometheus_client's parser strips ``_total``
from a counter family's name and keeps it on the samples, which is what it
expects; a counter without the suffix would get one invented on its samples.)

Labels: ``subserver="<group>"`` on everything from a subserver, plus
``worker="<n>"`` on per-worker samples; the overall value (for sum/min/max
stats and start_time) is the sample without a ``worker`` label. So in PromQL
``brim_request_count_total{worker=""}`` is the subserver total and
``{worker!=""}`` the per-worker series: do not ``sum()`` over both. Daemon
stats carry ``daemon="<name>"`` instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._store import StatsStore

CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

_BAD_CHARS = re.compile(r'[^a-zA-Z0-9_:]')


def prometheus_text(store: StatsStore, group: str | None = None) -> str:
    """The store in the Prometheus text format: one group (or every subserver group) and
    every daemon.

    Use this to expose a store from a program that is not brimd; the Stats
    WSGI app calls render() on the snapshots it already took for the request.
    """
    groups = store.groups() if group is None else [group]
    sources: list[tuple[Mapping[str, str], list[tuple[str, str]], Mapping[str, Any]]] = []
    for g in groups:
        if not g.startswith('daemon:'):
            sources.append(({'subserver': g}, store.declared(g), store.snapshot(g)))
    sources.extend(daemon_sources(store, store.daemons_snapshot()))
    return render(sources)


def daemon_sources(
    store: StatsStore, daemons: Mapping[str, Any]
) -> list[tuple[Mapping[str, str], list[tuple[str, str]], Mapping[str, Any]]]:
    """render() sources for a daemons_snapshot() taken from ``store``."""
    return [
        ({'daemon': key[len('daemon_'):]}, store.declared('daemon:' + key[len('daemon_'):]), snap)
        for key, snap in daemons.items()
    ]


def metric_name(stat: str, stat_type: str) -> tuple[str, str]:
    """``(metric name, 'counter' | 'gauge')`` for a stat."""
    name = 'brim_' + _BAD_CHARS.sub('_', stat)
    if stat_type == 'sum' and stat.endswith('_count'):
        return name + '_total', 'counter'
    return name, 'gauge'


def render(
    sources: Iterable[tuple[Mapping[str, str], list[tuple[str, str]], Mapping[str, Any]]],
) -> str:
    """Exposition text for ``(labels, declared stats, snapshot)`` sources.

    A snapshot is either a subserver's (overall values plus ``worker_N``
    objects) or a daemon's flat dict. All samples of one metric are written
    together, as the format requires, even when they come from different
    sources. Two stats that sanitise to the same metric name with different
    types cannot share a family: the later one is left out, with a comment.
    """
    families: dict[str, tuple[str, str, list[str]]] = {}
    skipped: list[str] = []
    for labels, declared, snap in sources:
        overall_labels = _labels(labels)
        workers = sorted(
            (int(k[7:]), v) for k, v in snap.items()
            if k.startswith('worker_') and k[7:].isdigit() and isinstance(v, Mapping)
        )
        workers_labelled = [(_labels({**labels, 'worker': str(n)}), values)
                            for n, values in workers]
        for stat, typ in declared:
            name, kind = metric_name(stat, typ)
            family = families.get(name)
            if family is None:
                family = families[name] = (kind, stat, [])
            elif family[0] != kind:
                skipped.append(f'# brim: stat {stat!r} left out: {name} is already a {family[0]}')
                continue
            lines = family[2]
            if stat in snap and not isinstance(snap[stat], Mapping):
                lines.append(f'{name}{overall_labels} {int(snap[stat])}')
            lines.extend(f'{name}{worker_labels} {int(values[stat])}'
                         for worker_labels, values in workers_labelled if stat in values)
    out = []
    for name, (kind, stat, lines) in families.items():
        if not lines:
            continue
        out.append(f'# HELP {name} brim stat {_escape_help(stat)}')
        out.append(f'# TYPE {name} {kind}')
        out.extend(lines)
    out.extend(skipped)
    return '\n'.join(out) + '\n'


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ''
    return '{' + ','.join(f'{k}="{_escape_label(v)}"' for k, v in labels.items()) + '}'


def _escape_label(value: str) -> str:
    return value.replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')


def _escape_help(text: str) -> str:
    return text.replace('\\', '\\\\').replace('\n', '\\n')
