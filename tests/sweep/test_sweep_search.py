"""The capacity search on a fake level runner: exact answers, early stops, budget, repeats."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from chatprobe.sweep import (
    LevelResult,
    LevelSpec,
    Mode,
    Sweep,
    SweepConfig,
    SweepResult,
    find_knee,
    plan_level_duration,
    t_quantile_975,
    ttft_growth_ms,
)

OVERHEAD_S = 1.0
X1 = 10.0  # the fake server's synchronous throughput (requests/s at one user)


class FakeServer:
    """Meets the SLOs up to ``capacity``; optionally fails or over-saturates above a load."""

    def __init__(self, capacity: float | Callable[[int], float], *, errors_above: float | None = None,
                 oversaturated_above: float | None = None, interrupt_at: int | None = None) -> None:
        self.capacity = capacity
        self.errors_above = errors_above
        self.oversaturated_above = oversaturated_above
        self.interrupt_at = interrupt_at
        self.now = 0.0
        self.specs: list[LevelSpec] = []

    def clock(self) -> float:
        return self.now

    def __call__(self, spec: LevelSpec) -> LevelResult:
        if self.interrupt_at is not None and len(self.specs) + 1 == self.interrupt_at:
            self.now += spec.duration_s / 2
            raise KeyboardInterrupt
        self.specs.append(spec)
        self.now += spec.duration_s + OVERHEAD_S
        cap = self.capacity(spec.repeat) if callable(self.capacity) else self.capacity
        load = spec.load
        failing = self.errors_above is not None and load > self.errors_above
        oversat = self.oversaturated_above is not None and load > self.oversaturated_above
        return LevelResult(
            slo_passed=load <= cap,
            error_rate=0.6 if failing else 0.0,
            requests=100,
            throughput_rps=X1 * min(load, 20.0),
            ttft_p50_ms=100.0,
            ttft_growth_ms=500.0 if oversat else 1.0,
            details={"gates": [{"name": "ttft_p95_ms", "passed": load <= cap}]},
        )


def sweep(server: FakeServer, mode: Mode = "concurrency", *, duration: float = 5.0, budget: float = 10_000.0,
          min_load: float | None = None, max_load: float | None = None, repeats: int = 1) -> SweepResult:
    cfg = SweepConfig(mode=mode, level_duration_s=duration, budget_s=budget, overhead_s=OVERHEAD_S,
                      min_load=min_load, max_load=max_load, repeats=repeats)
    return Sweep(cfg, server, server.clock).run()


@pytest.mark.parametrize("capacity", [1, 2, 3, 7, 8, 9, 37])
def test_concurrency_answer_is_exact(capacity: int) -> None:
    """Below 40 users the resolution is one user (5 % of the load, rounded down, at least 1)."""
    server = FakeServer(capacity)
    result = sweep(server)
    assert result.answer.value == capacity
    assert result.answer.bracket == (capacity, capacity + 1)
    assert result.answer.ci == (capacity, capacity)
    assert result.stop.kind == "completed" and not result.stop.early
    assert server.specs[0].phase == "baseline" and server.specs[0].users == 1
    # The growth is the x2 saturation probe; nothing above twice the capacity is tried.
    assert max(s.load for s in server.specs) <= 2 * (capacity + 1)


@pytest.mark.parametrize("capacity", [100, 255, 1000])
def test_concurrency_resolution_is_relative_when_large(capacity: int) -> None:
    result = sweep(FakeServer(capacity), max_load=4096)
    value = result.answer.value
    lo, hi = result.answer.bracket
    assert value is not None and lo is not None and hi is not None
    assert capacity * 0.95 <= value <= capacity and hi - lo <= 0.05 * lo
    assert len(result.levels) <= 1 + 11 + 6


@pytest.mark.parametrize("capacity", [3.0, 12.5, 123.4, 1000.0])
def test_rate_answer_within_precision(capacity: float) -> None:
    server = FakeServer(capacity)
    result = sweep(server, "rate")
    value = result.answer.value
    assert value is not None and capacity * 0.95 <= value <= capacity
    assert server.specs[0].users == 1 and server.specs[0].rate is None  # a closed-loop baseline
    assert all(s.rate == s.load and s.users is None for s in server.specs[1:])
    assert server.specs[1].rate == X1  # the growth starts at the synchronous rate


def test_max_reached_is_said() -> None:
    result = sweep(FakeServer(10_000), max_load=64)
    assert result.answer.value == 64
    assert result.stop.kind == "max_reached" and not result.stop.early
    assert "at least" in result.stop.reason


def test_baseline_missing_the_slo_stops_with_no_answer() -> None:
    server = FakeServer(0.5)
    result = sweep(server)
    assert result.answer.value is None and result.answer.ci is None
    assert result.stop.kind == "baseline_failed" and result.stop.early
    assert "one user" in result.stop.reason
    assert len(server.specs) == 1


def test_min_that_already_fails() -> None:
    result = sweep(FakeServer(5), min_load=8)
    assert result.answer.value is None
    assert result.stop.kind == "baseline_failed" and "--min" in result.stop.reason


def test_errors_stop_the_growth_early_and_say_why() -> None:
    server = FakeServer(10_000, errors_above=20)  # the SLOs themselves never bind
    result = sweep(server, max_load=256)
    assert result.answer.value == 20
    assert result.stop.early and "errors" in result.stop.reason and "32 users" in result.stop.reason
    assert max(s.load for s in server.specs) == 32  # nothing above the first failing level
    assert result.early_stops and "pointless" in result.early_stops[0]


def test_over_saturation_stops_a_rate_sweep_early() -> None:
    server = FakeServer(10_000, oversaturated_above=50)
    result = sweep(server, "rate")
    value = result.answer.value
    assert value is not None and 50 * 0.95 <= value <= 50
    assert result.stop.early and "over-saturated" in result.stop.reason
    assert max(s.load for s in server.specs) == 80  # 10, 20, 40, 80: stopped there


def test_first_rate_failing_halves_down() -> None:
    server = FakeServer(2.2)  # below the synchronous rate X1 = 10
    result = sweep(server, "rate")
    value = result.answer.value
    assert value is not None and 2.2 * 0.95 <= value <= 2.2
    assert [s.load for s in server.specs[1:4]] == [10.0, 5.0, 2.5]


def test_rate_with_no_passing_level() -> None:
    server = FakeServer(1.0)  # the baseline (1 user) passes, no rate >= --min does
    result = sweep(server, "rate", min_load=2.0)
    assert result.answer.value is None
    assert result.stop.kind == "no_level_passed" and "2 requests/s" in result.stop.reason
    assert [s.load for s in server.specs[1:]] == [2.0]


def test_budget_is_respected_and_the_best_level_answers() -> None:
    server = FakeServer(100)
    result = sweep(server, budget=40.0, duration=5.0)  # 6 s per level: 6 levels fit
    assert result.stop.kind == "budget" and result.stop.early and "budget" in result.stop.reason
    assert server.now <= 40.0
    assert len(server.specs) == 6
    assert result.answer.value == 32  # 1, 2, 4, 8, 16, 32 passed; 64 did not fit


def test_budget_overhead_is_learned() -> None:
    server = FakeServer(100)
    cfg = SweepConfig(mode="concurrency", level_duration_s=5.0, budget_s=40.0, overhead_s=0.0)
    result = Sweep(cfg, server, server.clock).run()
    assert server.now <= 40.0 + OVERHEAD_S  # the first level teaches the real overhead
    assert result.stop.kind == "budget"


def test_repeats_give_a_student_t_interval() -> None:
    capacities = {1: 40.0, 2: 44.0, 3: 42.0}
    server = FakeServer(lambda repeat: capacities[repeat])
    result = sweep(server, repeats=3)
    assert result.answer.repeats == (40, 44, 42)
    assert result.answer.value == 42
    half = t_quantile_975(2) * 2.0 / math.sqrt(3)
    assert result.answer.ci == (math.floor(42 - half), math.ceil(42 + half))
    assert "Student t" in result.answer.ci_method
    assert {s.phase for s in server.specs if s.repeat > 1} == {"repeat"}


def test_repeats_with_the_same_capacity_have_a_zero_width_interval() -> None:
    result = sweep(FakeServer(17), repeats=2)
    assert result.answer.repeats == (17, 17) and result.answer.ci == (17, 17)


def test_interrupt_keeps_what_was_measured() -> None:
    server = FakeServer(100, interrupt_at=5)
    result = sweep(server)
    assert result.stop.kind == "interrupted"
    assert len(result.levels) == 4
    assert result.answer.value == 8  # 1, 2, 4, 8 passed before Ctrl-C


def test_knee_of_a_saturating_curve() -> None:
    curve = [(1.0, 10.0), (2.0, 20.0), (4.0, 40.0), (8.0, 80.0), (16.0, 82.0), (32.0, 83.0)]
    assert find_knee(curve) == {"load": 8.0, "throughput_rps": 80.0}
    assert find_knee(curve[:2]) is None
    assert find_knee([(1.0, 5.0), (2.0, 5.0), (3.0, 5.0)]) is None


def test_sweep_reports_the_knee() -> None:
    result = sweep(FakeServer(100))  # the fake's throughput saturates at 20 users
    assert result.knee is not None and result.knee["load"] in (16.0, 32.0)


def test_ttft_growth() -> None:
    rising = [(t / 10, 50.0 + 100.0 * t / 10) for t in range(31)]  # +100 ms/s over 3 s
    growth = ttft_growth_ms(rising)
    assert growth is not None and abs(growth - 300.0) < 1e-6
    flat = [(t / 10, 50.0 + (t % 2)) for t in range(31)]
    flat_growth = ttft_growth_ms(flat)
    assert flat_growth is not None and abs(flat_growth) < 1.0
    assert ttft_growth_ms(rising[:5]) is None


def test_plan_level_duration() -> None:
    assert plan_level_duration(300, 1, 3.0) == pytest.approx(300 / 11 - 3.0, abs=0.1)
    assert plan_level_duration(300, 3, 3.0) < plan_level_duration(300, 1, 3.0)
    assert plan_level_duration(10, 1, 3.0) == 2.0
    assert plan_level_duration(100_000, 1, 3.0) == 60.0
