"""Time series: per-second buckets of a run, for the report's plots."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from chatprobe.metrics.records import NS_PER_S, RequestRecord
from chatprobe.metrics.stats import (
    DistributionKind,
    ExactSamples,
    LogLinearHistogram,
    _fsum_add,
    _new_distribution,
)


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
