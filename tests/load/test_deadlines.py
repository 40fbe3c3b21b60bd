"""The load generator's precise wait: kernel deadline timers, the wake lead, sleep_until.

An open-loop request (a --rate arrival, a trace row, a later turn) is written at its due
time by ``load.client.sleep_until``. Correctness here, not speed (benchmarks/open_loop_slip.py
measures the slip and its CPU): a deadline never fires early, an abandoned one never fires
later into somebody else's wait, the lead follows the machine's wake-up latency, and the
spin budget switches the lead from the 90th percentile to the median.
"""

from __future__ import annotations

import random
import select
import time

import pytest

from chatprobe.load.client import _Quantile, _WakeLead, sleep_until
from chatprobe.load.clocks import DeadlineTimers

timers = DeadlineTimers()
needs_timerfd = pytest.mark.skipif(not timers.available, reason="kernel deadline timers are Linux's timerfd")


def _readable(fd: int, timeout_s: float) -> bool:
    return bool(select.select([fd], [], [], timeout_s)[0])


@needs_timerfd
def test_a_deadline_fires_at_its_time_never_before() -> None:
    for delay_ms in (1, 3, 10):
        due = time.perf_counter_ns() + delay_ms * 1_000_000
        fd = timers.arm(due)
        assert _readable(fd, 5.0)
        assert time.perf_counter_ns() >= due  # readable only from the due time on (same clock)
        timers.release(fd)


@needs_timerfd
def test_a_released_timer_is_reused_and_an_abandoned_one_is_disarmed() -> None:
    fd = timers.arm(time.perf_counter_ns() + 1_000_000)
    assert _readable(fd, 5.0)
    timers.release(fd)  # fired and read: back in the free list, quiet
    assert not _readable(fd, 0.0)
    again = timers.arm(time.perf_counter_ns() + 20_000_000)
    assert again == fd  # reused, not a new descriptor per wait
    timers.release(again)  # abandoned before it fired (its waiter was killed)
    assert not _readable(again, 0.06)  # it does not fire into the next wait
    past = timers.arm(time.perf_counter_ns() - 1_000_000)  # already due: readable at once
    assert _readable(past, 1.0)
    timers.release(past)


@pytest.mark.parametrize(("q", "expected"), [(0.5, 200_000), (0.9, 360_000)])
def test_the_quantile_tracker_converges(q: float, expected: int) -> None:
    rng = random.Random(7)
    est = _Quantile(q, 50_000, 10_000, 1_000_000, 10_000)
    for _ in range(20_000):
        est.add(rng.randint(0, 400_000))  # uniform 0..400 us: its q-quantile is 400 us * q
    assert abs(est.value - expected) <= 30_000, est.value
    est = _Quantile(q, 900_000, 10_000, 1_000_000, 10_000)
    for _ in range(20_000):
        est.add(5_000)  # a quiet machine: it comes down to its floor
    assert est.value == 10_000


def test_the_spin_budget_chooses_the_median_lead() -> None:
    lead = _WakeLead()
    for late in range(0, 400_000, 40):  # wake-ups 0..400 us late
        lead.woke(late)
    assert lead.ns == lead.p90.value > lead.p50.value  # cheap so far: the 90th percentile
    t0 = lead.window_start_ns
    lead.spun(30_000_000, t0 + 1_000_000_000)  # 3 % of a second spent spinning
    assert lead.over_budget and lead.ns == lead.p50.value
    lead.spun(1_000_000, t0 + 2_000_000_000)  # 0.1 %: back to the 90th percentile
    assert not lead.over_budget and lead.ns == lead.p90.value


def test_sleep_until_never_returns_early() -> None:
    for delay_us in (0, 50, 400, 1500, 4000):
        due = time.perf_counter_ns() + delay_us * 1000
        sleep_until(due)
        assert time.perf_counter_ns() >= due
    sleep_until(time.perf_counter_ns() - 1_000_000)  # already past: returns at once
