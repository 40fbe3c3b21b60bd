"""Summary over a window, SLO parsing and gates, goodput, time series."""

from __future__ import annotations

import json

import pytest

from chatprobe.errors import UsageError
from chatprobe.metrics import (
    RequestRecord,
    RequestThresholds,
    WindowAggregate,
    parse_slos,
    summarize,
    summary_from_aggregate,
    time_series,
)

MS = 1_000_000
S = 1_000_000_000
T0 = 50 * S


def ok_request(
    rid: str, sent_ms: float, arrivals_ms: list[float], tokens: int, end_ms: float | None = None
) -> RequestRecord:
    """Arrivals are relative to the send time; t_end defaults to 1 ms after the last one."""
    sent = T0 + int(sent_ms * MS)
    rec = RequestRecord(rid, "openai", t_sent_ns=sent, t_first_byte_ns=sent + 1 * MS, ok=True)
    for a in arrivals_ms:
        rec.add_token_event(sent + int(a * MS))
    rec.t_first_choices_ns = rec.t_first_token_ns
    last = arrivals_ms[-1] if arrivals_ms else 0.0
    rec.t_end_ns = sent + int(((last + 1) if end_ms is None else end_ms) * MS)
    rec.output_tokens, rec.output_tokens_source = tokens, "usage"
    return rec


def failed_request(rid: str, sent_ms: float, end_ms: float, error: str) -> RequestRecord:
    sent = T0 + int(sent_ms * MS)
    return RequestRecord(
        rid, "openai", t_sent_ns=sent, t_end_ns=sent + int(end_ms * MS), ok=False, error=error
    )


def window(start_ms: float, end_ms: float) -> tuple[int, int]:
    return T0 + int(start_ms * MS), T0 + int(end_ms * MS)


# Four requests finishing inside [0, 2000] ms, one during warm-up, one after.
A = ok_request("a", 0, [100, 110, 120, 130, 140], tokens=5)  # ttft 100, e2e 140, tpot 10
B = ok_request("b", 100, [300, 340, 380], tokens=3)  # ttft 300, e2e 380, tpot 40
C = ok_request("c", 200, [50], tokens=1)  # ttft = e2e = 50, no tpot
D = failed_request("d", 300, 500, "http 500")
WARMUP = ok_request("w", -900, [100, 200], tokens=2)  # finishes at -699 ms
LATE = ok_request("l", 1900, [50, 200], tokens=2)  # finishes at 2101 ms
RECORDS = [A, B, C, D, WARMUP, LATE]


def test_window_membership_and_counts() -> None:
    s = summarize(RECORDS, window(0, 2000))
    assert (s.total, s.ok, s.failed) == (4, 3, 1)
    assert s.failed_by_reason == {"http 500": 1}
    assert s.duration_s == 2.0
    assert s.requests_per_s == 2.0
    assert s.error_rate == 0.25
    assert s.output_tokens == 9  # failed request's tokens do not count
    assert s.output_tokens_per_s == 4.5
    assert s.output_tokens_sources == {"usage": 3}


def test_latency_stats_over_successful_requests() -> None:
    s = summarize(RECORDS, window(0, 2000))
    ttft = s.stats["ttft_ms"]
    assert ttft.count == 3
    assert (ttft.min, ttft.max) == (50.0, 300.0)
    assert ttft.mean == pytest.approx(150.0)
    assert ttft.percentiles["p50"] == 100.0
    assert ttft.percentiles["p90"] == pytest.approx(260.0)  # 100 + 0.8 * 200
    e2e = s.stats["e2e_ms"]
    assert sorted([e2e.min, e2e.max, e2e.percentiles["p50"]]) == [50.0, 140.0, 380.0]
    tpot = s.stats["tpot_ms"]
    assert tpot.count == 2  # the 1-token request has no TPOT
    assert tpot.mean == pytest.approx(25.0)
    itl = s.stats["itl_ms"]
    assert itl.count == 4 + 2  # A: 4 gaps of 10, B: 2 gaps of 40, C: none
    assert itl.percentiles["p50"] == 10.0 and itl.max == 40.0
    rate = s.stats["user_tokens_per_s"]
    assert rate.count == 2
    assert sorted([rate.min, rate.max]) == [pytest.approx(25.0), pytest.approx(100.0)]
    assert "p5" in rate.percentiles  # the low tail is what a per-user SLO looks at
    assert s.stats["queue_delay_ms"].count == 0  # closed loop


def test_queue_delay_counts_failed_requests_too() -> None:
    late = failed_request("q", 0, 5, "timeout")
    late.t_scheduled_ns = late.t_sent_ns - 30 * MS
    on_time = ok_request("o", 0, [10], tokens=1)
    on_time.t_scheduled_ns = on_time.t_sent_ns - 2 * MS
    s = summarize([late, on_time])
    assert s.stats["queue_delay_ms"].max == 30.0
    assert s.stats["queue_delay_ms"].min == 2.0


