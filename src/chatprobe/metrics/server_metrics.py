"""The server's side of a run: its own Prometheus metrics, read beside the client's figures.

Pure: no IO and no ``prometheus_client`` (the load generator imports this
package). :mod:`chatprobe.scraper` fetches ``/metrics`` and parses the text
with prometheus_client's parser; what reaches this module is plain
:class:`Sample` values, stamped on the generator's clock (``perf_counter_ns``,
CLOCK_MONOTONIC: one clock for every process on the machine).

What it knows:

* :data:`SIGNALS`: which series of the common engines carry each signal
  (queue depth, running requests, cache use, request and token counters,
  TTFT / ITL / E2E histograms), in order of preference, and where each name
  was read;
* :class:`Reading`: one scrape reduced to those signals plus the series the
  user named (``--server-metric NAME``), summed over their label sets;
* :class:`ScrapeLog`: the readings of a run. It keeps every reading's scalars
  (a few numbers each) but the histograms of only a few readings (the first,
  the last, those taken at the window's edges), so memory does not grow with
  the histograms' size times the run's length;
* :func:`server_block`: the summary's ``server_metrics`` block. Counters and
  histograms are differenced over the measured window only (warm-up
  excluded): from the reading nearest the window's start to the one nearest
  its end; how far each was from the edge is reported. A counter that went
  down was reset (the server restarted) and is counted as Prometheus's
  ``increase()`` does. Percentiles come from the window's histogram buckets by
  linear interpolation within the bucket that holds the rank, as Prometheus's
  ``histogram_quantile`` does (:func:`histogram_quantile`): the error is below
  that bucket's width, which is reported with each percentile.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ENGINE_PREFIXES",
    "SIGNALS",
    "HistogramReading",
    "Reading",
    "Sample",
    "ScrapeLog",
    "Signal",
    "WindowCounts",
    "detect_engine",
    "histogram_quantile",
    "level_view",
    "not_scraped",
    "read_samples",
    "series_names",
    "server_block",
]

Labels = tuple[tuple[str, str], ...]
SignalKind = Literal["gauge", "counter", "histogram"]

NS_PER_S = 1_000_000_000
PERCENTILES: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0)


@dataclass(frozen=True, slots=True)
class Sample:
    """One line of the exposition: a sample name (``vllm:prompt_tokens_total``,
    ``..._bucket``), its labels and its value."""

    name: str
    labels: Labels
    value: float


@dataclass(frozen=True, slots=True)
class Signal:
    key: str  # the name in chatprobe's report: running, waiting, ttft...
    kind: SignalKind
    label: str  # what a person reads
    # Per engine, the alternatives in order of preference; an alternative is one series or
    # several added up (llama.cpp counts cached prompt tokens apart). Histograms: the base
    # name (``_bucket``, ``_sum``, ``_count`` are appended), always in seconds.
    names: tuple[tuple[str, ...], ...]
    aggregate: Literal["sum", "max"] = "sum"  # over label sets (several engines, models)


# Where the names come from (read from each project's source or documentation):
# - vLLM: vllm/v1/metrics/loggers.py (PrometheusStatLogger) and docs/design/metrics.md; V0 names
#   (gpu_cache_usage_perc, time_per_output_token_seconds) kept for older servers.
# - SGLang: python/sglang/srt/metrics/collector.py (TokenizerMetricsCollector,
#   SchedulerMetricsCollector) and docs/references/production_metrics.md; older releases named
#   ITL time_per_output_token_seconds.
# - Hugging Face TGI: https://huggingface.co/docs/text-generation-inference/reference/metrics
#   (router: tgi_request_*, tgi_queue_size, tgi_batch_current_size; durations in seconds; token
#   counts only as the _sum of the per-request histograms; its counters have no _total suffix,
#   which prometheus_client's parser adds to a counter's sample name).
# - llama.cpp llama-server (--metrics): tools/server/server.cpp, to_metrics() (llamacpp: prefix;
#   prompt_tokens_total excludes cached prompt tokens, counted in prompt_tokens_cached_total by
#   newer releases; both token counters grow when a request finishes; no request counter and no
#   latency histograms).
SIGNALS: tuple[Signal, ...] = (
    Signal("running", "gauge", "requests running", (
        ("vllm:num_requests_running",), ("sglang:num_running_reqs",), ("tgi_batch_current_size",),
        ("llamacpp:requests_processing",))),
    Signal("waiting", "gauge", "requests waiting (queue depth)", (
        ("vllm:num_requests_waiting",), ("sglang:num_queue_reqs",), ("tgi_queue_size",),
        ("llamacpp:requests_deferred",))),
    Signal("cache_usage", "gauge", "KV-cache use (0-1)", (
        ("vllm:kv_cache_usage_perc",), ("vllm:gpu_cache_usage_perc",), ("sglang:token_usage",),
        ("llamacpp:kv_cache_usage_ratio",)), aggregate="max"),
    Signal("requests", "counter", "requests finished", (
        ("vllm:request_success_total",), ("sglang:num_requests_total",), ("tgi_request_success_total",),
        ("tgi_request_success",))),
    Signal("prompt_tokens", "counter", "prompt tokens", (
        ("vllm:prompt_tokens_total",), ("sglang:prompt_tokens_total",), ("tgi_request_input_length_sum",),
        ("llamacpp:prompt_tokens_total", "llamacpp:prompt_tokens_cached_total"))),
    Signal("generation_tokens", "counter", "generation tokens", (
        ("vllm:generation_tokens_total",), ("sglang:generation_tokens_total",),
        ("tgi_request_generated_tokens_sum",), ("llamacpp:tokens_predicted_total",))),
    Signal("preemptions", "counter", "preemptions", (("vllm:num_preemptions_total",),)),
    Signal("ttft", "histogram", "TTFT", (
        ("vllm:time_to_first_token_seconds",), ("sglang:time_to_first_token_seconds",))),
    Signal("itl", "histogram", "ITL", (
        ("vllm:inter_token_latency_seconds",), ("vllm:time_per_output_token_seconds",),
        ("sglang:inter_token_latency_seconds",), ("sglang:time_per_output_token_seconds",))),
    Signal("tpot", "histogram", "TPOT (per-request mean)", (
        ("vllm:request_time_per_output_token_seconds",), ("tgi_request_mean_time_per_token_duration",))),
    Signal("e2e", "histogram", "E2E", (
        ("vllm:e2e_request_latency_seconds",), ("sglang:e2e_request_latency_seconds",),
        ("tgi_request_duration",))),
    Signal("queue_time", "histogram", "queue time", (
        ("vllm:request_queue_time_seconds",), ("sglang:queue_time_seconds",),
        ("tgi_request_queue_duration",))),
)
_BY_KEY = {s.key: s for s in SIGNALS}
GAUGES = tuple(s.key for s in SIGNALS if s.kind == "gauge")
COUNTERS = tuple(s.key for s in SIGNALS if s.kind == "counter")
HISTOGRAMS = tuple(s.key for s in SIGNALS if s.kind == "histogram")
# The client's figure each server histogram sits beside (summary.latency_ms).
CLIENT_LATENCY = {"ttft": "ttft_ms", "itl": "itl_ms", "tpot": "tpot_ms", "e2e": "e2e_ms"}
ENGINE_PREFIXES: tuple[tuple[str, str], ...] = (
    ("vllm:", "vLLM"), ("sglang:", "SGLang"), ("tgi_", "TGI"), ("llamacpp:", "llama.cpp"))

EXPLAIN = {
    "ttft": "client - server = the request's way to the server and the server's wait before its "
            "clock starts, the first token's way back, and the client's own queueing (see its "
            "generator health); an engine also stops its clock when the token is produced, before "
            "it is detokenized and written",
    "itl": "an engine observes one gap per decode step; the client one per token-bearing event (tokens "
           "sent together show as one longer gap and near-zero ones), plus network jitter",
    "tpot": "both are per-request means of the gaps after the first token",
    "e2e": "the client's clock stops at the last token-bearing event; the server's when it ends the "
           "response (a usage chunk and [DONE] may follow the last token), and it starts later (the "
           "request's way in): network and client queueing, as for TTFT",
}


@dataclass(frozen=True, slots=True)
class HistogramReading:
    """A cumulative histogram (Prometheus's ``le`` buckets), summed over label sets."""

    bounds: tuple[float, ...]  # upper bounds, ascending; the last is +inf
    counts: tuple[float, ...]  # cumulative counts, one per bound
    total: float  # the _sum of the observations (seconds)
    count: float  # the _count

    def minus(self, earlier: HistogramReading) -> HistogramReading | None:
        """The observations made between ``earlier`` and this reading; None when the buckets
        changed or a count went down (the server restarted: no window difference)."""
        if earlier.bounds != self.bounds:
            return None
        counts = tuple(a - b for a, b in zip(self.counts, earlier.counts, strict=True))
        if any(c < 0 for c in counts) or self.count < earlier.count:
            return None
        return HistogramReading(self.bounds, counts, self.total - earlier.total, self.count - earlier.count)

    def quantile(self, q: float) -> float | None:
        return histogram_quantile(q, self.bounds, self.counts)

    def bucket_of(self, q: float) -> tuple[float, float] | None:
        """The [lower, upper] bounds of the bucket that holds the q-quantile's rank."""
        observations = self.counts[-1] if self.counts else 0.0
        if observations <= 0:
            return None
        rank = q * observations
        for i, c in enumerate(self.counts):
            if c >= rank:
                lower = 0.0 if i == 0 else self.bounds[i - 1]
                return (lower, self.bounds[i])
        return None


def histogram_quantile(q: float, bounds: Sequence[float], counts: Sequence[float]) -> float | None:
    """Prometheus's ``histogram_quantile`` (promql/quantile.go, bucketQuantile) over cumulative
    ``counts`` at ascending upper ``bounds`` (the last +inf): the bucket holding rank q * total,
    and linear interpolation within it (the first bucket starts at 0, unless its bound is <= 0;
    a rank in the +inf bucket gives the highest finite bound). None without observations."""
    if not bounds or len(bounds) != len(counts) or not math.isinf(bounds[-1]):
        return None
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    # Counts are made monotonic first, as Prometheus does for scrapes taken mid-update.
    fixed: list[float] = []
    for c in counts:
        fixed.append(max(c, fixed[-1]) if fixed else c)
    observations = fixed[-1]
    if observations <= 0 or len(bounds) < 2:
        return None
    rank = q * observations
    b = next(i for i, c in enumerate(fixed) if c >= rank)
    if b == len(bounds) - 1:
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start = 0.0 if b == 0 else bounds[b - 1]
    below = 0.0 if b == 0 else fixed[b - 1]
    in_bucket = fixed[b] - below
    if in_bucket <= 0:
        return bounds[b]
    return start + (bounds[b] - start) * ((rank - below) / in_bucket)


def series_names(user_names: Sequence[str] = ()) -> tuple[frozenset[str], frozenset[str]]:
    """(scalar sample names, histogram sample names) of :data:`SIGNALS` and the user's names:
    the lines of a page worth parsing (the scraper drops the rest before its parser)."""
    scalars = {n for s in SIGNALS if s.kind != "histogram" for alt in s.names for n in alt}
    histograms = {alt[0] + suffix for s in SIGNALS if s.kind == "histogram" for alt in s.names
                  for suffix in ("_bucket", "_sum", "_count")}
    for name in user_names:
        scalars |= {name, name + "_total"}
        histograms |= {name + "_bucket", name + "_sum", name + "_count"}
    return frozenset(scalars), frozenset(histograms)


def detect_engine(names: Iterable[str]) -> str | None:
    """The engine whose prefix most sample names carry (None: none of the known ones)."""
    tally: dict[str, int] = {}
    for name in names:
        for prefix, engine in ENGINE_PREFIXES:
            if name.startswith(prefix):
                tally[engine] = tally.get(engine, 0) + 1
    return max(tally, key=lambda e: tally[e]) if tally else None


@dataclass(slots=True)
class Reading:
    """One scrape, reduced: each signal's value (and the series it came from), the histograms,
    and the user-named series."""

    t_ns: int  # the middle of the request (perf_counter_ns)
    scalars: dict[str, float] = field(default_factory=dict)
    histograms: dict[str, HistogramReading] = field(default_factory=dict)
    user: dict[str, float] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # signal key -> series name
    engine: str | None = None
    edge: bool = False  # taken at a window edge (the scraper aimed at it)

    @property
    def empty(self) -> bool:
        """Nothing chatprobe knows or was asked for is in it."""
        return not (self.scalars or self.histograms or self.user)


def _sum_by_name(samples: Iterable[Sample]) -> tuple[dict[str, float], dict[str, float],
                                                     dict[str, dict[float, float]]]:
    """(sum over label sets, max over label sets, per _bucket name: le -> summed count)."""
    sums: dict[str, float] = {}
    maxes: dict[str, float] = {}
    buckets: dict[str, dict[float, float]] = {}
    for s in samples:
        if math.isnan(s.value):
            continue
        if s.name.endswith("_bucket"):
            le = dict(s.labels).get("le")
            try:
                bound = float(le) if le is not None else None
            except ValueError:
                bound = None
            if bound is not None:
                per = buckets.setdefault(s.name[: -len("_bucket")], {})
                per[bound] = per.get(bound, 0.0) + s.value
                continue
        sums[s.name] = sums.get(s.name, 0.0) + s.value
        maxes[s.name] = max(maxes.get(s.name, -math.inf), s.value)
    return sums, maxes, buckets


def read_samples(samples: Iterable[Sample], t_ns: int, user_names: Sequence[str] = ()) -> Reading:
    """Reduce one scrape's samples to a :class:`Reading` (the signals of :data:`SIGNALS` that are
    present, and each of ``user_names`` summed over its label sets)."""
    sums, maxes, buckets = _sum_by_name(samples)
    reading = Reading(t_ns, engine=detect_engine(list(sums) + list(buckets)))
    for signal in SIGNALS:
        for alternative in signal.names:
            if signal.kind == "histogram":
                base = alternative[0]
                per = buckets.get(base)
                if not per or math.inf not in per:
                    continue
                bounds = tuple(sorted(per))
                reading.histograms[signal.key] = HistogramReading(
                    bounds, tuple(per[b] for b in bounds), sums.get(base + "_sum", 0.0),
                    sums.get(base + "_count", per[math.inf]))
                reading.sources[signal.key] = base
                break
            if alternative[0] not in sums:
                continue
            table = maxes if signal.aggregate == "max" else sums
            reading.scalars[signal.key] = sum(table[n] for n in alternative if n in table)
            reading.sources[signal.key] = " + ".join(n for n in alternative if n in table)
            break
    for name in user_names:
        if name in sums:
            reading.user[name] = sums[name]
        elif name + "_total" in sums:  # a counter named without its suffix (the parser adds it)
            reading.user[name] = sums[name + "_total"]
        elif name in buckets:  # a histogram's name: its count
            reading.user[name] = buckets[name].get(math.inf, 0.0)
    return reading


@dataclass(slots=True)
class _Point:
    """A reading kept for the time series: its scalars, and the interval stats since the last."""

    t_ns: int
    scalars: dict[str, float]
    user: dict[str, float]
    interval: dict[str, float | None]
    edge: bool


class ScrapeLog:
    """The readings of one run, in order, and the scrape problems (each noted once)."""

    def __init__(self, url: str, interval_s: float, user_names: Sequence[str] = ()) -> None:
        self.url = url
        self.interval_s = interval_s
        self.user_names = tuple(user_names)
        self.points: list[_Point] = []
        self.kept: list[Reading] = []  # readings whose histograms are kept (first, edges, last)
        self._last: Reading | None = None
        self._last_hist: Reading | None = None  # the last reading with histograms
        self.sources: dict[str, str] = {}
        self.engine: str | None = None
        self.failures = 0
        self.notes: dict[str, int] = {}  # each problem once, with how often it happened
        self.gave_up: str | None = None  # why scraping stopped early, if it did
        self.cpu_s: float | None = None  # the scraper thread's CPU time (requests, parsing)

    def note(self, problem: str) -> None:
        self.notes[problem] = self.notes.get(problem, 0) + 1

    def add(self, reading: Reading) -> None:
        """A reading, in time order. Its counters' rates are over the time since the last
        reading; its TTFT / ITL p50 (when it has histograms) since the last one that had."""
        last, last_hist = self._last, self._last_hist
        interval: dict[str, float | None] = {}
        if last is not None and reading.t_ns > last.t_ns:
            dt = (reading.t_ns - last.t_ns) / NS_PER_S
            for key in COUNTERS:
                if key in reading.scalars and key in last.scalars:
                    interval[key + "_per_s"] = _increase([last.scalars[key], reading.scalars[key]]) / dt
        if last_hist is not None and reading.histograms:
            for key in ("ttft", "itl"):
                now, before = reading.histograms.get(key), last_hist.histograms.get(key)
                diff = now.minus(before) if now is not None and before is not None else None
                p50 = diff.quantile(0.5) if diff is not None else None
                interval[key + "_p50_ms"] = None if p50 is None else p50 * 1000.0
        self.points.append(_Point(reading.t_ns, dict(reading.scalars), dict(reading.user), interval,
                                  reading.edge))
        self.sources.update(reading.sources)
        self.engine = reading.engine or self.engine
        if reading.histograms:
            if not self.kept or reading.edge:
                self.kept.append(reading)
            self._last_hist = reading
        self._last = reading

    def finish(self) -> list[Reading]:
        """The readings whose histograms are kept: the first, those at the edges and the last."""
        last = self._last_hist
        if last is not None and (not self.kept or self.kept[-1] is not last):
            self.kept.append(last)
        return self.kept


def _increase(values: Sequence[float]) -> float:
    """Prometheus's increase() over successive counter values: a drop is a reset to 0."""
    total = 0.0
    for before, after in itertools.pairwise(values):
        total += after - before if after >= before else after
    return total


def _nearest(ts: Sequence[int], edge: int) -> int:
    return min(range(len(ts)), key=lambda i: abs(ts[i] - edge))


@dataclass(frozen=True, slots=True)
class WindowCounts:
    """The client's counts for the same window (from its records): what the server's counters
    are compared with, and how many requests were in flight at each edge (the tolerance)."""

    requests: int  # finished in the window, ok or not
    ok: int
    prompt_tokens: int | None  # of the ok requests, from usage (None: no usage)
    output_tokens: int
    in_flight_start: int
    in_flight_end: int


def not_scraped(reason: str, url: str | None = None, interval_s: float | None = None) -> dict[str, Any]:
    """The block of a run whose server metrics were not read, and why."""
    return {"status": "not scraped", "reason": reason, "url": url, "interval_s": interval_s,
            "engine": None, "scrapes": 0, "failed_scrapes": 0, "notes": [], "window": None,
            "sources": {}, "counters": {}, "latency_ms": {}, "series": [], "user_series": []}


def _r(x: float | None, digits: int = 3) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, digits)


