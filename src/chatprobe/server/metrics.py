"""``GET /metrics``: the reference server's Prometheus metrics, in vLLM's names.

So that the whole path (scrape, window difference, report) is tested against
a server whose truth is known. Served with prometheus_client (its registry and
text exposition) from a custom collector: the hot path only adds to a few
numbers and counts a histogram bucket found by bisection (prometheus_client's
own Histogram scans its buckets one by one, too slow for one observation per
token at 20k tokens/s).

Series (label ``model_name``), as vLLM's V1 engine names them
(vllm/v1/metrics/loggers.py):

* ``vllm:num_requests_running`` — requests holding a generation slot;
  ``vllm:num_requests_waiting`` — requests queued for one (``--max-concurrency``);
* ``vllm:kv_cache_usage_perc`` — only with ``--max-concurrency K``, the model's
  one resource: busy slots / K (there is no KV cache to fill);
* ``vllm:request_success_total{finished_reason}`` — requests answered in full
  (a stream cut by a fault or a client that left is not counted);
  ``vllm:prompt_tokens_total`` / ``vllm:generation_tokens_total`` — their
  prompt tokens (the ``usage`` count) and tokens written;
  ``vllm:num_preemptions_total`` — always 0 (the model never preempts);
* ``vllm:time_to_first_token_seconds`` (first token written - request
  received), ``vllm:inter_token_latency_seconds`` (each gap between token
  writes; tokens written together give 0 gaps) and
  ``vllm:e2e_request_latency_seconds`` (finished - received): the very
  durations of the truth records (server/truth.py).

Every counter and histogram is updated when a request finishes, as a client
counts a request in the window it finishes in.

Bucket edges (seconds; :data:`TTFT_BOUNDS`, :data:`ITL_BOUNDS`,
:data:`E2E_BOUNDS`), chosen so that a percentile interpolated within its
bucket (Prometheus's histogram_quantile) is off by less than the bucket's
width: TTFT every 1 ms from 1 to 100 ms (error under 1 ms; vLLM's own edges,
0.04, 0.06, 0.08, 0.1 s, allow up to 20 ms), ITL every 0.5 ms from 0.5 to
20 ms, ten per decade (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8: at most 25 % of
the value) elsewhere, and E2E 22 per decade (1, 1.1, 1.2 ... 8, 9: at most
12.5 %) from 10 ms to 300 s. About 330 lines in all: the exposition takes a
millisecond or two of the server's event loop per scrape, and the scraper's
parse (prometheus_client's, ~30 us a sample) about 10 ms.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from chatprobe.server.latency import Capacity
from chatprobe.server.truth import TruthRecord

__all__ = ["CONTENT_TYPE", "E2E_BOUNDS", "ITL_BOUNDS", "TTFT_BOUNDS", "ServerMetrics", "bounds"]

CONTENT_TYPE = CONTENT_TYPE_LATEST.encode()


_DECADE = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)
_FINE_DECADE = (1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.8, 2.0, 2.2, 2.5, 2.8, 3.2, 3.6, 4.0, 4.5, 5.0, 5.6,
                6.3, 7.1, 8.0, 9.0)


def bounds(lowest: float, highest: float, fine: tuple[float, float, float] | None = None,
           decade: tuple[float, ...] = _DECADE) -> tuple[float, ...]:
    """``decade``'s steps (ten per decade) from ``lowest`` to ``highest`` (seconds, ascending);
    with ``fine`` = (start, stop, step), every step in [start, stop] instead."""
    edges = {round(m * 10.0**k, 6) for k in range(-7, 4) for m in decade}
    edges = {b for b in edges if lowest <= b <= highest}
    if fine is not None:
        start, stop, step = fine
        edges = {b for b in edges if not start <= b <= stop}
        edges |= {round(start + i * step, 6) for i in range(round((stop - start) / step) + 1)}
    return tuple(sorted(edges))


TTFT_BOUNDS = bounds(0.0001, 100.0, fine=(0.001, 0.1, 0.001))
ITL_BOUNDS = bounds(0.00001, 10.0, fine=(0.0005, 0.02, 0.0005))
E2E_BOUNDS = bounds(0.01, 300.0, decade=_FINE_DECADE)


class _Histogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1  # the first bound >= value: le
        self.sum += seconds

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        total = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            total += n
            out.append((repr(bound), total))
        out.append(("+Inf", total + self.counts[-1]))
        return out


class ServerMetrics(Collector):
    """The counters of one :class:`~chatprobe.server.app.ReferenceApp` and their exposition."""

    def __init__(self, model: str, capacity: Capacity) -> None:
        self.model = model
        self.capacity = capacity
        self.success: dict[str, int] = {"length": 0, "stop": 0}  # as vLLM, from the start
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.ttft = _Histogram(TTFT_BOUNDS)
        self.itl = _Histogram(ITL_BOUNDS)
        self.e2e = _Histogram(E2E_BOUNDS)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def finished(self, record: TruthRecord, prompt_tokens: int, generation_tokens: int, finish_reason: str) -> None:
        """A request answered in full: count it, its tokens, and its durations (from its record;
        a non-stream answer has no token writes: its E2E only)."""
        self.success[finish_reason] = self.success.get(finish_reason, 0) + 1
        self.prompt_tokens += prompt_tokens
        self.generation_tokens += generation_tokens
        stamps = record.token_ns
        if stamps:
            self.ttft.observe((stamps[0] - record.received_ns) / 1e9)
            observe = self.itl.observe
            previous = stamps[0]
            for t in stamps[1:]:
                observe((t - previous) / 1e9)
                previous = t
        if record.finished_ns is not None:
            self.e2e.observe((record.finished_ns - record.received_ns) / 1e9)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        labels = ["model_name"]
        model = [self.model]
        cap = self.capacity
        running = cap.active if cap.limit is None else min(cap.active, cap.limit)
        gauge = GaugeMetricFamily("vllm:num_requests_running", "Number of requests in model execution batches.",
                                  labels=labels)
        gauge.add_metric(model, running)
        yield gauge
        gauge = GaugeMetricFamily("vllm:num_requests_waiting", "Number of requests waiting to be processed.",
                                  labels=labels)
        gauge.add_metric(model, cap.queued)
        yield gauge
        if cap.limit:
            gauge = GaugeMetricFamily("vllm:kv_cache_usage_perc",
                                      "Busy generation slots / --max-concurrency (1 means all).",
                                      labels=labels)
            gauge.add_metric(model, running / cap.limit)
            yield gauge
        counter = CounterMetricFamily("vllm:request_success", "Count of successfully processed requests.",
                                      labels=[*labels, "finished_reason"])
        for reason, n in sorted(self.success.items()):
            counter.add_metric([*model, reason], n)
        yield counter
        for name, doc, value in (
            ("vllm:prompt_tokens", "Number of prefill tokens processed.", self.prompt_tokens),
            ("vllm:generation_tokens", "Number of generation tokens processed.", self.generation_tokens),
            ("vllm:num_preemptions", "Cumulative number of preemption from the engine.", 0),
        ):
            counter = CounterMetricFamily(name, doc, labels=labels)
            counter.add_metric(model, value)
            yield counter
        for name, doc, hist in (
            ("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", self.ttft),
            ("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", self.itl),
            ("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", self.e2e),
        ):
            family = HistogramMetricFamily(name, doc, labels=labels)
            family.add_metric(model, hist.buckets(), hist.sum)
            yield family
