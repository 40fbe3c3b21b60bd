"""The performance gate's statistics (chatprobe.metrics.compare) on synthetic runs."""

from __future__ import annotations

import functools
import random

import pytest

from chatprobe.errors import UsageError
from chatprobe.metrics import RequestRecord, percentile, summarize
from chatprobe.metrics.compare import (
    DEFAULT_STATISTICS,
    RunSample,
    Statistic,
    Threshold,
    _union_percentile,
    block_length,
    compare,
    level_key,
    match_levels,
    parse_gates,
    setting_differences,
    trust_warnings,
)
from chatprobe.reports.compare import comparison_lines, result_line, sweep_comparison_lines

MS = 1_000_000


def synthetic_run(seed: int, n: int = 300, ttft_scale: float = 1.0, itl_scale: float = 1.0,
                  users: int = 8, tokens: int = 16, fail_every: int = 0) -> tuple[list[RequestRecord], tuple[int, int]]:
    """``n`` requests of a closed loop of ``users``: TTFT ~ 40 + Gamma ms, ITL ~ 4 + Exp ms, each
    scaled; a slow patch in the middle (drift) so blocks matter. Returns (records, window)."""
    rng = random.Random(seed)
    free = [0] * users  # each user's next send time (ns)
    records = []
    for i in range(n):
        u = min(range(users), key=free.__getitem__)
        sent = free[u]
        drift = 1.15 if n // 3 <= i < n // 2 else 1.0
        ttft = (40 + rng.gammavariate(2.0, 5.0)) * ttft_scale * drift
        r = RequestRecord(request_id=f"r{seed}-{i}", dialect="openai", t_sent_ns=sent)
        t = sent + int(ttft * MS)
        r.t_first_byte_ns = t
        r.t_first_choices_ns = t
        if fail_every and i % fail_every == 0:
            r.t_end_ns = t
            r.error = "http 500"
            r.status = 500
            free[u] = t
            records.append(r)
            continue
        r.add_token_event(t)
        for _ in range(tokens - 1):
            t += int((4 + rng.expovariate(1 / 1.5)) * itl_scale * drift * MS)
            r.add_token_event(t)
        r.t_end_ns = t
        r.ok = True
        r.status = 200
        r.output_tokens, r.output_tokens_source = tokens, "usage"
        free[u] = t
        records.append(r)
    end = max(x.t_finished_ns for x in records)
    return records, (0, end)


@functools.cache
def sample(seed: int, **kw: float) -> RunSample:
    records, window = synthetic_run(seed, **kw)  # type: ignore[arg-type]
    return RunSample.from_records(records, window)


STATS = parse_gates([])
FEW = 400  # resamples where the default's 2000 would only make the test slower


def by_name(result_json: dict, name: str) -> dict:  # type: ignore[type-arg]
    return next(r for r in result_json["results"] if r["name"] == name)


def test_the_full_sample_gives_the_summary_figures() -> None:
    records, window = synthetic_run(1, fail_every=17)
    summary = summarize(records, window).to_json()
    s = RunSample.from_records(records, window)
    result = compare(s, s, STATS, resamples=50).to_json()
    lat = summary["latency_ms"]
    for name, metric, q in (("ttft_p50", "ttft_ms", "p50"), ("ttft_p95", "ttft_ms", "p95"),
                            ("itl_p95", "itl_ms", "p95"), ("e2e_p50", "e2e_ms", "p50")):
        assert by_name(result, name)["baseline"] == lat[metric][q]
    assert by_name(result, "output_tokens_per_s")["baseline"] == pytest.approx(
        summary["throughput"]["output_tokens_per_s"], rel=1e-12)
    assert sum(b.duration_ns for b in s.blocks) == window[1] - window[0]
    assert s.requests == summary["requests"]["total"] and s.count("ttft_ms") == summary["requests"]["ok"]


