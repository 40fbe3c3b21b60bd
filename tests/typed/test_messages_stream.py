"""Anthropic's Messages stream: the state machine (chatprobe.typed.messages) and the dialect's schemas.

Streams are SSE bytes run through the real decoder and the validator, as live runs and
``lint-stream`` do. The three well-formed streams are the reference's own examples, verbatim
(Anthropic API reference, Streaming Messages: Basic streaming request, Streaming request with tool
use, Streaming request with extended thinking); every violation below breaks one of them in one
place, and each is caught by exactly one finding.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from chatprobe.findings import Finding
from chatprobe.specs import validate
from chatprobe.sse import SSEDecoder
from chatprobe.streams import validator
from chatprobe.typed.messages import Validator, read_answer

DIALECT = "anthropic-messages"
REQUEST = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 256, "stream": True}

# Streaming Messages, Basic streaming request: the response, verbatim.
TEXT_STREAM = """event: message_start
data: {"type": "message_start", "message": {"id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-5-20250929", "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 25, "output_tokens": 1}}}

event: content_block_start
data: {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}}

event: content_block_stop
data: {"type": "content_block_stop", "index": 0}

event: message_delta
data: {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence":null}, "usage": {"output_tokens": 15}}

event: message_stop
data: {"type": "message_stop"}

"""

# Streaming Messages, Streaming request with tool use: the response, verbatim.
TOOL_STREAM = """event: message_start
data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2},"content":[],"stop_reason":null}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":","}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" let"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"'s"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" check"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" the"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" weather"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" for"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" San"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" Francisco"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":","}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" CA"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":":"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"location\\":"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \\"San"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" Francisc"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"o,"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" CA\\""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":", "}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\\"unit\\": \\"fah"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"renheit\\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}
"""  # (+ the blank line that ends the last event on the wire; the page's code block stops before it)
TOOL_STREAM += "\n"

# Streaming Messages, Streaming request with extended thinking: the response, verbatim (its
# message_start and message_delta carry no usage: ERRATA E20).
THINKING_STREAM = """event: message_start
data: {"type": "message_start", "message": {"id": "msg_01...", "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-5-20250929", "stop_reason": null, "stop_sequence": null}}

event: content_block_start
data: {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Let me solve this step by step:\\n\\n1. First break down 27 * 453"}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "\\n2. 453 = 400 + 50 + 3"}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "\\n3. 27 * 400 = 10,800"}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "\\n4. 27 * 50 = 1,350"}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "\\n5. 27 * 3 = 81"}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "\\n6. 10,800 + 1,350 + 81 = 12,231"}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds..."}}

event: content_block_stop
data: {"type": "content_block_stop", "index": 0}

event: content_block_start
data: {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "27 * 453 = 12,231"}}

event: content_block_stop
data: {"type": "content_block_stop", "index": 1}

event: message_delta
data: {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}}

event: message_stop
data: {"type": "message_stop"}
"""
THINKING_STREAM += "\n"  # the blank line ending the last event, as above
# ... with the usage every other example carries (what the Message object and message_delta require)
THINKING_WITH_USAGE = THINKING_STREAM.replace(
    '"stop_sequence": null}}\n\nevent: content_block_start',
    '"stop_sequence": null, "usage": {"input_tokens": 42, "output_tokens": 1}}}\n\nevent: content_block_start',
).replace('"stop_sequence": null}}\n\nevent: message_stop', '"stop_sequence": null}, "usage": {"output_tokens": 120}}\n\nevent: message_stop')


def events_of(stream: str) -> list[dict[str, Any]]:
    """A reference stream as its events' data (every event's name is its data's type)."""
    decoder = SSEDecoder()
    return [json.loads(e.data) for e in decoder.feed(stream.encode()) + decoder.close()]


def frame(events: list[Any]) -> bytes:
    """SSE bytes: a dict is an event named by its type; (name, data) names it otherwise (None: unnamed)."""
    out = []
    for item in events:
        name, data = item if isinstance(item, tuple) else (item["type"], item)
        text = data if isinstance(data, str) else json.dumps(data)
        out.append((f"event: {name}\n" if name else "") + f"data: {text}\n\n")
    return "".join(out).encode()


