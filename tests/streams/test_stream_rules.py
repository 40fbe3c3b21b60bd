"""The stream validator's rules, one test per rule, on hand-built streams.

Each stream is built from chunk dicts and framed as the dialect frames it, then
decoded by the real SSE decoder; so these tests exercise decoder + validator
together, exactly as live runs and `lint-stream` do.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from chatprobe.sse import SSEDecoder
from chatprobe.streams import StreamValidator

BASE = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "m"}


def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {**BASE, "choices": choices, **extra}


def delta(index: int = 0, finish: str | None = None, **d: Any) -> dict[str, Any]:
    return {"index": index, "delta": d, "finish_reason": finish}


def frame(chunks: list[Any], *, terminator: bool = True, event: str | None = None, wrapper: str | None = None) -> bytes:
    out = []
    for c in chunks:
        data = c if isinstance(c, str) else json.dumps({wrapper: c} if wrapper else c)
        out.append((f"event: {event}\n" if event else "") + f"data: {data}\n\n")
    if terminator:
        out.append((f"event: {event}\n" if event else "") + "data: [DONE]\n\n")
    return "".join(out).encode()


def lint(raw: bytes, dialect: str = "openai", request: dict[str, Any] | None = None) -> list[str]:
    decoder = SSEDecoder()
    events = decoder.feed(raw) + decoder.close()
    validator = StreamValidator(dialect, request)
    validator.feed(events)
    validator.finish(end_offset=len(raw))
    return [f.rule for f in decoder.findings + validator.findings]


GOOD = [
    chunk([delta(role="assistant", content="")]),
    chunk([delta(content="Hello")]),
    chunk([delta(content=" world")]),
    chunk([delta(finish="stop")]),
]
REQ = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


def test_a_well_formed_openai_stream_has_no_findings() -> None:
    assert lint(frame(GOOD), request=REQ) == []


def test_the_validator_assembles_text_and_stamps_token_events() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(frame(GOOD), arrival_ns=123)
    validator = StreamValidator("openai", REQ)
    validator.feed(events)
    assert validator.result.text() == "Hello world"
    assert validator.result.token_arrivals_ns == [123, 123]
    assert validator.result.choices[0].finish_reason == "stop"


def test_terminator_missing() -> None:
    assert lint(frame(GOOD, terminator=False)) == ["stream.terminator_missing"]


def test_data_after_terminator_and_second_terminator() -> None:
    assert lint(frame(GOOD) + b"data: [DONE]\n\n") == ["stream.data_after_terminator"]
    assert lint(frame(GOOD) + frame([GOOD[1]], terminator=False)) == ["stream.data_after_terminator"]


@pytest.mark.parametrize("field,value", [("id", "other"), ("model", "m2"), ("created", 5)])
def test_constant_fields_must_not_change(field: str, value: Any) -> None:
    changed = dict(GOOD[2], **{field: value})
    assert lint(frame([GOOD[0], GOOD[1], changed, GOOD[3]])) == [f"stream.{field}_changed"]


def test_role_missing_on_first_delta() -> None:
    assert lint(frame([chunk([delta(content="Hi")]), GOOD[3]])) == ["stream.role_missing"]


def test_finish_reason_invalid_missing_and_after_finish() -> None:
    assert lint(frame([GOOD[0], chunk([delta(finish="end")])])) == ["stream.finish_reason_invalid"]
    assert lint(frame(GOOD[:3])) == ["stream.finish_reason_missing"]
    assert lint(frame([*GOOD, chunk([delta(content="late")])])) == ["stream.after_finish"]


def test_choice_index_outside_n() -> None:
    one = [chunk([delta(1, role="assistant", content="x")]), chunk([delta(1, finish="stop")])]
    assert lint(frame(one), request=REQ) == ["stream.choice_index"]
    two = [
        chunk([delta(0, role="assistant", content="a")]),
        chunk([delta(1, role="assistant", content="b")]),
        chunk([delta(0, finish="stop")]),
        chunk([delta(1, finish="stop")]),
    ]
    assert lint(frame(two), request={**REQ, "n": 2}) == []


def call(index: Any = 0, id: str | None = "call_1", name: str | None = "f", arguments: Any = "") -> dict[str, Any]:
    out: dict[str, Any] = {"function": {"arguments": arguments}}
    if index is not None:
        out["index"] = index
    if id is not None:
        out["id"] = id
        out["type"] = "function"
    if name is not None:
        out["function"]["name"] = name
    return out


def tool_stream(*calls: dict[str, Any]) -> bytes:
    chunks = [chunk([delta(role="assistant", content=None)])]
    chunks += [chunk([delta(tool_calls=[c])]) for c in calls]
    chunks.append(chunk([delta(finish="tool_calls")]))
    return frame(chunks)


def test_well_formed_tool_call_deltas() -> None:
    raw = tool_stream(call(arguments='{"a":'), call(id=None, name=None, arguments="1}"))
    assert lint(raw) == []


def test_tool_call_rules() -> None:
    assert lint(tool_stream(call(index=None, arguments="{}"))) == ["tools.index_missing"]
    assert "tools.index_missing" in lint(tool_stream(call(index=None, arguments="{}")))
    assert lint(tool_stream(call(arguments="{}"), call(id="call_2", arguments="{}"))) == ["tools.index_reused"]
    # the second call's later deltas (same index, no id) follow it: no concatenation finding
    reused = tool_stream(call(arguments='{"a":'), call(id=None, name=None, arguments="1}"),
                         call(id="call_2", arguments='{"b":'), call(id=None, name=None, arguments="2}"))
    assert lint(reused) == ["tools.index_reused"]
    assert lint(tool_stream(call(id=None, arguments="{}"))) == ["tools.id_missing"]
    assert "tools.arguments_not_string" in lint(tool_stream(call(arguments={"a": 1})))
    assert lint(tool_stream(call(arguments='{"a":'))) == ["tools.arguments_invalid"]


USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def test_usage_chunk_rules() -> None:
    req = {**REQ, "stream_options": {"include_usage": True}}
    good = [*GOOD, chunk([], usage=USAGE)]
    assert lint(frame(good), request=req) == []
    assert lint(frame(GOOD), request=req) == ["usage.missing"]
    merged = [*GOOD[:3], chunk([delta(finish="stop")], usage=USAGE)]
    assert lint(frame(merged), request=req) == ["usage.not_separate"]
    wrong = [*GOOD, chunk([], usage={**USAGE, "total_tokens": 9})]
    assert lint(frame(wrong), request=req) == ["usage.totals"]
    assert lint(frame([*GOOD[:3], chunk([], usage=USAGE), GOOD[3]]), request=req) == ["usage.not_last"]
    assert lint(frame(good), request=REQ) == ["usage.unrequested"]


def test_data_that_is_not_json_and_empty_data() -> None:
    assert lint(frame([GOOD[0], "{not json", *GOOD[1:]])) == ["stream.data_not_json"]
    assert lint(frame(GOOD) .replace(b"data: [DONE]", b"data:\n\ndata: [DONE]")) == ["sse.empty_data"]


def test_error_object_inside_a_200_openai_stream() -> None:
    raw = frame([GOOD[0], {"error": {"message": "boom", "type": "server_error"}}], terminator=False)
    assert lint(raw) == ["stream.error_in_200"]
    # vLLM-style: the error object, then [DONE]; still the one finding.
    assert lint(raw + b"data: [DONE]\n\n") == ["stream.error_in_200"]


def test_chunk_schema_violation_points_at_the_field() -> None:
    bad = dict(GOOD[1], choices="nope")
    decoder = SSEDecoder()
    validator = StreamValidator("openai")
    validator.feed(decoder.feed(frame([GOOD[0], bad, *GOOD[2:]])))
    schema = [f for f in validator.findings if f.rule == "stream.chunk_schema"]
    assert schema and schema[0].pointer == "/choices"


# ------------------------------------------------------------------- Elastic


def elastic(chunks: list[Any], **kw: Any) -> bytes:
    return frame(chunks, event="message", wrapper="chat_completion", **kw)


ELASTIC_GOOD = [
    {k: v for k, v in c.items() if k != "created"} for c in [*GOOD, chunk([], usage=USAGE)]
]


def test_elastic_chat_stream_is_clean() -> None:
    assert lint(elastic(ELASTIC_GOOD), "elastic-chat") == []


def test_elastic_error_event_fails_the_exchange_once_with_its_text() -> None:
    """The documented channel (legal framing), but the request failed: one finding, with the
    error's text; no terminator_missing / finish_reason_missing / usage.missing on top."""
    raw = elastic(ELASTIC_GOOD[:2], terminator=False) + (
        b'event: error\ndata: {"error":{"code":"x","message":"boom","type":"server_error"}}\n\n'
    )
    decoder = SSEDecoder()
    validator = StreamValidator("elastic-chat", {"messages": [{"role": "user", "content": "hi"}]})
    validator.feed(decoder.feed(raw) + decoder.close())
    validator.finish(end_offset=len(raw))
    assert [f.rule for f in validator.findings] == ["stream.error_event"]
    assert "boom" in validator.findings[0].message and "boom" in validator.findings[0].evidence["error"]
    assert validator.result.cut == "error_event"
    # an error event whose data is not JSON: still the one finding, with the raw text
    raw = elastic(ELASTIC_GOOD[:2], terminator=False) + b"event: error\ndata: backend exploded\n\n"
    assert lint(raw, "elastic-chat") == ["stream.error_event"]