def test_identical_distributions_do_not_regress() -> None:
    result = compare(sample(1), sample(2), STATS)
    assert result.passed and not result.regressed
    for r in result.results:
        est, lo, hi = r.change_pct  # type: ignore[misc]
        assert lo <= 0 <= hi or abs(est) < 10, (r.stat.name, r.change_pct)  # no confident move beyond noise
        assert r.verdict in ("pass", "inconclusive", "improved")


def test_a_30_percent_slower_ttft_regresses_with_an_interval_beyond_the_limit() -> None:
    result = compare(sample(1), sample(2, ttft_scale=1.3), STATS)
    doc = result.to_json()
    assert not result.passed
    assert {"ttft_p50", "ttft_p95"} <= set(result.regressed)
    for name in ("ttft_p50", "ttft_p95"):
        r = by_name(doc, name)
        assert r["verdict"] == "regressed"
        assert 10 < r["change_pct"]["low"] <= r["change_pct"]["estimate"] <= r["change_pct"]["high"]
        assert 20 < r["change_pct"]["estimate"] < 40
        assert r["change"]["low"] > 0  # in ms too
    assert by_name(doc, "itl_p50")["verdict"] != "regressed"  # the ITL did not change


def test_a_small_shift_under_the_limit_passes() -> None:
    result = compare(sample(1), sample(2, ttft_scale=1.03), STATS)
    assert result.passed
    r = by_name(result.to_json(), "ttft_p50")
    assert r["verdict"] in ("pass", "inconclusive") and r["change_pct"]["low"] < 10


def test_the_limit_decides_and_ms_limits_use_the_ms_interval() -> None:
    base, cur = sample(1), sample(2, ttft_scale=1.3)
    loose = compare(base, cur, parse_gates(["ttft_p50=+60%", "ttft_p95=off"]), resamples=FEW)
    assert by_name(loose.to_json(), "ttft_p50")["verdict"] == "pass"
    assert by_name(loose.to_json(), "ttft_p95")["verdict"] == "not gated"
    assert "ttft_p50" not in loose.regressed and "ttft_p95" not in loose.regressed
    in_ms = compare(base, cur, parse_gates(["ttft_p50=+5ms"]), resamples=FEW).to_json()
    r = by_name(in_ms, "ttft_p50")
    assert r["verdict"] == "regressed" and r["change"]["low"] > 5
    assert "ms [" in result_line(r) and "limit +5 ms" in result_line(r)


def test_throughput_regresses_downwards() -> None:
    slower = compare(sample(1), sample(2, ttft_scale=1.6, itl_scale=1.6), STATS, resamples=FEW)
    r = by_name(slower.to_json(), "output_tokens_per_s")
    assert r["worse"] == "lower" and r["change_pct"]["high"] < -10
    assert r["verdict"] == "regressed"
    faster = compare(sample(1), sample(2, ttft_scale=0.6, itl_scale=0.6), STATS, resamples=FEW)
    assert by_name(faster.to_json(), "output_tokens_per_s")["verdict"] == "improved"
    assert by_name(faster.to_json(), "ttft_p50")["verdict"] == "improved"


def test_the_seed_fixes_the_interval() -> None:
    base, cur = sample(1), sample(2, ttft_scale=1.1)
    one = compare(base, cur, STATS, resamples=300).to_json()
    assert compare(base, cur, STATS, resamples=300).to_json() == one
    other = compare(base, cur, STATS, resamples=300, seed=7).to_json()
    assert by_name(other, "ttft_p95")["change_pct"] != by_name(one, "ttft_p95")["change_pct"]
    assert by_name(other, "ttft_p95")["change_pct"]["estimate"] == by_name(one, "ttft_p95")["change_pct"]["estimate"]


def test_too_few_values_for_a_tail_percentile() -> None:
    small = sample(1, n=60)
    result = compare(small, sample(2, n=60), parse_gates(["ttft_p99=+10%"]), resamples=FEW).to_json()
    assert by_name(result, "ttft_p95")["verdict"] == "too few data"
    assert "needs at least 100" in by_name(result, "ttft_p95")["note"]
    assert by_name(result, "ttft_p99")["verdict"] == "too few data"
    assert by_name(result, "ttft_p50")["verdict"] != "too few data"
    assert by_name(result, "itl_p95")["verdict"] != "too few data"  # 15 gaps per request
    empty = RunSample.from_records([], (0, 1))
    nothing = compare(empty, small, STATS, resamples=10)
    assert nothing.passed and {r.verdict for r in nothing.results} == {"too few data"}


