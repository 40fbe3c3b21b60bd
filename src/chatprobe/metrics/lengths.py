"""Requested vs. delivered lengths, TTFT by shared-prefix position, and the definitions' version.

Pure. Over the records of the measured window (the same membership as :func:`summarize`):

* **Lengths.** A record's requested prompt length (``requested_prompt_tokens``: what the
  generator's counter counts for the messages it sent, exactly the length asked for when
  the synthesiser could make it so) is compared with the server's
  ``usage.prompt_tokens`` (``prompt_tokens``); its requested output length (the cap sent,
  ``requested_output_tokens``) with the output tokens counted (``output_tokens``, usually
  usage's completion_tokens: see ``output_tokens_sources``). Successful requests that
  carry both numbers are *compared*; ``mismatches`` counts those that differ, ``shorter`` /
  ``longer`` which way (an output shorter than its cap is legal unless ``ignore_eos`` was
  sent). With the word approximation (no ``--tokenizer``) the requested figures are words:
  they match the reference server's counts, and only approximate a real server's.
* **Prefix positions** (``--prefix-groups``). :func:`assign_prefix_positions` numbers each
  group's requests in send order (1: the first request to carry that prefix, the one a
  prefix cache cannot have seen), across all generator processes, after the run; the
  summary gives TTFT per position bucket (:data:`POSITION_BUCKETS`) over the window's
  successful requests.

:func:`length_sections` gives summary.json's ``metric_definitions`` (the version of
specs/METRICS.md the figures follow), ``workload`` (what was sent, from
:mod:`chatprobe.workload`, with the comparisons above) and ``vllm`` (the same run under vLLM's
``bench serve`` definitions, :mod:`chatprobe.metrics.vllm`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from chatprobe.metrics.records import METRIC_DEFINITIONS, NS_PER_S, RequestRecord
from chatprobe.metrics.slo import RequestThresholds
from chatprobe.metrics.stats import ExactSamples, Stats
from chatprobe.metrics.vllm import vllm_metrics

__all__ = ["POSITION_BUCKETS", "assign_prefix_positions", "length_comparison", "length_sections",
           "position_bucket", "prefix_positions"]

# (label, first position, last position or None): the first request of a prefix, the next
# few (a cache may still be warming: other groups evict it, or concurrent firsts race), the rest.
POSITION_BUCKETS: tuple[tuple[str, int, int | None], ...] = (("1st", 1, 1), ("2nd-5th", 2, 5), ("6th+", 6, None))
_PERCENTILES = (50.0, 90.0, 95.0, 99.0)
_EXAMPLES = 5


def assign_prefix_positions(records: Iterable[RequestRecord]) -> None:
    """Set ``prefix_position`` on every record with a ``prefix_group``: its rank among that
    group's records by ``t_sent_ns`` (1-based; all records, failed ones included)."""
    by_group: dict[int, list[RequestRecord]] = {}
    for r in records:
        if r.prefix_group is not None:
            by_group.setdefault(r.prefix_group, []).append(r)
    for members in by_group.values():
        members.sort(key=lambda r: r.t_sent_ns)
        for position, r in enumerate(members, start=1):
            r.prefix_position = position


def position_bucket(position: int) -> str:
    for label, first, last in POSITION_BUCKETS:
        if position >= first and (last is None or position <= last):
            return label
    return POSITION_BUCKETS[-1][0]


def _stats(values: Sequence[float]) -> dict[str, Any]:
    samples = ExactSamples()
    samples.add_many(values)
    return Stats.of(samples, _PERCENTILES).to_json()


def _compare(pairs: list[tuple[int, int, str]]) -> dict[str, Any]:
    """(requested, delivered, request id) pairs -> the comparison block."""
    differ = [(want, got, rid) for want, got, rid in pairs if want != got]
    return {
        "compared": len(pairs),
        "mismatches": len(differ),
        "shorter": sum(1 for want, got, _ in differ if got < want),
        "longer": sum(1 for want, got, _ in differ if got > want),
        "requested": _stats([float(w) for w, _, _ in pairs]),
        "delivered": _stats([float(g) for _, g, _ in pairs]),
        "examples": [{"request_id": rid, "requested": want, "delivered": got} for want, got, rid in differ[:_EXAMPLES]],
    }


def length_comparison(window_records: Iterable[RequestRecord]) -> dict[str, Any]:
    """Requested vs. delivered prompt and output lengths of the window's successful requests."""
    prompts: list[tuple[int, int, str]] = []
    outputs: list[tuple[int, int, str]] = []
    without_usage = 0
    for r in window_records:
        if not r.ok:
            continue
        if r.requested_prompt_tokens is not None:
            if r.prompt_tokens is None:
                without_usage += 1
            else:
                prompts.append((r.requested_prompt_tokens, r.prompt_tokens, r.request_id))
        if r.requested_output_tokens is not None and r.output_tokens is not None:
            outputs.append((r.requested_output_tokens, r.output_tokens, r.request_id))
    return {"prompt": _compare(prompts), "output": _compare(outputs),
            "prompt_without_usage": without_usage}


def prefix_positions(window_records: Iterable[RequestRecord]) -> dict[str, Any]:
    """TTFT (ms) of the window's successful requests per prefix-position bucket."""
    ttfts: dict[str, list[float]] = {label: [] for label, _, _ in POSITION_BUCKETS}
    groups: set[int] = set()
    for r in window_records:
        if r.prefix_group is None or r.prefix_position is None:
            continue
        groups.add(r.prefix_group)
        ttft = r.ttft_ms
        if r.ok and ttft is not None:
            ttfts[position_bucket(r.prefix_position)].append(ttft)
    return {
        "groups_seen": len(groups),
        "buckets": [{"position": label, "first": first, "last": last, "ttft_ms": _stats(ttfts[label])}
                    for label, first, last in POSITION_BUCKETS],
    }


def length_sections(records: Iterable[RequestRecord], window: tuple[int, int], workload: dict[str, Any] | None,
                    thresholds: RequestThresholds = RequestThresholds()) -> dict[str, Any]:
    """summary.json's ``metric_definitions``, ``workload`` (``workload``: what was sent, as
    :class:`chatprobe.workload.Workload` describes it) and ``vllm`` sections."""
    start, end = window
    members = [r for r in records if start <= r.t_finished_ns <= end]
    out: dict[str, Any] = {"metric_definitions": {"version": METRIC_DEFINITIONS, "document": "specs/METRICS.md"}}
    if workload is not None:
        section = {**workload, "lengths": length_comparison(members)}
        if section.get("prefix"):
            section["prefix"] = {**section["prefix"], **prefix_positions(members)}
        out["workload"] = section
    out["vllm"] = vllm_metrics(members, (end - start) / NS_PER_S, thresholds)
    return out
