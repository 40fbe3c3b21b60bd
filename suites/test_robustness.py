"""Robustness of the harness against the target: a stall is reported within the timeout
(http.timeout), a huge frame is bounded (sse.frame_too_large), a reset is reported (http.reset).
Every exchange of every check goes through these checks; here a longer normal stream does."""

from __future__ import annotations

from chatprobe.conformance import CheckRecord, Target
from chatprobe.findings import error

SLACK_S = 2.0  # scheduling slack on a loaded machine


def test_long_stream_bounded(chatprobe_target: Target, chatprobe_check: CheckRecord) -> None:
    spec = chatprobe_target.chat("Write a long story about a lighthouse keeper.", max_tokens=128)
    ex, _ = chatprobe_check.send(spec)
    limits = chatprobe_target.limits
    elapsed_s = ((ex.t_end_ns or ex.t_sent_ns) - ex.t_sent_ns) / 1e9
    if elapsed_s > limits.total_timeout_s + SLACK_S:
        chatprobe_check.add([error("http.timeout", f"the exchange took {elapsed_s:.1f} s, over the {limits.total_timeout_s:g} s bound")], ex)
    if len(ex.body) > limits.capture_bytes:
        chatprobe_check.add([error("http.body_too_large", f"{len(ex.body)} bytes kept, over the capture limit")], ex)
