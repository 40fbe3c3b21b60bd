"""A run's figures under vLLM's ``bench serve`` definitions, to reconcile with that tool.

vLLM (``vllm/benchmarks/serve.py`` ``calculate_metrics`` and
``vllm/benchmarks/lib/endpoint_request_func.py``, chat completions, streaming) stamps each
SSE message with non-empty ``choices`` (the role-only first chunk and the finish chunk
included; the usage chunk and ``[DONE]`` not) and defines, per successful request:

* TTFT = the first such message - the request's start (chatprobe's ``ttft_vllm``);
* ITL = every gap between successive such messages (pooled over requests);
* E2EL (its "latency") = the last such message - the start;
* TPOT = (E2EL - TTFT) / (output_len - 1), only when output_len > 1, output_len being
  ``usage.completion_tokens`` (else the tokenizer's count of the text);
* throughputs = completed requests, output tokens, and input + output tokens per second of
  the benchmark's duration (here: the measured window); input = ``usage.prompt_tokens``;
* goodput = completed requests meeting every given threshold (TTFT, TPOT taken as 0 when
  output_len <= 1, E2EL) per second.

Reconstructed from chatprobe's records: the messages' arrivals are the token-bearing events
plus the first and last events with choices (``t_first_choices_ns``, ``t_last_choices_ns``),
exact when a stream's choices without tokens come only first (role) and last (finish
reason), as servers send them. Differences that remain, and why chatprobe's own
definitions differ, are in specs/METRICS.md. Non-stream requests have no vLLM TTFT and are
left out (vLLM's serving benchmark streams).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from typing import Any

from chatprobe.metrics.records import NS_PER_MS, RequestRecord
from chatprobe.metrics.slo import RequestThresholds
from chatprobe.metrics.stats import ExactSamples, Stats

__all__ = ["VLLM_DEFINITIONS", "vllm_metrics"]

VLLM_DEFINITIONS = "vLLM bench serve (vllm/benchmarks/serve.py calculate_metrics)"
_PERCENTILES = (50.0, 90.0, 95.0, 99.0)


def _arrivals(r: RequestRecord) -> list[int]:
    """The request's messages with choices, as vLLM would have stamped them (one per event)."""
    points = list(r.token_arrivals_ns)
    first, last = r.t_first_choices_ns, r.t_last_choices_ns
    if first is not None and (not points or first < points[0]):
        points.insert(0, first)
    if last is not None and (not points or last > points[-1]):
        points.append(last)
    return points


def _stats(values: list[float]) -> dict[str, Any]:
    out = Stats.of(ExactSamples(values), _PERCENTILES).to_json()
    if values:
        mean = sum(values) / len(values)
        out["std"] = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))  # numpy's np.std
    else:
        out["std"] = None
    return out


def vllm_metrics(window_records: Iterable[RequestRecord], duration_s: float,
                 thresholds: RequestThresholds = RequestThresholds()) -> dict[str, Any]:
    ttfts: list[float] = []
    tpots: list[float] = []
    itls: list[float] = []
    e2els: list[float] = []
    completed = total_input = total_output = good = 0
    for r in window_records:
        if not r.ok or r.t_first_choices_ns is None:
            continue
        points = _arrivals(r)
        ttft = (r.t_first_choices_ns - r.t_sent_ns) / NS_PER_MS
        latency = (points[-1] - r.t_sent_ns) / NS_PER_MS
        output_len = r.output_tokens or 0
        tpot = 0.0
        if output_len > 1:
            tpot = (latency - ttft) / (output_len - 1)
            tpots.append(tpot)
        ttfts.append(ttft)
        e2els.append(latency)
        itls.extend((b - a) / NS_PER_MS for a, b in itertools.pairwise(points))
        completed += 1
        total_output += output_len
        prompt = r.prompt_tokens if r.prompt_tokens is not None else r.requested_prompt_tokens
        total_input += prompt or 0
        if all(limit is None or value <= limit for limit, value in (
                (thresholds.ttft_ms, ttft), (thresholds.tpot_ms, tpot), (thresholds.e2e_ms, latency))):
            good += 1

    def per_s(n: float) -> float | None:
        return n / duration_s if duration_s > 0 else None

    any_threshold = any(x is not None for x in (thresholds.ttft_ms, thresholds.tpot_ms, thresholds.e2e_ms))
    return {
        "definitions": VLLM_DEFINITIONS,
        "completed": completed,
        "duration_s": duration_s,
        "total_input_tokens": total_input,
        "total_output_tokens": total_output,
        "request_throughput": per_s(completed),
        "output_throughput": per_s(total_output),
        "total_token_throughput": per_s(total_input + total_output),
        "request_goodput": per_s(good) if any_threshold else None,
        "ttft_ms": _stats(ttfts),
        "tpot_ms": _stats(tpots),
        "itl_ms": _stats(itls),
        "e2el_ms": _stats(e2els),
    }