def run(raw: bytes | str, request: dict[str, Any] | None = REQUEST, *, check_schema: bool = True) -> tuple[list[Finding], Validator]:
    raw = raw.encode() if isinstance(raw, str) else raw
    decoder = SSEDecoder()
    events = decoder.feed(raw, arrival_ns=1000) + decoder.close()
    machine = Validator(DIALECT, request, check_schema=check_schema)
    machine.feed(events)
    machine.finish(True, len(raw))
    return decoder.findings + machine.findings, machine


def rules(raw: bytes | str, **kw: Any) -> list[str]:
    return [f.rule for f in run(raw, **kw)[0]]


TEXT = events_of(TEXT_STREAM)  # message_start, block 0 start, ping, 2 text deltas, stop, message_delta, message_stop
TOOL = events_of(TOOL_STREAM)


def start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def delta(index: int, **d: Any) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": d}


def stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def message_delta(reason: Any = "end_turn", output_tokens: int = 15) -> dict[str, Any]:
    return {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None}, "usage": {"output_tokens": output_tokens}}


def tool_stream(*fragments: str, start_input: Any = None) -> list[dict[str, Any]]:
    block = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {} if start_input is None else start_input}
    return [TEXT[0], start(0, block), *(delta(0, type="input_json_delta", partial_json=f) for f in fragments), stop(0),
            message_delta("tool_use"), {"type": "message_stop"}]


# ---------------------------------------------------------------------------- well-formed streams
def test_the_reference_text_stream_passes_and_is_assembled() -> None:
    findings, machine = run(TEXT_STREAM)
    assert findings == []
    res = machine.result
    assert res.text() == "Hello!" and res.choices[0].role == "assistant"
    assert res.choices[0].finish_reason == "stop"  # end_turn, canonical
    assert res.usage == {"prompt_tokens": 25, "completion_tokens": 15}
    assert machine.native_usage == {"input_tokens": 25, "output_tokens": 15}
    assert res.ids == {"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY"}
    assert res.token_arrivals_ns == [1000, 1000] and res.output_from == 0
    assert res.terminator_seen and res.cut is None


def test_the_reference_tool_use_stream_assembles_the_input() -> None:
    findings, machine = run(TOOL_STREAM)
    assert findings == []
    choice = machine.result.choices[0]
    assert choice.text == "Okay, let's check the weather for San Francisco, CA:"
    (call,) = choice.tool_calls.values()
    assert (call.id, call.name, call.type) == ("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", "function")
    assert json.loads(call.arguments) == {"location": "San Francisco, CA", "unit": "fahrenheit"}
    assert choice.finish_reason == "tool_calls"
    assert machine.result.usage == {"prompt_tokens": 472, "completion_tokens": 89}


def test_the_reference_thinking_stream() -> None:
    # verbatim: exactly the two missing usages of ERRATA E20
    findings, _ = run(THINKING_STREAM)
    assert sorted(f.evidence["schema_rule"] for f in findings) == ["message.usage.required", "usage.required"]
    assert {f.rule for f in findings} == {"stream.chunk_schema"}
    # with the usage every other example carries: no finding; the thinking is reasoning, not text
    findings, machine = run(THINKING_WITH_USAGE)
    assert findings == []
    res = machine.result
    assert res.choices[0].reasoning.startswith("Let me solve this step by step:") and res.choices[0].reasoning.endswith("= 12,231")
    assert res.text() == "27 * 453 = 12,231"
    assert res.reasoning_events == 6 and res.output_from == 6  # TTFT is the first output text
    assert res.usage == {"prompt_tokens": 42, "completion_tokens": 120}


@pytest.mark.parametrize("stream", [TEXT_STREAM, TOOL_STREAM, THINKING_WITH_USAGE])
def test_the_load_path_without_schemas_agrees(stream: str) -> None:
    assert rules(stream, check_schema=False) == []
    assert rules(stream, request=None) == []  # lint-stream: no request known


def test_the_profile_selects_this_machine() -> None:
    made = validator(DIALECT, REQUEST)
    assert isinstance(made, Validator)


