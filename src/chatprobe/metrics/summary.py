"""A run's numbers over its measured window: counts, throughput, goodput, distributions.

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
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from chatprobe.metrics.records import LATENCY_METRICS, NS_PER_S, USER_RATE_METRIC, RequestRecord
from chatprobe.metrics.slo import GateResult, RequestThresholds, SLOSpec
from chatprobe.metrics.stats import (
    DEFAULT_PERCENTILES,
    RATE_PERCENTILES,
    DistributionKind,
    ExactSamples,
    LogLinearHistogram,
    Stats,
    _new_distribution,
)


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
        self.reasoning_requests = 0  # successful requests that reasoned (see RequestRecord.reasoning_tokens)
        self.reasoning_tokens = 0
        self.reasoning_sources: Counter[str] = Counter()
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
        if r.reasoning_tokens is not None:
            self.reasoning_requests += 1
            self.reasoning_tokens += r.reasoning_tokens
            self.reasoning_sources[r.reasoning_tokens_source or "none"] += 1
        d = self.dists
        for name, value in (
            ("ttft_ms", r.ttft_ms),
            ("ttfo_ms", r.ttfo_ms),
            ("reasoning_ms", r.reasoning_ms),
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
        self.reasoning_requests += other.reasoning_requests
        self.reasoning_tokens += other.reasoning_tokens
        self.reasoning_sources.update(other.reasoning_sources)
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
            "reasoning": {"requests": self.reasoning_requests, "tokens": self.reasoning_tokens,
                          "sources": dict(self.reasoning_sources)},
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
        reasoning = data.get("reasoning") or {}
        agg.reasoning_requests = reasoning.get("requests", 0)
        agg.reasoning_tokens = reasoning.get("tokens", 0)
        agg.reasoning_sources = Counter(reasoning.get("sources", {}))
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
    reasoning_requests: int = 0  # successful requests whose stream carried reasoning
    reasoning_tokens: int = 0
    reasoning_sources: dict[str, int] = field(default_factory=dict)  # such requests per token source

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
            "reasoning": {
                "requests": self.reasoning_requests,
                "tokens": self.reasoning_tokens,
                "tokens_sources": dict(sorted(self.reasoning_sources.items())),
            },
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
        reasoning_requests=agg.reasoning_requests,
        reasoning_tokens=agg.reasoning_tokens,
        reasoning_sources=dict(agg.reasoning_sources),
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
