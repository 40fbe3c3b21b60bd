"""Exact statistics: percentiles from raw values, and the mergeable histogram for long runs.

Percentiles are exact, from raw values, with linear interpolation between
order statistics, numpy's default ``method="linear"`` (Hyndman & Fan type
7): with n sorted values x[0..n-1], h = (n - 1) * q / 100 and
p_q = x[floor(h)] + (h - floor(h)) * (x[floor(h) + 1] - x[floor(h)]).
For very long runs :class:`LogLinearHistogram` keeps counts instead, with a
guaranteed error of at most max(1 %, 0.1 ms) per reported percentile.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

# Percentiles every Stats carries; SLO gates may ask for more.
DEFAULT_PERCENTILES: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0)
# The per-user rate is a "higher is better" metric: its low tail matters.
RATE_PERCENTILES: tuple[float, ...] = (1.0, 5.0, 10.0, 50.0, 90.0)


# ---------------------------------------------------------------------------
# Percentiles and distributions
# ---------------------------------------------------------------------------
def _check_q(q: float) -> None:
    if not 0.0 <= q <= 100.0 or math.isnan(q):
        raise ValueError(f"percentile {q!r} outside [0, 100]")


def percentile_sorted(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values; numpy's 'linear'."""
    _check_q(q)
    n = len(sorted_values)
    if n == 0:
        raise ValueError("percentile of no values")
    h = (n - 1) * (q / 100.0)
    lo = min(math.floor(h), n - 1)
    hi = min(lo + 1, n - 1)
    return _lerp(sorted_values[lo], sorted_values[hi], h - lo)


def _lerp(a: float, b: float, frac: float) -> float:
    if frac <= 0.0 or a == b:
        return a
    # Rounding must not push the result outside [a, b].
    return min(max(a + (b - a) * frac, a), b)


def percentile(values: Iterable[float], q: float) -> float:
    return percentile_sorted(sorted(values), q)


def _q_label(q: float) -> str:
    return f"p{q:g}"


class Distribution(Protocol):
    """What :class:`Stats` needs: both sample stores implement it."""

    @property
    def count(self) -> int: ...
    def add(self, value: float) -> None: ...
    def add_many(self, values: Sequence[float]) -> None: ...
    def mean(self) -> float | None: ...
    def min(self) -> float | None: ...
    def max(self) -> float | None: ...
    def percentile(self, q: float) -> float | None: ...


class ExactSamples:
    """Every value, as a compact array of doubles (8 bytes each)."""

    __slots__ = ("_sorted", "_values")

    def __init__(self, values: Iterable[float] = ()) -> None:
        self._values = array("d", values)
        self._sorted = False

    @property
    def count(self) -> int:
        return len(self._values)

    def add(self, value: float) -> None:
        self._values.append(value)
        self._sorted = False

    def add_many(self, values: Sequence[float]) -> None:
        self._values.extend(values)
        self._sorted = False

    def merge(self, other: ExactSamples) -> None:
        self._values.extend(other._values)
        self._sorted = False

    def _sorted_values(self) -> array[float]:
        if not self._sorted:
            self._values = array("d", sorted(self._values))
            self._sorted = True
        return self._values

    def mean(self) -> float | None:
        # fsum is correctly rounded, so the mean does not depend on merge order.
        return math.fsum(self._values) / len(self._values) if self._values else None

    def min(self) -> float | None:
        return self._sorted_values()[0] if self._values else None

    def max(self) -> float | None:
        return self._sorted_values()[-1] if self._values else None

    def percentile(self, q: float) -> float | None:
        _check_q(q)
        return percentile_sorted(self._sorted_values(), q) if self._values else None

    def to_json(self) -> list[float]:
        return list(self._values)

    @classmethod
    def from_json(cls, data: list[float]) -> ExactSamples:
        return cls(data)


def _fsum_add(partials: list[float], x: float) -> None:
    """Shewchuk's exact running sum (what math.fsum does), kept mergeable."""
    i = 0
    for y in partials:
        if abs(x) < abs(y):
            x, y = y, x
        hi = x + y
        lo = y - (hi - x)
        if lo:
            partials[i] = lo
            i += 1
        x = hi
    partials[i:] = [x]


