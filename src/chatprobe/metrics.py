"""Load-test metrics: per-request records, exact statistics, SLOs, time series.

Pure computation: no IO, no httpx, no locust. The Locust users fill
:class:`RequestRecord` objects, a :class:`MetricsCollector` per worker holds
them, the master merges the collectors, and :func:`summarize` /
:func:`time_series` turn the union into the numbers the reports print.

Definitions (see "Metric definitions" in the design; compatible with vLLM's
and GuideLLM's). Every time stamp is ``time.perf_counter_ns()``; every
duration below is in milliseconds.

- ``queue_delay`` = t_sent - t_scheduled (open loop only: the generator
  falling behind its plan; never hidden).
- ``ttfb`` = first response byte - t_sent.
- ``ttft`` = first token-bearing event (non-empty content, reasoning or
  tool-call delta) - t_sent; ``ttft_vllm`` = first event with a non-empty
  ``choices`` - t_sent (vLLM's variant: the role-only first chunk counts).
- ``e2e`` = last token-bearing event - t_sent (the usage chunk and the
  terminator are excluded). A non-stream request records the arrival of its
  complete body as its single token-bearing event, so ttft == e2e for it.
- ``tpot`` = (e2e - ttft) / (output_tokens - 1); undefined for <= 1 token.
- ``itl`` = every gap between successive token-bearing events, pooled over
  requests (a request with k events contributes k - 1 gaps).
- Per-user tokens/s, per request = (output_tokens - 1) / (e2e - ttft), i.e.
  1000 / tpot: the streaming speed a user sees once the first token is there.
  The first token is not in the numerator because it *starts* the interval.
- Output tokens: the server's ``usage.completion_tokens`` when sent
  (source ``"usage"``); else the number of token-bearing events (source
  ``"events"``: exact for servers that send one token per event, a lower
  bound for those that batch); else, when there are no events (non-stream
  without usage), ceil(characters / 4) of the output text (source
  ``"estimate"``, the usual ~4 characters per English token). See
  :func:`resolve_output_tokens`; the summary counts requests per source.

Measured window. A request belongs to the window [t_start, t_end] when it
*finished* (``t_end_ns``; ``t_sent_ns`` when never finished) inside it.
requests/s (all members) and output tokens/s (successful members' tokens)
divide by the window length, which makes them unbiased completion rates in a steady state
(counting only requests that started *and* ended inside the window would
undercount by about one request per user). Warm-up is excluded by starting
the window after it; a member may have been sent up to one E2E before
t_start. Latency statistics (ttft, ttfb, ttft_vllm, e2e, tpot, itl, per-user
tokens/s) use the window's *successful* requests; queue delay uses all of
them (falling behind does not depend on the outcome); error rate = failed /
all members.

Percentiles are exact, from raw values, with linear interpolation between
order statistics, numpy's default ``method="linear"`` (Hyndman & Fan type
7): with n sorted values x[0..n-1], h = (n - 1) * q / 100 and
p_q = x[floor(h)] + (h - floor(h)) * (x[floor(h) + 1] - x[floor(h)]).
For very long runs :class:`LogLinearHistogram` keeps counts instead, with a
guaranteed error of at most max(1 %, 0.1 ms) per reported percentile.

Goodput. A request is *good* when it succeeded and meets every per-request
threshold given (``ttft_ms``, ``tpot_ms``, ``e2e_ms``; a request with <= 1
token has no TPOT and cannot miss that one). goodput = good requests / window
seconds; attainment = good / all members (failed requests included).

Clocks. perf_counter_ns is per machine (CLOCK_MONOTONIC on Linux, shared by
the processes of one host): records from workers on one host merge as they
are; a worker on another host must shift its stamps onto the master's clock
(:meth:`RequestRecord.shifted`, by an offset measured at start-up) before its
records are windowed or merged, compact collectors included.
"""

from __future__ import annotations

import itertools
import math
import re
from array import array
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, cast

from chatprobe.errors import UsageError
from chatprobe.rules import RULES

__all__ = [
    "CHARS_PER_TOKEN",
    "DEFAULT_PERCENTILES",
    "LATENCY_METRICS",
    "MOSTLY_FAILED_FRACTION",
    "Distribution",
    "ExactSamples",
    "Gate",
    "GateResult",
    "LogLinearHistogram",
    "MetricsCollector",
    "RequestRecord",
    "RequestThresholds",
    "SLOSpec",
    "Stats",
    "Summary",
    "TimeBucket",
    "TimeSeries",
    "TokenSource",
    "WindowAggregate",
    "failure_kind",
    "load_verdict",
    "merge_records",
    "parse_slos",
    "percentile",
    "percentile_sorted",
    "resolve_output_tokens",
    "summarize",
    "summary_from_aggregate",
    "time_series",
]

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
CHARS_PER_TOKEN = 4

TokenSource = Literal["usage", "events", "estimate"]
_TOKEN_SOURCES: frozenset[str] = frozenset({"usage", "events", "estimate"})

# Percentiles every Stats carries; SLO gates may ask for more.
DEFAULT_PERCENTILES: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0)
# The per-user rate is a "higher is better" metric: its low tail matters.
RATE_PERCENTILES: tuple[float, ...] = (1.0, 5.0, 10.0, 50.0, 90.0)