def test_transport_cut_marks_the_stream_cut_without_end_of_stream_findings() -> None:
    decoder = SSEDecoder()
    validator = StreamValidator("openai", REQ)
    validator.feed(decoder.feed(frame(GOOD[:2], terminator=False)))
    assert validator.finish(complete=False) == []
    assert validator.result.cut == "transport"


def test_created_changing_in_every_chunk_is_one_finding() -> None:
    chunks = [dict(c, created=1700000000 + k) for k, c in enumerate([*GOOD[:3], *GOOD[1:3], GOOD[3]])]
    assert lint(frame(chunks), request=REQ) == ["stream.created_changed"]


N2 = {**REQ, "n": 2}


def test_n_choices_role_first_and_finish_per_index() -> None:
    both = [
        chunk([delta(0, role="assistant", content="a")]),
        chunk([delta(1, role="assistant", content="b")]),
        chunk([delta(0, finish="stop")]),
        chunk([delta(1, finish="length")]),
    ]
    assert lint(frame(both), request=N2) == []
    # choice 1's first delta without the role
    no_role = [both[0], chunk([delta(1, content="b")]), *both[2:]]
    assert lint(frame(no_role), request=N2) == ["stream.role_missing"]
    # choice 1 never finishes: one finding that names it (and says choice 0 did)
    decoder = SSEDecoder()
    validator = StreamValidator("openai", N2)
    validator.feed(decoder.feed(frame(both[:3])))
    found = validator.finish()
    assert [f.rule for f in found] == ["stream.finish_reason_missing"]
    assert found[0].evidence == {"unfinished": [1], "finished": [0]}
    # neither finishes: still one finding, naming both
    assert lint(frame(both[:2]), request=N2) == ["stream.finish_reason_missing"]


