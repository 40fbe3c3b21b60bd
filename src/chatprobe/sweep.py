"""Capacity search: the largest load level that meets every SLO.

Pure logic, no IO: :class:`Sweep` asks a *level runner* (a callable; in
production one ``chatprobe load`` generator run, in tests a fake) to measure
a :class:`LevelSpec` and decides from the :class:`LevelResult` what to
measure next. The clock is injected too, so the time budget is testable.

The search, for ``mode`` ``concurrency`` (closed loop, N users) or ``rate``
(open loop, R requests/s):

1. **Baseline**: one user, closed loop (synchronous). It gives the unloaded
   latency and the synchronous throughput X1; when even it misses an SLO
   (or fails) no level can pass and the sweep stops there.
2. **Saturation probe**: the load grows x2 from the start (2 users, or X1
   requests/s) until a level is *unacceptable*: it misses an SLO, fails more
   than ``error_limit`` of its requests, or is over-saturated (its TTFT keeps
   rising through the measured window: the queue grows without bound). Errors
   and over-saturation are an *early stop*: every higher level is pointless,
   so none is run, and the reason is kept. ``max_load`` caps the growth.
   When the first rate already fails, the rate halves instead.
3. **Bisection** between the last acceptable and the first unacceptable
   level, until they are ``precision`` (relative; 1 user at least) apart.
4. **Repeats** (``repeats`` > 1): the search runs again from the previous
   answer (steps of the resolution, doubling) with fresh measurements; the
   answers give a Student-t 95 % confidence interval. With one repeat the
   interval is the bracket [last acceptable, first unacceptable).

Every level runs for the same ``level_duration_s`` (warm-up discarded by the
runner) so levels compare. The budget is checked before each level (its
duration plus the generator's start-up overhead): a level that would not fit
is not started, and the sweep answers from what it measured.

The knee of the throughput curve is found with Kneedle (Satopää et al.,
2011): on the curve normalised to [0, 1], the point farthest above the
chord from the first to the last point.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from chatprobe.metrics.server_metrics import level_view

__all__ = [
    "DEFAULT_MAX_USERS",
    "LevelResult",
    "LevelSpec",
    "Mode",
    "StopKind",
    "Sweep",
    "SweepConfig",
    "SweepResult",
    "find_knee",
    "plan_level_duration",
    "t_quantile_975",
    "ttft_growth_ms",
]

Mode = Literal["concurrency", "rate"]
Phase = Literal["baseline", "probe", "bisect", "repeat"]
StopKind = Literal[
    "completed",  # bracket narrowed to the resolution (every repeat)
    "max_reached",  # the SLOs held at --max: the capacity is at least that
    "baseline_failed",  # one user (or --min) already misses an SLO
    "no_level_passed",  # rate mode: even the lowest rate tried misses
    "budget",  # the next level would not fit in the time budget
    "interrupted",  # Ctrl-C
]
DEFAULT_MAX_USERS = 256
# A level is over-saturated when its TTFT rises by more than this fraction of
# its median over the measured window (and by more than OVERSAT_MIN_MS and twice
# the unloaded TTFT): a closed loop settles, a queue that grows does not.
OVERSAT_FRACTION = 0.5
OVERSAT_MIN_MS = 5.0
_RATE_FLOOR_DIVISOR = 16.0  # rate mode without --min: give up below X1 / 16


@dataclass(frozen=True, slots=True)
class LevelSpec:
    """One level to measure: closed loop (``users``) or open loop (``rate``)."""

    phase: Phase
    repeat: int  # 1-based search the level belongs to (the baseline: 1)
    load: float  # users (concurrency mode, and the baseline) or requests/s
    users: int | None
    rate: float | None
    duration_s: float


@dataclass(frozen=True, slots=True)
class LevelResult:
    """What the sweep needs from one level's summary (see :meth:`from_summary`)."""

    slo_passed: bool
    error_rate: float | None  # None: no request in the window
    requests: int
    throughput_rps: float | None
    ttft_p50_ms: float | None
    ttft_growth_ms: float | None = None  # TTFT rise over the window (see ttft_growth_ms)
    interrupted: bool = False
    details: dict[str, Any] = field(default_factory=dict)  # the report's figures; opaque here

    @classmethod
    def from_summary(cls, doc: dict[str, Any], ttft_growth: float | None) -> LevelResult:
        """From a ``chatprobe load`` summary.json document."""
        s = doc["summary"]
        lat = s["latency_ms"]
        tp = s["throughput"]
        pick = ("p50", "p90", "p95", "p99")
        details: dict[str, Any] = {
            "requests": {k: s["requests"][k] for k in ("total", "ok", "failed", "error_rate")},
            "failed_by_reason": s["requests"]["failed_by_reason"],
            "throughput_rps": tp["requests_per_s"],
            "output_tokens_per_s": tp["output_tokens_per_s"],
            "goodput_rps": s["goodput"]["per_s"],
            "attainment": s["goodput"]["attainment"],
            "latency_ms": {m: {p: lat[m].get(p) for p in pick}
                           for m in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms", "queue_delay_ms")},
            "user_tokens_per_s": {p: s["user_tokens_per_s"].get(p) for p in ("p1", "p10", "p50", "p90")},
            "gates": s["slo"]["gates"],
            "window_s": s["window"]["duration_s"],
            "ttft_growth_ms": ttft_growth,
            "trustworthy": doc["health"]["trustworthy"],
            "untrustworthy_reasons": doc["health"]["untrustworthy_reasons"],
            # the server's own view of the level (its /metrics), when it was scraped
            "server": level_view(doc.get("server_metrics")),
        }
        return cls(
            slo_passed=bool(s["slo"]["passed"]),
            error_rate=s["requests"]["error_rate"],
            requests=s["requests"]["total"],
            throughput_rps=tp["requests_per_s"],
            ttft_p50_ms=lat["ttft_ms"].get("p50"),
            ttft_growth_ms=ttft_growth,
            interrupted=bool(doc["run"]["interrupted"]),
            details=details,
        )


@dataclass(frozen=True, slots=True)
class MeasuredLevel:
    spec: LevelSpec
    result: LevelResult
    acceptable: bool
    problems: tuple[str, ...]  # why not acceptable (empty when it is)
    started_s: float  # since the sweep's start
    elapsed_s: float  # wall time, overhead included

    def to_json(self) -> dict[str, Any]:
        return {
            "phase": self.spec.phase,
            "repeat": self.spec.repeat,
            "load": self.spec.load,
            "users": self.spec.users,
            "rate": self.spec.rate,
            "duration_s": self.spec.duration_s,
            "started_s": round(self.started_s, 3),
            "elapsed_s": round(self.elapsed_s, 3),
            "slo_passed": self.result.slo_passed,
            "acceptable": self.acceptable,
            "problems": list(self.problems),
            "interrupted": self.result.interrupted,
            **self.result.details,
        }


@dataclass(frozen=True, slots=True)
class SweepConfig:
    mode: Mode
    level_duration_s: float
    budget_s: float
    min_load: float | None = None  # None: 1 user / the synchronous rate X1
    max_load: float | None = None  # None: DEFAULT_MAX_USERS users / no cap on the rate
    repeats: int = 1
    precision: float = 0.05  # bisection stops when hi - lo <= precision * lo (>= 1 user)
    error_limit: float = 0.05  # a level failing more requests than this is unacceptable
    overhead_s: float = 3.0  # a level's cost beyond its duration (generator start-up), first guess

    def resolution(self, lo: float) -> float:
        if self.mode == "concurrency":
            return float(max(1, math.floor(self.precision * lo)))
        return self.precision * lo


@dataclass(frozen=True, slots=True)
class Answer:
    mode: Mode
    value: float | None
    ci: tuple[float, float] | None
    ci_method: str
    repeats: tuple[float | None, ...]  # each search's answer
    bracket: tuple[float | None, float | None]  # (last acceptable, first unacceptable) of the last search

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "value": self.value,
            "ci": list(self.ci) if self.ci is not None else None,
            "ci_method": self.ci_method,
            "repeats": list(self.repeats),
            "bracket": list(self.bracket),
        }