def server_block(log: ScrapeLog, window: tuple[int, int], t0_ns: int,
                 client: WindowCounts | None = None,
                 client_latency: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The summary's ``server_metrics`` block (specs/summary.schema.json): time series,
    window counters beside the client's, server-side latency percentiles beside the client's."""
    notes = [f"{problem} ({n} times)" if n > 1 else problem for problem, n in log.notes.items()]
    base: dict[str, Any] = {
        "url": log.url, "interval_s": log.interval_s, "engine": log.engine,
        "scrapes": len(log.points), "failed_scrapes": log.failures, "notes": notes,
        "scraper_cpu_s": None if log.cpu_s is None else round(log.cpu_s, 4),
        "sources": dict(sorted(log.sources.items())),
        "percentile_method": "from the window's histogram buckets, linear interpolation within the "
                             "bucket (Prometheus's histogram_quantile); error below the bucket's width",
    }
    if not log.points:
        reason = log.gave_up or (notes[0] if notes else "no scrape succeeded")
        return {**not_scraped(reason, log.url, log.interval_s), **base, "status": "not scraped",
                "reason": reason}
    start, end = window
    ts = [p.t_ns for p in log.points]
    i0, i1 = _nearest(ts, start), _nearest(ts, end)
    win = {"start_t_s": _r((ts[i0] - t0_ns) / NS_PER_S), "end_t_s": _r((ts[i1] - t0_ns) / NS_PER_S),
           "start_skew_ms": _r((ts[i0] - start) / 1e6), "end_skew_ms": _r((ts[i1] - end) / 1e6)}
    counters: dict[str, Any] = {}
    for key in COUNTERS:
        if i1 <= i0 or not any(key in p.scalars for p in log.points[i0:i1 + 1]):
            continue
        # A labelled counter has no sample until its first event (or after a restart): 0 then.
        values = [p.scalars.get(key, 0.0) for p in log.points[i0:i1 + 1]]
        entry: dict[str, Any] = {"series": log.sources.get(key), "server": _r(_increase(values), 1)}
        if client is not None:
            mine = {"requests": client.ok, "prompt_tokens": client.prompt_tokens,
                    "generation_tokens": client.output_tokens}.get(key)
            if mine is not None:
                # A request in flight at an edge may count on one side only: the tolerance is
                # those requests, times the tokens a request carries for the token counters.
                per_request = 1.0 if key == "requests" else (mine / client.ok if client.ok else 0.0)
                tolerance = math.ceil((client.in_flight_start + client.in_flight_end) * per_request)
                diff = entry["server"] - mine
                entry.update({"client": mine, "difference": _r(diff, 1), "tolerance": tolerance,
                              "matches": abs(diff) <= tolerance})
        counters[key] = entry
    latency: dict[str, Any] = {}
    kept = log.finish()
    if kept and i1 > i0:
        k0 = kept[_nearest([r.t_ns for r in kept], start)]
        k1 = kept[_nearest([r.t_ns for r in kept], end)]
        for key in HISTOGRAMS:
            now, before = k1.histograms.get(key), k0.histograms.get(key)
            if now is None or before is None or k1.t_ns <= k0.t_ns:
                continue
            diff = now.minus(before)
            if diff is None:
                latency[key] = {"series": log.sources.get(key), "count": None,
                                "note": "the histogram was reset or its buckets changed in the window"}
                continue
            latency[key] = _latency_entry(key, diff, log.sources.get(key), client_latency)
        if k0.t_ns != ts[i0] or k1.t_ns != ts[i1]:
            win["histogram_start_skew_ms"] = _r((k0.t_ns - start) / 1e6)
            win["histogram_end_skew_ms"] = _r((k1.t_ns - end) / 1e6)
    series = [{"t_s": _r((p.t_ns - t0_ns) / NS_PER_S), "in_window": i0 <= i <= i1,
               **{k: p.scalars.get(k) for k in GAUGES},
               **{k: _r(v) for k, v in p.interval.items()}} for i, p in enumerate(log.points)]
    user_series = [{"name": name, "points": [[_r((p.t_ns - t0_ns) / NS_PER_S), p.user[name]]
                                             for p in log.points if name in p.user]}
                   for name in log.user_names]
    status = "scraped" if counters or latency or any(p.scalars for p in log.points) else "no known series"
    if log.gave_up and status == "scraped":
        notes.append(f"scraping stopped early: {log.gave_up}")
    return {**base, "status": status, "reason": None if status == "scraped" else (
        "none of the series chatprobe knows (vLLM, SGLang, TGI, llama.cpp) is there: name the ones "
        "you want with --server-metric NAME"), "window": win, "counters": counters,
        "latency_ms": latency, "series": series, "user_series": user_series}


def _latency_entry(key: str, diff: HistogramReading, series: str | None,
                   client_latency: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any]:
    server: dict[str, float | None] = {
        "mean": _r(diff.total / diff.count * 1000.0) if diff.count else None}
    buckets: dict[str, list[float | None] | None] = {}
    for q in PERCENTILES:
        label = f"p{q:g}"
        value = diff.quantile(q / 100.0)
        server[label] = None if value is None else _r(value * 1000.0)
        bucket = diff.bucket_of(q / 100.0) if value is not None else None
        # The bucket the percentile was interpolated in (upper bound None: +Inf).
        buckets[label] = None if bucket is None else [_r(b * 1000.0, 4) for b in bucket]
    entry: dict[str, Any] = {"series": series, "count": int(diff.count), "server": server,
                             "bucket_ms": buckets, "explanation": EXPLAIN.get(key, "")}
    name = CLIENT_LATENCY.get(key)
    theirs = (client_latency or {}).get(name or "")
    if theirs:
        mine = {f"p{q:g}": theirs.get(f"p{q:g}") for q in PERCENTILES}
        mine["mean"] = theirs.get("mean")
        entry["client"] = {k: _r(v) for k, v in mine.items()}
        differences: dict[str, float | None] = {}
        for k, theirs_k in server.items():
            ours_k = mine.get(k)
            differences[k] = _r(ours_k - theirs_k) if ours_k is not None and theirs_k is not None else None
        entry["client_minus_server"] = differences
    return entry


def level_view(block: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What a sweep shows of one level's server metrics: the gauges over the window (mean,
    max), the counters' rates and the server's TTFT / E2E percentiles."""
    if not block or block.get("status") != "scraped":
        return None if not block else {"status": block.get("status"), "reason": block.get("reason")}
    inside = [p for p in block["series"] if p.get("in_window")]
    out: dict[str, Any] = {"status": "scraped", "engine": block.get("engine")}
    for key in GAUGES:
        values = [p[key] for p in inside if p.get(key) is not None]
        out[key] = {"mean": _r(sum(values) / len(values)) if values else None,
                    "max": _r(max(values)) if values else None}
    win = block.get("window") or {}
    span = (win.get("end_t_s") or 0.0) - (win.get("start_t_s") or 0.0)
    for key, entry in block.get("counters", {}).items():
        out[key] = {"server": entry.get("server"), "client": entry.get("client"),
                    "matches": entry.get("matches"),
                    "per_s": _r(entry["server"] / span) if span > 0 and entry.get("server") is not None else None}
    for key in ("ttft", "e2e", "itl"):
        entry = block.get("latency_ms", {}).get(key)
        if entry and entry.get("server"):
            out[key + "_ms"] = {p: entry["server"].get(p) for p in ("p50", "p95", "p99")}
    return out
