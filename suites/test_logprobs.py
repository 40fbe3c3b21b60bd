"""logprobs: an entry per token with its log probability and the requested alternatives."""

from __future__ import annotations

import pytest

from chatprobe.checks import logprobs_findings
from chatprobe.conformance import CheckRecord, Target


@pytest.mark.feature("logprobs")
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "non_stream"])
def test_logprobs(chatprobe_target: Target, chatprobe_check: CheckRecord, stream: bool) -> None:
    chatprobe_target.require("logprobs", *(() if stream else ("non_stream",)))
    spec = chatprobe_target.chat("Say hello.", stream=stream, max_tokens=8, logprobs=True, top_logprobs=2)
    _, outcome = chatprobe_check.send(spec)
    chatprobe_check.add(logprobs_findings(outcome, spec.body))