@dataclass(frozen=True, slots=True)
class Stop:
    kind: StopKind
    early: bool  # the search ended before its planned course (the reason says why)
    reason: str
    load: float | None = None  # the level that made it stop, if one did

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "early": self.early, "reason": self.reason, "load": self.load}


@dataclass(frozen=True, slots=True)
class SweepResult:
    config: SweepConfig
    levels: tuple[MeasuredLevel, ...]
    answer: Answer
    stop: Stop
    early_stops: tuple[str, ...]  # every level that ended a growth early, and why
    knee: dict[str, float] | None
    baseline: MeasuredLevel | None


class _Halt(Exception):
    def __init__(self, kind: StopKind, reason: str, load: float | None = None) -> None:
        super().__init__(reason)
        self.stop = Stop(kind, kind not in ("completed", "max_reached"), reason, load)


LevelRunner = Callable[[LevelSpec], LevelResult]
Clock = Callable[[], float]
Listener = Callable[[str, dict[str, Any]], None]


class Sweep:
    """Run the search; ``runner`` measures a level, ``clock`` gives seconds (monotonic)."""

    def __init__(self, config: SweepConfig, runner: LevelRunner, clock: Clock,
                 listener: Listener | None = None) -> None:
        if config.repeats < 1:
            raise ValueError("repeats must be >= 1")
        self.config = config
        self.runner = runner
        self.clock = clock
        self.listener = listener or (lambda event, data: None)
        self.levels: list[MeasuredLevel] = []
        self.early_stops: list[str] = []
        self.baseline: MeasuredLevel | None = None
        self._t0 = 0.0
        self._overhead_s = config.overhead_s
        self._answers: list[float | None] = []
        self._bracket: tuple[float | None, float | None] = (None, None)
        self._searching = False

    # -- measuring ---------------------------------------------------------
    def elapsed_s(self) -> float:
        return self.clock() - self._t0

    def _spec(self, phase: Phase, repeat: int, load: float) -> LevelSpec:
        d = self.config.level_duration_s
        if self.config.mode == "concurrency" or phase == "baseline":
            return LevelSpec(phase, repeat, load, int(load), None, d)
        return LevelSpec(phase, repeat, load, None, load, d)

    def _measure(self, phase: Phase, repeat: int, load: float) -> MeasuredLevel:
        spec = self._spec(phase, repeat, load)
        start = self.elapsed_s()
        cost = spec.duration_s + self._overhead_s
        if start + cost > self.config.budget_s:
            raise _Halt("budget", f"the time budget ({self.config.budget_s:g} s) leaves"
                        f" {max(self.config.budget_s - start, 0):.0f} s, a level takes about {cost:.0f} s")
        self.listener("level_start", {"spec": spec, "index": len(self.levels) + 1, "elapsed_s": start,
                                      "budget_s": self.config.budget_s})
        try:
            result = self.runner(spec)
        except KeyboardInterrupt:
            raise _Halt("interrupted", "interrupted (Ctrl-C)", load) from None
        elapsed = self.elapsed_s() - start
        # Learn the real overhead, so the budget check stays honest.
        self._overhead_s = max(self._overhead_s * 0.5, elapsed - spec.duration_s, 0.0)
        problems = self._problems(result)
        level = MeasuredLevel(spec, result, not problems, tuple(problems), start, elapsed)
        if result.interrupted:
            # A cut-short level decides nothing; it is kept for the report.
            level = replace(level, acceptable=False, problems=("interrupted",))
            self.levels.append(level)
            raise _Halt("interrupted", "interrupted (Ctrl-C)", load)
        self.levels.append(level)
        self.listener("level_end", {"level": level})
        return level

    def _problems(self, r: LevelResult) -> list[str]:
        out: list[str] = []
        if r.requests == 0 or r.error_rate is None:
            return ["no request finished in the measured window"]
        if r.error_rate > self.config.error_limit:
            out.append(f"errors: {r.error_rate:.0%} of requests failed"
                       f" (limit {self.config.error_limit:.0%})")
        if self._over_saturated(r):
            out.append(f"over-saturated: TTFT rose by {r.ttft_growth_ms:.0f} ms within the level"
                       " (the queue keeps growing)")
        if not r.slo_passed:
            missed = [g["name"] for g in r.details.get("gates", []) if not g.get("passed")]
            out.append("SLO missed" + (f": {', '.join(missed)}" if missed else ""))
        return out

    def _over_saturated(self, r: LevelResult) -> bool:
        growth = r.ttft_growth_ms
        if growth is None or r.ttft_p50_ms is None:
            return False
        unloaded = self.baseline.result.ttft_p50_ms if self.baseline else None
        floor = max(OVERSAT_MIN_MS, 2 * (unloaded or 0.0))
        return growth > floor and growth > OVERSAT_FRACTION * r.ttft_p50_ms

    @staticmethod
    def _is_pointless(level: MeasuredLevel) -> bool:
        """Errors or over-saturation: every higher level would be worse."""
        return any(p.startswith(("errors", "over-saturated", "no request")) for p in level.problems)

    # -- the search --------------------------------------------------------
    def run(self) -> SweepResult:
        self._t0 = self.clock()
        cfg = self.config
        stop: Stop
        try:
            self._baseline()
            for repeat in range(1, cfg.repeats + 1):
                self._bracket = (None, None)
                self._searching = True
                answer = self._search_first() if repeat == 1 else self._search_again(repeat)
                self._searching = False
                self._answers.append(answer)
                if answer is None:
                    break
            lo, hi = self._bracket
            if hi is None and lo is not None and self._max is not None and lo >= self._max:
                stop = Stop("max_reached", False, f"every SLO held at the maximum load ({_fmt(lo, cfg.mode)});"
                            " the capacity is at least that", lo)
            else:
                stop = Stop("completed", bool(self.early_stops),
                            "; ".join(self.early_stops) if self.early_stops else
                            "the bracket narrowed to the resolution")
        except (_Halt, KeyboardInterrupt) as exc:
            stop = exc.stop if isinstance(exc, _Halt) else Stop("interrupted", True, "interrupted (Ctrl-C)")
            if self._searching and self._bracket[0] is not None:
                # Cut short (budget, Ctrl-C): the best level known so far still answers.
                self._answers.append(self._bracket[0])
        return SweepResult(cfg, tuple(self.levels), self._answer(), stop, tuple(self.early_stops),
                           find_knee(self._curve()), self.baseline)

    @property
    def _max(self) -> float | None:
        if self.config.max_load is not None:
            return self.config.max_load
        return float(DEFAULT_MAX_USERS) if self.config.mode == "concurrency" else None

    def _floor(self) -> float:
        cfg = self.config
        if cfg.min_load is not None:
            return cfg.min_load
        if cfg.mode == "concurrency":
            return 1.0
        x1 = self.baseline.result.throughput_rps if self.baseline else None
        return _round_rate((x1 or 1.0) / _RATE_FLOOR_DIVISOR)

    def _baseline(self) -> None:
        level = self._measure("baseline", 1, 1.0)
        self.baseline = level
        if not level.acceptable:
            raise _Halt("baseline_failed", "with one user (no load) already: " + "; ".join(level.problems), 1.0)

    def _note_early(self, level: MeasuredLevel) -> None:
        if self._is_pointless(level):
            msg = (f"stopped growing at {_fmt(level.spec.load, self.config.mode)}: "
                   + "; ".join(p for p in level.problems if not p.startswith("SLO"))
                   + ": higher levels are pointless")
            self.early_stops.append(msg)
            self.listener("early_stop", {"reason": msg})

    def _search_first(self) -> float | None:
        cfg = self.config
        lo: float | None
        hi: float | None = None
        if cfg.mode == "concurrency":
            floor = self._floor()
            lo = 1.0 if floor <= 1 else None
            x = 2.0 if floor <= 1 else floor
            self._bracket = (lo, None)
        else:
            lo = None
            x1 = self.baseline.result.throughput_rps if self.baseline else None
            x = cfg.min_load if cfg.min_load is not None else _round_rate(x1 or 1.0)
        cap = self._max
        # Saturation probe: x2 up from the start until a level is unacceptable.
        while hi is None:
            if cap is not None and x >= cap:
                x = cap
            if lo is not None and x <= lo:  # lo is already the cap
                break
            level = self._measure("probe", 1, x)
            if level.acceptable:
                lo = x
                self._bracket = (lo, hi)
                if cap is not None and x >= cap:
                    break
                x = _round_load(x * 2, cfg.mode)
            else:
                hi = x
                self._bracket = (lo, hi)
                self._note_early(level)
        if lo is None and cfg.mode == "concurrency":  # --min itself missed
            self._bracket = (None, hi)
            raise _Halt("baseline_failed", f"already at --min ({_fmt(x, cfg.mode)}): "
                        + "; ".join(self.levels[-1].problems), x)
        # Rate mode, first rate unacceptable: halve down to the floor.
        if lo is None:
            floor = self._floor()
            assert hi is not None
            while lo is None:
                if hi <= floor:
                    raise _Halt("no_level_passed", f"even {_fmt(hi, cfg.mode)} misses: "
                                + "; ".join(self.levels[-1].problems), hi)
                level = self._measure("probe", 1, _round_load(max(hi / 2, floor), cfg.mode))
                if level.acceptable:
                    lo = level.spec.load
                else:
                    hi = level.spec.load
                self._bracket = (lo, hi)
        assert lo is not None
        return self._bisect(lo, hi, "bisect", 1)

    def _search_again(self, repeat: int) -> float | None:
        """Re-measure from the previous answer; gallop out by the resolution, then bisect."""
        cfg = self.config
        prev = next((a for a in reversed(self._answers) if a is not None), None)
        if prev is None:
            return None
        cap, floor = self._max, self._floor()
        step = cfg.resolution(prev)
        level = self._measure("repeat", repeat, prev)
        lo: float | None = prev if level.acceptable else None
        hi: float | None = None if level.acceptable else prev
        while lo is None or hi is None:
            if lo is not None:  # going up
                if cap is not None and lo >= cap:
                    break
                x = lo + step if cap is None else min(lo + step, cap)
            else:
                assert hi is not None
                if hi <= floor:
                    self._bracket = (None, hi)
                    return None
                x = max(hi - step, floor)
            x = _round_load(x, cfg.mode)
            level = self._measure("repeat", repeat, x)
            if level.acceptable:
                lo = x
                self._bracket = (lo, hi)
            else:
                hi = x
                self._bracket = (lo, hi)
            step *= 2
        assert lo is not None
        return self._bisect(lo, hi, "repeat", repeat)

    def _bisect(self, lo: float, hi: float | None, phase: Phase, repeat: int) -> float:
        cfg = self.config
        while hi is not None and hi - lo > cfg.resolution(lo):
            mid = _round_load((lo + hi) / 2, cfg.mode)
            if mid <= lo or mid >= hi:
                break
            level = self._measure(phase, repeat, mid)
            if level.acceptable:
                lo = mid
                self._bracket = (lo, hi)
            else:
                hi = mid
                self._bracket = (lo, hi)
        self._bracket = (lo, hi)
        return lo

    # -- the answer --------------------------------------------------------
    def _answer(self) -> Answer:
        cfg = self.config
        found = [a for a in self._answers if a is not None]
        if not found:
            return Answer(cfg.mode, None, None, "none: no level met every SLO", tuple(self._answers),
                          self._bracket)
        value = statistics.median(found)
        if cfg.mode == "concurrency":
            value = float(math.floor(value))
        if len(found) >= 2:
            mean = statistics.fmean(found)
            half = t_quantile_975(len(found) - 1) * statistics.stdev(found) / math.sqrt(len(found))
            low, high = min(mean - half, value), max(mean + half, value)
            method = f"Student t, 95 %, over {len(found)} repeated searches"
        else:
            lo, hi = self._bracket
            low = lo if lo is not None else value
            if hi is None:
                high = low
                method = "bracket: one search, no unacceptable level measured above"
            else:
                high = hi - 1 if cfg.mode == "concurrency" else hi
                method = "bracket: one search, [last acceptable, first unacceptable)"
        if cfg.mode == "concurrency":
            low, high = float(max(math.floor(low), 0)), float(math.ceil(high))
        else:
            low, high = max(_round_rate(low), 0.0), _round_rate(high)
        return Answer(cfg.mode, value, (low, high), method, tuple(self._answers), self._bracket)

    def _curve(self) -> list[tuple[float, float]]:
        """(load, mean throughput) over the levels of the sweep's own mode."""
        by_load: dict[float, list[float]] = {}
        for lv in self.levels:
            if self.config.mode == "rate" and lv.spec.phase == "baseline":
                continue
            if lv.result.throughput_rps is not None and not lv.result.interrupted:
                by_load.setdefault(lv.spec.load, []).append(lv.result.throughput_rps)
        return sorted((load, statistics.fmean(v)) for load, v in by_load.items())