def test_pings_unknown_events_blocks_and_deltas_are_legal_anywhere() -> None:
    # Streaming Messages: any number of ping events; Other events: new event types are to be
    # handled gracefully; server tool result blocks arrive whole (no delta); citations_delta.
    events = [
        {"type": "ping"},
        TEXT[0],
        {"type": "a_future_event", "x": 1},
        TEXT[1],
        {"type": "ping"},
        TEXT[3],
        delta(0, type="citations_delta", citation={"type": "char_location", "cited_text": "x", "document_index": 0}),
        delta(0, type="a_future_delta", anything=True),
        TEXT[4],
        stop(0),
        start(1, {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}),
        delta(1, type="input_json_delta", partial_json='{"query": "weather NYC today"}'),
        stop(1),
        start(2, {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []}),
        stop(2),
        {"type": "ping"},
        message_delta(),
        {"type": "ping"},
        {"type": "message_stop"},
    ]
    findings, machine = run(frame(events))
    assert findings == []
    assert machine.result.text() == "Hello!" and machine.result.choices[0].tool_calls == {}  # a server tool is no call of the client's


@pytest.mark.parametrize(
    ("fragments", "start_input", "arguments"),
    [
        (("",), None, "{}"),  # an empty accumulation is the empty input
        ((), {"city": "Paris"}, '{"city":"Paris"}'),  # no delta: the start's input stands
        (('{"a": ', "1}"), None, '{"a": 1}'),
    ],
)
def test_tool_inputs_without_or_with_fragments(fragments: tuple[str, ...], start_input: Any, arguments: str) -> None:
    findings, machine = run(frame(tool_stream(*fragments, start_input=start_input)))
    assert findings == []
    (call,) = machine.result.choices[0].tool_calls.values()
    assert call.arguments == arguments


# ---------------------------------------------------------------------------- violations
def _swap(events: list[Any], i: int, j: int) -> list[Any]:
    out = list(events)
    out[i], out[j] = out[j], out[i]
    return out


VIOLATIONS: list[tuple[str, list[Any], list[str]]] = [
    ("block before message_start", _swap(TEXT, 0, 1), ["stream.event_order"]),
    ("a second message_start", [*TEXT[:4], TEXT[0], *TEXT[4:]], ["stream.event_order"]),
    ("blocks out of index order",
     [TEXT[0], start(1, {"type": "text", "text": ""}), delta(1, type="text_delta", text="Hi"), stop(1), *TEXT[6:]],
     ["stream.event_order"]),
    ("a block started while another is open",
     [*TEXT[:2], start(1, {"type": "text", "text": ""}), TEXT[3], delta(1, type="text_delta", text="x"), stop(0), stop(1), *TEXT[6:]],
     ["stream.event_order"]),
    ("a block after message_delta", [TEXT[0], message_delta(), *TEXT[1:6], TEXT[7]], ["stream.event_order"]),
    ("a delta to a closed block", [*TEXT[:6], delta(0, type="text_delta", text=" again"), *TEXT[6:]], ["stream.event_order"]),
    ("deltas to a block never started",
     [*TEXT[:6], delta(3, type="text_delta", text="a"), delta(3, type="text_delta", text="b"), *TEXT[6:]],
     ["stream.event_order"]),
    ("a block stopped twice", [*TEXT[:6], stop(0), *TEXT[6:]], ["stream.event_order"]),
    ("input_json_delta to a text block", [*TEXT[:4], delta(0, type="input_json_delta", partial_json="{}"), *TEXT[4:]],
     ["stream.event_order"]),
    ("text_delta to a tool_use block", [*tool_stream('{"a": 1}')[:2], delta(0, type="text_delta", text="x"), *tool_stream('{"a": 1}')[2:]],
     ["stream.event_order"]),
    ("thinking after the signature",
     [TEXT[0], start(0, {"type": "thinking", "thinking": ""}), delta(0, type="thinking_delta", thinking="a"),
      delta(0, type="signature_delta", signature="sig"), delta(0, type="thinking_delta", thinking="b"), stop(0), *TEXT[6:]],
     ["stream.event_order"]),
    ("partial JSON that never forms JSON", tool_stream('{"location": "San', " Francisco"), ["tools.arguments_invalid"]),
    ("partial JSON that forms no object", tool_stream("[1, ", "2]"), ["tools.arguments_invalid"]),
    ("no message_stop", TEXT[:7], ["stream.terminator_missing"]),
    ("cut after a delta (no stop, no message_delta, no message_stop)", TEXT[:4], ["stream.terminator_missing"]),
    ("events after message_stop", [*TEXT, {"type": "ping"}, TEXT[3]], ["stream.data_after_terminator"]),
    ("a stop_reason outside the enumeration", [*TEXT[:6], message_delta("stop"), TEXT[7]], ["stream.finish_reason_invalid"]),
    ("no message_delta", [*TEXT[:6], TEXT[7]], ["stream.finish_reason_missing"]),
    ("a message_delta without a stop_reason", [*TEXT[:6], message_delta(None), TEXT[7]], ["stream.finish_reason_missing"]),
    ("a second, different stop_reason", [*TEXT[:7], message_delta("max_tokens", 16), TEXT[7]], ["stream.after_finish"]),
    ("decreasing output_tokens", [*TEXT[:7], message_delta("end_turn", 9), TEXT[7]], ["usage.not_cumulative"]),
    ("output_tokens below message_start's", [*TEXT[:6], message_delta("end_turn", 0), TEXT[7]], ["usage.not_cumulative"]),
    ("a block left open at message_stop", [*TEXT[:5], *TEXT[6:]], ["stream.block_unclosed"]),
    ("event name other than the data's type", [*TEXT[:3], ("text_delta", TEXT[3]), (None, TEXT[4]), *TEXT[5:]], ["stream.event_name"]),
    ("an error event mid-stream", [*TEXT[:4], ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})],
     ["stream.error_event"]),
    ("a message whose role is not assistant",
     [{**TEXT[0], "message": {**TEXT[0]["message"], "role": "user"}}, *TEXT[1:]], ["stream.role_missing"]),
]