def test_blocks_are_consecutive_and_bounded() -> None:
    records, window = synthetic_run(3, n=1000)
    s = RunSample.from_records(records, window)
    assert s.block_length == 10 and len(s.blocks) == 100
    big, w = synthetic_run(3, n=5000, tokens=2)
    assert len(RunSample.from_records(big, w).blocks) <= 100
    pooled = RunSample.pooled([s, s])
    assert len(pooled.blocks) == 200 and pooled.requests == 2000
    # n^(1/3), or the requests in flight when more (while 20 blocks remain), at most 100 blocks
    assert [block_length(n, f) for n, f in ((300, 2.0), (300, 8.0), (1000, 64.0), (10_000, 64.0), (10, 3.0))] == \
        [7, 8, 50, 100, 1]
    odd, w = synthetic_run(4, n=103)
    sizes = [b.requests for b in RunSample.from_records(odd, w).blocks]
    assert sum(sizes) == 103 and max(sizes) - min(sizes) <= 1  # no short last block


def test_union_percentile_is_exact() -> None:
    rng = random.Random(5)
    for _ in range(500):
        lists = [sorted(rng.choice([rng.random(), float(rng.randint(0, 4))]) for _ in range(rng.randint(1, 9)))
                 for _ in range(rng.randint(1, 5))]
        drawn = [rng.choice(lists) for _ in range(rng.randint(1, 7))]
        for q in (1, 25, 50, 95, 99.9):
            assert _union_percentile(drawn, q) == pytest.approx(percentile([v for d in drawn for v in d], q),
                                                                       abs=1e-12)


# --------------------------------------------------------------------------- the flags
def test_parse_gates_defaults_and_overrides() -> None:
    stats = {s.name: s for s in parse_gates([])}
    assert tuple(stats) == DEFAULT_STATISTICS
    assert all(s.threshold == Threshold(10.0, "%") for s in stats.values())
    stats = {s.name: s for s in parse_gates(["ttft_p95=+15%", "itl_p99.9=2ms", "e2e_p50=off", "throughput=-5%",
                                             "requests_per_s=5%"], "20%")}
    assert stats["ttft_p95"].threshold == Threshold(15.0, "%")
    assert stats["itl_p99.9"] == Statistic("itl_p99.9", "itl_ms", 99.9, Threshold(2.0, "ms"))
    assert stats["e2e_p50"].threshold is None
    assert stats["output_tokens_per_s"].threshold == Threshold(5.0, "%")
    assert stats["requests_per_s"].q is None and not stats["requests_per_s"].higher_is_worse
    assert stats["ttft_p50"].threshold == Threshold(20.0, "%")
    assert {s.name for s in parse_gates([], "0")} == set(DEFAULT_STATISTICS)


