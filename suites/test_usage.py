"""Usage: totals add up, and completion_tokens is plausible for the text that came back."""

from __future__ import annotations

from chatprobe.checks import usage_findings
from chatprobe.conformance import CheckRecord, Target
from chatprobe.findings import error


def test_usage_non_stream(chatprobe_target: Target, chatprobe_check: CheckRecord) -> None:
    chatprobe_target.require("non_stream")
    spec = chatprobe_target.chat("Write two sentences about the sea.", stream=False, max_tokens=40)
    _, outcome = chatprobe_check.send(spec)
    if outcome.ok and (not isinstance(outcome.response, dict) or not isinstance(outcome.response.get("usage"), dict)):
        chatprobe_check.add([error("usage.missing", "the non-stream response carries no usage")])
    chatprobe_check.add(usage_findings(outcome, spec.body))


def test_usage_stream(chatprobe_target: Target, chatprobe_check: CheckRecord) -> None:
    chatprobe_target.require("stream_usage")
    spec = chatprobe_target.chat("Write two sentences about the sea.", max_tokens=40, include_usage=True)
    _, outcome = chatprobe_check.send(spec, feature="stream_usage")
    chatprobe_check.add(usage_findings(outcome, spec.body))
