"""Reasoning (TTFT of any token, TTFO, reasoning time, ITL on the output stream), an open
loop's schedule (slip, drift, latency from the scheduled start) and per-turn session
figures, each computed by hand."""

from __future__ import annotations

import json

import pytest

from chatprobe.metrics import (
    RequestRecord,
    WindowAggregate,
    schedule_figures,
    summarize,
    turn_figures,
    workload_sections,
)

MS = 1_000_000
T0 = 9_000_000_000
WINDOW = (0, 10**12 * MS)


def rec(arrivals_ms: list[float], *, sent_ms: float = 0.0, scheduled_ms: float | None = None, ok: bool = True,
        reasoning: int | None = None, first_output: int | None = None, turn: int | None = None,
        session: str | None = None, prompt: int | None = None) -> RequestRecord:
    r = RequestRecord(request_id=f"r{sent_ms}-{turn}", dialect="openai", t_sent_ns=T0 + int(sent_ms * MS),
                      t_scheduled_ns=None if scheduled_ms is None else T0 + int(scheduled_ms * MS), ok=ok,
                      error=None if ok else "reset", prompt_tokens=prompt, session_id=session, turn=turn)
    for a in arrivals_ms:
        r.add_token_event(T0 + int((sent_ms + a) * MS))
    r.t_end_ns = T0 + int((sent_ms + (arrivals_ms[-1] if arrivals_ms else 1)) * MS)
    r.output_tokens, r.output_tokens_source = len(arrivals_ms), "usage"
    if reasoning is not None:
        r.reasoning_tokens, r.reasoning_tokens_source, r.first_output_index = reasoning, "usage", first_output
    return r


def test_reasoning_definitions_by_hand() -> None:
    # Reasoning events at 10, 12, 14 ms; output from 40 ms on (event 3): 40, 43, 47.
    r = rec([10, 12, 14, 40, 43, 47], reasoning=3, first_output=3)
    assert r.ttft_ms == 10.0  # the first token of any kind
    assert r.ttfo_ms == 40.0  # the first output token
    assert r.reasoning_ms == 30.0
    assert r.itls_ms == [3.0, 4.0]  # the output stream only
    assert r.e2e_ms == 47.0
    assert r.tpot_ms == pytest.approx(37.0 / 5)  # reasoning and answer tokens alike
    # No reasoning: TTFO is TTFT, no reasoning time, ITL over every event.
    plain = rec([10, 12, 15])
    assert (plain.ttfo_ms, plain.reasoning_ms, plain.itls_ms) == (10.0, None, [2.0, 3.0])
    # Reasoning, and no output ever came (cut during the reasoning): no TTFO, no ITL.
    cut = rec([10, 12], reasoning=2, first_output=None)
    assert (cut.ttft_ms, cut.ttfo_ms, cut.reasoning_ms, cut.itls_ms) == (10.0, None, None, [])
    # Reasoning the server counted but did not stream: output began with the first token.
    hidden = rec([30, 31], reasoning=50, first_output=0)
    assert (hidden.ttfo_ms, hidden.reasoning_ms, hidden.itls_ms) == (30.0, 0.0, [1.0])


def test_reasoning_fields_round_trip_and_summarise() -> None:
    records = [rec([10, 12, 40, 41], reasoning=2, first_output=2), rec([10, 20, 21], reasoning=1, first_output=1,
                                                                       sent_ms=5), rec([8, 9], sent_ms=9)]
    records[1].reasoning_tokens_source = "events"
    for r in records:
        assert RequestRecord.from_json(json.loads(json.dumps(r.to_json()))) == r
    doc = summarize(records, WINDOW).to_json()
    assert doc["reasoning"] == {"requests": 2, "tokens": 3, "tokens_sources": {"events": 1, "usage": 1}}
    lat = doc["latency_ms"]
    assert lat["ttft_ms"]["max"] == 10.0 and lat["ttfo_ms"]["max"] == 40.0 and lat["ttfo_ms"]["min"] == 8.0
    assert lat["reasoning_ms"]["count"] == 2 and lat["reasoning_ms"]["min"] == 10.0
    assert lat["itl_ms"]["count"] == 1 + 1 + 1
    # Aggregates merge and travel as JSON with their reasoning counts.
    a, b = WindowAggregate(), WindowAggregate()
    a.add(records[0])
    b.add(records[1])
    a.merge(WindowAggregate.from_json(json.loads(json.dumps(b.to_json()))))
    assert (a.reasoning_requests, a.reasoning_tokens, dict(a.reasoning_sources)) == (2, 3, {"usage": 1, "events": 1})
    with pytest.raises(ValueError, match="reasoning_tokens_source"):
        RequestRecord.from_json({**records[0].to_json(), "reasoning_tokens_source": "guess"})