@pytest.mark.parametrize(("gates", "max_regression", "message"), [
    (["ttft"], None, "expected STAT=LIMIT"),
    (["ttft_p95="], None, "expected STAT=LIMIT"),
    (["latency_p95=10%"], None, "unknown statistic"),
    (["ttft_p100=10%"], None, "between 0 and 100"),
    (["ttft_p95=10"], None, "bad limit"),
    (["ttft_p95=-10%"], None, "points the wrong way"),
    (["throughput=+10%"], None, "points the wrong way"),
    (["throughput=5ms"], None, "a percentage"),
    (["ttft_p95=5000%"], None, "at most 1000"),
    (["ttft_p95=10%", "ttft_p95=off"], None, "given twice"),
    ([], "ten", "--max-regression"),
    ([], "-5%", "--max-regression"),
])
def test_parse_gates_refuses(gates: list[str], max_regression: str | None, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        parse_gates(gates, max_regression)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- runs and levels
def test_settings_and_trust_warnings() -> None:
    assert setting_differences({"users": 8, "max_tokens": 64, "target": "a"},
                               {"users": 16, "max_tokens": 64, "target": "b"}) == ["users 16 (baseline 8)"]
    doc = {"verdict": {"trustworthy": False, "reasons": ["the generator was saturated: cpu"]},
           "run": {"interrupted": True}}
    warnings = trust_warnings(doc, "baseline")
    assert "baseline run is NOT TRUSTWORTHY (the generator was saturated: cpu)" in warnings[0]
    assert "interrupted" in warnings[1]
    assert trust_warnings({"health": {"trustworthy": True}, "run": {}}, "current") == []


def test_match_levels() -> None:
    def lv(users: int | None = None, rate: float | None = None, ok: bool = True) -> dict:  # type: ignore[type-arg]
        return {"users": users if rate is None else 1, "rate": rate, "acceptable": ok, "interrupted": False}

    base = [lv(1), lv(2), lv(4), lv(8, ok=False), lv(4), lv(16)]
    cur = [lv(1), lv(2), lv(4), lv(8), lv(3)]
    pairs, skipped = match_levels(base, cur)
    assert [(k, b, c) for k, b, c in pairs] == [(("users", 1.0), [0], [0]), (("users", 2.0), [1], [1]),
                                                (("users", 4.0), [2, 4], [2])]
    reasons = {s["load"]: s["reason"] for s in skipped}
    assert reasons == {"8 users": "the baseline sweep did not meet its SLOs there",
                       "16 users": "this sweep did not measure it",
                       "3 users": "the baseline sweep did not measure it"}
    pairs, _ = match_levels([lv(rate=10.0)], [lv(rate=10.05), lv(rate=11.0)])
    assert [(k, c) for k, _, c in pairs] == [(("rate", 10.0), [0])]
    assert level_key(lv(rate=2.5)) == ("rate", 2.5)


def test_console_lines() -> None:
    result = compare(sample(1), sample(2, ttft_scale=1.3), STATS, resamples=FEW)
    doc = {"baseline": {"dir": "/runs/base", "trustworthy": True}, **result.to_json(), "warnings": ["w1"]}
    lines = comparison_lines(doc)
    assert lines[0].startswith("compared with the baseline /runs/base (block bootstrap, 95 % interval")
    assert lines[1] == "warning: w1"
    ttft = next(line for line in lines if "ttft_p95" in line)
    assert ttft.split()[0] == "REGRESSED" and "limit +10 %" in ttft and " -> " in ttft and "% [+" in ttft
    assert lines[-1].startswith("performance gate FAILED: regressed beyond the limit: ttft_p50, ttft_p95")


def test_sweep_console_lines() -> None:
    result = compare(sample(1), sample(2, ttft_scale=1.3), STATS, resamples=FEW)
    level = {"load": "8 users", "users": 8, "rate": None, "levels": {"baseline": 2, "current": 1},
             **result.to_json(), "warnings": []}
    doc = {"baseline": {"dir": "/runs/sweep"}, "answer": {"baseline": 16, "current": 12, "unit": "users"},
           "passed": False, "regressed": ["8 users: ttft_p50"], "levels": [level],
           "not_compared": [{"load": "32 users", "reason": "the baseline sweep did not meet its SLOs there"}],
           "warnings": []}
    lines = sweep_comparison_lines(doc)
    assert lines[0] == ("compared with the baseline sweep /runs/sweep: capacity 12 users (baseline 16 users;"
                        " reported, not gated)")
    assert lines[1] == "  at 8 users (2 baseline level(s), 1 now):"
    assert any(line.startswith("    REGRESSED    ttft_p50") for line in lines)
    assert "  not compared at 32 users: the baseline sweep did not meet its SLOs there" in lines
    assert lines[-1] == "performance gate FAILED: regressed beyond the limit: 8 users: ttft_p50"