def test_usage_of_an_answer_cut_by_the_cap_is_the_cap() -> None:
    req = {**REQ, "stream_options": {"include_usage": True}, "max_tokens": 2}
    cut = [GOOD[0], GOOD[1], GOOD[2], chunk([delta(finish="length")])]
    assert lint(frame([*cut, chunk([], usage=USAGE)]), request=req) == []
    under = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    assert lint(frame([*cut, chunk([], usage=under)]), request=req) == ["usage.completion_tokens"]
    over = {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    assert lint(frame([*cut, chunk([], usage=over)]), request=req) == ["usage.completion_tokens"]
    # a natural end (stop) below the cap says nothing about the cap
    assert lint(frame([*GOOD, chunk([], usage=under)]), request=req) == []
    # n = 2, one choice cut: at least the cap
    two = [
        chunk([delta(0, role="assistant", content="a")]),
        chunk([delta(1, role="assistant", content="b c")]),
        chunk([delta(0, finish="stop")]),
        chunk([delta(1, finish="length")]),
    ]
    n2 = {**req, "n": 2}
    assert lint(frame([*two, chunk([], usage=USAGE | {"completion_tokens": 3, "total_tokens": 6})]), request=n2) == []
    assert lint(frame([*two, chunk([], usage=under)]), request=n2) == ["usage.completion_tokens"]


def test_prompt_tokens_zero() -> None:
    req = {**REQ, "stream_options": {"include_usage": True}}
    zero = {"prompt_tokens": 0, "completion_tokens": 2, "total_tokens": 2}
    assert lint(frame([*GOOD, chunk([], usage=zero)]), request=req) == ["usage.totals"]


def test_elastic_usage_is_checked_where_it_always_streams() -> None:
    req = {"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 2}
    cut = [*ELASTIC_GOOD[:3], {**ELASTIC_GOOD[3], "choices": [delta(finish="length")]}]
    under = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    assert lint(elastic([*cut, {**ELASTIC_GOOD[4], "usage": USAGE}]), "elastic-chat", req) == []
    assert lint(elastic([*cut, {**ELASTIC_GOOD[4], "usage": under}]), "elastic-chat", req) == ["usage.completion_tokens"]


def test_elastic_wrong_event_name() -> None:
    raw = elastic(ELASTIC_GOOD).replace(b"event: message", b"event: chunk", 1)
    assert lint(raw, "elastic-chat") == ["stream.event_name"]


def test_elastic_bom_before_every_event_is_a_warning_and_still_decodes() -> None:
    raw = elastic(ELASTIC_GOOD).replace(b"event: ", b"\xef\xbb\xbfevent: ")
    rules = lint(raw, "elastic-chat")
    assert set(rules) == {"sse.bom_not_at_start"}


def test_elastic_completion_stream() -> None:
    parts = [[{"delta": "Hel"}], [{"delta": "lo"}]]
    raw = frame(parts, event="message", wrapper="completion")
    decoder = SSEDecoder()
    validator = StreamValidator("elastic-completion")
    validator.feed(decoder.feed(raw))
    validator.finish()
    assert validator.findings == []
    assert validator.result.text() == "Hello"
