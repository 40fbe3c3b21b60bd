"""Generated requests: valid ones validate, invalid ones break exactly their rule,
and shrinking gives minimal examples."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from chatprobe.specs import bundled_dialects, validate
from chatprobe.strategies import (
    DEFAULT_MODEL,
    InvalidRequest,
    RequestSpec,
    breakages,
    invalid_requests,
    valid_requests,
)

DIALECTS = bundled_dialects()
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("dialect", DIALECTS)
def test_valid_requests_validate(dialect: str) -> None:
    @FAST
    @given(valid_requests(dialect))
    def check(spec: RequestSpec) -> None:
        assert validate(dialect, "request", spec.body) == []
        json.dumps(spec.body)  # JSON-serialisable as is
        assert spec.path.startswith("/") and "{" not in spec.path

    check()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_invalid_requests_break_exactly_their_rule(dialect: str) -> None:
    @FAST
    @given(invalid_requests(dialect))
    def check(bad: InvalidRequest) -> None:
        assert [e.rule for e in validate(dialect, "request", bad.body)] == [bad.rule], bad.description

    check()


def test_every_breakage_is_reachable_and_named_once() -> None:
    for dialect in DIALECTS:
        rules = [b.rule for b in breakages(dialect)]
        assert len(rules) == len(set(rules)), dialect
    openai = {b.rule for b in breakages("openai")}
    assert {
        "temperature.maximum", "top_p.maximum", "n.minimum", "stop.maxItems", "messages.minItems",
        "messages.role.enum", "top_logprobs.requires_logprobs", "top_logprobs.maximum",
        "stream_options.requires_stream", "presence_penalty.maximum", "logit_bias.maximum",
        "model.required", "messages.required", "temperature.type", "tool_choice.enum",
    } <= openai
    # data-driven applicability: Adaptive allows n = 0 and documents no temperature range
    adaptive = {b.rule: b.values for b in breakages("adaptive")}
    assert 0 not in adaptive["n.minimum"] and "temperature.maximum" not in adaptive
    assert {b.rule for b in breakages("elastic-completion")} == {"input.required", "input.type", "task_settings.type"}
    # an output cap below its minimum only where the document publishes one (seed 002: x >= 0)
    assert adaptive["max_tokens.minimum"] == (-1,)
    assert not any(r.startswith(("max_tokens.min", "max_completion_tokens.min")) for r in openai)
    assert {"max_ttft_ms.type", "session_id.type", "labels.type", "use_tools.type", "messages.content.type"} <= set(adaptive)
    # Elastic publishes no ranges: only structure and types
    assert not any(r.endswith((".minimum", ".maximum")) for r in (b.rule for b in breakages("elastic-chat")))


def test_a_range_is_broken_just_past_the_dialects_own_bound() -> None:
    """The first value (the one test_invalid_request_rejected sends) is just past the dialect's
    published bound: Anthropic's temperature is 0..1, so 1.01 — 2.01 would pass a server that
    checks OpenAI's 0..2 on the Messages endpoint."""
    values = {d: {b.rule: b.values for b in breakages(d)} for d in ("anthropic-messages", "openai", "openai-responses")}
    assert values["anthropic-messages"]["temperature.maximum"][0] == 1.01
    assert values["openai"]["temperature.maximum"][0] == values["openai-responses"]["temperature.maximum"][0] == 2.01
    assert all(v["top_p.maximum"][0] == 1.01 and v["temperature.minimum"][0] == -0.01 for v in values.values())


def test_conversation_tool_messages_answer_earlier_calls() -> None:
    @FAST
    @given(valid_requests("openai", features={"tools"}))
    def check(spec: RequestSpec) -> None:
        messages = spec.body["messages"]
        assert messages[-1]["role"] in {"user", "tool"}
        open_calls: set[str] = set()
        for message in messages:
            if message["role"] == "assistant":
                open_calls |= {c["id"] for c in message.get("tool_calls", [])}
            if message["role"] == "tool":
                assert message["tool_call_id"] in open_calls
        names = {t["function"]["name"] for t in spec.body.get("tools", [])}
        for message in messages:
            assert {c["function"]["name"] for c in message.get("tool_calls", [])} <= names

    check()


def test_features_limit_the_body() -> None:
    @FAST
    @given(valid_requests("openai", features={"temperature"}))
    def check(spec: RequestSpec) -> None:
        # the output cap is always there (a generated request must not tie a server up)
        assert set(spec.body) <= {"model", "messages", "temperature", "stream", "stream_options", "max_tokens"}

    check()


def test_path_and_stream_follow_the_profile() -> None:
    elastic = find(valid_requests("elastic-completion"), lambda s: True)
    assert (elastic.method, elastic.path, elastic.stream) == ("POST", "/_inference/completion/chatprobe-completion/_stream", True)
    chat = find(valid_requests("elastic-chat", models=st.just("my-endpoint")), lambda s: True)
    assert chat.path == "/_inference/chat_completion/my-endpoint/_stream" and "stream" not in chat.body
    streamed = find(valid_requests("openai"), lambda s: s.stream)
    assert streamed.body["stream"] is True


@pytest.mark.slow  # ~15 s of shrinking (tox -e slow)
def test_shrinking_gives_minimal_examples() -> None:
    minimal = find(valid_requests("openai"), lambda s: "temperature" in s.body)
    assert minimal.body == {"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": "a"}], "temperature": 0.0, "max_tokens": 1}
    high = find(valid_requests("openai"), lambda s: s.body.get("temperature", 0) > 1)
    assert high.body["temperature"] == 1.01 and len(high.body["messages"]) == 1
    bad = find(invalid_requests("openai"), lambda b: b.rule == "stop.maxItems")
    assert bad.body == {"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": "a"}], "max_tokens": 1, "stop": ["a", "b", "c", "d", "e"]}
