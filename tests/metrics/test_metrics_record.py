"""RequestRecord: every derived definition, by hand, plus the JSON round trip."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from metrics_strategies import records

from chatprobe.metrics import RequestRecord, resolve_output_tokens

MS = 1_000_000
T0 = 7_000_000_000  # an arbitrary perf_counter_ns origin


def streamed(arrivals_ms: list[float], tokens: int | None = None) -> RequestRecord:
    """A successful request sent at T0 + 0; first byte at 10 ms, first choices at 15 ms."""
    rec = RequestRecord(
        request_id="r1",
        dialect="openai",
        t_sent_ns=T0,
        t_scheduled_ns=T0 - 2 * MS,
        t_first_byte_ns=T0 + 10 * MS,
        t_first_choices_ns=T0 + 15 * MS,
        ok=True,
        status=200,
    )
    for a in arrivals_ms:
        rec.add_token_event(T0 + int(a * MS))
    rec.t_end_ns = T0 + 50 * MS
    rec.output_tokens = tokens
    rec.output_tokens_source = None if tokens is None else "usage"
    return rec


def test_hand_computed_definitions() -> None:
    rec = streamed([20, 25, 35, 40], tokens=4)
    assert rec.queue_delay_ms == 2.0
    assert rec.ttfb_ms == 10.0
    assert rec.ttft_ms == 20.0
    assert rec.ttft_vllm_ms == 15.0
    assert rec.e2e_ms == 40.0  # last token event, not t_end (usage chunk / [DONE] excluded)
    assert rec.tpot_ms == pytest.approx(20.0 / 3)
    assert rec.itls_ms == [5.0, 10.0, 5.0]
    assert rec.user_tokens_per_s == pytest.approx(3 * 1000 / 20)


def test_tpot_uses_reported_tokens_not_events() -> None:
    # A server batching 2 tokens per event: 8 tokens in 4 events.
    rec = streamed([20, 25, 35, 40], tokens=8)
    assert rec.tpot_ms == pytest.approx(20.0 / 7)
    assert rec.itls_ms == [5.0, 10.0, 5.0]


def test_one_token() -> None:
    rec = streamed([30], tokens=1)
    assert rec.ttft_ms == rec.e2e_ms == 30.0
    assert rec.tpot_ms is None
    assert rec.user_tokens_per_s is None
    assert rec.itls_ms == []


def test_no_tokens_and_closed_loop() -> None:
    rec = RequestRecord("r2", "openai", t_sent_ns=T0, t_end_ns=T0 + 5 * MS, ok=False, error="reset")
    assert rec.queue_delay_ms is None  # closed loop: nothing scheduled
    for value in (rec.ttfb_ms, rec.ttft_ms, rec.ttft_vllm_ms, rec.e2e_ms, rec.tpot_ms):
        assert value is None
    assert rec.itls_ms == []
    assert rec.t_finished_ns == T0 + 5 * MS


def test_unknown_token_count_has_no_tpot() -> None:
    rec = streamed([20, 30], tokens=None)
    assert rec.tpot_ms is None
    assert rec.e2e_ms == 30.0


def test_never_finished_counts_at_sent_time() -> None:
    rec = RequestRecord("r3", "openai", t_sent_ns=T0)
    assert rec.t_finished_ns == T0


def test_resolve_output_tokens() -> None:
    assert resolve_output_tokens(12, 5, "whatever") == (12, "usage")
    assert resolve_output_tokens(0, 5) == (0, "usage")  # the server's word wins, even 0
    assert resolve_output_tokens(None, 5, "abcdefghi") == (5, "events")
    assert resolve_output_tokens(None, 0, "abcdefghi") == (3, "estimate")  # ceil(9 / 4)
    assert resolve_output_tokens(None, 0, "abcd") == (1, "estimate")
    assert resolve_output_tokens(None, 0, "") == (None, None)
    assert resolve_output_tokens(None, 0) == (None, None)


def test_to_json_is_compact() -> None:
    rec = streamed([20, 25], tokens=2)
    data = rec.to_json()
    assert data["token_gaps_ns"] == [20 * MS, 5 * MS]
    assert "error" not in data and "prompt_tokens" not in data
    assert "token_arrivals_ns" not in data


def test_from_json_rejects_unknown_token_source() -> None:
    data = streamed([20], tokens=1).to_json()
    data["output_tokens_source"] = "guess"
    with pytest.raises(ValueError, match="guess"):
        RequestRecord.from_json(data)


@settings(deadline=None)
@given(records())
def test_json_round_trip_is_lossless(rec: RequestRecord) -> None:
    back = RequestRecord.from_json(json.loads(json.dumps(rec.to_json())))
    assert back == rec
    assert back.ttft_ms == rec.ttft_ms and back.itls_ms == rec.itls_ms


def test_public_names_are_pinned() -> None:
    import chatprobe.metrics as metrics

    assert all(hasattr(metrics, name) for name in metrics.__all__)
    assert {"RequestRecord", "MetricsCollector", "summarize", "parse_slos", "time_series"} <= set(
        metrics.__all__
    )


@settings(deadline=None)
@given(records())
def test_shifted_moves_every_stamp_and_keeps_durations(rec: RequestRecord) -> None:
    moved = rec.shifted(-123_456_789)
    assert moved.t_sent_ns == rec.t_sent_ns - 123_456_789
    assert moved.shifted(123_456_789) == rec
    for name in ("queue_delay_ms", "ttfb_ms", "ttft_ms", "ttft_vllm_ms", "e2e_ms", "tpot_ms"):
        assert getattr(moved, name) == getattr(rec, name)
    assert moved.itls_ms == rec.itls_ms
