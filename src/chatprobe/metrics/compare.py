"""Noise-aware performance gate: is a run a regression of an earlier one, beyond its noise?

Pure computation (no IO). ``chatprobe load --baseline DIR`` and ``sweep --baseline
DIR`` build a :class:`RunSample` from each run's records and call :func:`compare`.

What is compared. Each *statistic* is a percentile of a latency metric
(``ttft_p95``: TTFT's 95th percentile; the metrics are those of
:mod:`chatprobe.metrics.records`, from the successful requests that finished in
the measured window, exactly as the summary counts them) or a throughput
(``output_tokens_per_s``, alias ``throughput``; ``requests_per_s``: every request
of the window over its length). Default set: :data:`DEFAULT_STATISTICS`.

The interval: a block bootstrap. Requests are not independent in time (warm-up,
drift, a noisy neighbour slows every request in flight together; the gaps of one
stream share its fate), so the unit of resampling is a *block* of consecutive
requests in the order they finished, never a single value: every ITL gap of a
request travels with it. A run's n window requests are cut into non-overlapping
blocks of L requests (:func:`block_length`): n^(1/3), the usual order of a block
length (Hall, Horowitz & Jing 1995), or the mean number of requests in flight
when that is larger (requests that overlapped in time shared the server's and the
machine's state: they should mostly fall in one block), as long as TARGET_BLOCKS
blocks remain; never more than MAX_BLOCKS blocks (which bounds the cost). One
replicate draws as many blocks as the run has, with replacement, from each run
independently and recomputes every statistic on them (the percentile of the union of the drawn blocks, exactly, with the same
linear interpolation as the summary; a throughput as the drawn blocks' tokens or
requests over their share of the window: the blocks partition the window, so the
full sample gives exactly the summary's figure). ``RESAMPLES`` replicates with a
fixed seed (deterministic: the same two runs always give the same interval); the
interval of the change (current - baseline, in ms and in %) is the 2.5th..97.5th
percentile of its replicates (percentile bootstrap, 95 %).

The gate. A statistic's *regression* is its change in the worse direction
(latency up, throughput down), relative (threshold in %) or absolute (ms). With
threshold T, the verdict is

- ``regressed`` (the gate fails) when the whole interval of the regression is
  above T: the regression is larger than T *and* significant, at 95 %
  (one-sided 97.5 %) confidence;
- ``pass`` when the whole interval is at or below T (a regression beyond T, if
  any, is ruled out), ``improved`` when it is wholly on the better side of 0;
- ``inconclusive`` when it straddles T: passes, and says a longer run decides;
- ``too few data`` when either run has fewer than MIN_TAIL values beyond the
  percentile on either side (p95 needs 100 values), fewer than MIN_BLOCKS blocks,
  or a baseline of 0 for a relative threshold; passes, and says so.

A bootstrap rather than a rank test (Mann-Whitney with a Hodges-Lehmann interval):
the gates are on p95 and p99, and a rank test speaks of a shift of the whole
distribution, not of its tail; the bootstrap's interval is on the very percentile
gated. The interval covers the sampling noise within the two runs, not a machine
that is slower on the second day: the threshold is what absorbs that
(``benchmarks/perf_gate.py`` measures the false-alarm rate).
"""

from __future__ import annotations

import itertools
import math
import random
import re
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import getitem
from typing import Any, Literal

from chatprobe.errors import UsageError
from chatprobe.metrics.records import RequestRecord
from chatprobe.metrics.stats import percentile_sorted

__all__ = [
    "DEFAULT_MAX_REGRESSION_PCT",
    "DEFAULT_STATISTICS",
    "RESAMPLES",
    "Comparison",
    "RunSample",
    "StatComparison",
    "Statistic",
    "Threshold",
    "compare",
    "load_comparison",
    "match_levels",
    "parse_gates",
    "setting_differences",
    "trust_warnings",
]

RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 0
MAX_BLOCKS = 100
TARGET_BLOCKS = 20  # a block grows to the requests in flight only while this many blocks remain
MIN_BLOCKS = 5
MIN_TAIL = 5  # values beyond the percentile (and below it), per run
DEFAULT_MAX_REGRESSION_PCT = 10.0
DEFAULT_STATISTICS: tuple[str, ...] = (
    "ttft_p50", "ttft_p95", "itl_p50", "itl_p95", "e2e_p50", "e2e_p95", "output_tokens_per_s",
)
# Latency metrics a gate may name (without "_ms"), each from RequestRecord.
LATENCY_NAMES: tuple[str, ...] = ("ttft", "ttfb", "ttft_vllm", "tpot", "itl", "e2e")
THROUGHPUT_NAMES: tuple[str, ...] = ("output_tokens_per_s", "requests_per_s")
_ALIASES = {"throughput": "output_tokens_per_s"}
_STAT = re.compile(r"^(?P<metric>[a-z0-9_]+?)_p(?P<q>\d+(?:\.\d+)?)$")
_LIMIT = re.compile(r"^(?P<sign>[+-]?)(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>%|ms)$")

Verdict = Literal["regressed", "inconclusive", "pass", "improved", "too few data", "not gated"]


# --------------------------------------------------------------------------- the flags
@dataclass(frozen=True, slots=True)
class Threshold:
    """How much regression is tolerated: ``value`` percent (``unit`` "%") or milliseconds."""

    value: float
    unit: Literal["%", "ms"]

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "unit": self.unit}


@dataclass(frozen=True, slots=True)
class Statistic:
    """One compared figure: ``metric`` (a latency in ms, or a throughput) and its percentile."""

    name: str  # "ttft_p95", "output_tokens_per_s"
    metric: str  # "ttft_ms" ... or "output_tokens_per_s" / "requests_per_s"
    q: float | None  # the percentile; None for a throughput
    threshold: Threshold | None  # None: reported, not gated

    @property
    def higher_is_worse(self) -> bool:
        return self.q is not None

    @property
    def unit(self) -> str:
        return "ms" if self.q is not None else ("tokens/s" if self.metric == "output_tokens_per_s" else "requests/s")


def _statistic_of(name: str, what: str) -> tuple[str, str, float | None]:
    """(canonical name, metric, q) of ``ttft_p95`` / ``throughput``; UsageError otherwise."""
    name = _ALIASES.get(name, name)
    if name in THROUGHPUT_NAMES:
        return name, name, None
    m = _STAT.match(name)
    if m is None or m["metric"] not in LATENCY_NAMES:
        raise UsageError(
            f"{what}: unknown statistic {name!r}: expected <metric>_p<percentile> with a metric of "
            f"{', '.join(LATENCY_NAMES)} (e.g. ttft_p95, itl_p99.9), or {', '.join(THROUGHPUT_NAMES)}, throughput")
    q = float(m["q"])
    if not 0 < q < 100:
        raise UsageError(f"{what}: {name!r}: the percentile must be between 0 and 100 (exclusive)")
    return f"{m['metric']}_p{q:g}", m["metric"] + "_ms", q


def _threshold_of(text: str, higher_is_worse: bool, what: str) -> Threshold:
    m = _LIMIT.match(text.strip())
    if m is None:
        raise UsageError(f"{what}: bad limit {text!r}: expected e.g. +10%, 25ms or off")
    value, unit, sign = float(m["value"]), m["unit"], m["sign"]
    if unit == "ms" and not higher_is_worse:
        raise UsageError(f"{what}: a throughput's limit is a percentage (e.g. -10%), not {text!r}")
    worse = "+" if higher_is_worse else "-"
    if sign and sign != worse and value != 0:
        raise UsageError(f"{what}: {text!r} points the wrong way: this statistic regresses when it "
                         f"{'grows' if higher_is_worse else 'falls'} (write {worse}{m['value']}{unit})")
    if unit == "%" and value > 1000:
        raise UsageError(f"{what}: {text!r}: at most 1000 %")
    return Threshold(value, "%" if unit == "%" else "ms")


def parse_max_regression(text: str | None) -> float:
    """``--max-regression 10%`` (the % optional) -> 10.0; UsageError otherwise."""
    if text is None:
        return DEFAULT_MAX_REGRESSION_PCT
    m = re.match(r"^\+?(\d+(?:\.\d+)?)\s*%?$", text.strip())
    if m is None or float(m[1]) > 1000:
        raise UsageError(f"--max-regression: bad value {text!r}: expected a percentage from 0 to 1000, e.g. 10%")
    return float(m[1])


