"""Histograms in the shared store: fixed buckets, one word per bucket plus a sum.

A stat declared with type ``histogram`` takes ``len(BOUNDS) + 2`` words of
its bucket: one count per bound (observations ``<= bound`` and above the
bound before it), one for everything above the last bound (``+Inf``), and
the sum of the observations in microseconds. Keeping each bucket's own
count (not the cumulative one) is what makes an observation cheap: a
bisect, one increment and one add, with no lock (one writer per bucket).
The cumulative counts Prometheus wants, and the total count, are worked
out when a report is made.

The bounds are fixed for every histogram (seconds, from 1 ms to 60 s), so
histograms of different workers, groups and even versions of a program
add up bucket by bucket.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

BOUNDS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                             1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Upper bounds (inclusive, in seconds) of every histogram's buckets; ``+Inf`` follows."""

WORDS = len(BOUNDS) + 2
"""Words one histogram takes: a count per bound, the ``+Inf`` count, the sum (microseconds)."""

SUM = WORDS - 1
"""The sum's word, after a histogram's first word (the counts come before it)."""


def word_names(name: str) -> list[str]:
    """The names of the words a histogram stat takes in its bucket (internal: never reported)."""
    return [f"{name}#{i}" for i in range(WORDS - 1)] + [f"{name}#sum_us"]


def label(bound: float) -> str:
    """A bound as Prometheus writes ``le``: ``0.005``, ``1.0``, ``+Inf``."""
    return repr(float(bound))


class Histogram:
    """Observations into one histogram of one bucket: the handle a worker keeps."""

    __slots__ = ("_first", "_sum", "_words")

    def __init__(self, words: memoryview, first: int) -> None:
        self._words = words
        self._first = first
        self._sum = first + SUM

    def observe(self, seconds: float) -> None:
        """Count one observation of ``seconds`` (a duration; negative counts as 0)."""
        words = self._words
        words[self._first + bisect_left(BOUNDS, seconds)] += 1
        if seconds > 0:
            words[self._sum] += int(seconds * 1_000_000)


def summary(words: list[int]) -> dict[str, Any]:
    """A histogram's words as reported: count, sum (seconds), cumulative buckets by bound."""
    cumulative = 0
    buckets: dict[str, int] = {}
    for bound, n in zip((*BOUNDS, float("inf")), words[:-1], strict=True):
        cumulative += n
        buckets["+Inf" if bound == float("inf") else label(bound)] = cumulative
    return {"count": cumulative, "sum": words[-1] / 1_000_000, "buckets": buckets}


def quantile(q: float, buckets: list[int]) -> float | None:
    """The ``q`` quantile (0..1) of per-bucket counts, by linear interpolation in its bucket.

    What Prometheus' histogram_quantile does, for ``brimd top``'s p50/p99 over
    the counts of the last interval. None when there are no observations; the
    last bound when the quantile falls in ``+Inf``.
    """
    total = sum(buckets)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    lower = 0.0
    for i, n in enumerate(buckets):
        if i >= len(BOUNDS):
            return BOUNDS[-1]
        if n and seen + n >= rank:
            return lower + (BOUNDS[i] - lower) * (rank - seen) / n
        seen += n
        lower = BOUNDS[i]
    return BOUNDS[-1]