def test_default_window_spans_all_records() -> None:
    s = summarize(RECORDS)
    assert s.total == 6
    assert s.window_start_ns == WARMUP.t_sent_ns
    assert s.window_end_ns == LATE.t_end_ns


def test_no_records() -> None:
    s = summarize([])
    assert (s.total, s.ok, s.failed) == (0, 0, 0)
    assert s.error_rate is None and s.requests_per_s is None and s.attainment is None
    assert s.stats["ttft_ms"].count == 0 and s.stats["ttft_ms"].percentiles["p95"] is None
    json.dumps(s.to_json(), allow_nan=False)


def test_only_failures_and_no_tokens() -> None:
    recs = [failed_request("x", 0, 10, "reset"), failed_request("y", 5, 20, "reset")]
    s = summarize(recs, window(0, 1000), parse_slos(["ttft_p95_ms=500", "error_rate=0.5"]))
    assert s.failed_by_reason == {"reset": 2}
    assert s.output_tokens == 0 and s.output_tokens_per_s == 0.0
    assert s.stats["ttft_ms"].mean is None
    # Nothing to measure fails the gate, never passes it silently.
    results = {g.name: g for g in s.slo_results}
    assert results["ttft_p95_ms"].measured is None and not results["ttft_p95_ms"].passed
    assert results["error_rate"].measured == 1.0 and not results["error_rate"].passed
    assert not s.slos_passed


def test_goodput_and_attainment() -> None:
    # ttft <= 200 fails B (300); tpot <= 20 fails B (40); C has 1 token, no TPOT to miss.
    slos = parse_slos(["ttft_ms=200", "tpot_ms=20", "goodput=0.9", "attainment=0.5"])
    s = summarize(RECORDS, window(0, 2000), slos)
    assert s.good == 2  # A and C; D failed
    assert s.goodput == 1.0
    assert s.attainment == 0.5  # failed requests stay in the denominator
    assert [(g.name, g.measured, g.passed) for g in s.slo_results] == [
        ("goodput", 1.0, True),
        ("attainment", 0.5, True),
    ]
    assert s.slos_passed


def test_e2e_threshold() -> None:
    s = summarize(RECORDS, window(0, 2000), parse_slos(["e2e_ms=100"]))
    assert s.good == 1  # only C (50 ms)


def test_thresholds_on_a_request_without_tokens() -> None:
    empty_ok = ok_request("e", 0, [], tokens=0, end_ms=10)
    assert RequestThresholds().is_good(empty_ok)
    assert not RequestThresholds(ttft_ms=1000).is_good(empty_ok)  # no first token
    assert RequestThresholds(tpot_ms=1).is_good(empty_ok)  # no TPOT to miss


def test_gates_pass_and_fail_with_measured_values() -> None:
    slos = parse_slos(
        [
            "ttft_p50_ms=100",  # measured 100: passes (<=)
            "ttft_p90_ms=250",  # measured 260: fails
            "e2e_max_ms=400",
            "itl_p99.9_ms=40",  # a percentile not in the default set
            "user_tokens_per_s_min=30",  # measured 25: fails (>=)
            "requests_per_s=2",
            "output_tokens_per_s=5",  # 4.5: fails
            "error_rate=0.25",
        ]
    )
    s = summarize(RECORDS, window(0, 2000), slos)
    got = {g.name: (g.measured, g.passed, g.comparison) for g in s.slo_results}
    assert got["ttft_p50_ms"] == (100.0, True, "<=")
    assert got["ttft_p90_ms"][0] == pytest.approx(260.0) and not got["ttft_p90_ms"][1]
    assert got["e2e_max_ms"] == (380.0, True, "<=")
    assert got["itl_p99.9_ms"][1] is True
    assert "p99.9" in s.stats["itl_ms"].percentiles
    assert got["user_tokens_per_s_min"][0] == pytest.approx(25.0)
    assert got["user_tokens_per_s_min"][1:] == (False, ">=")
    assert got["requests_per_s"] == (2.0, True, ">=")
    assert got["output_tokens_per_s"] == (4.5, False, ">=")
    assert got["error_rate"] == (0.25, True, "<=")
    assert not s.slos_passed


def test_summary_json_is_strict_json() -> None:
    s = summarize(RECORDS, window(0, 2000), parse_slos(["ttft_p95_ms=500"]))
    data = json.loads(json.dumps(s.to_json(), allow_nan=False))
    assert data["requests"]["failed_by_reason"] == {"http 500": 1}
    assert data["latency_ms"]["ttft_ms"]["p50"] == 100.0
    assert data["slo"]["gates"][0]["name"] == "ttft_p95_ms"
    assert data["goodput"]["attainment"] == 0.75