def parse_gates(gates: Sequence[str], max_regression: str | None = None) -> tuple[Statistic, ...]:
    """The statistics to compare and their thresholds, from ``--gate STAT=LIMIT`` (repeatable;
    LIMIT ``+10%``, ``25ms`` or ``off``) and ``--max-regression PCT`` (every statistic no
    ``--gate`` names; default 10 %). The default statistics are always compared; a ``--gate``
    adds its statistic or sets its limit. UsageError (one line) on a bad value."""
    default = Threshold(parse_max_regression(max_regression), "%")
    chosen: dict[str, Statistic] = {}
    for name in DEFAULT_STATISTICS:
        canonical, metric, q = _statistic_of(name, "--gate")
        chosen[canonical] = Statistic(canonical, metric, q, default)
    seen: set[str] = set()
    for text in gates:
        key, sep, limit = text.partition("=")
        if not sep or not key.strip() or not limit.strip():
            raise UsageError(f"--gate: bad value {text!r}: expected STAT=LIMIT, e.g. ttft_p95=+10% or itl_p99=off")
        canonical, metric, q = _statistic_of(key.strip(), "--gate")
        if canonical in seen:
            raise UsageError(f"--gate: {canonical} given twice")
        seen.add(canonical)
        threshold = None if limit.strip().lower() == "off" else _threshold_of(limit, q is not None, f"--gate {canonical}")
        chosen[canonical] = Statistic(canonical, metric, q, threshold)
    return tuple(chosen.values())


# --------------------------------------------------------------------------- samples
@dataclass(frozen=True, slots=True)
class _Block:
    values: dict[str, list[float]]  # metric -> its sorted values in this block
    requests: int  # every request of the block (failed ones too)
    tokens: int  # output tokens of its successful requests
    duration_ns: int  # its share of the window


