"""Usage, wherever it appears (non-stream bodies, requested stream usage, dialects that always
stream it): totals add up and prompt_tokens > 0 (generic checks), completion_tokens plausible for
the text and the events seen, exactly the cap for an answer the cap cut, and a stream and a
non-stream answer to the same request agreeing (seed 004, Usage Object; seed 000's usage chunk;
seed 002, Response: usage; seed 003, Returns)."""

from __future__ import annotations

import pytest

from chatprobe.checks import (
    deterministic_params,
    usage_agreement_findings,
    usage_findings,
    usage_of,
)
from chatprobe.conformance import CheckRecord, NotApplicable, Target
from chatprobe.findings import error

PROMPT = "Write two sentences about the sea."
LONG_PROMPT = "Write a long story about a lighthouse keeper, at least three paragraphs."
CAP = 6  # small enough that any real model's answer to LONG_PROMPT runs into it


@pytest.mark.feature("non_stream")
def test_usage_non_stream(chatprobe_target: Target, chatprobe_check: CheckRecord) -> None:
    chatprobe_target.require("non_stream")
    spec = chatprobe_target.chat(PROMPT, stream=False, max_tokens=40)
    ex, outcome = chatprobe_check.send(spec)
    if outcome.ok and (not isinstance(outcome.response, dict) or not isinstance(outcome.response.get("usage"), dict)):
        chatprobe_check.add([error("usage.missing", "the non-stream response carries no usage")], ex)
    chatprobe_check.add(usage_findings(outcome, spec.body), ex)


@pytest.mark.feature("stream_usage")
def test_usage_stream(chatprobe_target: Target, chatprobe_check: CheckRecord) -> None:
    chatprobe_target.require("stream_usage")
    spec = chatprobe_target.chat(PROMPT, max_tokens=40, include_usage=True)
    ex, outcome = chatprobe_check.send(spec)
    chatprobe_check.add(usage_findings(outcome, spec.body), ex)


def test_usage_always_streamed(chatprobe_target: Target, chatprobe_check: CheckRecord) -> None:
    """Dialects whose streams always end with usage (Elastic chat_completion, seed 000's example:
    the final chunk with choices: [] and usage): it comes, adds up, and is exactly the cap for an
    answer the cap cut."""
    profile = chatprobe_target.profile
    if profile.framing.usage_in_stream != "always":
        raise NotApplicable(f"{profile.dialect} streams usage {profile.framing.usage_in_stream.replace('_', ' ')}, not always")
    spec = chatprobe_target.chat(LONG_PROMPT, max_tokens=CAP, **deterministic_params(profile))
    ex, outcome = chatprobe_check.send(spec)
    chatprobe_check.add(usage_findings(outcome, spec.body), ex)


@pytest.mark.feature("stream_usage")
def test_usage_stream_agrees_with_non_stream(chatprobe_target: Target, chatprobe_check: CheckRecord) -> None:
    """The same deterministic request, streamed (with usage) and not: the same prompt_tokens, and
    the same completion_tokens when the cap cut both answers."""
    target = chatprobe_target
    target.require("non_stream")
    if target.profile.framing.usage_in_stream == "never":
        raise NotApplicable(f"{target.profile.dialect} streams no usage")
    if target.profile.framing.usage_in_stream == "on_request":
        target.require("stream_usage")
    fixed = deterministic_params(target.profile)
    plain_spec = target.chat(LONG_PROMPT, stream=False, max_tokens=CAP, **fixed)
    stream_spec = target.chat(LONG_PROMPT, stream=True, max_tokens=CAP, include_usage=True, **fixed)
    _, plain = chatprobe_check.send(plain_spec)
    ex, streamed = chatprobe_check.send(stream_spec)
    if chatprobe_check.errors():
        return  # a request failed: its findings are the verdict
    if usage_of(plain) is None or usage_of(streamed) is None:
        missing = "non-stream" if usage_of(plain) is None else "stream"
        raise NotApplicable(f"could not be judged: the {missing} answer carries no usage (test_usage_* report that)")
    chatprobe_check.add(usage_agreement_findings(streamed, plain), ex)
