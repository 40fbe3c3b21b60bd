"""Workers' collectors merged on the master equal one collector over the union."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from metrics_strategies import MS, records

from chatprobe.metrics import (
    MetricsCollector,
    RequestRecord,
    clock_offset_ns,
    merge_records,
    parse_slos,
    summarize,
)

SLOS = parse_slos(["ttft_ms=150", "tpot_ms=120", "ttft_p95_ms=200", "itl_p99_ms=250"])
WINDOW = (500 * MS, 4_000 * MS)


def ship(collector: MetricsCollector) -> MetricsCollector:
    """Worker -> master: through JSON text, as Locust's report_to_master would."""
    return MetricsCollector.from_json(json.loads(json.dumps(collector.to_json())), slos=SLOS)


def split(recs: list[RequestRecord], owners: list[int], workers: int) -> list[list[RequestRecord]]:
    parts: list[list[RequestRecord]] = [[] for _ in range(workers)]
    for rec, owner in zip(recs, owners, strict=False):
        parts[owner % workers].append(rec)
    return parts


def comparable(summary_json: dict[str, Any]) -> str:
    return json.dumps(summary_json, sort_keys=True, allow_nan=False)


@settings(deadline=None, max_examples=60)
@given(
    st.lists(records(), max_size=40),
    st.lists(st.integers(0, 10), min_size=40, max_size=40),
    st.integers(1, 4),
)
def test_merged_collectors_equal_the_union(
    recs: list[RequestRecord], owners: list[int], workers: int
) -> None:
    master = MetricsCollector(window=WINDOW, slos=SLOS)
    for part in split(recs, owners, workers):
        worker = MetricsCollector(window=WINDOW, slos=SLOS)
        worker.extend(part)
        master.merge(ship(worker))
    union = summarize(recs, WINDOW, SLOS)
    merged = master.summary()
    # Exactly equal, every percentile, mean, count and gate, not merely close.
    assert comparable(merged.to_json()) == comparable(union.to_json())


@settings(deadline=None, max_examples=60)
@given(
    st.lists(records(), max_size=40),
    st.lists(st.integers(0, 10), min_size=40, max_size=40),
    st.integers(1, 4),
)
def test_compact_collectors_merge_exactly(
    recs: list[RequestRecord], owners: list[int], workers: int
) -> None:
    master = MetricsCollector(keep_records=False, window=WINDOW, slos=SLOS)
    for part in split(recs, owners, workers):
        worker = MetricsCollector(keep_records=False, window=WINDOW, slos=SLOS)
        worker.extend(part)
        master.merge(ship(worker))
    single = MetricsCollector(keep_records=False, window=WINDOW, slos=SLOS)
    single.extend(recs)
    assert comparable(master.summary().to_json()) == comparable(single.summary().to_json())
    assert master.time_series() == single.time_series()
    # And the histogram-backed summary stays within its bound of the exact one.
    exact = summarize(recs, WINDOW, SLOS)
    approx = master.summary()
    assert (approx.total, approx.ok, approx.good) == (exact.total, exact.ok, exact.good)
    for name, stats in exact.stats.items():
        for label, value in stats.percentiles.items():
            other = approx.stats[name].percentiles[label]
            assert (other is None) == (value is None)
            if value is not None and other is not None:
                assert abs(other - value) <= max(0.01 * abs(value), 0.1) + 1e-9


@settings(deadline=None, max_examples=40)
@given(st.lists(records(), max_size=30), st.lists(st.integers(0, 3), min_size=30, max_size=30))
def test_time_series_merge_equals_union(recs: list[RequestRecord], owners: list[int]) -> None:
    origin = 0
    master = MetricsCollector(origin_ns=origin)
    for part in split(recs, owners, 3):
        worker = MetricsCollector(origin_ns=origin)
        worker.extend(part)
        master.merge(ship_plain(worker))
    single = MetricsCollector(origin_ns=origin)
    single.extend(recs)
    # Every field exactly equal, token counts (float sums) included.
    assert master.time_series() == single.time_series()


