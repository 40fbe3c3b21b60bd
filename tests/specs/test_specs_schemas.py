"""The schemas themselves, and hand-written wrong instances rejected for the right rule."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from chatprobe.paths import specs_dir
from chatprobe.specs import SCHEMA_BASE, iter_bundled_schemas, load_profile, validate, validator

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def chunk(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "finish_reason": None}],
    }
    return {**base, **over}


def _keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node).union(*(_keys(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_keys(v) for v in node))
    return set()


def test_every_schema_is_2020_12_with_its_id_and_a_source() -> None:
    schemas = dict(iter_bundled_schemas())
    on_disk = sorted(specs_dir().rglob("*.schema.json"))
    assert len(schemas) == len(on_disk) >= 20
    for path in on_disk:
        schema = json.loads(path.read_text(encoding="utf-8"))
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"] == SCHEMA_BASE + path.relative_to(specs_dir()).as_posix()
        jsonschema.Draft202012Validator.check_schema(schema)
        assert "nullable" not in _keys(schema), f"{path}: OpenAPI's nullable is not JSON Schema"
        if path.parent == specs_dir():
            # chatprobe's own documents (profile, findings, summary, plan): described, not cited
            assert schema.get("description") or schema.get("$comment") or schema.get("title"), path
        else:
            # the dialects' API schemas: each says which document it comes from (a seed, protocol-notes,
            # or the vendor's published API reference for the typed-event dialects)
            text = path.read_text(encoding="utf-8")
            assert "seed 00" in text or "protocol-notes" in schema["$comment"] or "API reference" in schema["$comment"], path


def test_every_bundled_kind_compiles() -> None:
    for dialect in ("openai", "elastic-chat", "elastic-completion", "adaptive", "atoma"):
        profile = load_profile(dialect)
        for kind, uri in profile.schemas.items():
            if uri is not None:
                assert validator(dialect, kind) is validator(dialect, kind)  # compiled once


WRONG_REQUESTS: list[tuple[str, dict[str, Any], str, str]] = [
    # dialect, body, rule, pointer
    ("openai", {**CHAT, "temperature": 2.5}, "temperature.maximum", "/temperature"),
    ("openai", {**CHAT, "temperature": -1}, "temperature.minimum", "/temperature"),
    ("openai", {**CHAT, "top_p": 1.5}, "top_p.maximum", "/top_p"),
    ("openai", {**CHAT, "n": 0}, "n.minimum", "/n"),
    ("openai", {**CHAT, "presence_penalty": 2.5}, "presence_penalty.maximum", "/presence_penalty"),
    ("openai", {**CHAT, "frequency_penalty": -3}, "frequency_penalty.minimum", "/frequency_penalty"),
    ("openai", {**CHAT, "stop": ["a", "b", "c", "d", "e"]}, "stop.maxItems", "/stop"),
    ("openai", {**CHAT, "stop": 7}, "stop.type", "/stop"),
    ("openai", {**CHAT, "messages": []}, "messages.minItems", "/messages"),
    ("openai", {"model": "m"}, "messages.required", ""),
    ("openai", {"messages": CHAT["messages"]}, "model.required", ""),
    ("openai", {**CHAT, "messages": [{"role": "wizard", "content": "x"}]}, "messages.role.enum", "/messages/0/role"),
    ("openai", {**CHAT, "messages": [{"role": "tool", "content": "x", "tool_call_id": 7}]}, "messages.tool_call_id.type", "/messages/0/tool_call_id"),
    ("openai", {**CHAT, "messages": [{"role": "user"}]}, "messages.content.required", "/messages/0"),
    ("openai", {**CHAT, "top_logprobs": 2}, "top_logprobs.requires_logprobs", ""),
    ("openai", {**CHAT, "top_logprobs": 2, "logprobs": False}, "top_logprobs.requires_logprobs", "/logprobs"),
    ("openai", {**CHAT, "top_logprobs": 21, "logprobs": True}, "top_logprobs.maximum", "/top_logprobs"),
    ("openai", {**CHAT, "stream_options": {"include_usage": True}}, "stream_options.requires_stream", ""),
    ("openai", {**CHAT, "stream": False, "stream_options": {}}, "stream_options.requires_stream", "/stream"),
    ("openai", {**CHAT, "logit_bias": {"50256": -101}}, "logit_bias.minimum", "/logit_bias/50256"),
    ("openai", {**CHAT, "tool_choice": "sometimes"}, "tool_choice.enum", "/tool_choice"),
    ("openai", {**CHAT, "tool_choice": {"type": "function"}}, "tool_choice.function.required", "/tool_choice"),
    ("openai", {**CHAT, "response_format": {"type": "xml"}}, "response_format.type.enum", "/response_format/type"),
    ("openai", {**CHAT, "tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools.function.name.pattern", "/tools/0/function/name"),
    ("atoma", {**CHAT, "temperature": 9}, "temperature.maximum", "/temperature"),
    ("atoma", {**CHAT, "function_call": "always"}, "function_call.enum", "/function_call"),
    ("elastic-chat", {"messages": [{"role": "developer", "content": "x"}]}, "messages.role.enum", "/messages/0/role"),
    ("elastic-chat", {"messages": CHAT["messages"], "stop": "END"}, "stop.type", "/stop"),
    ("elastic-chat", {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages.content.type.const", "/messages/0/content/0/type"),
    ("elastic-completion", {"input": 3}, "input.type", "/input"),
    ("elastic-completion", {}, "input.required", ""),
    ("adaptive", {**CHAT, "n": -1}, "n.minimum", "/n"),
    ("adaptive", {**CHAT, "session_id": "abc"}, "session_id.pattern", "/session_id"),
    ("adaptive", {**CHAT, "labels": {"k": 1}}, "labels.type", "/labels/k"),
    ("adaptive", {**CHAT, "tools": [{"type": "function"}]}, "tools.id.required", "/tools/0"),
]


@pytest.mark.parametrize(("dialect", "body", "rule", "pointer"), WRONG_REQUESTS, ids=[f"{d}-{r}" for d, _, r, _ in WRONG_REQUESTS])
def test_wrong_request_fails_its_rule_only(dialect: str, body: dict[str, Any], rule: str, pointer: str) -> None:
    errors = validate(dialect, "request", body)
    assert [(e.rule, e.pointer) for e in errors] == [(rule, pointer)]


def test_silent_documents_stay_permissive() -> None:
    # seed 000 / 002 publish no ranges: a hot temperature is the server's business there
    assert validate("elastic-chat", "request", {"messages": CHAT["messages"], "temperature": 5}) == []
    assert validate("adaptive", "request", {**CHAT, "temperature": 5, "n": 0}) == []


def test_nulls_are_legal_where_openai_says_nullable() -> None:
    body = {**CHAT, "temperature": None, "stop": None, "n": None, "logprobs": None, "top_logprobs": None, "stream_options": None}
    assert validate("openai", "request", body) == []


@pytest.mark.parametrize(
    ("instance", "rule"),
    [
        (chunk(object="chat.completion"), "object.const"),
        ({k: v for k, v in chunk().items() if k != "created"}, "created.required"),
        (chunk(choices=[{"index": 0, "delta": {}, "finish_reason": "end"}]), "choices.finish_reason.enum"),
        (chunk(choices=[{"index": 0, "delta": {"tool_calls": [{"id": "c", "function": {"arguments": "{}"}}]}}]), "choices.delta.tool_calls.index.required"),
        (chunk(choices=[{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": {"a": 1}}}]}}]), "choices.delta.tool_calls.function.arguments.type"),
        (chunk(choices=[], usage={"prompt_tokens": 1, "completion_tokens": 2}), "usage.total_tokens.required"),
    ],
)
def test_wrong_openai_chunk(instance: dict[str, Any], rule: str) -> None:
    assert [e.rule for e in validate("openai", "chunk", instance)] == [rule]


def test_chunk_legal_variants() -> None:
    assert validate("openai", "chunk", chunk(usage=None, x_vendor={"a": 1})) == []  # unknown fields are legal
    usage_chunk = chunk(choices=[], usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3})
    assert validate("openai", "chunk", usage_chunk) == []
    no_created = {k: v for k, v in chunk().items() if k != "created"}
    assert validate("elastic-chat", "chunk", {"chat_completion": no_created}) == []
    assert [e.rule for e in validate("elastic-chat", "chunk", no_created)] == ["chat_completion.required"]
    no_object = {k: v for k, v in chunk().items() if k != "object"}
    assert validate("adaptive", "chunk", no_object) == []


@pytest.mark.parametrize(
    ("dialect", "instance", "valid"),
    [
        ("openai", {"error": {"message": "bad", "type": "invalid_request_error", "param": "temperature", "code": None}}, True),
        ("openai", {"detail": "bad"}, False),
        ("openai", {"error": "bad"}, False),
        ("openai", {"message": "bad", "type": "x"}, False),
        ("elastic-chat", {"error": {"code": "bad", "message": "m", "param": None, "type": "t"}}, True),
        ("elastic-chat", {"error": {"type": "status_exception", "reason": "r", "root_cause": [{"type": "x", "reason": "r"}]}, "status": 400}, True),
        ("elastic-chat", {"error": "text", "status": 400}, True),
        ("elastic-chat", {"error": "text"}, False),
        ("elastic-completion", {"error": {"type": "t", "reason": "r"}, "status": 404}, True),
        ("elastic-completion", {"error": {"message": "m", "type": "t"}}, False),
        ("adaptive", {"error": {"message": "m", "type": "t"}}, True),
        ("atoma", {"error": {"message": "m"}}, False),
    ],
)
def test_error_envelopes(dialect: str, instance: dict[str, Any], valid: bool) -> None:
    assert (validate(dialect, "error", instance) == []) is valid


def test_adaptive_response_requires_its_own_fields() -> None:
    rules = [e.rule for e in validate("adaptive", "response", {"id": "x", "created": 1, "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})]
    assert rules == ["session_id.required"]


@pytest.mark.parametrize(("value", "valid"), [("30s", True), ("2m", True), ("500ms", True), ("-1", True), ("0", True), ("1x", False), ("-2", False), ("", False)])
def test_elastic_timeout(value: str, valid: bool) -> None:
    schema = {"$ref": "https://chatprobe.dev/specs/common/elasticsearch.schema.json#/$defs/timeout"}
    registry = load_profile("elastic-chat")._store.py_registry
    assert jsonschema.Draft202012Validator(schema, registry=registry).is_valid(value) is valid


def test_long_instances_give_short_messages() -> None:
    (error,) = validate("openai", "request", {**CHAT, "stop": {"k": "x" * 10_000}})
    assert error.rule == "stop.type" and len(error.message) <= 300
