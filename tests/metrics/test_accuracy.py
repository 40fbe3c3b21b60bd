"""The generator's error against the reference server's truth, matched by request id."""

from __future__ import annotations

import pytest

from chatprobe.metrics import RequestRecord
from chatprobe.metrics.accuracy import measurement_error, not_measured

MS = 1_000_000


def _record(rid: str, sent: int, arrivals: list[int], ok: bool = True) -> RequestRecord:
    r = RequestRecord(request_id=rid, dialect="openai", t_sent_ns=sent, ok=ok, t_end_ns=arrivals[-1] if arrivals else sent)
    for t in arrivals:
        r.add_token_event(t)
    return r


def _truth(received: int, writes: list[int]) -> dict[str, object]:
    return {"received_ns": received, "token_ns": writes}


def test_errors_split_into_send_and_delivery() -> None:
    # sent at 0; the server got it at 0.3 ms, wrote tokens at 50, 55, 60 ms; the client read
    # them 0.2, 0.2 and 0.7 ms later
    records = [_record("a", 0, [50_200_000, 55_200_000, 60_700_000])]
    truth = {"a": _truth(300_000, [50 * MS, 55 * MS, 60 * MS])}
    m = measurement_error(records, truth)
    assert m.matched == 1 and m.unmatched == 0
    assert m.ttft_error_ms == [pytest.approx(50.2 - 49.7)]
    assert m.send_ms == [pytest.approx(0.3)] and m.delivery_ms == [pytest.approx(0.2)]
    assert m.itl_error_ms == [pytest.approx(0.0), pytest.approx(0.5)]
    assert m.server_itl_ms == [pytest.approx(5.0), pytest.approx(5.0)]
    block = m.to_json()
    assert block["ttft_ms"]["p50"] == pytest.approx(0.5) and block["truth"]["ttft_ms"]["p50"] == pytest.approx(49.7)


def test_only_matched_successful_requests_of_the_window() -> None:
    records = [_record("a", 0, [10 * MS]), _record("b", 0, [10 * MS], ok=False), _record("gone", 0, [10 * MS]),
               _record("late", 0, [90 * MS]), _record("early", -5 * MS, [10 * MS])]
    truth = {k: _truth(0, [9 * MS]) for k in ("a", "b", "late", "early")}
    m = measurement_error(records, truth, window=(0, 50 * MS), sent_after_ns=0)
    assert m.matched == 1 and m.unmatched == 1  # "gone": the server's ring dropped it
    # gap counts that differ (one event carried two tokens) give no per-gap error
    two = measurement_error([_record("a", 0, [10 * MS, 11 * MS])], {"a": _truth(0, [9 * MS, 9 * MS, 10 * MS])})
    assert two.itl_error_ms == [] and two.server_itl_ms == [0.0, pytest.approx(1.0)]


def test_not_measured_says_why() -> None:
    block = not_measured("no truth")
    assert block["status"] == "not measured" and "no truth" in block["sentence"]
