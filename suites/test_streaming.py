"""Streaming: framing, chunk schema and stream rules (via the stream validator), terminator, usage chunk."""

from __future__ import annotations

import pytest

from chatprobe.checks import usage_findings
from chatprobe.conformance import CheckRecord, Target

LONG_PROMPT = "Write three sentences about rivers."


def test_stream_without_usage_option(chatprobe_target: Target, chatprobe_check: CheckRecord) -> None:
    """A stream that does not ask for usage: no usage chunk may come (where usage is on request)."""
    spec = chatprobe_target.chat(LONG_PROMPT, max_tokens=48)
    chatprobe_check.send(spec)


@pytest.mark.feature("stream_usage")
def test_stream_usage_chunk(chatprobe_target: Target, chatprobe_check: CheckRecord) -> None:
    """stream_options.include_usage: one final chunk with choices: [] and totals that add up."""
    chatprobe_target.require("stream_usage")
    spec = chatprobe_target.chat(LONG_PROMPT, max_tokens=48, include_usage=True)
    ex, outcome = chatprobe_check.send(spec)
    chatprobe_check.add(usage_findings(outcome, spec.body), ex)


def test_stream_non_ascii_text(chatprobe_target: Target, chatprobe_check: CheckRecord) -> None:
    """Non-ASCII text survives the stream (UTF-8 split across reads)."""
    spec = chatprobe_target.chat("say: café über naïve déjà — repeat these words exactly", max_tokens=32)
    chatprobe_check.send(spec)