def _round_rate(x: float) -> float:
    """Three significant digits: rates are not measured finer than that."""
    if x <= 0 or not math.isfinite(x):
        return 0.0
    return round(x, max(0, 2 - math.floor(math.log10(x))))


def _round_load(x: float, mode: Mode) -> float:
    return float(round(x)) if mode == "concurrency" else _round_rate(x)


def _fmt(load: float, mode: Mode) -> str:
    return f"{int(load)} users" if mode == "concurrency" else f"{load:g} requests/s"


# Two-sided 95 % Student t quantiles (0.975) for 1..30 degrees of freedom.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
         2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_quantile_975(df: int) -> float:
    if df < 1:
        raise ValueError("degrees of freedom must be >= 1")
    return _T975[df - 1] if df <= len(_T975) else 1.96


def find_knee(curve: Sequence[tuple[float, float]]) -> dict[str, float] | None:
    """Kneedle on an increasing, concave curve of (load, throughput); None below 3 points."""
    if len(curve) < 3:
        return None
    xs = [p[0] for p in curve]
    ys = [p[1] for p in curve]
    x0, x1, y0, y1 = xs[0], xs[-1], min(ys), max(ys)
    if x1 <= x0 or y1 <= y0:
        return None
    best = max(range(len(curve)), key=lambda i: (ys[i] - y0) / (y1 - y0) - (xs[i] - x0) / (x1 - x0))
    return {"load": xs[best], "throughput_rps": ys[best]}