@pytest.mark.parametrize(("events", "expected"), [(e, r) for _, e, r in VIOLATIONS], ids=[n for n, _, _ in VIOLATIONS])
def test_each_violation_is_one_finding(events: list[Any], expected: list[str]) -> None:
    assert rules(frame(events)) == expected
    assert rules(frame(events), check_schema=False) == expected  # the load path sees it too


def test_findings_say_what_was_expected_where() -> None:
    raw = frame([TEXT[0], start(1, {"type": "text", "text": ""}), *TEXT[6:]])
    (finding,) = [f for f in run(raw)[0] if f.rule == "stream.event_order"]
    assert "expected block 0" in finding.message and '"index": 1' in finding.message
    assert finding.offset == raw.index(b"event: content_block_start")


def test_an_error_event_cuts_the_stream_and_says_why() -> None:
    raw = frame([*TEXT[:4], ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})])
    findings, machine = run(raw)
    assert [f.rule for f in findings] == ["stream.error_event"] and "Overloaded" in findings[0].message
    assert machine.result.cut == "error_event" and machine.result.text() == "Hello"


def test_the_one_finding_of_a_truncated_stream_names_what_never_came() -> None:
    (finding,) = run(frame(TEXT[:4]))[0]
    assert "message_stop" in finding.message and "stop reason" in finding.message and "block 0" in finding.message
    assert finding.evidence == {"stop_reason": None, "open_blocks": [0]}


def test_a_cut_transport_leaves_the_end_rules_to_the_cut() -> None:
    raw = frame(TEXT[:4])
    decoder = SSEDecoder()
    machine = Validator(DIALECT, REQUEST)
    machine.feed(decoder.feed(raw))
    assert machine.finish(False, len(raw)) == [] and machine.result.cut == "transport"


def test_text_after_a_closed_block_still_counts_and_bad_input_is_reported_once() -> None:
    findings, machine = run(frame([*TEXT[:6], delta(0, type="text_delta", text=" again"), *TEXT[6:]]))
    assert machine.result.text() == "Hello! again" and len(findings) == 1
    # the base class's end-of-stream JSON check does not repeat the block's own finding
    findings, _ = run(frame(tool_stream('{"a": ')))
    assert [f.rule for f in findings] == ["tools.arguments_invalid"] and "do not form JSON" in findings[0].message


def test_the_chunk_schema_checks_message_start() -> None:
    started = {**TEXT[0], "message": {**TEXT[0]["message"], "content": [{"type": "text", "text": "x"}]}}
    findings, _ = run(frame([started, *TEXT[1:]]))
    assert [(f.rule, f.evidence["schema_rule"]) for f in findings] == [("stream.chunk_schema", "message.content.maxItems")]
    assert rules(frame([started, *TEXT[1:]]), check_schema=False) == []