# Distribution names in a summary, each in milliseconds.
LATENCY_METRICS: tuple[str, ...] = (
    "ttft_ms",
    "ttfb_ms",
    "ttft_vllm_ms",
    "e2e_ms",
    "tpot_ms",
    "itl_ms",
    "queue_delay_ms",
)
USER_RATE_METRIC = "user_tokens_per_s"


def _ms(start_ns: int | None, end_ns: int | None) -> float | None:
    if start_ns is None or end_ns is None:
        return None
    return (end_ns - start_ns) / NS_PER_MS


# ---------------------------------------------------------------------------
# Output tokens
# ---------------------------------------------------------------------------
def resolve_output_tokens(
    usage_completion_tokens: int | None,
    token_events: int,
    text: str | None = None,
) -> tuple[int | None, TokenSource | None]:
    """Pick the output-token count and say where it came from.

    Order: the server's usage (``"usage"``), else the count of token-bearing
    events (``"events"``), else ceil(len(text) / CHARS_PER_TOKEN)
    (``"estimate"``). ``(None, None)`` when there is nothing to count.
    """
    if usage_completion_tokens is not None:
        return usage_completion_tokens, "usage"
    if token_events > 0:
        return token_events, "events"
    if text:
        return -(-len(text) // CHARS_PER_TOKEN), "estimate"
    return None, None


# ---------------------------------------------------------------------------
# The per-request record
# ---------------------------------------------------------------------------
@dataclass(slots=True)
class RequestRecord:
    """One request, full precision; every ``t_*`` is a perf_counter_ns() int."""

    request_id: str
    dialect: str
    t_sent_ns: int
    t_scheduled_ns: int | None = None  # None in a closed loop
    t_first_byte_ns: int | None = None
    t_first_token_ns: int | None = None  # first token-bearing event
    t_first_choices_ns: int | None = None  # first event with non-empty choices (vLLM)
    token_arrivals_ns: list[int] = field(default_factory=list)  # every token-bearing event
    t_end_ns: int | None = None  # response complete, or the failure observed
    output_tokens: int | None = None
    output_tokens_source: TokenSource | None = None
    prompt_tokens: int | None = None
    status: int | None = None
    ok: bool = False
    error: str | None = None  # "http 500", "reset", "timeout", "stream.terminator_missing"…
    user_id: str | None = None
    worker_id: str | None = None

    def add_token_event(self, t_ns: int) -> None:
        """Stamp one token-bearing event (call in arrival order)."""
        if self.t_first_token_ns is None:
            self.t_first_token_ns = t_ns
        self.token_arrivals_ns.append(t_ns)

    def shifted(self, offset_ns: int) -> RequestRecord:
        """A copy with every time stamp moved by offset_ns (onto another clock)."""

        def move(t: int | None) -> int | None:
            return None if t is None else t + offset_ns

        return replace(
            self,
            t_sent_ns=self.t_sent_ns + offset_ns,
            t_scheduled_ns=move(self.t_scheduled_ns),
            t_first_byte_ns=move(self.t_first_byte_ns),
            t_first_token_ns=move(self.t_first_token_ns),
            t_first_choices_ns=move(self.t_first_choices_ns),
            token_arrivals_ns=[t + offset_ns for t in self.token_arrivals_ns],
            t_end_ns=move(self.t_end_ns),
        )

    # -- derived, milliseconds ------------------------------------------------
    @property
    def queue_delay_ms(self) -> float | None:
        return _ms(self.t_scheduled_ns, self.t_sent_ns)

    @property
    def ttfb_ms(self) -> float | None:
        return _ms(self.t_sent_ns, self.t_first_byte_ns)

    @property
    def ttft_ms(self) -> float | None:
        return _ms(self.t_sent_ns, self.t_first_token_ns)

    @property
    def ttft_vllm_ms(self) -> float | None:
        return _ms(self.t_sent_ns, self.t_first_choices_ns)

    @property
    def e2e_ms(self) -> float | None:
        if not self.token_arrivals_ns:
            return None
        return _ms(self.t_sent_ns, self.token_arrivals_ns[-1])

    @property
    def tpot_ms(self) -> float | None:
        ttft, e2e, tokens = self.ttft_ms, self.e2e_ms, self.output_tokens
        if ttft is None or e2e is None or tokens is None or tokens <= 1:
            return None
        return (e2e - ttft) / (tokens - 1)

    @property
    def user_tokens_per_s(self) -> float | None:
        """(output_tokens - 1) / (e2e - ttft) seconds; None when undefined."""
        ttft, e2e, tokens = self.ttft_ms, self.e2e_ms, self.output_tokens
        if ttft is None or e2e is None or tokens is None or tokens <= 1 or e2e <= ttft:
            return None
        return (tokens - 1) * 1000.0 / (e2e - ttft)

    @property
    def itls_ms(self) -> list[float]:
        arr = self.token_arrivals_ns
        return [(b - a) / NS_PER_MS for a, b in itertools.pairwise(arr)]

    @property
    def t_finished_ns(self) -> int:
        """When the request left the generator's hands (for window membership)."""
        return self.t_end_ns if self.t_end_ns is not None else self.t_sent_ns

    # -- serialisation ----------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """A compact, lossless dict: None fields omitted, arrivals as gaps (ns).

        ``token_gaps_ns[0]`` is the first arrival minus ``t_sent_ns``, each next
        entry the gap to the previous arrival: small ints, short JSON.
        """
        out: dict[str, Any] = {
            "request_id": self.request_id,
            "dialect": self.dialect,
            "t_sent_ns": self.t_sent_ns,
            "ok": self.ok,
        }
        for name in _OPTIONAL_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.token_arrivals_ns:
            prev = self.t_sent_ns
            gaps = []
            for t in self.token_arrivals_ns:
                gaps.append(t - prev)
                prev = t
            out["token_gaps_ns"] = gaps
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RequestRecord:
        source = data.get("output_tokens_source")
        if source is not None and source not in _TOKEN_SOURCES:
            raise ValueError(f"unknown output_tokens_source {source!r}")
        arrivals: list[int] = []
        t = int(data["t_sent_ns"])
        for gap in data.get("token_gaps_ns", ()):
            t += int(gap)
            arrivals.append(t)
        kwargs = {name: data[name] for name in _OPTIONAL_FIELDS if name in data}
        return cls(
            request_id=str(data["request_id"]),
            dialect=str(data["dialect"]),
            t_sent_ns=int(data["t_sent_ns"]),
            ok=bool(data["ok"]),
            token_arrivals_ns=arrivals,
            **kwargs,
        )


_OPTIONAL_FIELDS: tuple[str, ...] = (
    "t_scheduled_ns",
    "t_first_byte_ns",
    "t_first_token_ns",
    "t_first_choices_ns",
    "t_end_ns",
    "output_tokens",
    "output_tokens_source",
    "prompt_tokens",
    "status",
    "error",
    "user_id",
    "worker_id",
)


def clock_offset_ns(local: Mapping[str, Any], remote: Mapping[str, Any]) -> int:
    """What to add to a remote process's ``perf_counter_ns`` stamps to put them on
    this process's clock.

    Each side is a clock sample: ``{"boot_id", "host", "perf_ns", "wall_ns"}``,
    its monotonic and wall clocks read together. Processes of one running
    kernel share CLOCK_MONOTONIC (same ``boot_id``; same ``host`` when no boot
    id is known): 0. Otherwise the monotonic clocks are unrelated and the wall
    clocks bridge them, ``(local perf - local wall) - (remote perf - remote
    wall)``, as exact as the machines' wall clocks agree (NTP: about a
    millisecond). Durations (TTFT, ITL, E2E) never need this: they are
    differences of one process's stamps. Time windows and time series do.
    """
    same = (local.get("boot_id") == remote.get("boot_id") if local.get("boot_id") and remote.get("boot_id")
            else local.get("host") == remote.get("host"))
    if same:
        return 0
    return int((local["perf_ns"] - local["wall_ns"]) - (remote["perf_ns"] - remote["wall_ns"]))


def merge_records(*parts: Iterable[RequestRecord]) -> list[RequestRecord]:
    """The union of several workers' records, in sent order (stable)."""
    merged = [r for part in parts for r in part]
    merged.sort(key=lambda r: r.t_sent_ns)
    return merged


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