def test_histogram_summary_is_close_to_exact() -> None:
    exact = summarize(RECORDS, window(0, 2000))
    approx = summarize(RECORDS, window(0, 2000), kind="histogram")
    for name, stats in exact.stats.items():
        for label, value in stats.percentiles.items():
            other = approx.stats[name].percentiles[label]
            if value is None:
                assert other is None
            else:
                assert other is not None
                assert abs(other - value) <= max(0.01 * value, 0.1) + 1e-9, (name, label)
    assert approx.to_json()["percentile_method"].startswith("log-linear")


@pytest.mark.parametrize(
    ("item", "fragment"),
    [
        ("ttft_p95_ms", "expected NAME=VALUE"),
        ("=3", "expected NAME=VALUE"),
        ("ttft_p95_ms=fast", "'fast' is not a number"),
        ("ttft_p95_ms=-1", ">= 0"),
        ("ttft_p95_ms=nan", "finite"),
        ("ttft_p95_ms=inf", "finite"),
        ("ttft_p101_ms=5", "percentile"),
        ("ttft_p0_ms=5", "percentile"),
        ("ttft_p95=5", "unknown name"),
        ("latency=5", "unknown name"),
        ("error_rate=1.5", "fraction"),
        ("attainment=2", "fraction"),
    ],
)
def test_bad_slo_items(item: str, fragment: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_slos(["ttft_ms=500", item])
    message = str(info.value)
    assert repr(item) in message and fragment in message
    assert "\n" not in message


def test_duplicate_slo() -> None:
    with pytest.raises(UsageError, match="given twice"):
        parse_slos(["ttft_ms=1", "ttft_ms=2"])


def test_parse_slos_kinds() -> None:
    spec = parse_slos(["ttft_ms=500", " tpot_ms = 50", "e2e_p95_ms=2000", "goodput=3"])
    assert spec.thresholds == RequestThresholds(ttft_ms=500, tpot_ms=50, e2e_ms=None)
    assert [(g.metric, g.stat, g.limit, g.upper) for g in spec.gates] == [
        ("e2e_ms", "p95", 2000.0, True),
        ("goodput", None, 3.0, False),
    ]


# --- time series ----------------------------------------------------------------
def test_time_series_hand_computed() -> None:
    # r1: sent 0.5 s, tokens at 0.7 s and 1.2 s (4 usage tokens), ends 1.5 s.
    r1 = ok_request("r1", 500, [200, 700], tokens=4, end_ms=1000)
    # r2: sent 1.0 s, fails at 2.25 s with no tokens.
    r2 = failed_request("r2", 1000, 1250, "timeout")
    buckets = time_series([r1, r2], origin_ns=T0)
    assert [b.t_s for b in buckets] == [0.0, 1.0, 2.0]
    b0, b1, b2 = buckets
    assert (b0.started, b0.finished, b0.errors) == (1, 0, 0)
    assert (b1.started, b1.finished, b1.errors) == (1, 1, 0)
    assert (b2.started, b2.finished, b2.errors) == (0, 1, 1)
    assert [b.output_tokens for b in buckets] == [2.0, 2.0, 0.0]  # 4 tokens over 2 events
    assert b0.active_mean == pytest.approx(0.5)
    assert b1.active_mean == pytest.approx(0.5 + 1.0)
    assert b2.active_mean == pytest.approx(0.25)
    assert (b0.ttft_count, b0.ttft_p50_ms, b0.ttft_p95_ms) == (1, 200.0, 200.0)
    assert b1.ttft_p50_ms is None


def test_time_series_fills_gaps_and_defaults_origin() -> None:
    r1 = ok_request("r1", 0, [10], tokens=1)
    r2 = ok_request("r2", 3000, [10], tokens=1)
    buckets = time_series([r2, r1])
    assert [b.t_s for b in buckets] == [0.0, 1.0, 2.0, 3.0]
    assert [b.started for b in buckets] == [1, 0, 0, 1]
    assert time_series([]) == []


def test_window_must_not_end_before_it_starts() -> None:
    with pytest.raises(ValueError, match="window"):
        summarize(RECORDS, window(10, 5))


def test_exact_aggregate_round_trips_through_json() -> None:
    slos = parse_slos(["ttft_ms=200"])
    agg = WindowAggregate("exact", slos.thresholds)
    for r in (A, B, C, D):
        agg.add(r)
    back = WindowAggregate.from_json(json.loads(json.dumps(agg.to_json())))
    merged = WindowAggregate("exact", slos.thresholds)
    merged.merge(back)
    w = window(0, 2000)
    assert summary_from_aggregate(merged, w, slos) == summarize(RECORDS, w, slos)


def test_time_bucket_json() -> None:
    (bucket,) = time_series([ok_request("r", 0, [10], tokens=1)])
    assert json.loads(json.dumps(bucket.to_json()))["ttft_p50_ms"] == 10.0