class LogLinearHistogram:
    """Mergeable counts with a bounded error, for runs too long to keep values.

    Buckets: width 0.1 below 10, then geometric with ratio 1.01 (unbounded,
    stored sparsely). Each bucket is represented by the value with equal
    error to both edges (the midpoint; the harmonic mean of the edges for a
    geometric bucket), so one order statistic is off by at most
    max(0.5 %, 0.05) of its value. An interpolated percentile mixes two of
    them, so its error stays below 0.5 % * x + 0.05 <= max(1 % * x, 0.1):
    with values in ms, "<= 1 % or <= 0.1 ms, whichever is larger". count,
    min, max and the sum (hence the mean) are exact; p0 and p100 are the
    exact min and max.
    """

    LINEAR_LIMIT = 10.0
    LINEAR_WIDTH = 0.1
    RATIO = 1.01
    _LINEAR_BUCKETS = 100  # LINEAR_LIMIT / LINEAR_WIDTH
    _LOG_RATIO = math.log(RATIO)

    __slots__ = ("_cum", "_keys", "_max", "_min", "_partials", "count", "counts")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.count = 0
        self._min = math.inf
        self._max = -math.inf
        self._partials: list[float] = []
        self._keys: list[int] | None = None  # sorted bucket keys, cached
        self._cum: list[int] = []

    @classmethod
    def bucket_index(cls, value: float) -> int:
        if value < cls.LINEAR_LIMIT:
            return min(int(value / cls.LINEAR_WIDTH), cls._LINEAR_BUCKETS - 1)
        return cls._LINEAR_BUCKETS + int(math.log(value / cls.LINEAR_LIMIT) / cls._LOG_RATIO)

    @classmethod
    def bucket_bounds(cls, index: int) -> tuple[float, float]:
        if index < cls._LINEAR_BUCKETS:
            return index * cls.LINEAR_WIDTH, (index + 1) * cls.LINEAR_WIDTH
        k = index - cls._LINEAR_BUCKETS
        return cls.LINEAR_LIMIT * cls.RATIO**k, cls.LINEAR_LIMIT * cls.RATIO ** (k + 1)

    @classmethod
    def representative(cls, index: int) -> float:
        lo, hi = cls.bucket_bounds(index)
        if index < cls._LINEAR_BUCKETS:
            return (lo + hi) / 2
        return 2 * lo * hi / (lo + hi)

    def add(self, value: float) -> None:
        self.add_many((value,))

    def add_many(self, values: Sequence[float]) -> None:
        """Add a batch (one request's ITLs): one exact partial sum per batch.

        ``add(v)`` is ``add_many([v])``; batches are per request, so any split
        of the records over workers yields the same partials, hence the same
        mean after merging.
        """
        if not values:
            return
        low, high = min(values), max(values)
        if not low >= 0.0 or math.isinf(high):  # also rejects NaN
            raise ValueError(f"histogram values must be finite and >= 0, got {low!r}..{high!r}")
        counts = self.counts
        limit, width, linear, log_ratio = (
            self.LINEAR_LIMIT,
            self.LINEAR_WIDTH,
            self._LINEAR_BUCKETS,
            self._LOG_RATIO,
        )
        log = math.log
        for v in values:  # bucket_index inlined: this loop is the hot path
            if v < limit:
                idx = min(int(v / width), linear - 1)
            else:
                idx = linear + int(log(v / limit) / log_ratio)
            counts[idx] = counts.get(idx, 0) + 1
        self.count += len(values)
        self._min = min(self._min, low)
        self._max = max(self._max, high)
        _fsum_add(self._partials, math.fsum(values))
        self._keys = None

    def merge(self, other: LogLinearHistogram) -> None:
        for idx, n in other.counts.items():
            self.counts[idx] = self.counts.get(idx, 0) + n
        self.count += other.count
        self._min = min(self._min, other._min)
        self._max = max(self._max, other._max)
        for x in other._partials:
            _fsum_add(self._partials, x)
        self._keys = None

    def mean(self) -> float | None:
        return math.fsum(self._partials) / self.count if self.count else None

    def min(self) -> float | None:
        return self._min if self.count else None

    def max(self) -> float | None:
        return self._max if self.count else None

    def _value_at_rank(self, rank: int) -> float:
        if rank == 0:
            return self._min
        if rank == self.count - 1:
            return self._max
        if self._keys is None:
            self._keys = sorted(self.counts)
            total = 0
            self._cum = []
            for key in self._keys:
                total += self.counts[key]
                self._cum.append(total)
        pos = bisect_right(self._cum, rank)
        rep = self.representative(self._keys[pos])
        return min(max(rep, self._min), self._max)

    def percentile(self, q: float) -> float | None:
        _check_q(q)
        if not self.count:
            return None
        h = (self.count - 1) * (q / 100.0)
        lo = min(math.floor(h), self.count - 1)
        hi = min(lo + 1, self.count - 1)
        return _lerp(self._value_at_rank(lo), self._value_at_rank(hi), h - lo)

    def to_json(self) -> dict[str, Any]:
        return {
            "counts": [[k, v] for k, v in sorted(self.counts.items())],
            "min": self._min if self.count else None,
            "max": self._max if self.count else None,
            "sum_partials": list(self._partials),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LogLinearHistogram:
        hist = cls()
        for k, v in data["counts"]:
            hist.counts[int(k)] = int(v)
        hist.count = sum(hist.counts.values())
        if hist.count:
            hist._min = float(data["min"])
            hist._max = float(data["max"])
        hist._partials = [float(x) for x in data["sum_partials"]]
        return hist


DistributionKind = Literal["exact", "histogram"]


def _new_distribution(kind: DistributionKind) -> ExactSamples | LogLinearHistogram:
    return ExactSamples() if kind == "exact" else LogLinearHistogram()


@dataclass(frozen=True, slots=True)
class Stats:
    count: int
    mean: float | None
    min: float | None
    max: float | None
    percentiles: dict[str, float | None]  # "p50" -> value

    @classmethod
    def of(cls, dist: Distribution, qs: Iterable[float] = DEFAULT_PERCENTILES) -> Stats:
        return cls(
            count=dist.count,
            mean=dist.mean(),
            min=dist.min(),
            max=dist.max(),
            percentiles={_q_label(q): dist.percentile(q) for q in sorted(set(qs))},
        )

    def get(self, stat: str) -> float | None:
        """A statistic by name: ``mean``, ``min``, ``max`` or ``p<q>``."""
        if stat in ("mean", "min", "max"):
            return cast(float | None, getattr(self, stat))
        return self.percentiles.get(stat)

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "mean": self.mean,
            "min": self.min,
            "max": self.max,
            **self.percentiles,
        }