# ---------------------------------------------------------------------------- non-stream answers
def test_read_answer_of_the_reference_response() -> None:
    body = json.loads(
        '{"content": [{"citations": null, "text": "Hi! My name is Claude.", "type": "text"}], "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",'
        ' "model": "claude-sonnet-4-5-20250929", "role": "assistant", "stop_reason": "end_turn", "stop_sequence": null,'
        ' "type": "message", "usage": {"input_tokens": 2095, "output_tokens": 503}}'
    )
    answer = read_answer(body)
    assert (answer.text, answer.finish, answer.usage, answer.tool_calls) == (
        "Hi! My name is Claude.", "end_turn", {"input_tokens": 2095, "output_tokens": 503}, [])
    assert validate(DIALECT, "response", body) == []


def test_read_answer_of_thinking_and_a_tool_call() -> None:
    # Messages (create), Body: tools, the tool_use block of its example
    body = {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "m", "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 20},
        "content": [
            {"type": "thinking", "thinking": "The index is ^GSPC.", "signature": "sig"},
            {"type": "tool_use", "id": "toolu_01D7FLrfh4GYq7yT1ULFeyMV", "name": "get_stock_price", "input": {"ticker": "^GSPC"}},
        ],
    }
    answer = read_answer(body)
    assert answer.reasoning == "The index is ^GSPC." and answer.text == "" and answer.finish == "tool_use"
    assert answer.tool_calls == [{"id": "toolu_01D7FLrfh4GYq7yT1ULFeyMV", "type": "function", "name": "get_stock_price",
                                  "arguments": '{"ticker":"^GSPC"}', "pointer": "/content/1"}]
    assert validate(DIALECT, "response", body) == []
    assert read_answer(["not", "a", "message"]).text == "" and read_answer({"content": "x"}).finish is None


