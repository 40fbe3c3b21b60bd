"""Parameters: max_tokens and finish_reason length, stop sequences, n choices, sampling ranges."""

from __future__ import annotations

import pytest

from chatprobe.checks import choices_of, max_tokens_findings, n_findings, stop_findings
from chatprobe.conformance import CheckRecord, NotApplicable, Target

# The reference server echoes what follows "say:"; a real model follows the same instruction.
STOP_PROMPT = "Repeat exactly the words after the colon and nothing else. say: one two STOP three four"
LONG_PROMPT = "Write a long story about a lighthouse keeper, at least three paragraphs."


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "non_stream"])
def test_max_tokens(chatprobe_target: Target, chatprobe_check: CheckRecord, stream: bool) -> None:
    chatprobe_target.require("max_tokens", *(() if stream else ("non_stream",)))
    spec = chatprobe_target.chat(LONG_PROMPT, stream=stream, max_tokens=5, include_usage=True if stream else None)
    _, outcome = chatprobe_check.send(spec, feature="max_tokens")
    chatprobe_check.add(max_tokens_findings(outcome, spec.body, chatprobe_target.profile))


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "non_stream"])
def test_stop(chatprobe_target: Target, chatprobe_check: CheckRecord, stream: bool) -> None:
    chatprobe_target.require("stop", *(() if stream else ("non_stream",)))
    # A control without `stop` first: a target that never writes the word even unasked (a mock,
    # a model that ignores the instruction) gives this check nothing to judge: n/a, not a pass.
    _, control = chatprobe_check.send(chatprobe_target.chat(STOP_PROMPT, stream=stream, max_tokens=64))
    if chatprobe_check.errors():
        return  # the control request itself failed: its findings are the verdict
    if not any("STOP" in choice.text for choice in choices_of(control)):
        raise NotApplicable("the target did not write 'STOP' when asked without a stop parameter: nothing to judge")
    stop: object = ["STOP"] if "array" in chatprobe_target.profile.stop_forms else "STOP"
    spec = chatprobe_target.chat(STOP_PROMPT, stream=stream, stop=stop, max_tokens=64)
    _, outcome = chatprobe_check.send(spec, feature="stop")
    chatprobe_check.add(stop_findings(outcome, spec.body, expect_stop=True))


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "non_stream"])
def test_n_choices(chatprobe_target: Target, chatprobe_check: CheckRecord, stream: bool) -> None:
    chatprobe_target.require("n", *(() if stream else ("non_stream",)))
    spec = chatprobe_target.chat("Name a colour.", stream=stream, n=2, max_tokens=16)
    _, outcome = chatprobe_check.send(spec, feature="n")
    chatprobe_check.add(n_findings(outcome, spec.body))


@pytest.mark.parametrize(
    "params",
    [{"temperature": 0}, {"temperature": 2}, {"top_p": 0.5}, {"top_p": 1}, {"temperature": 0.7, "top_p": 0.9}],
    ids=["temperature_0", "temperature_2", "top_p_0.5", "top_p_1", "both"],
)
def test_sampling_in_range_accepted(chatprobe_target: Target, chatprobe_check: CheckRecord, params: dict[str, float]) -> None:
    chatprobe_target.require(*params)
    spec = chatprobe_target.chat("Say hi.", max_tokens=8, **params)
    chatprobe_check.send(spec, feature=next(iter(params)))