# ---------------------------------------------------------------------------
# SLOs
# ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RequestThresholds:
    """Per-request limits (ms) deciding whether a request is *good*."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None

    def is_good(self, record: RequestRecord) -> bool:
        if not record.ok:
            return False
        for limit, value, missing_ok in (
            (self.ttft_ms, record.ttft_ms, False),
            (self.tpot_ms, record.tpot_ms, True),  # <= 1 token: no TPOT to miss
            (self.e2e_ms, record.e2e_ms, False),
        ):
            if limit is None:
                continue
            if value is None:
                if not missing_ok:
                    return False
            elif value > limit:
                return False
        return True


@dataclass(frozen=True, slots=True)
class Gate:
    """An aggregate SLO checked on the summary: ``measured <= limit`` (or >=)."""

    name: str  # as the user wrote it, e.g. "ttft_p95_ms"
    metric: str  # "ttft_ms", "user_tokens_per_s", "error_rate", "goodput"…
    stat: str | None  # "p95", "mean", "max" for distributions; None for scalars
    limit: float
    upper: bool  # True: measured must be <= limit; False: >= limit

    def evaluate(self, summary: Summary) -> GateResult:
        measured = summary.measure(self.metric, self.stat)
        passed = measured is not None and (
            measured <= self.limit if self.upper else measured >= self.limit
        )
        return GateResult(self.name, self.limit, measured, passed, "<=" if self.upper else ">=")


@dataclass(frozen=True, slots=True)
class GateResult:
    name: str
    limit: float
    measured: float | None  # None: nothing to measure (e.g. no successful request) = fail
    passed: bool
    comparison: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "limit": self.limit,
            "measured": self.measured,
            "passed": self.passed,
            "comparison": self.comparison,
        }


@dataclass(frozen=True, slots=True)
class SLOSpec:
    thresholds: RequestThresholds = RequestThresholds()
    gates: tuple[Gate, ...] = ()

    def percentiles_for(self, metric: str) -> set[float]:
        return {
            float(g.stat[1:])
            for g in self.gates
            if g.metric == metric and g.stat is not None and g.stat.startswith("p")
        }


_DIST_GATE = re.compile(
    r"^(ttft|ttfb|ttft_vllm|e2e|tpot|itl|queue_delay)_(p\d+(?:\.\d+)?|mean|max)_ms$"
)
_RATE_GATE = re.compile(r"^user_tokens_per_s_(p\d+(?:\.\d+)?|mean|min)$")
# scalar gate -> (upper bound?, a fraction in [0, 1]?)
_SCALAR_GATES: dict[str, tuple[bool, bool]] = {
    "error_rate": (True, True),
    "attainment": (False, True),
    "goodput": (False, False),
    "requests_per_s": (False, False),
    "output_tokens_per_s": (False, False),
}
_THRESHOLDS = ("ttft_ms", "tpot_ms", "e2e_ms")


def parse_slos(items: Iterable[str]) -> SLOSpec:
    """Parse ``NAME=VALUE`` items (``--slo``); a bad item raises UsageError.

    Per-request thresholds (for goodput): ``ttft_ms``, ``tpot_ms``, ``e2e_ms``.
    Gates on the summary: ``<m>_p<q>_ms`` / ``<m>_mean_ms`` / ``<m>_max_ms``
    for m in ttft, ttfb, ttft_vllm, e2e, tpot, itl, queue_delay (upper
    bounds); ``user_tokens_per_s_p<q>|mean|min`` (lower bound);
    ``error_rate`` (upper, 0..1); ``attainment`` (lower, 0..1); ``goodput``,
    ``requests_per_s``, ``output_tokens_per_s`` (lower bounds, per second).
    """
    thresholds: dict[str, float] = {}
    gates: list[Gate] = []
    seen: set[str] = set()
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"bad SLO {item!r}: expected NAME=VALUE")
        if name in seen:
            raise UsageError(f"bad SLO {item!r}: {name} given twice")
        seen.add(name)
        try:
            value = float(raw)
        except ValueError:
            raise UsageError(f"bad SLO {item!r}: {raw.strip()!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise UsageError(f"bad SLO {item!r}: the value must be a finite number >= 0")
        if name in _THRESHOLDS:
            thresholds[name] = value
        elif m := _DIST_GATE.match(name):
            gates.append(
                Gate(name, f"{m.group(1)}_ms", _checked_stat(item, m.group(2)), value, upper=True)
            )
        elif m := _RATE_GATE.match(name):
            gates.append(
                Gate(name, USER_RATE_METRIC, _checked_stat(item, m.group(1)), value, upper=False)
            )
        elif name in _SCALAR_GATES:
            upper, fraction = _SCALAR_GATES[name]
            if fraction and value > 1:
                raise UsageError(f"bad SLO {item!r}: {name} is a fraction between 0 and 1")
            gates.append(Gate(name, name, None, value, upper=upper))
        else:
            raise UsageError(f"bad SLO {item!r}: unknown name {name!r}")
    return SLOSpec(RequestThresholds(**thresholds), tuple(gates))


def _checked_stat(item: str, stat: str) -> str:
    if stat.startswith("p"):
        q = float(stat[1:])
        if not 0 < q <= 100:
            raise UsageError(f"bad SLO {item!r}: percentile must be in (0, 100]")
        return _q_label(q)
    return stat


# ---------------------------------------------------------------------------
# Aggregation over a window
# ---------------------------------------------------------------------------
class WindowAggregate:
    """Counts and distributions of the records in one window; mergeable.

    With ``kind="histogram"`` it is bounded in memory however long the run,
    so a long run can aggregate as it goes and drop the records.
    """

    def __init__(
        self,
        kind: DistributionKind = "exact",
        thresholds: RequestThresholds = RequestThresholds(),
    ) -> None:
        self.kind: DistributionKind = kind
        self.thresholds = thresholds
        self.total = 0
        self.ok = 0
        self.good = 0
        self.failed_by_reason: Counter[str] = Counter()
        self.output_tokens = 0
        self.token_sources: Counter[str] = Counter()
        self.dists: dict[str, ExactSamples | LogLinearHistogram] = {
            name: _new_distribution(kind) for name in (*LATENCY_METRICS, USER_RATE_METRIC)
        }

    def add(self, r: RequestRecord) -> None:
        self.total += 1
        queue_delay = r.queue_delay_ms
        if queue_delay is not None:
            self.dists["queue_delay_ms"].add(max(queue_delay, 0.0))
        if not r.ok:
            self.failed_by_reason[r.error or "unknown"] += 1
            return
        self.ok += 1
        if self.thresholds.is_good(r):
            self.good += 1
        if r.output_tokens is not None:
            self.output_tokens += r.output_tokens
        self.token_sources[r.output_tokens_source or "none"] += 1
        d = self.dists
        for name, value in (
            ("ttft_ms", r.ttft_ms),
            ("ttfb_ms", r.ttfb_ms),
            ("ttft_vllm_ms", r.ttft_vllm_ms),
            ("e2e_ms", r.e2e_ms),
            ("tpot_ms", r.tpot_ms),
            (USER_RATE_METRIC, r.user_tokens_per_s),
        ):
            if value is not None:
                d[name].add(value)
        d["itl_ms"].add_many(r.itls_ms)

    def merge(self, other: WindowAggregate) -> None:
        if other.kind != self.kind or other.thresholds != self.thresholds:
            raise ValueError("cannot merge aggregates of different kinds or thresholds")
        self.total += other.total
        self.ok += other.ok
        self.good += other.good
        self.failed_by_reason.update(other.failed_by_reason)
        self.output_tokens += other.output_tokens
        self.token_sources.update(other.token_sources)
        for name, dist in self.dists.items():
            dist.merge(other.dists[name])  # type: ignore[arg-type]  # same kind, checked above

    def to_json(self) -> dict[str, Any]:
        t = self.thresholds
        return {
            "kind": self.kind,
            "thresholds": {"ttft_ms": t.ttft_ms, "tpot_ms": t.tpot_ms, "e2e_ms": t.e2e_ms},
            "total": self.total,
            "ok": self.ok,
            "good": self.good,
            "failed_by_reason": dict(self.failed_by_reason),
            "output_tokens": self.output_tokens,
            "token_sources": dict(self.token_sources),
            "dists": {name: d.to_json() for name, d in self.dists.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WindowAggregate:
        kind = cast(DistributionKind, data["kind"])
        agg = cls(kind, RequestThresholds(**data["thresholds"]))
        agg.total, agg.ok, agg.good = data["total"], data["ok"], data["good"]
        agg.failed_by_reason = Counter(data["failed_by_reason"])
        agg.output_tokens = data["output_tokens"]
        agg.token_sources = Counter(data["token_sources"])
        for name, raw in data["dists"].items():
            agg.dists[name] = (
                ExactSamples.from_json(raw)
                if kind == "exact"
                else LogLinearHistogram.from_json(raw)
            )
        return agg


@dataclass(frozen=True, slots=True)
class Summary:
    """What a report prints for one measured window (see the module docstring)."""

    window_start_ns: int
    window_end_ns: int
    total: int
    ok: int
    failed_by_reason: dict[str, int]
    output_tokens: int
    output_tokens_sources: dict[str, int]  # successful requests per token source
    stats: dict[str, Stats]  # LATENCY_METRICS (ms) and "user_tokens_per_s"
    good: int
    distribution: DistributionKind
    slo_results: tuple[GateResult, ...] = ()

    @property
    def duration_s(self) -> float:
        return (self.window_end_ns - self.window_start_ns) / NS_PER_S

    @property
    def failed(self) -> int:
        return self.total - self.ok

    def _per_s(self, n: float) -> float | None:
        return n / self.duration_s if self.duration_s > 0 else None

    @property
    def error_rate(self) -> float | None:
        return self.failed / self.total if self.total else None

    @property
    def requests_per_s(self) -> float | None:
        return self._per_s(self.total)

    @property
    def ok_requests_per_s(self) -> float | None:
        return self._per_s(self.ok)

    @property
    def output_tokens_per_s(self) -> float | None:
        return self._per_s(self.output_tokens)

    @property
    def goodput(self) -> float | None:
        return self._per_s(self.good)

    @property
    def attainment(self) -> float | None:
        return self.good / self.total if self.total else None

    @property
    def slos_passed(self) -> bool:
        return all(g.passed for g in self.slo_results)

    def measure(self, metric: str, stat: str | None) -> float | None:
        if stat is None:
            return cast(float | None, getattr(self, metric))
        return self.stats[metric].get(stat)

    def to_json(self) -> dict[str, Any]:
        return {
            "window": {
                "start_ns": self.window_start_ns,
                "end_ns": self.window_end_ns,
                "duration_s": self.duration_s,
            },
            "requests": {
                "total": self.total,
                "ok": self.ok,
                "failed": self.failed,
                "failed_by_reason": dict(sorted(self.failed_by_reason.items())),
                "error_rate": self.error_rate,
            },
            "throughput": {
                "requests_per_s": self.requests_per_s,
                "ok_requests_per_s": self.ok_requests_per_s,
                "output_tokens": self.output_tokens,
                "output_tokens_per_s": self.output_tokens_per_s,
                "output_tokens_sources": dict(sorted(self.output_tokens_sources.items())),
            },
            "latency_ms": {name: self.stats[name].to_json() for name in LATENCY_METRICS},
            "user_tokens_per_s": self.stats[USER_RATE_METRIC].to_json(),
            "goodput": {"good": self.good, "per_s": self.goodput, "attainment": self.attainment},
            "slo": {
                "passed": self.slos_passed,
                "gates": [g.to_json() for g in self.slo_results],
            },
            "percentile_method": "exact, linear interpolation (numpy 'linear')"
            if self.distribution == "exact"
            else "log-linear histogram, error <= max(1 %, 0.1 ms)",
        }


def _window_of(records: Sequence[RequestRecord]) -> tuple[int, int]:
    if not records:
        return 0, 0
    start = min(r.t_scheduled_ns if r.t_scheduled_ns is not None else r.t_sent_ns for r in records)
    return start, max(r.t_finished_ns for r in records)


def summary_from_aggregate(
    agg: WindowAggregate, window: tuple[int, int], slos: SLOSpec = SLOSpec()
) -> Summary:
    if agg.thresholds != slos.thresholds:
        raise ValueError("the aggregate was built with other per-request thresholds")
    stats = {}
    for name, dist in agg.dists.items():
        base = RATE_PERCENTILES if name == USER_RATE_METRIC else DEFAULT_PERCENTILES
        stats[name] = Stats.of(dist, {*base, *slos.percentiles_for(name)})
    summary = Summary(
        window_start_ns=window[0],
        window_end_ns=window[1],
        total=agg.total,
        ok=agg.ok,
        failed_by_reason=dict(agg.failed_by_reason),
        output_tokens=agg.output_tokens,
        output_tokens_sources=dict(agg.token_sources),
        stats=stats,
        good=agg.good,
        distribution=agg.kind,
    )
    # Gates read the finished summary, so they are evaluated on a first copy.
    return replace(summary, slo_results=tuple(g.evaluate(summary) for g in slos.gates))


def summarize(
    records: Iterable[RequestRecord],
    window: tuple[int, int] | None = None,
    slos: SLOSpec = SLOSpec(),
    kind: DistributionKind = "exact",
) -> Summary:
    """Summarise the records that finished in ``window`` (default: all of them).

    ``window`` is (t_start_ns, t_end_ns), inclusive; by default it spans the
    earliest scheduled/sent stamp to the latest finish.
    """
    records = list(records)
    if window is None:
        window = _window_of(records)
    start, end = window
    if end < start:
        raise ValueError("window ends before it starts")
    agg = WindowAggregate(kind, slos.thresholds)
    for r in records:
        if start <= r.t_finished_ns <= end:
            agg.add(r)
    return summary_from_aggregate(agg, window, slos)


# ---------------------------------------------------------------------------
# The run's verdict: may its figures be read as the server's performance?
# ---------------------------------------------------------------------------
# Above this fraction of failed requests a load run is "mostly failed". Latency and
# throughput come from the successful requests only, so past half of them failing
# the figures describe a minority that survived (fast rejections and slow successes
# are not a random sample of one another) rather than the server under the planned
# load. Below it, failures are a measured outcome (an overloaded server shedding
# 10 % with 503 is a capacity finding, gated by an error_rate SLO) and are reported,
# with their reasons, but the run stays readable.
MOSTLY_FAILED_FRACTION = 0.5
# Transport failure reasons of the load users, and the rule each one breaks.
_TRANSPORT_RULES = {"reset": "http.reset", "timeout": "http.timeout"}
_STATUS_REASON = re.compile(r"http (\d{3})")


def failure_kind(reason: str) -> tuple[str, str | None]:
    """(kind, rule) of a load failure reason: kind is "http status", "protocol"
    (a rule of chatprobe.rules broken in the response), "transport" (connect, reset,
    timeout, not HTTP) or "client" (a bug of chatprobe's, counted, never the server's)."""
    if _STATUS_REASON.fullmatch(reason):
        return "http status", "http.status"
    if reason.startswith("client error"):
        return "client", None
    if reason in _TRANSPORT_RULES:
        return "transport", _TRANSPORT_RULES[reason]
    if reason == "stream.error_event":
        return "protocol", None  # the dialect's own error event: the server said it failed
    if reason in RULES:
        return "protocol", reason
    return "transport", None  # connect: ..., connect timeout, http.parse


def load_verdict(
    requests: Mapping[str, Any],
    generator_reasons: Sequence[str] = (),
    examples: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Whether a load run's figures can be trusted, and why not.

    ``requests`` is a summary's ``requests`` block (total, ok, failed,
    failed_by_reason); ``generator_reasons`` the generator-health reasons (a
    saturated client); ``examples`` one piece of evidence per failure reason. A
    run is untrustworthy when nothing finished in its window, when more than
    :data:`MOSTLY_FAILED_FRACTION` of its requests failed, or when its generator
    was saturated. ``failures`` lists every reason, most frequent first.
    """
    total, failed = int(requests["total"]), int(requests["failed"])
    examples = examples or {}
    failures = []
    for reason, count in sorted(requests["failed_by_reason"].items(), key=lambda kv: (-kv[1], kv[0])):
        kind, rule = failure_kind(reason)
        failures.append({"reason": reason, "kind": kind, "rule": rule, "count": count,
                         "share": count / total if total else None, "example": examples.get(reason)})
    reasons: list[str] = []
    mostly_failed = total == 0 or failed / total > MOSTLY_FAILED_FRACTION
    top = ", ".join(f"{f['reason']}: {f['count']}" for f in failures[:5])
    if len(failures) > 5:
        top += f", {len(failures) - 5} more reason(s)"
    if total == 0:
        reasons.append("no request finished in the measured window: nothing was measured")
    elif mostly_failed:
        survivors = ("none succeeded: there are no latency figures" if failed == total else
                     f"the latency and throughput figures describe the {total - failed} that succeeded,"
                     " not the server under this load")
        reasons.append(f"most requests failed: {failed} of {total} ({100 * failed / total:.0f} %): {top};"
                       f" {survivors}")
    reasons.extend(f"the generator was saturated: {r}" for r in generator_reasons)
    if reasons:
        headline = "NOT TRUSTWORTHY: " + reasons[0]
    elif failed:
        headline = f"{failed} of {total} requests failed ({100 * failed / total:.1f} %): {top}"
    else:
        headline = f"all {total} requests succeeded"
    return {
        "trustworthy": not reasons,
        "mostly_failed": mostly_failed,
        "failure_threshold": MOSTLY_FAILED_FRACTION,
        "headline": headline,
        "reasons": reasons,
        "failures": failures,
    }


