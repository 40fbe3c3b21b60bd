"""Exact percentiles and the bounded-error histogram."""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatprobe.metrics import ExactSamples, LogLinearHistogram, percentile, percentile_sorted

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
latencies = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)
qs = st.floats(min_value=0.0, max_value=100.0)


def brute_force(values: list[float], q: float) -> float:
    """Walk the piecewise-linear curve through (100 * i / (n - 1), x_i) to q."""
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    step = 100.0 / (len(xs) - 1)
    for i in range(len(xs) - 1):
        left, right = i * step, (i + 1) * step
        if left <= q <= right:
            return xs[i] + (q - left) / step * (xs[i + 1] - xs[i])
    return xs[-1]


def tolerance(*values: float) -> float:
    return 1e-9 * max(1.0, *(abs(v) for v in values))


def test_hand_computed() -> None:
    xs = [4.0, 1.0, 3.0, 2.0]
    assert percentile(xs, 0) == 1.0
    assert percentile(xs, 100) == 4.0
    assert percentile(xs, 50) == 2.5
    assert percentile(xs, 25) == pytest.approx(1.75)
    assert percentile(xs, 90) == pytest.approx(3.7)
    assert percentile([5.0], 99) == 5.0


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)
    with pytest.raises(ValueError):
        percentile([1.0], math.nan)
    assert ExactSamples().percentile(50) is None
    assert LogLinearHistogram().percentile(50) is None


@settings(deadline=None)
@given(st.lists(finite, min_size=1, max_size=60), qs)
def test_matches_brute_force(values: list[float], q: float) -> None:
    got = percentile(values, q)
    want = brute_force(values, q)
    assert abs(got - want) <= tolerance(*values)
    assert min(values) <= got <= max(values)


@settings(deadline=None)
@given(st.lists(finite, min_size=1, max_size=60), qs)
def test_matches_numpy(values: list[float], q: float) -> None:
    np = pytest.importorskip("numpy")
    want = float(np.percentile(np.array(values), q, method="linear"))
    assert abs(percentile(values, q) - want) <= tolerance(*values)


@settings(deadline=None)
@given(st.lists(finite, min_size=1, max_size=30), st.lists(qs, min_size=2, max_size=5))
def test_monotone_in_q(values: list[float], q_list: list[float]) -> None:
    xs = sorted(values)
    results = [percentile_sorted(xs, q) for q in sorted(q_list)]
    assert results == sorted(results)


def test_exact_samples_stats() -> None:
    s = ExactSamples([3.0, 1.0])
    s.add(2.0)
    assert (s.count, s.min(), s.max(), s.mean(), s.percentile(50)) == (3, 1.0, 3.0, 2.0, 2.0)
    s.add(0.5)  # adding after a sort must re-sort
    assert s.min() == 0.5


# --- the histogram ------------------------------------------------------------
def within_bound(approx: float, exact: float) -> bool:
    # max(1 %, 0.1 ms), plus a hair for float rounding in the comparison itself
    return abs(approx - exact) <= max(0.01 * abs(exact), 0.1) + 1e-9


@settings(deadline=None, max_examples=200)
@given(st.lists(latencies, min_size=1, max_size=200), qs)
def test_histogram_error_bound(values: list[float], q: float) -> None:
    hist = LogLinearHistogram()
    for v in values:
        hist.add(v)
    got = hist.percentile(q)
    assert got is not None
    assert within_bound(got, percentile(values, q))


def test_histogram_error_bound_dense() -> None:
    # Many values across every scale (0.01 ms .. ~100 s), percentiles 0..100 by 0.5.
    rng = random.Random(6)
    values = [10 ** rng.uniform(-2, 5) for _ in range(3000)] + [
        rng.uniform(0, 12) for _ in range(500)
    ]
    hist = LogLinearHistogram()
    for v in values:
        hist.add(v)
    xs = sorted(values)
    for i in range(201):
        q = i / 2
        got = hist.percentile(q)
        assert got is not None
        assert within_bound(got, percentile_sorted(xs, q)), q


@given(latencies)
def test_bucket_contains_value(v: float) -> None:
    idx = LogLinearHistogram.bucket_index(v)
    lo, hi = LogLinearHistogram.bucket_bounds(idx)
    # Float rounding at an edge may put v one ulp outside; the bound has slack for it.
    assert lo * (1 - 1e-12) <= v <= hi * (1 + 1e-12)


def test_histogram_exact_extremes_and_mean() -> None:
    hist = LogLinearHistogram()
    for v in (0.123, 7.77, 1234.5678):
        hist.add(v)
    assert hist.percentile(0) == hist.min() == 0.123
    assert hist.percentile(100) == hist.max() == 1234.5678
    assert hist.mean() == math.fsum([0.123, 7.77, 1234.5678]) / 3


def test_histogram_rejects_bad_values() -> None:
    hist = LogLinearHistogram()
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError):
            hist.add(bad)
    assert hist.count == 0


@settings(deadline=None)
@given(st.lists(st.lists(latencies, max_size=40), min_size=1, max_size=4))
def test_histogram_merge_equals_union(parts: list[list[float]]) -> None:
    merged = LogLinearHistogram()
    for part in parts:
        h = LogLinearHistogram()
        for v in part:
            h.add(v)
        # Shipping through JSON must not change anything.
        merged.merge(LogLinearHistogram.from_json(json.loads(json.dumps(h.to_json()))))
    union = LogLinearHistogram()
    for v in (v for part in parts for v in part):
        union.add(v)
    assert merged.counts == union.counts
    assert merged.count == union.count
    assert (merged.min(), merged.max(), merged.mean()) == (union.min(), union.max(), union.mean())
    for q in (0, 1, 50, 90, 95, 99, 99.9, 100):
        assert merged.percentile(q) == union.percentile(q)


def test_exact_samples_merge_and_json() -> None:
    a, b = ExactSamples([5.0, 1.0]), ExactSamples([3.0])
    a.merge(ExactSamples.from_json(json.loads(json.dumps(b.to_json()))))
    assert (a.count, a.percentile(50), a.mean()) == (3, 3.0, 3.0)
