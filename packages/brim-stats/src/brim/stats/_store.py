"""The shared-memory stats store: one anonymous shared mmap, buckets of u64 words, roll-ups.

Layout (all words are native-endian unsigned 64-bit, 8-byte aligned)::

    words 0..7      header: magic, layout version, server start time, total words,
                    length of the layout text, reserved
    then per group  a block of buckets, each ``stride`` words long, where stride
                    = the group's word count rounded up to a multiple of 8: one
                    per process (``count + spare``) and, in a ``workers`` group,
                    one more, the departed bucket (see below)
    then            the layout as JSON text (the groups as declared), so another
                    program can read the store knowing nothing (``attach``)

A histogram stat takes several words (see ``_histogram``); every other stat
one.

The departed bucket of a ``workers`` group holds what processes that are no
longer there counted: the master (its one writer) adds to it what a store
replaced on reload still counted after it was carried over (carry_from).
Reports add it to the group's totals and show it as ``departed``, so
counters never go backwards.

Where the memory comes from: a memfd (Linux) when there is one, so that the
store is a file another process can map (``/proc/<pid>/fd/<n>``, see
``path``) and a program that re-executes itself can pass the descriptor on;
an anonymous shared mapping otherwise. Either way children inherit it.

Rounding every bucket up to 64 bytes puts each worker's counters on cache lines
of their own, so one worker's writes never invalidate the line a neighbour is
writing (no false sharing between processes).

Concurrency: every bucket has exactly one writer (its own process), so writes
take no lock. Readers may read any word at any time: on x86-64 and aarch64 an
aligned 8-byte load or store is a single instruction and is never torn, so a
reader sees either the old or the new value of a word. A snapshot copies a
whole group block in one go, but different words may come from slightly
different moments; each number is exact, the set of them is not a transaction.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import _histogram, _proc
from ._bucket import StatsBucket
from ._declare import PID, START_TIME, StatDecl, StatsError, is_counter
from ._group import DAEMON, WORKERS, Group, check_groups

_MAGIC = int.from_bytes(b"BRIMSTAT", "little")
_LAYOUT_VERSION = 2
_HEADER_WORDS = 8
_LINE_WORDS = 8  # 64-byte cache line

DEPARTED = "departed"
"""The key (JSON) and ``worker`` label (Prometheus) of a group's departed bucket."""