def block_length(n: int, in_flight: float) -> int:
    """Requests per block: n^(1/3), or the mean number of requests in flight when larger (requests
    that overlapped in time shared their conditions: mostly one block), but no more than leaves
    TARGET_BLOCKS blocks; at least n / MAX_BLOCKS."""
    length: int = max(math.ceil(float(n) ** (1 / 3) - 1e-9), math.ceil(in_flight - 1e-9))
    return max(1, min(length, n // TARGET_BLOCKS), math.ceil(n / MAX_BLOCKS))


@dataclass(frozen=True, slots=True)
class RunSample:
    """One run's window, cut into blocks of consecutive requests (see the module docstring)."""

    blocks: tuple[_Block, ...]
    block_length: int
    requests: int

    @classmethod
    def from_records(cls, records: Iterable[RequestRecord], window: tuple[int, int],
                     metrics: Iterable[str] = tuple(f"{m}_ms" for m in LATENCY_NAMES)) -> RunSample:
        start, end = window
        members = sorted((r for r in records if start <= r.t_finished_ns <= end), key=lambda r: r.t_finished_ns)
        n = len(members)
        if n == 0:
            return cls((), 0, 0)
        length = block_length(n, sum(r.t_finished_ns - r.t_sent_ns for r in members) / max(end - start, 1))
        wanted = tuple(metrics)
        blocks = []
        edge = start
        count = max(1, round(n / length))  # blocks of length or length +- 1: no short remainder
        cuts = [round(j * n / count) for j in range(count + 1)]
        for i, j in itertools.pairwise(cuts):
            part = members[i:j]
            stop = end if j >= n else part[-1].t_finished_ns
            values: dict[str, list[float]] = {m: [] for m in wanted}
            tokens = 0
            for r in part:
                if not r.ok:
                    continue
                tokens += r.output_tokens or 0
                for m in wanted:
                    if m == "itl_ms":
                        values[m].extend(r.itls_ms)
                    elif (v := getattr(r, m)) is not None:
                        values[m].append(v)
            for v in values.values():
                v.sort()
            blocks.append(_Block(values, len(part), tokens, stop - edge))
            edge = stop
        return cls(tuple(blocks), length, n)

    @classmethod
    def pooled(cls, samples: Sequence[RunSample]) -> RunSample:
        """Several runs of one load (a sweep's repeated levels) as one sample: their blocks."""
        blocks = tuple(b for s in samples for b in s.blocks)
        return cls(blocks, max((s.block_length for s in samples), default=0), sum(s.requests for s in samples))

    def count(self, metric: str) -> int:
        if metric in THROUGHPUT_NAMES:
            return self.requests
        return sum(len(b.values.get(metric, ())) for b in self.blocks)


MIN_GRID = 16  # a metric's grid: sqrt(n) of its n values (at least this many; see _Metric)


class _Metric:
    """One latency metric of one run, ready for many percentiles of unions of its blocks.

    A replicate's k-th smallest value is found in two steps: a binary search over a grid of
    about sqrt(n) of the run's n sorted values, whose counts per block are precomputed (a step
    costs one lookup per drawn block), brackets it between two grid values; then the drawn
    blocks' values in that bracket (a slice of each) are sorted and indexed. Exact: the same
    figure as sorting the whole union (``percentile_sorted``)."""

    __slots__ = ("columns", "lists", "sizes", "zeros")

    def __init__(self, lists: list[list[float]]) -> None:
        self.lists = lists  # per block, sorted
        self.sizes = [len(v) for v in lists]
        self.zeros = [0] * len(lists)
        pool = sorted(v for lst in lists for v in lst)
        stride = max(1, math.ceil(len(pool) / max(MIN_GRID, math.isqrt(len(pool)))))
        # columns[g][b]: how many of block b's values are <= the g-th grid value
        self.columns = [[bisect_right(lst, pool[i]) for lst in lists] for i in range(0, len(pool), stride)]

    def _around(self, drawn: Sequence[int], k: int) -> tuple[list[float], int]:
        """(values, j): the sorted values of the drawn blocks' union between two grid values,
        with the union's k-th smallest (0-based, k < its size) at ``values[j]``."""
        columns = self.columns
        lo_g, hi_g = -1, len(columns)  # count(<= grid lo_g) <= k < count(<= grid hi_g)
        while hi_g - lo_g > 1:
            mid = (lo_g + hi_g) // 2
            if sum(map(columns[mid].__getitem__, drawn)) > k:
                hi_g = mid
            else:
                lo_g = mid
        below = columns[lo_g] if lo_g >= 0 else self.zeros
        upto = columns[hi_g] if hi_g < len(columns) else self.sizes
        # One slice per drawn block, cut and joined at C speed.
        slices = map(slice, map(below.__getitem__, drawn), map(upto.__getitem__, drawn))
        values = sorted(itertools.chain.from_iterable(map(getitem, map(self.lists.__getitem__, drawn), slices)))
        return values, k - sum(map(below.__getitem__, drawn))

    def percentile(self, drawn: Sequence[int], q: float) -> float | None:
        n = sum(map(self.sizes.__getitem__, drawn))
        if n == 0:
            return None
        h = (n - 1) * (q / 100.0)
        k = min(math.floor(h), n - 1)
        frac = h - k
        values, j = self._around(drawn, k)
        x = values[j]
        if frac <= 0.0 or k + 1 >= n:
            return x
        if j + 1 < len(values):
            nxt = values[j + 1]
        else:  # the next order statistic lies beyond this bracket
            more, i = self._around(drawn, k + 1)
            nxt = more[i]
        return min(max(x + (nxt - x) * frac, x), nxt)


def _union_percentile(lists: list[list[float]], q: float) -> float | None:
    """The q-th percentile (numpy 'linear') of the union of sorted ``lists`` (for the tests)."""
    return _Metric(lists).percentile(range(len(lists)), q)


class _Prepared:
    """A run's blocks, indexed for fast replicates of every statistic."""

    def __init__(self, sample: RunSample, stats: Sequence[Statistic]) -> None:
        self.k = len(sample.blocks)
        self.tokens = [b.tokens for b in sample.blocks]
        self.requests = [b.requests for b in sample.blocks]
        self.durations = [b.duration_ns for b in sample.blocks]
        self.metrics = {m: _Metric([b.values.get(m, []) for b in sample.blocks])
                        for m in sorted({s.metric for s in stats if s.q is not None})}

    def statistic(self, stat: Statistic, drawn: Sequence[int]) -> float | None:
        if stat.q is not None:
            return self.metrics[stat.metric].percentile(drawn, stat.q)
        duration = sum(map(self.durations.__getitem__, drawn))
        if duration <= 0:
            return None
        amounts = self.tokens if stat.metric == "output_tokens_per_s" else self.requests
        return sum(map(amounts.__getitem__, drawn)) * 1e9 / duration

    def replicates(self, stats: Sequence[Statistic], rng: random.Random,
                   resamples: int) -> dict[str, list[float | None]]:
        """Every statistic over ``resamples`` block-bootstrap replicates (one draw of blocks per
        replicate, shared by all the statistics)."""
        out: dict[str, list[float | None]] = {s.name: [] for s in stats}
        population = range(self.k)
        for _ in range(resamples):
            drawn = rng.choices(population, k=self.k)
            for s in stats:
                out[s.name].append(self.statistic(s, drawn))
        return out


# --------------------------------------------------------------------------- the comparison
@dataclass(frozen=True, slots=True)
class StatComparison:
    stat: Statistic
    baseline: float | None
    current: float | None
    n_baseline: int
    n_current: int
    change: tuple[float, float, float] | None  # (estimate, low, high): current - baseline, in its unit
    change_pct: tuple[float, float, float] | None  # (estimate, low, high): 100 * (current / baseline - 1)
    verdict: Verdict
    note: str = ""

    @property
    def regression(self) -> tuple[float, float, float] | None:
        """(estimate, low, high) of the regression in the threshold's unit (worse: positive)."""
        t = self.stat.threshold
        change = self.change if t is not None and t.unit == "ms" else self.change_pct
        if change is None:
            return None
        if self.stat.higher_is_worse:
            return change
        est, lo, hi = change
        return -est, -hi, -lo

    def to_json(self) -> dict[str, Any]:
        def triple(x: tuple[float, float, float] | None) -> dict[str, float] | None:
            return None if x is None else {"estimate": x[0], "low": x[1], "high": x[2]}

        return {
            "name": self.stat.name,
            "metric": self.stat.metric,
            "percentile": self.stat.q,
            "unit": self.stat.unit,
            "worse": "higher" if self.stat.higher_is_worse else "lower",
            "baseline": self.baseline,
            "current": self.current,
            "n_baseline": self.n_baseline,
            "n_current": self.n_current,
            "change": triple(self.change),
            "change_pct": triple(self.change_pct),
            "threshold": self.stat.threshold.to_json() if self.stat.threshold else None,
            "verdict": self.verdict,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class Comparison:
    results: tuple[StatComparison, ...]
    block_lengths: tuple[int, int]  # (baseline, current)
    resamples: int
    confidence: float
    seed: int

    @property
    def regressed(self) -> list[str]:
        return [r.stat.name for r in self.results if r.verdict == "regressed"]

    @property
    def passed(self) -> bool:
        return not self.regressed

    def method_json(self) -> dict[str, Any]:
        return {
            "test": "block bootstrap of the difference (percentile interval)",
            "resamples": self.resamples,
            "confidence": self.confidence,
            "seed": self.seed,
            "block_length": {"baseline": self.block_lengths[0], "current": self.block_lengths[1]},
            "rule": "regressed when the whole interval of the change lies beyond the threshold, on the worse side",
        }

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "regressed": self.regressed,
                "method": self.method_json(), "results": [r.to_json() for r in self.results]}


def _too_few(stat: Statistic, sample: RunSample, which: str) -> str | None:
    if len(sample.blocks) < MIN_BLOCKS:
        return f"the {which} run has {sample.requests} request(s) in its window, too few to resample"
    if stat.q is None:
        return None
    n = sample.count(stat.metric)
    tail = min(stat.q, 100 - stat.q) / 100
    if n * tail < MIN_TAIL:
        need = math.ceil(MIN_TAIL / tail)
        return f"the {which} run has {n} value(s); a p{stat.q:g} needs at least {need}"
    return None


def _interval(values: list[float], confidence: float) -> tuple[float, float]:
    values.sort()
    tail = 100 * (1 - confidence) / 2
    return percentile_sorted(values, tail), percentile_sorted(values, 100 - tail)


def _verdict(stat: Statistic, regression: tuple[float, float, float]) -> Verdict:
    t = stat.threshold
    _, lo, hi = regression
    if t is None:
        return "not gated"
    if lo > t.value:
        return "regressed"
    if hi < 0:
        return "improved"
    if hi <= t.value:
        return "pass"
    return "inconclusive"


def compare(baseline: RunSample, current: RunSample, stats: Sequence[Statistic], *,
            resamples: int = RESAMPLES, confidence: float = CONFIDENCE, seed: int = SEED) -> Comparison:
    """Each statistic of ``current`` against ``baseline``: estimate, interval, verdict."""
    rng = random.Random(seed)
    prep_b, prep_c = _Prepared(baseline, stats), _Prepared(current, stats)
    base_reps = prep_b.replicates(stats, rng, resamples)
    cur_reps = prep_c.replicates(stats, rng, resamples)
    results = []
    for s in stats:
        b_val = prep_b.statistic(s, range(prep_b.k))
        c_val = prep_c.statistic(s, range(prep_c.k))
        counts = baseline.count(s.metric), current.count(s.metric)
        why = _too_few(s, baseline, "baseline") or _too_few(s, current, "current")
        if why is None and (b_val is None or c_val is None):
            why = "no value in one of the runs"
        if why is None and b_val == 0 and (s.threshold is None or s.threshold.unit == "%"):
            why = "the baseline is 0: no relative change"
        if why is not None:
            results.append(StatComparison(s, b_val, c_val, *counts, None, None, "too few data", why))
            continue
        assert b_val is not None and c_val is not None
        pairs = [(b, c) for b, c in zip(base_reps[s.name], cur_reps[s.name], strict=True)
                 if b is not None and c is not None]
        if not pairs:
            results.append(StatComparison(s, b_val, c_val, *counts, None, None, "too few data",
                                          "no resample held a value"))
            continue
        lo, hi = _interval([c - b for b, c in pairs], confidence)
        change = (c_val - b_val, lo, hi)
        rel = [100 * (c / b - 1) for b, c in pairs if b != 0]
        change_pct = None
        if rel and b_val != 0:
            lo, hi = _interval(rel, confidence)
            change_pct = (100 * (c_val / b_val - 1), lo, hi)
        item = StatComparison(s, b_val, c_val, *counts, change, change_pct, "pass")
        regression = item.regression
        verdict: Verdict = "too few data" if regression is None else _verdict(s, regression)
        note = ""
        if verdict == "inconclusive":
            note = "the interval straddles the threshold: longer runs narrow it"
        results.append(StatComparison(s, b_val, c_val, *counts, change, change_pct, verdict, note))
    return Comparison(tuple(results), (baseline.block_length, current.block_length), resamples, confidence, seed)


# --------------------------------------------------------------------------- the runs' settings
# LoadSettings fields that change what is measured: a comparison across them compares loads.
_SHAPE = ("dialect", "model", "stream", "include_usage", "prompt_tokens", "dataset", "max_tokens",
          "ignore_eos", "mode", "users", "rate", "stages", "processes", "stamps")


def setting_differences(baseline: Mapping[str, Any], current: Mapping[str, Any],
                        keys: Sequence[str] = _SHAPE) -> list[str]:
    """``"users 8 (baseline 16)"`` for each load-shaping setting that differs."""
    out = []
    for key in keys:
        if key in baseline and key in current and baseline[key] != current[key]:
            out.append(f"{key} {current[key]!r} (baseline {baseline[key]!r})")
    return out


def trust_warnings(doc: Mapping[str, Any], which: str) -> list[str]:
    """Why a run's figures may not describe its server (summary.json ``verdict`` / ``health``)."""
    verdict = doc.get("verdict")
    health = doc.get("health") or {}
    trustworthy = verdict["trustworthy"] if isinstance(verdict, Mapping) else health.get("trustworthy", True)
    reasons = (verdict or {}).get("reasons") if isinstance(verdict, Mapping) else health.get("untrustworthy_reasons")
    out = []
    if not trustworthy:
        out.append(f"the {which} run is NOT TRUSTWORTHY ({'; '.join(reasons or ['see its report'])}):"
                   " its figures may describe the generator, not the server")
    if (doc.get("run") or {}).get("interrupted"):
        out.append(f"the {which} run was interrupted: it covers less than planned")
    return out


def load_comparison(baseline_doc: Mapping[str, Any], current_doc: Mapping[str, Any], comparison: Comparison,
                    baseline_dir: str) -> dict[str, Any]:
    """summary.json's ``comparison`` (specs/summary.schema.json): the verdicts, the method, and
    why the figures may not compare (an untrustworthy or interrupted run, other settings)."""
    warnings = [*trust_warnings(baseline_doc, "baseline"), *trust_warnings(current_doc, "current")]
    diffs = setting_differences(baseline_doc.get("settings") or {}, current_doc.get("settings") or {})
    if diffs:
        warnings.append("the runs differ in " + ", ".join(diffs) + ": the comparison is between different loads")
    verdict = baseline_doc.get("verdict")
    return {
        "baseline": {
            "dir": baseline_dir,
            "started_at": (baseline_doc.get("run") or {}).get("started_at"),
            "trustworthy": bool(verdict["trustworthy"]) if isinstance(verdict, Mapping)
            else bool((baseline_doc.get("health") or {}).get("trustworthy", True)),
        },
        **comparison.to_json(),
        "warnings": warnings,
    }


# --------------------------------------------------------------------------- a sweep's levels
RATE_MATCH = 0.01  # rate mode: levels within 1 % of one another's rate are the same load
LevelKey = tuple[str, float]  # ("users", 8.0) or ("rate", 12.5)


def level_key(level: Mapping[str, Any]) -> LevelKey:
    """A sweep.json level's load: closed loop by its users, open loop by its rate."""
    if level.get("rate") is not None:
        return "rate", float(level["rate"])
    return "users", float(level["users"])


def level_text(key: LevelKey) -> str:
    kind, value = key
    return f"{value:g} user{'' if value == 1 else 's'}" if kind == "users" else f"{value:g} requests/s"


def _same_load(a: LevelKey, b: LevelKey) -> bool:
    if a[0] != b[0]:
        return False
    if a[0] == "users":
        return a[1] == b[1]
    return abs(a[1] - b[1]) <= RATE_MATCH * max(a[1], b[1])


def match_levels(baseline: Sequence[Mapping[str, Any]], current: Sequence[Mapping[str, Any]],
                 ) -> tuple[list[tuple[LevelKey, list[int], list[int]]], list[dict[str, Any]]]:
    """Which loads two sweeps both measured: ([(load, baseline level indexes, current level
    indexes)], [{load, reason} not compared]). A load is compared when every baseline level at
    it was acceptable (met the SLOs, not over-saturated: above capacity, latency is queueing
    and moves with any change of capacity) and the current sweep measured it too; repeated
    levels of one load are pooled. Interrupted levels are left out."""
    groups: dict[LevelKey, list[int]] = {}
    for i, lv in enumerate(baseline):
        if not lv.get("interrupted"):
            groups.setdefault(level_key(lv), []).append(i)
    current_keys = [(j, level_key(lv)) for j, lv in enumerate(current) if not lv.get("interrupted")]
    pairs: list[tuple[LevelKey, list[int], list[int]]] = []
    skipped: list[dict[str, Any]] = []
    matched: set[int] = set()
    for key, idx in sorted(groups.items()):
        cur = [j for j, k in current_keys if _same_load(key, k)]
        matched.update(cur)
        if not all(baseline[i].get("acceptable") for i in idx):
            skipped.append({"load": level_text(key), "reason": "the baseline sweep did not meet its SLOs there"})
        elif not cur:
            skipped.append({"load": level_text(key), "reason": "this sweep did not measure it"})
        else:
            pairs.append((key, idx, cur))
    for key in sorted({k for j, k in current_keys if j not in matched}):
        skipped.append({"load": level_text(key), "reason": "the baseline sweep did not measure it"})
    return pairs, skipped
