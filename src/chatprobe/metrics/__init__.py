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
- ``collector``: what workers fill and the master merges;
- ``lengths``: requested vs. delivered lengths, TTFT by shared-prefix position, the
  definitions' version (specs/METRICS.md); ``vllm``: a run under vLLM's definitions;
- ``workloads``: an open loop's schedule (slip, drift, latency from the scheduled start)
  and multi-turn sessions' per-turn figures;
- ``server_metrics``: a server's own Prometheus metrics (the engines' names, window
  differences, histogram_quantile) and ``accuracy``: the generator's error against the
  reference server's truth. The CLI's side of a run (chatprobe.serverside): import them
  from their modules;
- ``compare``: a run against a baseline run (block bootstrap, the performance gate of
  ``load`` / ``sweep --baseline``): import it from its module.
"""

from chatprobe.metrics.clock import clock_offset_ns
from chatprobe.metrics.collector import MetricsCollector
from chatprobe.metrics.health import MOSTLY_FAILED_FRACTION, failure_kind, load_verdict
from chatprobe.metrics.lengths import assign_prefix_positions, length_comparison, length_sections
from chatprobe.metrics.records import (
    CHARS_PER_TOKEN,
    LATENCY_METRICS,
    METRIC_DEFINITIONS,
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
from chatprobe.metrics.workloads import schedule_figures, turn_figures, workload_sections

__all__ = [
    "CHARS_PER_TOKEN",
    "DEFAULT_PERCENTILES",
    "LATENCY_METRICS",
    "METRIC_DEFINITIONS",
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
    "assign_prefix_positions",
    "clock_offset_ns",
    "failure_kind",
    "length_comparison",
    "length_sections",
    "load_verdict",
    "merge_records",
    "parse_slos",
    "percentile",
    "percentile_sorted",
    "resolve_output_tokens",
    "schedule_figures",
    "summarize",
    "summary_from_aggregate",
    "time_series",
    "turn_figures",
    "workload_sections",
]
