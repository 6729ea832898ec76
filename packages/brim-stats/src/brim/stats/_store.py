"""The shared-memory stats store: one anonymous shared mmap, buckets of u64 words, roll-ups.

Layout (all words are native-endian unsigned 64-bit, 8-byte aligned)::

    words 0..7      header: magic, layout version, server start time, total words, reserved
    then per group  a block of ``count`` buckets, each ``stride`` words long,
                    where stride = the group's stat count rounded up to a multiple of 8

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

import logging
import mmap
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ._bucket import StatsBucket
from ._declare import START_TIME, StatDecl, StatsError
from ._group import DAEMON, Group, check_groups

_MAGIC = int.from_bytes(b"BRIMSTAT", "little")
_LAYOUT_VERSION = 1
_HEADER_WORDS = 8
_LINE_WORDS = 8  # 64-byte cache line


class _Group:
    """Where one group lives in the shared words, and what its stats are."""

    __slots__ = ("base", "count", "desc", "index", "key", "listed", "name", "names", "stride",
                 "types")

    def __init__(self, desc: Group, base: int):
        self.desc = desc
        self.name = desc.name
        self.key = desc.key or desc.name  # check_groups has filled it in
        #: Buckets allocated; the first ``listed`` are always reported.
        self.count = desc.count + desc.spare
        self.listed = desc.count
        self.names = tuple(decl[0] for decl in desc.stats)
        self.types = tuple(decl[1] for decl in desc.stats)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.stride = -(-len(self.names) // _LINE_WORDS) * _LINE_WORDS
        self.base = base


class StatsStore:
    """All the stats of one server, in memory that forked children share with their parent.

    Build it in the parent before forking: the mapping is anonymous and shared,
    so it is inherited by every child and each child's writes are visible to
    every other process at once, with no file, socket or lock involved.

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
        self._groups: dict[str, _Group] = {}
        words = _HEADER_WORDS
        for desc in checked:
            group = _Group(desc, words)
            self._groups[desc.name] = group
            words += group.count * group.stride
        self._mmap = mmap.mmap(
            -1, words * 8, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE
        )
        self._raw = memoryview(self._mmap)
        self._words = self._raw.cast("Q")
        self._words[0] = _MAGIC
        self._words[1] = _LAYOUT_VERSION
        self._words[2] = self.start_time
        self._words[3] = words
        self._buckets: dict[tuple[str, int], StatsBucket] = {}

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

    def values(self, group: str) -> list[dict[str, int]]:
        """Every bucket's stats by name, in bucket order, with no roll-up."""
        g = self._group(group)
        return [dict(zip(g.names, row, strict=True)) for row in self._shown_rows(g)]

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
                self, group, index, self._words, g.base + index * g.stride, g.index, self.logger
            )
            self._buckets[key] = bucket
        if logger is not None:
            bucket.logger = logger
        return bucket

    def snapshot(self, group: str) -> dict[str, Any]:
        """The group's overall stats followed by ``worker_N`` objects, as plain ints.

        Overall values: ``start_time`` is the store's (program's) start time;
        ``sum``/``max`` stats are over every bucket; ``min`` stats are over the
        buckets whose ``start_time`` is set (a worker that never started holds
        no data), or over every bucket if none has started; ``worker`` stats
        have no overall value.

        A ``daemon`` group is one process: its snapshot is its bucket as it
        is, ``start_time`` included, with nothing to roll up.
        """
        g = self._group(group)
        rows = self._shown_rows(g)
        if g.desc.kind == DAEMON:
            return dict(zip(g.names, rows[0], strict=True))
        overall: dict[str, Any] = {START_TIME: self.start_time}
        started = [row for row in rows if row[0]] or rows
        columns = list(zip(*rows, strict=True))
        started_columns = columns if started is rows else list(zip(*started, strict=True))
        for i, (name, typ) in enumerate(zip(g.names, g.types, strict=True)):
            if typ == "sum":
                overall[name] = sum(columns[i])
            elif typ == "max":
                overall[name] = max(columns[i])
            elif typ == "min":
                overall[name] = min(started_columns[i])
        names = g.names
        for n, row in enumerate(rows):
            overall[f"worker_{n}"] = dict(zip(names, row, strict=True))
        return overall

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

    def _group(self, group: str) -> _Group:
        try:
            return self._groups[group]
        except (KeyError, TypeError):
            raise StatsError(
                f'no stats group {group!r} (known: {", ".join(self._groups)})'
            ) from None

    def _rows(self, g: _Group) -> list[list[int]]:
        """Copy the group's block once and cut it into one list of values per bucket."""
        n, stride = len(g.names), g.stride
        words = self._words[g.base:g.base + g.count * stride].tolist()
        return [words[i:i + n] for i in range(0, g.count * stride, stride)]

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
