"""The collector workers fill and the master merges (exactly)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, cast

from chatprobe.metrics.records import RequestRecord
from chatprobe.metrics.series import TimeBucket, TimeSeries, time_series
from chatprobe.metrics.slo import SLOSpec
from chatprobe.metrics.summary import Summary, WindowAggregate, summarize, summary_from_aggregate


class MetricsCollector:
    """Per-worker store of request metrics; collectors merge exactly.

    By default it keeps every record (exact: the master's summary equals one
    computed from the union). With ``keep_records=False`` it folds each record
    into a histogram-backed :class:`WindowAggregate` and :class:`TimeSeries`
    as it arrives (bounded memory for very long runs); the window and the
    per-request SLO thresholds must then be fixed up front and be the same on
    every worker. The time-series origin defaults to the first record's
    t_sent (record-keeping) or the window's start (compact).
    """

    def __init__(
        self,
        *,
        keep_records: bool = True,
        window: tuple[int, int] | None = None,
        slos: SLOSpec = SLOSpec(),
        origin_ns: int | None = None,
        on_record: Callable[[RequestRecord], None] | None = None,
    ) -> None:
        self.keep_records = keep_records
        self.window = window
        self.slos = slos
        self.origin_ns = origin_ns
        self.on_record = on_record  # e.g. append each record to a JSONL file
        self.records: list[RequestRecord] = []
        self._aggregate: WindowAggregate | None = None
        self._series: TimeSeries | None = None
        if not keep_records:
            if window is None:
                raise ValueError("a collector without records needs its window up front")
            self._aggregate = WindowAggregate("histogram", slos.thresholds)
            self._series = TimeSeries(
                window[0] if origin_ns is None else origin_ns, kind="histogram"
            )

    def _compact(self) -> tuple[WindowAggregate, TimeSeries, tuple[int, int]]:
        assert self._aggregate is not None and self._series is not None
        assert self.window is not None
        return self._aggregate, self._series, self.window

    def add(self, record: RequestRecord) -> None:
        if self.on_record is not None:
            self.on_record(record)
        if self.keep_records:
            self.records.append(record)
            return
        aggregate, series, (start, end) = self._compact()
        series.add(record)
        if start <= record.t_finished_ns <= end:
            aggregate.add(record)

    def extend(self, records: Iterable[RequestRecord]) -> None:
        for r in records:
            self.add(r)

    def merge(self, other: MetricsCollector) -> None:
        if other.keep_records != self.keep_records:
            raise ValueError("cannot merge a record-keeping collector with a compact one")
        if self.keep_records:
            self.records.extend(other.records)
            return
        if other.window != self.window:
            raise ValueError("compact collectors must share their window")
        aggregate, series, _ = self._compact()
        other_aggregate, other_series, _ = other._compact()
        aggregate.merge(other_aggregate)
        series.merge(other_series)

    def summary(
        self, window: tuple[int, int] | None = None, slos: SLOSpec | None = None
    ) -> Summary:
        slos = self.slos if slos is None else slos
        if self.keep_records:
            return summarize(self.records, window or self.window, slos)
        aggregate, _, own_window = self._compact()
        if window not in (None, own_window):
            raise ValueError("a compact collector summarises only its own window")
        return summary_from_aggregate(aggregate, own_window, slos)

    def time_series(self) -> list[TimeBucket]:
        if self.keep_records:
            return time_series(self.records, self.origin_ns)
        return self._compact()[1].buckets()

    def to_json(self) -> dict[str, Any]:
        """Everything a worker ships to the master (Locust's report_to_master)."""
        if self.keep_records:
            return {"window": self.window, "records": [r.to_json() for r in self.records]}
        aggregate, series, window = self._compact()
        return {
            "window": list(window),
            "aggregate": aggregate.to_json(),
            "series": series.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], slos: SLOSpec = SLOSpec()) -> MetricsCollector:
        window = tuple(data["window"]) if data.get("window") is not None else None
        if "records" in data:
            collector = cls(window=cast(tuple[int, int] | None, window), slos=slos)
            collector.records = [RequestRecord.from_json(r) for r in data["records"]]
            return collector
        aggregate = WindowAggregate.from_json(data["aggregate"])
        if aggregate.thresholds != slos.thresholds:
            raise ValueError("the shipped aggregate used other per-request thresholds")
        collector = cls(keep_records=False, window=cast(tuple[int, int], window), slos=slos)
        collector._aggregate = aggregate
        collector._series = TimeSeries.from_json(data["series"])
        return collector
