"""The HTTP-level checks of chatprobe.checks on synthetic exchanges: auth status, unknown paths,
unknown models, invalid query parameters and tool_choice finish reasons, per dialect document."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chatprobe.checks import (
    Outcome,
    auth_findings,
    error_envelope_findings,
    invalid_query_findings,
    response_body_findings,
    tool_call_findings,
    unknown_model_findings,
    unknown_path_findings,
)
from chatprobe.exchange import Exchange
from chatprobe.specs import load_profile

OPENAI_ERROR = {"error": {"message": "nope", "type": "invalid_request_error", "param": None, "code": None}}


def ex(status: int | None, body: Any = None, headers: dict[str, str] | None = None, dialect: str = "openai") -> Exchange:
    raw = body if isinstance(body, bytes) else json.dumps(body if body is not None else OPENAI_ERROR).encode()
    return Exchange(
        dialect, "POST", "http://127.0.0.1:1/v1/chat/completions", {}, b"{}", False,
        status=status, response_headers=[("content-type", "application/json"), *(headers or {}).items()], body=raw,
    )  # fmt: skip


def rules(findings: list[Any]) -> dict[str, str]:
    return {f.rule: str(f.severity) for f in findings}


@pytest.mark.parametrize(
    ("dialect", "status", "expected"),
    [
        ("openai", 401, {}),
        ("openai", 403, {"http.auth_status": "error"}),  # OpenAI documents 401; its 403 is a region refusal
        ("openai", 400, {"http.auth_status": "error"}),
        ("atoma", 401, {}),
        ("atoma", 403, {"http.auth_status": "error"}),  # seed 003 / protocol-notes: 401 otherwise
        ("adaptive", 401, {}),  # seed 002 says nothing: 401 and 403 both pass
        ("adaptive", 403, {}),
        ("adaptive", 400, {"http.auth_status": "warning"}),
        ("openai", 200, {"http.auth_not_enforced": "error"}),
        ("openai", 500, {"validation.server_error": "error"}),
    ],
)
def test_auth_status(dialect: str, status: int, expected: dict[str, str]) -> None:
    body = {"id": "x", "choices": []} if status == 200 else None
    assert rules(auth_findings(ex(status, body), dialect, "a request with a wrong API key")) == expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [(404, {}), (405, {}), (400, {}), (401, {}), (200, {"http.unknown_path": "error"}),
     (500, {"http.unknown_path": "error"}), (307, {"http.unknown_path": "warning"})],
)  # fmt: skip
def test_unknown_path(status: int, expected: dict[str, str]) -> None:
    assert rules(unknown_path_findings(ex(status, {"ok": True}, {"location": "/x"}), "POST /v1/x")) == expected


def test_unknown_path_without_response_is_a_transport_finding() -> None:
    silent = ex(None, b"")
    silent.transport_error, silent.transport_detail = "timeout", "no byte for 1 s"
    assert rules(unknown_path_findings(silent, "POST /v1/x")) == {"http.timeout": "error"}


@pytest.mark.parametrize(
    ("dialect", "status", "expected"),
    [
        ("openai", 404, {}),
        ("openai", 400, {"http.unknown_model": "error"}),  # OpenAI's reference: 404
        ("openai", 200, {"http.unknown_model": "warning"}),  # a server may serve every id
        ("openai", 500, {"validation.server_error": "error"}),
        ("atoma", 400, {}),  # seed 003 gives no status: any 4xx with the envelope
        ("adaptive", 422, {}),
        ("adaptive", 200, {"http.unknown_model": "warning"}),
    ],
)
def test_unknown_model(dialect: str, status: int, expected: dict[str, str]) -> None:
    body = {"id": "x", "choices": []} if status == 200 else None
    found = unknown_model_findings(ex(status, body, dialect=dialect), dialect, "chatprobe-no-such-model-1")
    assert rules(found) == expected


def test_unknown_model_error_body_in_200_is_an_error() -> None:
    found = unknown_model_findings(ex(200, OPENAI_ERROR), "openai", "m")
    assert rules(found) == {"response.error_in_200": "error"}


@pytest.mark.parametrize(
    ("dialect", "body", "expected"),
    [
        # an answer that carries an error member of its own is an answer: a Responses object has
        # error null (LiteLLM 1.106.2's mock answers an invalid request with one)
        ("openai-responses", {"id": "resp_1", "object": "response", "status": "completed", "error": None, "output": []},
         {"validation.accepted_invalid": "error"}),
        ("openai-responses", {"error": {"message": "no", "type": "invalid_request_error", "param": None, "code": None}},
         {"response.error_in_200": "error"}),
        # Messages: the error shape, with or without its top-level type, is an error body
        ("anthropic-messages", {"type": "error", "error": {"type": "invalid_request_error", "message": "no"}},
         {"response.error_in_200": "error"}),
        ("anthropic-messages", {"error": {"type": "invalid_request_error", "message": "no"}}, {"response.error_in_200": "error"}),
        ("anthropic-messages", {"type": "message", "content": [], "stop_reason": "end_turn"}, {"validation.accepted_invalid": "error"}),
        ("openai", OPENAI_ERROR, {"response.error_in_200": "error"}),
        ("openai", {"choices": [], "error": None}, {"validation.accepted_invalid": "error"}),
    ],
)
def test_an_error_body_in_200_is_told_from_an_answer(dialect: str, body: Any, expected: dict[str, str]) -> None:
    assert rules(error_envelope_findings(ex(200, body, dialect=dialect), dialect)) == expected
    answer = "validation.accepted_invalid" in expected
    assert [f.rule for f in response_body_findings(json.dumps(body).encode(), 200, load_profile(dialect), check_schema=False)[0]] == (
        [] if answer else ["response.error_in_200"])


def test_invalid_query_parameter() -> None:
    accepted = invalid_query_findings(ex(200, {"choices": []}), "elastic-chat", "timeout", "soon")
    assert rules(accepted) == {"validation.accepted_invalid": "error"}
    assert accepted[0].evidence["query"] == {"timeout": "soon"}
    es_error = {"error": {"type": "illegal_argument_exception", "reason": "failed to parse"}, "status": 400}
    assert invalid_query_findings(ex(400, es_error), "elastic-chat", "timeout", "soon") == []


NAMED = {"type": "function", "function": {"name": "get_time"}}
TOOLS = [{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]


def outcome(finish: str | None, calls: list[dict[str, Any]]) -> Outcome:
    message = {"role": "assistant", "content": None, "tool_calls": calls}
    return Outcome(response={"choices": [{"index": 0, "message": message, "finish_reason": finish}]})


CALL = {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}


@pytest.mark.parametrize(
    ("tool_choice", "finish", "calls", "expected"),
    [
        (NAMED, "stop", [CALL], {}),  # OpenAI's own answer for a forced call
        (NAMED, "tool_calls", [CALL], {}),
        (NAMED, "stop", [], {"tools.choice_ignored": "error"}),
        ("required", "stop", [CALL], {"tools.finish_reason": "error"}),
        ("required", "length", [CALL], {}),  # the cap cut it
        ("auto", "stop", [], {}),  # answering in text is legal under auto
        ("auto", "tool_calls", [CALL], {}),
        ("none", "tool_calls", [CALL], {"tools.choice_ignored": "error"}),
    ],
)
def test_tool_choice_finish(tool_choice: Any, finish: str, calls: list[dict[str, Any]], expected: dict[str, str]) -> None:
    request = {"messages": [], "tools": TOOLS, "tool_choice": tool_choice}
    assert rules(tool_call_findings(outcome(finish, calls), request)) == expected


def test_call_cut_by_the_cap_is_not_malformed() -> None:
    cut = {**CALL, "function": {"name": "get_time", "arguments": '{"zo'}}
    request = {"messages": [], "tools": TOOLS, "tool_choice": "auto"}
    assert tool_call_findings(outcome("length", [cut]), request) == []
    assert rules(tool_call_findings(outcome("tool_calls", [cut]), request)) == {"tools.arguments_invalid": "error"}