# ---------------------------------------------------------------------------
# Time series (per-second buckets, for the report's plots)
# ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TimeBucket:
    t_s: float  # bucket start, seconds after the series' origin
    started: int  # requests sent in the bucket
    finished: int  # requests finished (ok or not) in the bucket
    errors: int  # failed requests finished in the bucket
    output_tokens: float  # tokens that arrived in the bucket (see TimeSeries)
    active_mean: float  # mean number of requests in flight over the bucket
    ttft_count: int  # requests whose first token arrived in the bucket
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None

    def to_json(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


class _BucketAcc:
    __slots__ = ("active_ns", "errors", "finished", "started", "tokens_partials", "ttft")

    def __init__(self, kind: DistributionKind) -> None:
        self.started = 0
        self.finished = 0
        self.errors = 0
        # An exact running sum, so merged workers give the very same figure.
        self.tokens_partials: list[float] = []
        self.active_ns = 0  # in-flight request-nanoseconds within the bucket
        self.ttft = _new_distribution(kind)

    def add_tokens(self, n: float) -> None:
        _fsum_add(self.tokens_partials, n)

    @property
    def tokens(self) -> float:
        return math.fsum(self.tokens_partials)


class TimeSeries:
    """Incremental, mergeable per-bucket counters.

    Buckets are [origin + k * width, origin + (k + 1) * width); a request is
    in flight from t_sent to t_finished. A request's output tokens are spread
    evenly over its token-bearing events, each counted in the bucket where it
    arrived (with no events, all at t_end). TTFT percentiles per bucket are
    over the successful requests whose first token arrived in that bucket.
    Two series merge only with the same origin and width (same machine clock).
    """

    def __init__(
        self, origin_ns: int = 0, width_ns: int = NS_PER_S, kind: DistributionKind = "exact"
    ) -> None:
        if width_ns <= 0:
            raise ValueError("bucket width must be positive")
        self.origin_ns = origin_ns
        self.width_ns = width_ns
        self.kind: DistributionKind = kind
        self._buckets: dict[int, _BucketAcc] = {}

    def _bucket(self, t_ns: int) -> _BucketAcc:
        return self._bucket_k((t_ns - self.origin_ns) // self.width_ns)

    def _bucket_k(self, k: int) -> _BucketAcc:
        acc = self._buckets.get(k)
        if acc is None:
            acc = self._buckets[k] = _BucketAcc(self.kind)
        return acc

    def add(self, r: RequestRecord) -> None:
        self._bucket(r.t_sent_ns).started += 1
        end_acc = self._bucket(r.t_finished_ns)
        end_acc.finished += 1
        if not r.ok:
            end_acc.errors += 1
        arrivals = r.token_arrivals_ns
        if arrivals:
            tokens = r.output_tokens if r.output_tokens is not None else len(arrivals)
            events_per_bucket: Counter[int] = Counter(
                (t - self.origin_ns) // self.width_ns for t in arrivals
            )
            for k, n in events_per_bucket.items():
                self._bucket_k(k).add_tokens(tokens * n / len(arrivals))
        elif r.output_tokens:
            end_acc.add_tokens(r.output_tokens)
        if r.ok and r.t_first_token_ns is not None:
            ttft = r.ttft_ms
            assert ttft is not None
            self._bucket(r.t_first_token_ns).ttft.add(max(ttft, 0.0))
        # Spread the in-flight interval over the buckets it overlaps.
        t, end = r.t_sent_ns, r.t_finished_ns
        while t < end:
            k = (t - self.origin_ns) // self.width_ns
            bucket_end = self.origin_ns + (k + 1) * self.width_ns
            self._bucket(t).active_ns += min(end, bucket_end) - t
            t = bucket_end

    def merge(self, other: TimeSeries) -> None:
        if (other.origin_ns, other.width_ns, other.kind) != (
            self.origin_ns,
            self.width_ns,
            self.kind,
        ):
            raise ValueError("cannot merge time series with different origin, width or kind")
        for k, src in other._buckets.items():
            dst = self._buckets.get(k)
            if dst is None:
                dst = self._buckets[k] = _BucketAcc(self.kind)
            dst.started += src.started
            dst.finished += src.finished
            dst.errors += src.errors
            for x in src.tokens_partials:
                dst.add_tokens(x)
            dst.active_ns += src.active_ns
            dst.ttft.merge(src.ttft)  # type: ignore[arg-type]  # same kind, checked above

    def to_json(self) -> dict[str, Any]:
        return {
            "origin_ns": self.origin_ns,
            "width_ns": self.width_ns,
            "kind": self.kind,
            "buckets": [
                [
                    k,
                    a.started,
                    a.finished,
                    a.errors,
                    a.tokens_partials,
                    a.active_ns,
                    a.ttft.to_json(),
                ]
                for k, a in sorted(self._buckets.items())
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TimeSeries:
        kind = cast(DistributionKind, data["kind"])
        series = cls(int(data["origin_ns"]), int(data["width_ns"]), kind)
        for k, started, finished, errors, tokens, active_ns, ttft in data["buckets"]:
            acc = series._buckets[int(k)] = _BucketAcc(kind)
            acc.started, acc.finished, acc.errors = int(started), int(finished), int(errors)
            acc.tokens_partials = [float(x) for x in tokens]
            acc.active_ns = int(active_ns)
            acc.ttft = (
                ExactSamples.from_json(ttft)
                if kind == "exact"
                else LogLinearHistogram.from_json(ttft)
            )
        return series

    def buckets(self) -> list[TimeBucket]:
        """Every bucket from the first to the last one touched, gaps included."""
        if not self._buckets:
            return []
        out = []
        empty = _BucketAcc(self.kind)
        for k in range(min(self._buckets), max(self._buckets) + 1):
            acc = self._buckets.get(k, empty)
            out.append(
                TimeBucket(
                    t_s=k * self.width_ns / NS_PER_S,
                    started=acc.started,
                    finished=acc.finished,
                    errors=acc.errors,
                    output_tokens=acc.tokens,
                    active_mean=acc.active_ns / self.width_ns,
                    ttft_count=acc.ttft.count,
                    ttft_p50_ms=acc.ttft.percentile(50.0),
                    ttft_p95_ms=acc.ttft.percentile(95.0),
                )
            )
        return out


def time_series(
    records: Iterable[RequestRecord], origin_ns: int | None = None, width_ns: int = NS_PER_S
) -> list[TimeBucket]:
    """Per-second buckets of the records; origin defaults to the first t_sent."""
    records = list(records)
    if origin_ns is None:
        origin_ns = min((r.t_sent_ns for r in records), default=0)
    series = TimeSeries(origin_ns, width_ns)
    for r in records:
        series.add(r)
    return series.buckets()


# ---------------------------------------------------------------------------
# The collector workers fill and the master merges
# ---------------------------------------------------------------------------
class MetricsCollector:
    """Per-worker store of request metrics; collectors merge exactly.

    By default it keeps every record (exact: the master's summary equals one
    computed from the union). With ``keep_records=False`` it folds each record
    into a histogram-backed :class:`WindowAggregate` and :class:`TimeSeries`
    as it arrives (bounded memory for very long runs); the window and the
    per-request SLO thresholds must then be fixed up front and be the same on
    every worker. The time-series origin defaults to the first record's
    t_sent (record-keeping) or the window's start (compact).
    """

    def __init__(
        self,
        *,
        keep_records: bool = True,
        window: tuple[int, int] | None = None,
        slos: SLOSpec = SLOSpec(),
        origin_ns: int | None = None,
        on_record: Callable[[RequestRecord], None] | None = None,
    ) -> None:
        self.keep_records = keep_records
        self.window = window
        self.slos = slos
        self.origin_ns = origin_ns
        self.on_record = on_record  # e.g. append each record to a JSONL file
        self.records: list[RequestRecord] = []
        self._aggregate: WindowAggregate | None = None
        self._series: TimeSeries | None = None
        if not keep_records:
            if window is None:
                raise ValueError("a collector without records needs its window up front")
            self._aggregate = WindowAggregate("histogram", slos.thresholds)
            self._series = TimeSeries(
                window[0] if origin_ns is None else origin_ns, kind="histogram"
            )

    def _compact(self) -> tuple[WindowAggregate, TimeSeries, tuple[int, int]]:
        assert self._aggregate is not None and self._series is not None
        assert self.window is not None
        return self._aggregate, self._series, self.window

    def add(self, record: RequestRecord) -> None:
        if self.on_record is not None:
            self.on_record(record)
        if self.keep_records:
            self.records.append(record)
            return
        aggregate, series, (start, end) = self._compact()
        series.add(record)
        if start <= record.t_finished_ns <= end:
            aggregate.add(record)

    def extend(self, records: Iterable[RequestRecord]) -> None:
        for r in records:
            self.add(r)

    def merge(self, other: MetricsCollector) -> None:
        if other.keep_records != self.keep_records:
            raise ValueError("cannot merge a record-keeping collector with a compact one")
        if self.keep_records:
            self.records.extend(other.records)
            return
        if other.window != self.window:
            raise ValueError("compact collectors must share their window")
        aggregate, series, _ = self._compact()
        other_aggregate, other_series, _ = other._compact()
        aggregate.merge(other_aggregate)
        series.merge(other_series)

    def summary(
        self, window: tuple[int, int] | None = None, slos: SLOSpec | None = None
    ) -> Summary:
        slos = self.slos if slos is None else slos
        if self.keep_records:
            return summarize(self.records, window or self.window, slos)
        aggregate, _, own_window = self._compact()
        if window not in (None, own_window):
            raise ValueError("a compact collector summarises only its own window")
        return summary_from_aggregate(aggregate, own_window, slos)

    def time_series(self) -> list[TimeBucket]:
        if self.keep_records:
            return time_series(self.records, self.origin_ns)
        return self._compact()[1].buckets()

    def to_json(self) -> dict[str, Any]:
        """Everything a worker ships to the master (Locust's report_to_master)."""
        if self.keep_records:
            return {"window": self.window, "records": [r.to_json() for r in self.records]}
        aggregate, series, window = self._compact()
        return {
            "window": list(window),
            "aggregate": aggregate.to_json(),
            "series": series.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], slos: SLOSpec = SLOSpec()) -> MetricsCollector:
        window = tuple(data["window"]) if data.get("window") is not None else None
        if "records" in data:
            collector = cls(window=cast(tuple[int, int] | None, window), slos=slos)
            collector.records = [RequestRecord.from_json(r) for r in data["records"]]
            return collector
        aggregate = WindowAggregate.from_json(data["aggregate"])
        if aggregate.thresholds != slos.thresholds:
            raise ValueError("the shipped aggregate used other per-request thresholds")
        collector = cls(keep_records=False, window=cast(tuple[int, int], window), slos=slos)
        collector._aggregate = aggregate
        collector._series = TimeSeries.from_json(data["series"])
        return collector
