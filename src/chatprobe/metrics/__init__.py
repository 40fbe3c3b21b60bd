"""Load-test metrics: per-request records, exact statistics, SLOs, time series.

Pure computation: no IO, no httpx, no locust. The Locust users fill
:class:`RequestRecord` objects, a :class:`MetricsCollector` per worker holds
them, the master merges the collectors, and :func:`summarize` /
:func:`time_series` turn the union into the numbers the reports print.

One module per topic; import the names from here (``from chatprobe.metrics
import X``):

- ``records``: the definitions (TTFT, ITL, TPOT, E2E, output tokens) and
  :class:`RequestRecord`;
- ``clock``: another process's stamps onto this one's clock;
- ``stats``: exact percentiles and the mergeable histogram;
- ``slo``: per-request thresholds (goodput) and summary gates, ``--slo`` parsing;
- ``summary``: a measured window's numbers (:func:`summarize`);
- ``health``: failure kinds and the run's verdict (:func:`load_verdict`);
- ``series``: per-second buckets for the plots;
- ``collector``: what workers fill and the master merges.
"""

from chatprobe.metrics.clock import clock_offset_ns
from chatprobe.metrics.collector import MetricsCollector
from chatprobe.metrics.health import MOSTLY_FAILED_FRACTION, failure_kind, load_verdict
from chatprobe.metrics.records import (
    CHARS_PER_TOKEN,
    LATENCY_METRICS,
    RequestRecord,
    TokenSource,
    merge_records,
    resolve_output_tokens,
)
from chatprobe.metrics.series import TimeBucket, TimeSeries, time_series
from chatprobe.metrics.slo import Gate, GateResult, RequestThresholds, SLOSpec, parse_slos
from chatprobe.metrics.stats import (
    DEFAULT_PERCENTILES,
    Distribution,
    ExactSamples,
    LogLinearHistogram,
    Stats,
    percentile,
    percentile_sorted,
)
from chatprobe.metrics.summary import Summary, WindowAggregate, summarize, summary_from_aggregate

__all__ = [
    "CHARS_PER_TOKEN",
    "DEFAULT_PERCENTILES",
    "LATENCY_METRICS",
    "MOSTLY_FAILED_FRACTION",
    "Distribution",
    "ExactSamples",
    "Gate",
    "GateResult",
    "LogLinearHistogram",
    "MetricsCollector",
    "RequestRecord",
    "RequestThresholds",
    "SLOSpec",
    "Stats",
    "Summary",
    "TimeBucket",
    "TimeSeries",
    "TokenSource",
    "WindowAggregate",
    "clock_offset_ns",
    "failure_kind",
    "load_verdict",
    "merge_records",
    "parse_slos",
    "percentile",
    "percentile_sorted",
    "resolve_output_tokens",
    "summarize",
    "summary_from_aggregate",
    "time_series",
]