def ship_plain(collector: MetricsCollector) -> MetricsCollector:
    data = json.loads(json.dumps(collector.to_json()))
    back = MetricsCollector.from_json(data)
    back.origin_ns = collector.origin_ns
    return back


def test_merge_records_orders_by_send_time() -> None:
    a = RequestRecord("a", "openai", t_sent_ns=3)
    b = RequestRecord("b", "openai", t_sent_ns=1)
    c = RequestRecord("c", "openai", t_sent_ns=2)
    assert [r.request_id for r in merge_records([a], [b, c])] == ["b", "c", "a"]


def test_collector_misuse_is_refused() -> None:
    with pytest.raises(ValueError, match="window"):
        MetricsCollector(keep_records=False)
    compact = MetricsCollector(keep_records=False, window=(0, 10))
    with pytest.raises(ValueError, match="record-keeping"):
        MetricsCollector().merge(compact)
    with pytest.raises(ValueError, match="window"):
        compact.merge(MetricsCollector(keep_records=False, window=(0, 11)))
    with pytest.raises(ValueError, match="thresholds"):
        compact.merge(
            MetricsCollector(keep_records=False, window=(0, 10), slos=parse_slos(["ttft_ms=1"]))
        )


def test_on_record_sees_every_record() -> None:
    seen: list[str] = []
    collector = MetricsCollector(
        keep_records=False, window=(0, 10), on_record=lambda r: seen.append(r.request_id)
    )
    collector.add(RequestRecord("a", "openai", t_sent_ns=5, ok=True))
    collector.add(RequestRecord("b", "openai", t_sent_ns=50, ok=True))  # outside the window
    assert seen == ["a", "b"]
    assert collector.summary().total == 1


# --- clocks of other machines ------------------------------------------------------

def _clock(boot_id: str | None, host: str, perf_ns: int, wall_ns: int) -> dict[str, object]:
    return {"boot_id": boot_id, "host": host, "perf_ns": perf_ns, "wall_ns": wall_ns}


def test_one_kernel_one_clock_no_offset() -> None:
    # Same boot id: one CLOCK_MONOTONIC, whatever the wall clocks or host names say.
    local = _clock("b1", "a", 5_000, 1_700_000_000_000_000_000)
    assert clock_offset_ns(local, _clock("b1", "other-name", 9_999, 1_700_000_000_500_000_000)) == 0
    # No boot ids (not Linux): the host name decides.
    assert clock_offset_ns(_clock(None, "a", 1, 2), _clock(None, "a", 3, 4)) == 0


def test_another_machine_is_bridged_by_the_wall_clocks() -> None:
    wall = 1_700_000_000_000_000_000
    # The remote's monotonic clock reads 1 s when the local one reads 50 s, at one wall time.
    local = _clock("b1", "a", 50_000_000_000, wall)
    remote = _clock("b2", "b", 1_000_000_000, wall)
    offset = clock_offset_ns(local, remote)
    assert offset == 49_000_000_000
    # A request the remote sent 2 s later (its clock) lands 2 s later on the local clock.
    record = RequestRecord("r", "openai", t_sent_ns=3_000_000_000, t_first_token_ns=3_050_000_000,
                           token_arrivals_ns=[3_050_000_000, 3_055_000_000], t_end_ns=3_060_000_000)
    moved = record.shifted(offset)
    assert moved.t_sent_ns == 52_000_000_000
    assert summarize([moved]).to_json()["latency_ms"] == summarize([record]).to_json()["latency_ms"]
    # Different host names but no boot ids: also another machine.
    # (at wall 100 the remote reads 70, which is the local 10)
    assert clock_offset_ns(_clock(None, "a", 10, 100), _clock(None, "b", 10, 40)) == -60