def test_schedule_slip_drift_and_latency_from_the_scheduled_start() -> None:
    # 20 requests scheduled 100 ms apart; the slip grows 0.1 ms per request (a drifting generator).
    records = [rec([5, 8], sent_ms=100 * i + 0.1 * i, scheduled_ms=100 * i) for i in range(20)]
    records.append(rec([5], sent_ms=2002.0, scheduled_ms=2000.0, ok=False))  # a failure slips too
    sched = schedule_figures(records, WINDOW, T0)
    assert sched is not None and sched["requests"] == 21
    slip = sched["slip_ms"]
    assert slip["count"] == 21 and slip["min"] == 0.0 and slip["max"] == pytest.approx(2.0)
    assert sched["late_over_1ms"] == 10  # 1.1 .. 2.0 ms
    # 0.1 ms per 100 ms of schedule: 60 ms of slip per minute.
    assert sched["drift"]["slope_ms_per_min"] == pytest.approx(60.0, rel=0.05)
    parts = sched["drift"]["parts"]
    assert len(parts) == 10 and sum(p["count"] for p in parts) == 21
    assert parts[0]["from_s"] == 0.0 and parts[0]["p50_ms"] < parts[-1]["p50_ms"]
    sent, scheduled = sched["latency_from_sent_ms"], sched["latency_from_scheduled_ms"]
    assert sent["ttft_ms"]["count"] == scheduled["ttft_ms"]["count"] == 20
    assert sent["ttft_ms"]["max"] == 5.0 and scheduled["ttft_ms"]["max"] == pytest.approx(5.0 + 1.9)
    assert sent["e2e_ms"]["min"] == 8.0 and scheduled["e2e_ms"]["min"] == 8.0
    # A closed loop has no schedule; a steady generator has no drift.
    assert schedule_figures([rec([5])], WINDOW, T0) is None
    steady = schedule_figures([rec([5], sent_ms=10 * i + 0.2, scheduled_ms=10 * i) for i in range(30)], WINDOW, T0)
    assert steady is not None and steady["drift"]["slope_ms_per_min"] == pytest.approx(0.0, abs=1e-3)


def test_per_turn_figures() -> None:
    records = []
    for s in range(4):
        for turn in (1, 2, 3):
            ok = not (s == 3 and turn == 3)
            records.append(rec([10 * turn + s, 10 * turn + s + 1], sent_ms=1000 * s + 100 * turn, turn=turn,
                               session=f"s{s}", prompt=100 * turn + s, ok=ok))
    records.append(rec([1, 2]))  # not a turn: ignored
    sessions = turn_figures(records, WINDOW, 3)
    assert sessions is not None
    assert (sessions["turns"], sessions["sessions_seen"], sessions["sessions_complete"]) == (3, 4, 3)
    t1, t2, t3 = sessions["per_turn"]
    assert (t1["turn"], t1["requests"], t1["failed"], t3["failed"]) == (1, 4, 0, 1)
    assert t1["ttft_p50_ms"] == pytest.approx(11.5) and t2["ttft_p50_ms"] == pytest.approx(21.5)
    assert t3["ttft_count"] == 3 and t3["ttft_p95_ms"] == pytest.approx(32.0 - 0.1 * 1.0, abs=0.11)
    assert (t1["prompt_tokens_mean"], t2["prompt_tokens_max"], t3["prompt_tokens_count"]) == (101.5, 203.0, 3)
    assert turn_figures([rec([1])], WINDOW, 3) is None
    doc = workload_sections(records, WINDOW, T0, turns=3, trace={"file": "t"})
    assert set(doc) == {"sessions", "trace"}  # no schedule: nothing was scheduled
    assert workload_sections([rec([1])], WINDOW, T0, turns=2)["sessions"]["per_turn"] == []