def ttft_growth_ms(points: Sequence[tuple[float, float]]) -> float | None:
    """How much TTFT rose over a window: least-squares slope x the span of send times.

    ``points`` are (send time in s, TTFT in ms) of the window's successful
    requests. A closed loop in steady state gives about 0; an open loop above
    the server's capacity gives a queue, and the TTFT, growing linearly.
    None below 10 points.
    """
    if len(points) < 10:
        return None
    ts = [p[0] for p in points]
    mean_t = statistics.fmean(ts)
    mean_y = statistics.fmean(p[1] for p in points)
    sxx = sum((t - mean_t) ** 2 for t in ts)
    if sxx <= 0:
        return None
    slope = sum((t - mean_t) * (y - mean_y) for t, y in points) / sxx
    return slope * (max(ts) - min(ts))


def plan_level_duration(budget_s: float, repeats: int, overhead_s: float,
                        min_s: float = 2.0, max_s: float = 60.0) -> float:
    """Seconds per level so that a typical sweep fits in ``budget_s``.

    A typical sweep: the baseline, ~5 probe levels, ~5 bisection steps, and
    ~4 levels per further repeat; each costs its duration plus ``overhead_s``.
    """
    levels = 1 + 5 + 5 + 4 * (repeats - 1)
    per_level = budget_s / levels - overhead_s
    return round(min(max(per_level, min_s), max_s), 1)
