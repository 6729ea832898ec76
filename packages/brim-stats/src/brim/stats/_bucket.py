"""One process's bucket of stats: the object an app sees as ``env['brim.stats']``.

The hot path (incr, set, get) is a dict lookup from name to word index and a
read or write of one word of the shared memoryview. Everything unusual (an
undeclared name, a float, a negative number, a counter at 2**64 - 1) leaves the
fast path through an exception and is handled by a slower helper, so the common
case pays nothing for it.

A bucket has one writer: the process that owns it, on one OS thread (green
threads are fine, they never switch inside an increment). Two OS threads
incrementing the same bucket can lose increments.
"""

from __future__ import annotations

import logging
import numbers
import os
import time
from typing import TYPE_CHECKING

from ._declare import PID, START_COUNT, START_TIME, StatsError
from ._histogram import Histogram

if TYPE_CHECKING:
    from ._store import StatsStore

_MASK = (1 << 64) - 1


def _number(name: str, value: object) -> int:
    """Any other real number (bool, Decimal, Fraction) as a u64; anything else is an error."""
    # Decimal is a Number but registers as neither Real nor Complex.
    real = isinstance(value, numbers.Real) or (
        isinstance(value, numbers.Number) and not isinstance(value, numbers.Complex))
    if not real:
        raise StatsError(f"stat {name!r}: value must be a number, not {value!r}")
    return int(value) & _MASK  # type: ignore[call-overload]  # a Real, checked above


class StatsBucket:
    """get/set/incr on one bucket of the shared store.

    Values are unsigned 64-bit integers. ``set`` stores ``int(value)`` modulo
    2**64: a float is truncated toward zero (``time()`` works), a negative
    number wraps as a C cast to uint64 would (``-1`` reads back as
    ``2**64 - 1``), and a too-large one keeps its low 64 bits. ``incr`` past
    ``2**64 - 1`` wraps to 0. A name that was never declared never breaks a
    request: ``get`` returns 0 and ``set``/``incr`` do nothing; each such name
    is logged once (as a warning) per process.
    """

    __slots__ = ("_base", "_hist", "_index", "_names", "_warned", "_words", "group", "index",
                 "logger", "store")

    def __init__(
        self,
        store: StatsStore,
        group: str,
        index: int,
        words: memoryview,
        base: int,
        names: dict[str, int],
        logger: logging.Logger,
        hist: dict[str, int] | None = None,
    ):
        self.store = store
        self.group = group
        self.index = index
        self.logger = logger
        self._words = words
        self._base = base
        self._names = names
        self._index = {name: base + i for name, i in names.items()}
        self._warned: set[str] = set()
        self._hist = hist or {}

    def histogram(self, name: str) -> Histogram | None:
        """The handle to observe durations into a histogram stat; None if none is declared."""
        first = self._hist.get(name)
        return None if first is None else Histogram(self._words, self._base + first)

    def get(self, name: str) -> int:
        """The stat's current value; 0 for a name that was never declared."""
        try:
            return self._words[self._index[name]]
        except KeyError:
            self._unknown(name, "get")
            return 0

    def set(self, name: str, value: int | float) -> None:
        """Store ``int(value)`` modulo 2**64 (see the class docstring)."""
        # ints and floats are converted inline: a TypeError raised by the
        # memoryview would cost several times the whole call.
        try:
            self._words[self._index[name]] = (
                value if value.__class__ is int
                else int(value) & _MASK if value.__class__ is float
                else _number(name, value)
            )
        except KeyError:
            self._unknown(name, "set")
        except (ValueError, OverflowError):
            self._set_slow(name, value)

    def incr(self, name: str) -> None:
        """Add 1 to the stat (wrapping to 0 past 2**64 - 1)."""
        try:
            self._words[self._index[name]] += 1
        except KeyError:
            self._unknown(name, "incr")
        except ValueError:
            self._wrap(self._index[name])

    def index_of(self, name: str) -> int | None:
        """The stat's position within a bucket of this group, for incr_at; None if undeclared.

        The position is the same for every bucket of the group, so it can be
        looked up once, before the workers fork.
        """
        return self._names.get(name)

    def incr_at(self, i: int) -> None:
        """incr() by position: the fastest path, for a server's own per-request counters.

        ``i`` must come from index_of() on a bucket of the same group; it is
        not checked.
        """
        try:
            self._words[self._base + i] += 1
        except ValueError:
            self._wrap(self._base + i)

    def words(self) -> tuple[memoryview, int]:
        """The shared words and where this bucket starts in them: for a server's own hot path.

        Word ``base + index_of(name)`` is the stat ``name``, and a histogram's
        words start at ``base + histogram_at(name)``. Writing them directly
        skips a method call per write; only the bucket's owner may, and only
        ints in 0..2**64-1.
        """
        return self._words, self._base

    def histogram_at(self, name: str) -> int | None:
        """The position of a histogram stat's first word in the bucket; None if undeclared."""
        return self._hist.get(name)

    def set_at(self, i: int, value: int) -> None:
        """set() by position, for an int in 0..2**64-1: a server's own gauges.

        ``i`` must come from index_of() on a bucket of the same group; it is
        not checked.
        """
        self._words[self._base + i] = value

    def mark_started(self, now: float | None = None) -> None:
        """Record that this bucket's process (re)started now, or at ``now``.

        ``pid``, when declared, becomes this process' id. Counters are left
        as they are: a restarted worker carries on from
        where its predecessor stopped, so overall counts never go backwards.
        """
        self.set(START_TIME, time.time() if now is None else now)
        if PID in self._index:
            self.set(PID, os.getpid())
        if START_COUNT in self._index:
            self.incr(START_COUNT)

    def as_dict(self) -> dict[str, int]:
        """This bucket's stats by name."""
        words = self._words
        return {name: words[i] for name, i in self._index.items()}

    def _set_slow(self, name: str, value: int | float) -> None:
        """set() for what the fast path refused: ints outside 0..2**64-1, nan and infinity."""
        try:
            number = int(value) & _MASK
        except (ValueError, OverflowError):
            self._warn_once(name, f"brim.stats: set({name!r}, {value!r}) ignored: not finite")
            return
        self._words[self._index[name]] = number

    def _wrap(self, i: int) -> None:
        """An increment overflowed (or the store is closed, which re-raises here)."""
        if self._words[i] != _MASK:
            raise StatsError(f"stats bucket {self.group}[{self.index}] refused a write")
        self._words[i] = 0

    def _unknown(self, name: str, op: str) -> None:
        self._warn_once(
            name,
            f"brim.stats: {op}({name!r}) on undeclared stat (group {self.group!r}); "
            "declare it in stats_conf",
        )

    def _warn_once(self, name: str, message: str) -> None:
        if name not in self._warned:
            self._warned.add(name)
            self.logger.warning(message)

    def __repr__(self) -> str:
        return f"<StatsBucket {self.group}[{self.index}]>"