class _Group:
    """Where one group lives in the shared words, and what its stats are."""

    __slots__ = ("base", "count", "counters", "decls", "departed", "desc", "hist", "index",
                 "key", "listed", "name", "names", "stride", "types")

    def __init__(self, desc: Group, base: int):
        self.desc = desc
        self.name = desc.name
        self.key = desc.key or desc.name  # check_groups has filled it in
        #: Buckets for processes; the first ``listed`` are always reported.
        self.count = desc.count + desc.spare
        self.listed = desc.count
        #: The departed bucket's index, in a workers group (None in a daemon one).
        self.departed = self.count if desc.kind == WORKERS else None
        self.decls = tuple(desc.stats)
        names: list[str] = []
        types: list[str] = []
        #: A histogram stat's first word, by stat name.
        self.hist: dict[str, int] = {}
        for decl in self.decls:
            if decl[1] == "histogram":
                self.hist[decl[0]] = len(names)
                words = _histogram.word_names(decl[0])
            else:
                words = [decl[0]]
            names.extend(words)
            types.extend([decl[1]] * len(words))
        self.names = tuple(names)
        self.types = tuple(types)
        self.index = {n: i for i, n in enumerate(self.names)}
        #: The words that only grow (counters and histogram words), by position.
        self.counters = tuple(self.index[w] for d in self.decls if is_counter(d[0], d[1])
                              for w in (_histogram.word_names(d[0]) if d[1] == "histogram"
                                        else [d[0]]))
        self.stride = -(-len(self.names) // _LINE_WORDS) * _LINE_WORDS
        self.base = base

    @property
    def allocated(self) -> int:
        return self.count + (self.departed is not None)

    def present(self, row: list[int], *, usage: bool = True) -> dict[str, Any]:
        """One bucket's words as reported: stats by name, histograms summed up.

        With ``usage`` and a ``pid`` stat set, the process' RSS and CPU
        seconds, read from /proc now, are added as ``rss_bytes`` and
        ``cpu_seconds`` (when the process is still there).
        """
        out: dict[str, Any] = {}
        for decl in self.decls:
            name = decl[0]
            first = self.hist.get(name)
            if first is None:
                out[name] = row[self.index[name]]
            else:
                out[name] = _histogram.summary(row[first:first + _histogram.WORDS])
        if usage and PID in self.index and row[self.index[PID]]:
            found = _proc.usage(row[self.index[PID]], row[0])
            if found is not None:
                out["rss_bytes"], out["cpu_seconds"] = found
        return out


class StatsStore:
    """All the stats of one server, in memory that forked children share with their parent.

    Build it in the parent before forking: the mapping is shared, so it is
    inherited by every child and each child's writes are visible to every
    other process at once, with no socket or lock involved.

    ``groups`` is a list of :class:`Group` records, or a mapping of
    ``name -> (count, stats)`` for plain groups of workers.
    """

    def __init__(
        self,
        groups: Iterable[Group] | Mapping[str, tuple[int, Sequence[StatDecl]]],
        *,
        start_time: float | None = None,
        logger: logging.Logger | None = None,
    ):
        checked = check_groups(groups)
        now = time.time() if start_time is None else start_time
        try:
            self.start_time: int = int(now)
        except (TypeError, ValueError, OverflowError):
            raise StatsError(f"start_time must be a number of seconds, not {now!r}") from None
        if not 0 <= self.start_time < 1 << 64:
            raise StatsError(f"start_time out of range: {now!r}")
        self.logger = logger if logger is not None else logging.getLogger("brim.stats")
        words = self._place(checked)
        layout = json.dumps({"start_time": self.start_time,
                             "groups": [_describe(g) for g in checked]}).encode()
        size = words * 8 + len(layout)
        self._fd: int | None = None
        if hasattr(os, "memfd_create"):
            self._fd = os.memfd_create("brim-stats", os.MFD_CLOEXEC)
            os.ftruncate(self._fd, size)
            self._mmap = mmap.mmap(self._fd, size, flags=mmap.MAP_SHARED,
                                   prot=mmap.PROT_READ | mmap.PROT_WRITE)
        else:  # pragma: no cover - not Linux
            self._mmap = mmap.mmap(-1, size, flags=mmap.MAP_SHARED,
                                   prot=mmap.PROT_READ | mmap.PROT_WRITE)
        self._raw = memoryview(self._mmap)
        self._words = self._raw[:words * 8].cast("Q")
        self._raw[words * 8:] = layout
        self._words[0] = _MAGIC
        self._words[1] = _LAYOUT_VERSION
        self._words[2] = self.start_time
        self._words[3] = words
        self._words[4] = len(layout)
        self._buckets: dict[tuple[str, int], StatsBucket] = {}

    def _place(self, checked: list[Group]) -> int:
        """Lay the groups out one after the other; the number of words they take in all."""
        self._groups: dict[str, _Group] = {}
        words = _HEADER_WORDS
        for desc in checked:
            group = _Group(desc, words)
            self._groups[desc.name] = group
            words += group.allocated * group.stride
        return words

    @classmethod
    def attach(cls, path: str | int, *, logger: logging.Logger | None = None) -> StatsStore:
        """A read-only view of a store another process made, from its memfd.

        ``path`` is the file (``/proc/<pid>/fd/<n>``, see :attr:`path`) or an
        open descriptor. Its groups come from the layout text the store
        carries, so the reader needs nothing else. Buckets of it cannot be
        written (StatsError on the first write).
        """
        fd = path if isinstance(path, int) else os.open(path, os.O_RDONLY)
        try:
            mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as err:
            raise StatsError(f"cannot map stats store {path!r}: {err}") from None
        finally:
            if not isinstance(path, int):
                os.close(fd)
        raw = memoryview(mapped)
        header = raw[:_HEADER_WORDS * 8].cast("Q")
        if len(mapped) < _HEADER_WORDS * 8 or header[0] != _MAGIC \
                or header[1] != _LAYOUT_VERSION:
            raise StatsError(f"{path!r} is not a brim stats store of layout {_LAYOUT_VERSION}")
        words, length = header[3], header[4]
        header.release()
        layout = json.loads(bytes(raw[words * 8:words * 8 + length]))
        self = cls.__new__(cls)
        self.start_time = int(layout["start_time"])
        self.logger = logger if logger is not None else logging.getLogger("brim.stats")
        checked = check_groups([Group(**g) for g in layout["groups"]])
        if self._place(checked) != words:
            raise StatsError(f"stats store {path!r}: its layout does not add up")
        self._fd = None
        self._mmap = mapped
        self._raw = raw
        self._words = raw[:words * 8].cast("Q")
        self._buckets = {}
        return self

    @property
    def path(self) -> str | None:
        """Where another process of the same user can map this store: ``/proc/<pid>/fd/<n>``.

        None without a memfd (not Linux). Valid while this process lives and
        keeps the store open.
        """
        return None if self._fd is None else f"/proc/{os.getpid()}/fd/{self._fd}"

    def fileno(self) -> int | None:
        """The memfd behind the store (close-on-exec; None without one)."""
        return self._fd

    @property
    def size(self) -> int:
        """Bytes of shared memory the store maps."""
        return len(self._mmap)

    def groups(self) -> list[str]:
        """The group names, in the order they were declared."""
        return list(self._groups)

    def group(self, group: str) -> Group:
        """The group's description as checked: defaults filled in, stats merged."""
        return self._group(group).desc

    def declared(self, group: str) -> list[tuple[str, str]]:
        """The group's ``(stat_name, stat_type)`` pairs, ``start_time`` first."""
        g = self._group(group)
        return list(zip(g.names, g.types, strict=True))

    def report_groups(self, group: str, *, everything: bool = False) -> list[str]:
        """The groups a report made for ``group`` covers: itself first, then the others.

        The others are those described as ``reported_by_all``, or every group
        with ``everything``, in the order they were declared.
        """
        self._group(group)
        return [group, *(name for name, g in self._groups.items() if name != group
                         and (everything or g.desc.reported_by_all))]

    def report(self, group: str, *, everything: bool = False) -> dict[str, Any]:
        """``group``'s snapshot, with each other group of report_groups() under its key."""
        names = self.report_groups(group, everything=everything)
        out = self.snapshot(group)
        for name in names[1:]:
            out[self._groups[name].key] = self.snapshot(name)
        return out

    def values(self, group: str, *, usage: bool = True) -> list[dict[str, Any]]:
        """Every process bucket's stats by name, in bucket order, with no roll-up.

        A histogram is ``{"count", "sum", "buckets"}`` (cumulative counts by
        upper bound); ``rss_bytes`` and ``cpu_seconds`` are added for a live
        process when the group declares ``pid`` and ``usage`` is true.
        """
        g = self._group(group)
        return [g.present(row, usage=usage) for row in self._shown_rows(g)]

    def departed(self, group: str) -> dict[str, Any] | None:
        """What the group's departed processes counted (its counters), or None (daemon)."""
        g = self._group(group)
        if g.departed is None:
            return None
        row = self._rows(g)[g.departed]
        out = g.present(row, usage=False)
        return {d[0]: out[d[0]] for d in g.decls if is_counter(d[0], d[1])}

    def bucket_count(self, group: str) -> int:
        """How many buckets (workers) the group has."""
        return self._group(group).count

    def bucket(
        self, group: str, index: int, *, logger: logging.Logger | None = None
    ) -> StatsBucket:
        """The handle for one bucket; the process that owns it is its only writer.

        The same handle is returned for the same bucket within one process, so
        the "unknown stat" warning is logged once per name per process.
        ``logger`` replaces the store's logger for that handle.
        """
        g = self._group(group)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < g.count:
            raise StatsError(
                f"group {group!r} has buckets 0..{g.count - 1}; there is no bucket {index!r}"
            )
        key = (group, index)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = StatsBucket(
                self, group, index, self._words, g.base + index * g.stride, g.index, self.logger,
                g.hist,
            )
            self._buckets[key] = bucket
        if logger is not None:
            bucket.logger = logger
        return bucket

    def snapshot(self, group: str) -> dict[str, Any]:
        """The group's overall stats followed by ``worker_N`` objects and ``departed``.

        Overall values: ``start_time`` is the store's (program's) start time;
        ``sum``/``max`` stats are over every bucket; ``min`` stats are over the
        buckets whose ``start_time`` is set (a worker that never started holds
        no data), or over every bucket if none has started; ``worker`` stats
        have no overall value; histograms are added bucket by bucket. Sums
        and histograms include the departed bucket (see the module's notes),
        which follows the workers as ``departed``. ``rss_bytes`` and
        ``cpu_seconds``, when the workers have them, are summed too.

        A ``daemon`` group is one process: its snapshot is its bucket as it
        is, ``start_time`` included, with nothing to roll up.
        """
        g = self._group(group)
        rows = self._shown_rows(g)
        if g.desc.kind == DAEMON:
            return g.present(rows[0])
        departed = self._rows(g)[g.departed] if g.departed is not None else None
        started = [row for row in rows if row[0]] or rows
        totals: list[int] = []
        for i, typ in enumerate(g.types):
            if typ in ("sum", "histogram"):
                totals.append(sum(row[i] for row in rows) + (departed[i] if departed else 0))
            elif typ == "max":
                totals.append(max(row[i] for row in rows))
            elif typ == "min":
                totals.append(min(row[i] for row in started))
            else:
                totals.append(0)
        whole = g.present(totals, usage=False)
        overall: dict[str, Any] = {START_TIME: self.start_time}
        for decl in g.decls:
            if decl[1] != "worker":
                overall[decl[0]] = whole[decl[0]]
        workers = [g.present(row) for row in rows]
        for extra in ("rss_bytes", "cpu_seconds"):
            if any(extra in w for w in workers):
                overall[extra] = sum(w.get(extra, 0) for w in workers)
        for n, worker in enumerate(workers):
            overall[f"worker_{n}"] = worker
        if departed is not None:
            overall[DEPARTED] = self.departed(group)
        return overall

    def carry_from(self, old: StatsStore) -> Carry:
        """Start this store's counters where ``old``'s are, for a store that replaces it.

        Call it in the parent before any process of this store starts (a
        reload). For each group both stores have, every counter both declare
        (see is_counter) is copied bucket by bucket, so each worker's series
        goes on from where its predecessor's was; what buckets this store
        does not have counted, and ``old``'s departed bucket, go into this
        store's departed bucket. ``old``'s processes may go on counting
        while they drain: call ``fold()`` on the result now and then (and
        once they are gone) to add that to the departed bucket too.
        """
        return Carry(self, old)

    def close(self) -> None:
        """Unmap the shared memory; every bucket handle of this process stops working.

        Other processes keep their own mapping until they close it or exit.
        """
        if self._mmap.closed:
            return
        self._buckets.clear()
        self._words.release()
        self._raw.release()
        self._mmap.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _group(self, group: str) -> _Group:
        try:
            return self._groups[group]
        except (KeyError, TypeError):
            raise StatsError(
                f'no stats group {group!r} (known: {", ".join(self._groups)})'
            ) from None

    def _rows(self, g: _Group) -> list[list[int]]:
        """Copy the group's block once and cut it into one list of words per bucket."""
        n, stride = len(g.names), g.stride
        words = self._words[g.base:g.base + g.allocated * stride].tolist()
        return [words[i:i + n] for i in range(0, g.allocated * stride, stride)]

    def _shown_rows(self, g: _Group) -> list[list[int]]:
        """The rows reported: the listed buckets, and spare ones up to the last started."""
        rows = self._rows(g)
        shown = g.listed
        for n in range(g.listed, g.count):
            if rows[n][0]:  # start_time: a process has used it
                shown = n + 1
        return rows[:shown]

    def __repr__(self) -> str:
        state = "closed" if self._mmap.closed else f"{self.size} bytes"
        return f"<StatsStore groups={list(self._groups)} {state}>"


class Carry:
    """Counters carried from a replaced store into its successor (StatsStore.carry_from)."""

    def __init__(self, new: StatsStore, old: StatsStore) -> None:
        self.new = new
        self.old = old
        #: Per group both have: (new group, old group, [(old word, new word)]).
        self._pairs: list[tuple[_Group, _Group, list[tuple[int, int]]]] = []
        #: The old words as last carried, per group name.
        self._seen: dict[str, list[list[int]]] = {}
        for name, ng in new._groups.items():
            og = old._groups.get(name)
            if og is None or ng.departed is None:
                continue
            pairs = [(og.index[ng.names[i]], i) for i in ng.counters
                     if ng.names[i] in og.index and og.index[ng.names[i]] in og.counters]
            self._pairs.append((ng, og, pairs))
        words = new._words
        for ng, og, pairs in self._pairs:
            rows = old._rows(og)
            self._seen[og.name] = rows
            for n, row in enumerate(rows):
                into = n if n < ng.count and n != og.departed else ng.departed
                assert into is not None
                base = ng.base + into * ng.stride
                for o, i in pairs:
                    words[base + i] += row[o]

    def fold(self) -> None:
        """Add what the old store's processes counted since the last carry to the departed
        buckets (only the parent calls it: it is their one writer)."""
        if self.old._mmap.closed:
            return
        words = self.new._words
        for ng, og, pairs in self._pairs:
            rows = self.old._rows(og)
            seen = self._seen[og.name]
            assert ng.departed is not None
            base = ng.base + ng.departed * ng.stride
            for row, before in zip(rows, seen, strict=True):
                for o, i in pairs:
                    if row[o] > before[o]:
                        words[base + i] += row[o] - before[o]
            self._seen[og.name] = rows


def _describe(group: Group) -> dict[str, Any]:
    """A checked group as JSON, for the layout text (attach builds it back)."""
    return {"name": group.name, "count": group.count, "stats": [list(d) for d in group.stats],
            "kind": group.kind, "labels": group.labels, "key": group.key,
            "reported_by_all": group.reported_by_all, "spare": group.spare}
