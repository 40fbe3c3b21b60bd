"""`chatprobe load` on the typed-event dialects (anthropic-messages, openai-responses) against
the reference server: the metrics of the chat dialects, read off typed events, matched with the
server's truth records, and the typed streams' failures counted with their reasons
(tests/load/test_load_run.py's per-dialect run covers what every dialect shares)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import read_summary, run_load

TYPED = ["anthropic-messages", "openai-responses"]
TOKENS = 16  # (Responses' smallest max_output_tokens)
ARGS = ["--max-tokens", str(TOKENS), "--ignore-eos", "--no-progress", "--users", "2", "--duration", "1.5"]


@pytest.mark.parametrize("dialect", TYPED)
def test_a_typed_run_measures_as_a_chat_run(dialect: str, tmp_path: Path) -> None:
    # the embedded reference server: its truth records judge the run's figures
    proc = run_load(["--dialect", dialect, "--server-ttft-ms", "5", "--server-itl-ms", "1", *ARGS], tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    doc = read_summary(tmp_path)
    s = doc["summary"]
    req = s["requests"]
    assert req["total"] > 0 and req["failed"] == 0, req
    assert doc["protocol_under_load"]["rules"] == []  # the reference server's streams are well-formed
    lat = s["latency_ms"]
    # TTFT is the first text delta, paced by the server (5 ms); the opening events
    # (message_start, response.created ...) come at once: they are the first byte, not a token
    assert lat["ttft_ms"]["count"] == req["ok"] and lat["ttft_ms"]["p50"] >= 5.0
    assert lat["ttfb_ms"]["p50"] < lat["ttft_ms"]["p50"] - 3
    # one ITL per delta event after the first, TPOT from them, E2E at the last delta
    assert lat["itl_ms"]["count"] == req["ok"] * (TOKENS - 1)
    assert 0.5 <= lat["tpot_ms"]["p50"] <= 5 and lat["e2e_ms"]["p50"] >= lat["ttft_ms"]["p50"]
    assert s["throughput"]["output_tokens_per_s"] > 0
    # output tokens from the stream's usage (ignore_eos honoured: exactly the cap)
    lengths = doc["workload"]["lengths"]
    assert lengths["output"]["compared"] == req["total"] and lengths["output"]["mismatches"] == 0, lengths
    # every request matched with the server's truth record (X-Request-Id): the error is small
    error = doc["measurement_error"]
    assert error["status"] == "measured" and error["matched"] == req["ok"] and error["unmatched"] == 0, error
    assert abs(error["itl_ms"]["p50"]) < 0.5


@pytest.mark.parametrize(("dialect", "fault", "reason"), [
    ("anthropic-messages", "messages-midstream-error", "stream.error_event"),
    pytest.param("anthropic-messages", "messages-no-message-stop", "stream.terminator_missing", marks=pytest.mark.slow),
    pytest.param("openai-responses", "responses-midstream-error", "stream.error_event", marks=pytest.mark.slow),
    pytest.param("openai-responses", "responses-no-completed", "stream.terminator_missing", marks=pytest.mark.slow),
])
def test_typed_stream_errors_are_failed_requests_with_reasons(dialect: str, fault: str, reason: str,
                                                              tmp_path: Path) -> None:
    proc = run_load(["--dialect", dialect, "--server-fault", fault, "--server-ttft-ms", "5", "--server-itl-ms", "1",
                     *ARGS], tmp_path, timeout=60)
    assert proc.returncode == 1 and "nothing was measured" in proc.stderr, proc.stderr
    req = read_summary(tmp_path)["summary"]["requests"]
    assert req["total"] > 0 and req["ok"] == 0 and set(req["failed_by_reason"]) == {reason}, req


@pytest.mark.slow  # a load run of ~6 s (tox -e slow)
def test_a_protocol_finding_under_load_is_counted_not_failed(tmp_path: Path) -> None:
    """A text delta after its block stopped: the user got the tokens; the finding is reported."""
    proc = run_load(["--dialect", "anthropic-messages", "--server-fault", "messages-delta-after-stop",
                     "--server-ttft-ms", "5", "--server-itl-ms", "1", *ARGS], tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    doc = read_summary(tmp_path)
    assert doc["summary"]["requests"]["failed"] == 0
    assert [r["rule"] for r in doc["protocol_under_load"]["rules"]] == ["stream.event_order"]