# ---------------------------------------------------------------------------- schemas
BODY = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "Hello"}]}
MESSAGE = {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "m", "stop_reason": "end_turn",
           "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1}}

WRONG: list[tuple[str, Any, str, str]] = [
    # kind, instance, rule, pointer
    ("request", {"model": "m", "messages": BODY["messages"]}, "max_tokens.required", ""),
    ("request", {**BODY, "max_tokens": -1}, "max_tokens.minimum", "/max_tokens"),
    ("request", {**BODY, "messages": []}, "messages.minItems", "/messages"),
    ("request", {**BODY, "messages": [{"role": "system", "content": "x"}]}, "messages.role.enum", "/messages/0/role"),
    ("request", {**BODY, "messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages.content.text.required", "/messages/0/content/0"),
    ("request", {**BODY, "model": ""}, "model.minLength", "/model"),
    ("request", {**BODY, "temperature": 1.5}, "temperature.maximum", "/temperature"),
    ("request", {**BODY, "top_p": -0.1}, "top_p.minimum", "/top_p"),
    ("request", {**BODY, "top_k": -1}, "top_k.minimum", "/top_k"),
    ("request", {**BODY, "stop_sequences": "END"}, "stop_sequences.type", "/stop_sequences"),
    ("request", {**BODY, "system": [{"type": "text"}]}, "system.text.required", "/system/0"),
    ("request", {**BODY, "tool_choice": {"type": "tool"}}, "tool_choice.name.required", "/tool_choice"),
    ("request", {**BODY, "tool_choice": {"type": "required"}}, "tool_choice.type.enum", "/tool_choice/type"),
    ("request", {**BODY, "tools": [{"name": "get weather!", "input_schema": {"type": "object"}}]}, "tools.name.pattern", "/tools/0/name"),
    ("request", {**BODY, "tools": [{"name": "w"}]}, "tools.input_schema.required", "/tools/0"),
    ("request", {**BODY, "tools": [{"name": "w", "input_schema": {"type": "array"}}]}, "tools.input_schema.type.const", "/tools/0/input_schema/type"),
    ("request", {**BODY, "thinking": {"type": "enabled", "budget_tokens": 1000}}, "thinking.budget_tokens.minimum", "/thinking/budget_tokens"),
    ("request", {**BODY, "thinking": {"type": "enabled"}}, "thinking.budget_tokens.required", "/thinking"),
    ("response", {**MESSAGE, "stop_reason": "stop"}, "stop_reason.enum", "/stop_reason"),
    ("response", {**MESSAGE, "stop_reason": None}, "stop_reason.enum", "/stop_reason"),
    ("response", {k: v for k, v in MESSAGE.items() if k != "usage"}, "usage.required", ""),
    ("response", {**MESSAGE, "role": "user"}, "role.const", "/role"),
    ("response", {**MESSAGE, "content": [{"type": "tool_use", "id": "t", "name": "f", "input": '{"a": 1}'}]}, "content.input.type", "/content/0/input"),
    ("response", {**MESSAGE, "usage": {"input_tokens": 1, "output_tokens": -1}}, "usage.output_tokens.minimum", "/usage/output_tokens"),
    ("error", {"error": "Overloaded"}, "error.type", "/error"),
    ("error", {"type": "error", "error": {"type": "overloaded_error"}}, "error.message.required", "/error"),
    ("error", {"type": "failure", "error": {"type": "api_error", "message": "m"}}, "type.const", "/type"),
    ("chunk", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta"}}, "delta.text.required", "/delta"),
    ("chunk", {"type": "content_block_delta", "index": -1, "delta": {"type": "text_delta", "text": ""}}, "index.minimum", "/index"),
    ("chunk", {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": {"a": 1}}}, "delta.partial_json.type", "/delta/partial_json"),
    ("chunk", {"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "t", "name": "f"}}, "content_block.input.required", "/content_block"),
    ("chunk", {"type": "content_block_stop"}, "index.required", ""),
    ("chunk", {"type": "message_start", "message": {**MESSAGE, "stop_reason": "end_turn"}}, "message.stop_reason.const", "/message/stop_reason"),
    ("chunk", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {}}, "usage.output_tokens.required", "/usage"),
    ("chunk", {"delta": {}}, "type.required", ""),
    # Body: stop_sequences, "If the model encounters one of the custom sequences, the response
    # stop_reason value will be "stop_sequence" and the response stop_sequence value will contain the
    # matched stop sequence" (llama.cpp's llama-server answers end_turn with the matched sequence)
    ("response", {**MESSAGE, "stop_reason": "end_turn", "stop_sequence": "END"}, "param.stop_reason", "/stop_reason"),
    ("response", {**MESSAGE, "stop_reason": "stop_sequence", "stop_sequence": None}, "param.stop_reason", "/stop_sequence"),
    ("chunk", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": "END"}, "usage": {"output_tokens": 3}},
     "param.stop_reason", "/delta/stop_reason"),
    ("chunk", {"type": "message_delta", "delta": {"stop_reason": "stop_sequence", "stop_sequence": None}, "usage": {"output_tokens": 3}},
     "param.stop_reason", "/delta/stop_sequence"),
]


@pytest.mark.parametrize(("kind", "instance", "rule", "pointer"), WRONG, ids=[f"{k}-{r}" for k, _, r, _ in WRONG])
def test_a_broken_document_fails_its_rule_only(kind: str, instance: Any, rule: str, pointer: str) -> None:
    assert [(e.rule, e.pointer) for e in validate(DIALECT, kind, instance)] == [(rule, pointer)]


def test_documents_the_reference_allows() -> None:
    ok = [
        ("request", {**BODY, "system": "You are a scientist", "stop_sequences": ["END"], "temperature": 0, "top_k": 0, "top_p": 1,
                     "metadata": {"user_id": "u"}, "stream": True, "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
                     "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}], "service_tier": "auto"}),
        ("request", {**BODY, "max_tokens": 0}),  # the current revision: pre-warming the cache (ERRATA E22)
        ("request", {**BODY, "messages": [
            {"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQSkZJRg..."}},
                                         {"type": "text", "text": "What is in this image?"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_stock_price", "input": {"ticker": "^GSPC"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "259.75 USD"}]},
        ]}),
        ("response", {**MESSAGE, "container": None, "stop_details": None, "content": [{"type": "mcp_tool_result", "anything": 1}]}),
        ("error", {"error": {"type": "a_new_error_type", "message": "m", "details": {}}}),
        ("chunk", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                   "usage": {"input_tokens": 10682, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 510,
                             "server_tool_use": {"web_search_requests": 1}}}),
        ("chunk", {"type": "a_future_event", "anything": [1]}),
        ("response", {**MESSAGE, "stop_reason": "stop_sequence", "stop_sequence": "END"}),
        ("chunk", {"type": "message_delta", "delta": {"stop_reason": "stop_sequence", "stop_sequence": "END"}, "usage": {"output_tokens": 3}}),
    ]
    for kind, instance in ok:
        assert validate(DIALECT, kind, instance) == [], (kind, instance)
