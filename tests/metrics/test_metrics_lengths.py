"""chatprobe.metrics.lengths and .vllm: requested vs. delivered lengths, prefix positions,
and a run's figures under vLLM bench serve's definitions, computed by hand here."""

from __future__ import annotations

import json
import math

import pytest

from chatprobe.metrics import METRIC_DEFINITIONS, RequestRecord, RequestThresholds
from chatprobe.metrics.lengths import (
    assign_prefix_positions,
    length_comparison,
    length_sections,
    position_bucket,
)
from chatprobe.metrics.vllm import vllm_metrics

MS = 1_000_000


def _record(i: int, **kw: object) -> RequestRecord:
    values: dict[str, object] = {"request_id": f"r{i}", "dialect": "openai", "t_sent_ns": 0, "ok": True}
    values.update(kw)
    return RequestRecord(**values)  # type: ignore[arg-type]


def test_prefix_positions_follow_send_order_across_processes() -> None:
    records = [_record(i, t_sent_ns=t, prefix_group=g, worker_id=w)
               for i, (t, g, w) in enumerate([(50, 1, "b"), (10, 0, "a"), (30, 1, "a"), (20, 0, "b"), (40, 0, "a")])]
    records.append(_record(9, t_sent_ns=5))  # no prefix: left alone
    assign_prefix_positions(records)
    assert [(r.prefix_group, r.prefix_position) for r in sorted(records, key=lambda r: r.t_sent_ns)] == [
        (None, None), (0, 1), (0, 2), (1, 1), (0, 3), (1, 2)]
    assert [position_bucket(p) for p in (1, 2, 5, 6, 1000)] == ["1st", "2nd-5th", "2nd-5th", "6th+", "6th+"]
    # and through the records' JSON (records.jsonl)
    again = RequestRecord.from_json(json.loads(json.dumps(records[0].to_json())))
    assert (again.prefix_group, again.prefix_position) == (1, 2)


def test_length_comparison_counts_mismatches_each_way() -> None:
    records = [
        _record(1, requested_prompt_tokens=100, prompt_tokens=100, requested_output_tokens=20, output_tokens=20),
        _record(2, requested_prompt_tokens=100, prompt_tokens=103, requested_output_tokens=20, output_tokens=7),
        _record(3, requested_prompt_tokens=50, prompt_tokens=None, requested_output_tokens=20, output_tokens=20),
        _record(4, ok=False, requested_prompt_tokens=50, prompt_tokens=1, requested_output_tokens=9, output_tokens=1),
        _record(5),  # nothing requested (an older generator): not compared
    ]
    got = length_comparison(records)
    assert (got["prompt"]["compared"], got["prompt"]["mismatches"], got["prompt"]["longer"]) == (2, 1, 1)
    assert got["prompt"]["examples"] == [{"request_id": "r2", "requested": 100, "delivered": 103}]
    assert got["prompt_without_usage"] == 1
    assert (got["output"]["compared"], got["output"]["mismatches"], got["output"]["shorter"]) == (3, 1, 1)
    assert got["output"]["requested"]["mean"] == 20 and got["output"]["delivered"]["min"] == 7


def test_vllm_definitions_by_hand() -> None:
    """A stream: role-only chunk at 10 ms, tokens at 12, 13, 15 and 18 ms, the finish chunk at
    20 ms; usage 4 completion tokens, 30 prompt tokens. vLLM: TTFT 10, ITL [2, 1, 2, 3, 2],
    E2EL 20, TPOT (20 - 10) / 3."""
    a = _record(1, t_sent_ns=0, t_first_choices_ns=10 * MS, t_last_choices_ns=20 * MS,
                token_arrivals_ns=[12 * MS, 13 * MS, 15 * MS, 18 * MS], t_first_token_ns=12 * MS,
                output_tokens=4, prompt_tokens=30)
    # A second one whose role and finish came in the same reads as its first and last tokens.
    b = _record(2, t_sent_ns=100 * MS, t_first_choices_ns=105 * MS, t_last_choices_ns=107 * MS,
                token_arrivals_ns=[105 * MS, 107 * MS], t_first_token_ns=105 * MS, output_tokens=1,
                requested_prompt_tokens=12)
    failed = _record(3, ok=False, t_first_choices_ns=1, token_arrivals_ns=[1])
    plain = _record(4, token_arrivals_ns=[5 * MS], output_tokens=3)  # non-stream: no choices stamp
    got = vllm_metrics([a, b, failed, plain], duration_s=2.0, thresholds=RequestThresholds(ttft_ms=8))
    assert got["completed"] == 2
    assert got["ttft_ms"]["count"] == 2 and got["ttft_ms"]["mean"] == pytest.approx(7.5)
    assert got["itl_ms"]["count"] == 6 and sorted([got["itl_ms"]["min"], got["itl_ms"]["max"]]) == [1.0, 3.0]
    assert got["itl_ms"]["mean"] == pytest.approx((2 + 1 + 2 + 3 + 2 + 2) / 6)
    assert got["e2el_ms"]["mean"] == pytest.approx((20 + 7) / 2)
    assert got["tpot_ms"]["count"] == 1 and got["tpot_ms"]["mean"] == pytest.approx(10 / 3)  # b has 1 token
    assert got["ttft_ms"]["std"] == pytest.approx(2.5)  # numpy's std (population)
    assert got["total_input_tokens"] == 30 + 12 and got["total_output_tokens"] == 5
    assert got["request_throughput"] == 1.0 and got["output_throughput"] == 2.5
    assert got["total_token_throughput"] == pytest.approx(47 / 2)
    assert got["request_goodput"] == 0.5  # only b's TTFT (5 ms) is within 8 ms
    assert vllm_metrics([a], 1.0)["request_goodput"] is None  # no threshold: no goodput


def test_sections_carry_the_definitions_version() -> None:
    records = [_record(1, t_sent_ns=0, t_end_ns=5, requested_prompt_tokens=3, prompt_tokens=3, prefix_group=0)]
    assign_prefix_positions(records)
    out = length_sections(records, (0, 10), {"prefix": {"groups": 1, "tokens": 4}, "counting": "tokenizer"})
    assert out["metric_definitions"] == {"version": METRIC_DEFINITIONS, "document": "specs/METRICS.md"}
    assert METRIC_DEFINITIONS == "chatprobe metrics v2"
    assert out["workload"]["lengths"]["prompt"]["mismatches"] == 0
    assert out["workload"]["prefix"]["groups_seen"] == 1 and out["workload"]["prefix"]["tokens"] == 4
    assert math.isclose(out["vllm"]["duration_s"], 1e-8)
    assert "workload" not in length_sections(records, (0, 10), None)
