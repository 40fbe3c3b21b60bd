"""The one request builder's mapping of the suites' OpenAI-named parameters to OpenAI's Responses
(chatprobe.dialects.typed_body) and its inverse for the checks (canonical_request): logprobs."""

from __future__ import annotations

from chatprobe.dialects import canonical_request, conversation_request
from chatprobe.specs import load_profile

HELLO = [{"role": "user", "content": "Say hello."}]
INCLUDE = "message.output_text.logprobs"


def test_logprobs_are_asked_through_include() -> None:
    profile = load_profile("openai-responses")
    spec = conversation_request(profile, HELLO, model="m", max_tokens=16, stream=True, logprobs=True, top_logprobs=2)
    assert spec.body["include"] == [INCLUDE] and spec.body["top_logprobs"] == 2
    assert "logprobs" not in spec.body  # not a Responses field
    canonical = canonical_request(profile, spec.body)
    assert canonical["logprobs"] is True and canonical["top_logprobs"] == 2


def test_a_callers_own_include_is_kept_in_either_order() -> None:
    profile = load_profile("openai-responses")
    for params in ({"logprobs": True, "include": ["reasoning.encrypted_content"]},
                   {"include": ["reasoning.encrypted_content"], "logprobs": True}):
        spec = conversation_request(profile, HELLO, model="m", max_tokens=16, stream=False, **params)
        assert sorted(spec.body["include"]) == sorted(["reasoning.encrypted_content", INCLUDE]), params


def test_no_logprobs_no_include() -> None:
    profile = load_profile("openai-responses")
    spec = conversation_request(profile, HELLO, model="m", max_tokens=16, stream=True, logprobs=False)
    assert "include" not in spec.body and "logprobs" not in canonical_request(profile, spec.body)


def test_messages_has_no_logprobs() -> None:
    profile = load_profile("anthropic-messages")
    spec = conversation_request(profile, HELLO, model="m", max_tokens=16, stream=True, logprobs=True, top_logprobs=2)
    assert not {"include", "logprobs", "top_logprobs"} & set(spec.body)
