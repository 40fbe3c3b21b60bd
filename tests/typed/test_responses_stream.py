"""OpenAI's Responses stream: the state machine (chatprobe.typed.responses) and the dialect's schemas.

Streams are SSE bytes run through the real decoder and the validator, as live runs and
``lint-stream`` do. The well-formed streams come from the reference's own examples (OpenAI API
reference, Responses): the create page's "Streaming" example (its events numbered, ERRATA E12, and
its "..." filled with the delta that completes the final text), a function call built from the
"Functions" example's request and response with the streaming events' own examples, and a
reasoning item from the reasoning summary events' examples. Every violation below breaks one of
them in one place and is caught by its rule, once.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from chatprobe.paths import specs_dir
from chatprobe.specs import validate
from chatprobe.sse import SSEDecoder
from chatprobe.streams import validator
from chatprobe.typed.responses import Validator, native_finish, read_answer

DIALECT = "openai-responses"
EXAMPLES = specs_dir() / "examples" / "openai-responses"
REQUEST = {"model": "gpt-5.4", "instructions": "You are a helpful assistant.", "input": "Hello!", "stream": True}
Events = list[dict[str, Any]]


def example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    return loaded


def text_stream() -> Events:
    """Create a model response, example "Streaming": its nine events, the elided deltas restored."""
    events = [example(f"create-streaming-event-{i}.json") for i in range(1, 10)]
    rest = {**events[4], "delta": " there! How can I assist you today?"}
    return [*events[:5], rest, *events[5:]]


RESP_ID = "resp_67c9fdcecf488190bdd9a0409de3a1ec07b8b0ad4e5eb654"
MSG_ID = "msg_67c9fdcf37fc8190ba82116e33fb28c507b8b0ad4e5eb654"
TEXT = "Hi there! How can I assist you today?"


def lifecycle(response: dict[str, Any], status: str, output: list[Any], usage: Any) -> dict[str, Any]:
    return {**copy.deepcopy(response), "status": status, "output": output, "usage": usage}


def function_stream() -> Events:
    """A function call: the "Functions" example's response streamed with the events' own shapes."""
    final = example("create-functions-response.json")
    call = final["output"][0]
    created = lifecycle(final, "in_progress", [], None)
    added = {**call, "arguments": "", "status": "in_progress"}
    pieces = ['{"location":', '"Boston, MA",', '"unit":"celsius"}']
    assert "".join(pieces) == call["arguments"]
    base = {"item_id": call["id"], "output_index": 0}
    return [
        {"type": "response.created", "response": created},
        {"type": "response.in_progress", "response": created},
        {"type": "response.output_item.added", "output_index": 0, "item": added},
        *({"type": "response.function_call_arguments.delta", **base, "delta": p} for p in pieces),
        {"type": "response.function_call_arguments.done", **base, "name": call["name"], "arguments": call["arguments"]},
        {"type": "response.output_item.done", "output_index": 0, "item": call},
        {"type": "response.completed", "response": final},
    ]


def reasoning_stream() -> Events:
    """A reasoning item (the reasoning summary events' examples) before the example's message."""
    summary_added = example("event-response.reasoning_summary_part.added.json")
    summary_delta = example("event-response.reasoning_summary_text.delta.json")
    summary_text_done = example("event-response.reasoning_summary_text.done.json")
    summary_done = example("event-response.reasoning_summary_part.done.json")
    rs_id = summary_added["item_id"]
    summary = summary_done["part"]["text"]
    reasoning = {"id": rs_id, "type": "reasoning", "summary": []}
    reasoning_done = {**reasoning, "summary": [{"type": "summary_text", "text": summary}]}
    text = text_stream()
    message_events = [{**e, "output_index": 1} if "output_index" in e else e for e in text[2:9]]
    final = copy.deepcopy(text[-1])
    final["response"]["output"].insert(0, reasoning_done)
    half = len(summary) // 2
    return [
        *text[:2],
        {"type": "response.output_item.added", "output_index": 0, "item": reasoning},
        summary_added,
        {**summary_delta, "delta": summary[:half]},
        {**summary_delta, "delta": summary[half:]},
        summary_text_done,
        summary_done,
        {"type": "response.output_item.done", "output_index": 0, "item": reasoning_done},
        *message_events,
        final,
    ]


def frame(events: Events, *, numbered: bool = True) -> bytes:
    """SSE bytes, each event named by its type and numbered 0, 1, ... (``numbered`` False: as given)."""
    out = []
    for position, event in enumerate(events):
        data = {**event, "sequence_number": position} if numbered else event
        out.append(f"event: {data['type']}\ndata: {json.dumps(data)}\n\n")
    return "".join(out).encode()


def run(events: Events | bytes, request: dict[str, Any] | None = REQUEST, *, check_schema: bool = True) -> Validator:
    raw = events if isinstance(events, bytes) else frame(events)
    decoder = SSEDecoder()
    decoded = decoder.feed(raw, arrival_ns=1) + decoder.close()
    made = validator(DIALECT, request, check_schema=check_schema)
    assert isinstance(made, Validator)
    made.feed(decoded)
    made.finish(complete=True, end_offset=len(raw))
    assert decoder.findings == []
    return made


def rules(events: Events | bytes, request: dict[str, Any] | None = REQUEST, *, check_schema: bool = True) -> list[str]:
    return [f.rule for f in run(events, request, check_schema=check_schema).findings]


def index_of(events: Events, kind: str, nth: int = 0) -> int:
    return [i for i, e in enumerate(events) if e["type"] == kind][nth]


# ---------------------------------------------------------------------- well-formed streams


def test_the_references_streaming_example_passes_and_fills_the_result() -> None:
    v = run(text_stream())
    assert v.findings == []
    res = v.result
    choice = res.choices[0]
    assert (choice.role, choice.text, choice.finish_reason, choice.tokens) == ("assistant", TEXT, "stop", 2)
    assert res.usage == {"prompt_tokens": 37, "completion_tokens": 11, "total_tokens": 48}
    assert v.native_usage is not None and v.native_usage["output_tokens_details"] == {"reasoning_tokens": 0}
    assert res.terminator_seen and res.cut is None and res.ids == {RESP_ID}
    assert res.output_from == 0


def test_a_function_call_stream_passes_and_becomes_a_tool_call() -> None:
    v = run(function_stream(), {**REQUEST, "tools": example("create-functions-request.json")["tools"]})
    assert v.findings == []
    choice = v.result.choices[0]
    (call,) = choice.tool_calls.values()
    assert (call.id, call.type, call.name) == ("call_unLAR8MvFNptuiZK6K6HCy5k", "function", "get_current_weather")
    assert json.loads(call.arguments) == {"location": "Boston, MA", "unit": "celsius"}
    assert choice.finish_reason == "tool_calls" and choice.text == ""
    assert v.result.usage == {"prompt_tokens": 291, "completion_tokens": 23, "total_tokens": 314}


def test_a_reasoning_stream_passes_and_keeps_reasoning_apart() -> None:
    v = run(reasoning_stream())
    assert v.findings == []
    choice = v.result.choices[0]
    assert choice.reasoning.startswith("**Responding to a greeting**") and choice.text == TEXT
    assert v.result.reasoning_events == 2 and v.result.output_from == 2  # TTFT: the first output text
    assert choice.finish_reason == "stop"


def test_legal_variants_pass() -> None:
    events = text_stream()
    # sequence numbers may start anywhere and skip (only their order is the reference's)
    numbered = [{**e, "sequence_number": 100 + 3 * i} for i, e in enumerate(events)]
    # event types this machine does not follow, and members the reference does not list
    numbered.insert(2, {"type": "response.web_search_call.in_progress", "output_index": 0, "item_id": "ws_1", "sequence_number": 104})
    numbered[4] = {**numbered[4], "x_vendor": {"a": 1}, "logprobs": []}
    assert rules(frame(numbered, numbered=False)) == []
    # no in_progress event (the reference does not require one), queued first
    queued = [e for e in copy.deepcopy(events) if e["type"] != "response.in_progress"]
    queued[0]["response"]["status"] = "queued"
    assert rules(queued) == []


def test_reasoning_text_may_stream_into_a_part_nobody_announced() -> None:
    rs = {"id": "rs_123", "type": "reasoning", "summary": []}
    delta = example("event-response.reasoning_text.delta.json")
    done = {**example("event-response.reasoning_text.done.json"), "text": "The user"}
    events = text_stream()
    final = copy.deepcopy(events[-1])
    final["response"]["output"].insert(0, {**rs, "content": [{"type": "reasoning_text", "text": "The user"}]})
    stream = [
        *events[:2],
        {"type": "response.output_item.added", "output_index": 0, "item": rs},
        delta,
        {**delta, "delta": " user"},
        done,
        {"type": "response.output_item.done", "output_index": 0, "item": {**rs, "content": [{"type": "reasoning_text", "text": "The user"}]}},
        *({**e, "output_index": 1} if "output_index" in e else e for e in events[2:9]),
        final,
    ]
    v = run(stream)
    assert v.findings == []
    assert v.result.choices[0].reasoning == "The user"


def test_items_may_overlap_when_they_close_in_order() -> None:
    calls = function_stream()
    second = copy.deepcopy(calls[2:8])
    for event in second:
        event["output_index"] = 1
        if "item_id" in event:
            event["item_id"] = "fc_2"
        if "item" in event:
            event["item"] = {**event["item"], "id": "fc_2", "call_id": "call_2"}
    final = copy.deepcopy(calls[-1])
    final["response"]["output"].append(second[-1]["item"])
    # item 1 opens before item 0 is done; they close 0 then 1
    stream = [*calls[:3], second[0], *calls[3:8], *second[1:], final]
    v = run(stream)
    assert v.findings == []
    assert [c.id for c in v.result.choices[0].tool_calls.values()] == ["call_unLAR8MvFNptuiZK6K6HCy5k", "call_2"]


def test_text_an_added_part_or_item_already_holds_counts_as_streamed() -> None:
    # the reference's parts open empty, but nothing says they must: what they hold is the answer's
    events = text_stream()
    added = index_of(events, "response.content_part.added")
    events[added] = copy.deepcopy(events[added])
    events[added]["part"]["text"] = "Hi"
    del events[index_of(events, "response.output_text.delta")]
    v = run(events)
    assert v.findings == [] and v.result.choices[0].text == TEXT
    calls = function_stream()
    calls[2] = {**calls[2], "item": {**calls[2]["item"], "arguments": '{"location":'}}
    del calls[index_of(calls, "response.function_call_arguments.delta")]
    v = run(calls)
    assert v.findings == [] and json.loads(v.result.choices[0].tool_calls[0].arguments)["unit"] == "celsius"
    stream = reasoning_stream()
    added = index_of(stream, "response.reasoning_summary_part.added")
    first = stream[index_of(stream, "response.reasoning_summary_text.delta")]
    stream[added] = {**stream[added], "part": {"type": "summary_text", "text": first["delta"]}}
    del stream[index_of(stream, "response.reasoning_summary_text.delta")]
    v = run(stream)
    assert v.findings == [] and v.result.choices[0].reasoning.startswith("**Responding")


# ---------------------------------------------------------------------- violations, one rule each


def test_the_stream_must_begin_with_response_created() -> None:
    assert rules(text_stream()[1:]) == ["stream.event_order"]
    events = text_stream()
    assert rules([events[1], events[0], *events[2:]]) == ["stream.event_order"]


def test_a_second_response_created() -> None:
    events = text_stream()
    assert rules([events[0], *events]) == ["stream.event_order"]


@pytest.mark.parametrize("numbers", [[0, 1, 2, 2], [0, 1, 5, 3]], ids=["repeated", "decreasing"])
def test_sequence_numbers_increase(numbers: list[int]) -> None:
    events = text_stream()
    numbered = [{**e, "sequence_number": numbers[i] if i < len(numbers) else 10 + i} for i, e in enumerate(events)]
    findings = run(frame(numbered, numbered=False)).findings
    assert [f.rule for f in findings] == ["stream.sequence_number"]
    assert findings[0].evidence["sequence_number"] == numbers[3]


def test_a_stream_numbered_backwards_is_one_finding() -> None:
    events = text_stream()
    numbered = [{**e, "sequence_number": 100 - i} for i, e in enumerate(events)]
    assert rules(frame(numbered, numbered=False)) == ["stream.sequence_number"]


def test_output_items_are_numbered_in_order() -> None:
    events = [{**e, "output_index": 1} if "output_index" in e else e for e in text_stream()]
    events[-1] = copy.deepcopy(events[-1])
    assert rules(events) == ["stream.event_order"]


def test_a_text_delta_needs_its_part_opened() -> None:
    events = text_stream()
    del events[index_of(events, "response.content_part.added")]
    assert rules(events) == ["stream.event_order"]


def test_a_text_delta_names_the_open_item() -> None:
    events = text_stream()
    at = index_of(events, "response.output_text.delta")
    events[at] = {**events[at], "item_id": "msg_other"}
    assert rules(events) == ["stream.event_order"]


def test_no_delta_after_the_item_is_done() -> None:
    events = text_stream()
    late = {**events[index_of(events, "response.output_text.delta")], "delta": " More."}
    events.insert(index_of(events, "response.output_item.done") + 1, late)
    # the item's texts are not compared again: the late delta is the one root cause
    assert rules(events) == ["stream.event_order"]


def test_no_text_delta_after_its_done_event() -> None:
    events = text_stream()
    late = {**events[index_of(events, "response.output_text.delta")], "delta": " More."}
    events.insert(index_of(events, "response.output_text.done") + 1, late)
    assert rules(events) == ["stream.event_order"]


def test_arguments_go_into_a_function_call_item() -> None:
    events = text_stream()
    at = index_of(events, "response.output_text.delta")
    events.insert(at, {"type": "response.function_call_arguments.delta", "item_id": MSG_ID, "output_index": 0, "delta": "{}"})
    assert rules(events) == ["stream.event_order"]


def test_a_function_call_item_has_no_content_parts() -> None:
    events = function_stream()
    events.insert(3, {"type": "response.content_part.added", "item_id": events[2]["item"]["id"], "output_index": 0, "content_index": 0,
                      "part": {"type": "output_text", "text": "", "annotations": []}})
    assert rules(events) == ["stream.event_order"]


def test_items_close_in_the_order_they_opened() -> None:
    calls = function_stream()
    second = copy.deepcopy(calls[2])
    second["output_index"] = 1
    second["item"] = {**second["item"], "id": "fc_2", "call_id": "call_2", "arguments": "{}"}
    second_done = {"type": "response.output_item.done", "output_index": 1, "item": {**second["item"], "status": "completed"}}
    final = copy.deepcopy(calls[-1])
    final["response"]["output"].append(second_done["item"])
    assert rules([*calls[:3], second, second_done, *calls[3:8], final]) == ["stream.event_order"]


def test_a_part_is_done_once() -> None:
    events = text_stream()
    at = index_of(events, "response.content_part.done")
    events.insert(at, events[at])
    assert rules(events) == ["stream.event_order"]


def test_an_item_is_added_once() -> None:
    events = text_stream()
    at = index_of(events, "response.output_item.added")
    events.insert(at, events[at])
    assert rules(events) == ["stream.event_order"]


def test_an_item_is_done_after_it_was_added_and_once() -> None:
    events = text_stream()
    at = index_of(events, "response.output_item.done")
    assert rules([*events[:at], {**events[at], "output_index": 1}, *events[at + 1:]]) == ["stream.event_order"]
    assert rules([*events[:at], events[at], *events[at:]]) == ["stream.event_order"]


def test_a_delta_names_an_item_that_was_added() -> None:
    events = text_stream()
    at = index_of(events, "response.output_text.delta")
    events.insert(at, {**events[at], "output_index": 3, "delta": ""})
    assert rules(events) == ["stream.event_order"]


def test_a_delta_before_its_item_is_one_finding() -> None:
    events = text_stream()
    early = events.pop(index_of(events, "response.output_text.delta"))
    events.insert(index_of(events, "response.output_item.added"), early)
    v = run(events)
    # the done events then state more text than the part got: a consequence, not a second cause
    assert [f.rule for f in v.findings] == ["stream.event_order"]
    assert v.result.choices[0].text == TEXT  # the misplaced delta still belongs to the answer


def two_part_message() -> Events:
    """The example's message with a refusal part after its text part."""
    events = text_stream()
    refusal_added = {"type": "response.content_part.added", "item_id": MSG_ID, "output_index": 0, "content_index": 1,
                     "part": {"type": "refusal", "refusal": ""}}
    refusal_delta = {"type": "response.refusal.delta", "item_id": MSG_ID, "output_index": 0, "content_index": 1, "delta": "No."}
    refusal_text_done = {"type": "response.refusal.done", "item_id": MSG_ID, "output_index": 0, "content_index": 1, "refusal": "No."}
    refusal_done = {**refusal_added, "type": "response.content_part.done", "part": {"type": "refusal", "refusal": "No."}}
    at = index_of(events, "response.output_item.done")
    for event in (events[at], events[-1]["response"]["output"][0]):
        item = event if "content" in event else event["item"]
        item["content"] = [*item["content"], {"type": "refusal", "refusal": "No."}]
    return [*events[:at], refusal_added, refusal_delta, refusal_text_done, refusal_done, *events[at:]]


def without_indexes(events: Events) -> Events:
    """The events without output_index / content_index / summary_index (as llama.cpp's
    llama-server streams them: its items and parts are named by item_id alone)."""
    return [{k: v for k, v in e.items() if k not in ("output_index", "content_index", "summary_index")} for e in events]


@pytest.mark.parametrize("stream", [text_stream, function_stream, reasoning_stream, lambda: two_part_message()],
                         ids=["text", "function", "reasoning", "two_parts"])
def test_a_missing_index_is_one_schema_finding_not_an_order_break(stream: Any) -> None:
    """An event without its output_index / content_index breaks the chunk schema (every event
    of the reference carries them), once per member; the machine follows items by their item_id
    and parts by their order, so neither order findings nor a count mismatch at
    response.completed follow from the missing member (one root cause, one finding)."""
    events = without_indexes(stream())
    assert rules(events, check_schema=False) == []
    found = run(events).findings
    assert {f.rule for f in found} == {"stream.chunk_schema"}
    assert {f.evidence["schema_rule"] for f in found} <= {"output_index.required", "content_index.required", "summary_index.required"}


def test_without_indexes_the_texts_are_still_compared() -> None:
    events = without_indexes(text_stream())
    assert run(events, check_schema=False).result.choices[0].text == TEXT
    at = index_of(events, "response.output_text.done")
    events[at] = {**events[at], "text": "Hi there!"}
    assert rules(events, check_schema=False) == ["stream.done_mismatch"]
    events = without_indexes(text_stream())
    at = index_of(events, "response.output_text.delta")
    events[at] = {**events[at], "item_id": "msg_other"}  # an item_id no item has is still an order break
    assert rules(events, check_schema=False) == ["stream.event_order"]
    events = without_indexes(text_stream())
    early = events.pop(index_of(events, "response.output_text.delta"))
    events.insert(index_of(events, "response.output_item.added"), early)  # before its item: one finding
    assert rules(events, check_schema=False) == ["stream.event_order"]


def test_a_message_with_two_parts_passes() -> None:
    v = run(two_part_message())
    assert v.findings == []
    assert v.result.choices[0].text == TEXT  # a refusal is no output text


def test_parts_are_numbered_in_order_and_added_once() -> None:
    events = two_part_message()
    at = index_of(events, "response.content_part.added", 1)
    assert rules([*events[:at], {**events[at], "content_index": 2}, *events[at + 1:]]) == ["stream.event_order"]
    first = index_of(events, "response.content_part.added")
    assert rules([*events[:at], {**events[first], "part": {"type": "refusal", "refusal": ""}}, *events[at + 1:]]) == ["stream.event_order"]


def test_parts_close_in_the_order_they_opened() -> None:
    events = two_part_message()
    first_done = index_of(events, "response.content_part.done")
    moved = events.pop(first_done)
    events.insert(index_of(events, "response.content_part.done") + 1, moved)
    # the refusal part (1) opens while the text part (0) is open, and closes first
    refusal_added = events.pop(index_of(events, "response.content_part.added", 1))
    events.insert(index_of(events, "response.output_text.done"), refusal_added)
    assert rules(events) == ["stream.event_order"]


def test_a_delta_goes_into_a_part_of_its_kind() -> None:
    events = text_stream()
    at = index_of(events, "response.output_text.delta")
    events.insert(at, {**events[at], "type": "response.refusal.delta", "delta": ""})
    assert rules(events) == ["stream.event_order"]


def test_the_done_part_is_the_deltas() -> None:
    events = text_stream()
    at = index_of(events, "response.content_part.done")
    events[at] = copy.deepcopy(events[at])
    events[at]["part"]["text"] = "Hi!"
    findings = run(events).findings
    assert [(f.rule, f.evidence["event"]) for f in findings] == [("stream.done_mismatch", "response.content_part.done")]


def test_the_reasoning_summary_done_is_the_deltas() -> None:
    events = reasoning_stream()
    at = index_of(events, "response.reasoning_summary_text.delta", 1)
    events[at] = {**events[at], "delta": "!"}
    findings = run(events).findings
    assert [(f.rule, f.evidence["event"]) for f in findings] == [("stream.done_mismatch", "response.reasoning_summary_text.done")]


def test_the_done_text_is_the_deltas_one_finding_for_every_repetition() -> None:
    events = text_stream()
    del events[index_of(events, "response.output_text.delta", 1)]  # a lost delta
    findings = run(events).findings
    # output_text.done, content_part.done, output_item.done and response.completed all state the
    # full text: one root cause, one finding (at the first of them)
    assert [f.rule for f in findings] == ["stream.done_mismatch"]
    assert findings[0].evidence["event"] == "response.output_text.done" and findings[0].evidence["streamed"] == "Hi"


def test_the_final_arguments_are_the_deltas() -> None:
    events = function_stream()
    at = index_of(events, "response.function_call_arguments.delta", 1)
    events[at] = {**events[at], "delta": '"Paris",'}
    findings = run(events).findings
    assert [(f.rule, f.evidence["event"]) for f in findings] == [("stream.done_mismatch", "response.function_call_arguments.done")]


def test_the_done_function_call_holds_the_streamed_arguments() -> None:
    events = function_stream()
    at = index_of(events, "response.output_item.done")
    events[at] = {**events[at], "item": {**events[at]["item"], "arguments": "{}"}}
    findings = run(events).findings
    assert [(f.rule, f.evidence["event"]) for f in findings] == [("stream.done_mismatch", "response.output_item.done")]


def test_the_done_item_has_the_added_type_and_parts() -> None:
    events = text_stream()
    at = index_of(events, "response.output_item.done")
    events[at] = copy.deepcopy(events[at])
    events[at]["item"]["type"] = "reasoning"
    assert rules(events, check_schema=False) == ["stream.done_mismatch"]
    events = text_stream()
    events[at] = copy.deepcopy(events[at])
    events[at]["item"]["content"].append({"type": "output_text", "text": "More.", "annotations": []})
    findings = run(events).findings
    assert [(f.rule, f.evidence["stated"]) for f in findings] == [("stream.done_mismatch", "2")]


def test_the_done_events_name_the_same_function() -> None:
    events = function_stream()
    at = index_of(events, "response.function_call_arguments.done")
    events[at] = {**events[at], "name": "get_time"}
    assert rules(events) == ["stream.done_mismatch"]


def test_the_completed_response_holds_what_streamed() -> None:
    events = text_stream()
    events[-1] = copy.deepcopy(events[-1])
    events[-1]["response"]["output"][0]["content"][0]["text"] = "Hello there!"
    assert rules(events) == ["stream.done_mismatch"]
    events[-1]["response"]["output"] = []
    assert rules(events) == ["stream.done_mismatch"]


def test_the_done_item_is_the_added_one() -> None:
    events = text_stream()
    at = index_of(events, "response.output_item.done")
    events[at] = copy.deepcopy(events[at])
    events[at]["item"]["id"] = "msg_other"
    assert rules(events) == ["stream.done_mismatch"]


def test_arguments_must_form_json() -> None:
    events = function_stream()
    for event in events:
        if event["type"] == "response.function_call_arguments.delta" and event["delta"].endswith("}"):
            event["delta"] = event["delta"][:-1]
        elif event["type"] == "response.function_call_arguments.done":
            event["arguments"] = event["arguments"][:-1]
        elif event["type"] == "response.output_item.done":
            event["item"] = {**event["item"], "arguments": event["item"]["arguments"][:-1]}
    events[-1] = copy.deepcopy(events[-1])
    events[-1]["response"]["output"][0]["arguments"] = events[-1]["response"]["output"][0]["arguments"][:-1]
    assert rules(events) == ["tools.arguments_invalid"]


def test_the_stream_ends_with_a_terminal_event() -> None:
    events = text_stream()[:-3]  # cut inside the message: no terminal event, the item still open
    assert rules(events) == ["stream.terminator_missing"]


def test_no_item_open_at_the_terminal_event() -> None:
    events = text_stream()
    del events[index_of(events, "response.output_item.done")]
    findings = run(events).findings
    assert [f.rule for f in findings] == ["stream.item_unclosed"]
    assert findings[0].evidence["open_items"] == [0]


def test_an_item_is_done_after_its_parts() -> None:
    events = text_stream()
    del events[index_of(events, "response.content_part.done")]
    assert rules(events) == ["stream.item_unclosed"]


@pytest.mark.parametrize(("event", "status"), [(0, "completed"), (1, "failed"), (-1, "incomplete")])
def test_a_lifecycle_events_status_fits_the_event(event: int, status: str) -> None:
    events = text_stream()
    events[event] = copy.deepcopy(events[event])
    events[event]["response"]["status"] = status
    if status == "incomplete":
        events[event]["response"]["incomplete_details"] = {"reason": "max_output_tokens"}
    assert rules(events) == ["stream.response_status"]


@pytest.mark.parametrize(("member", "rule"), [("id", "stream.id_changed"), ("model", "stream.model_changed"), ("created_at", "stream.created_changed")])
def test_the_response_is_one_response(member: str, rule: str) -> None:
    events = text_stream()
    events[-1] = copy.deepcopy(events[-1])
    events[-1]["response"][member] = 7 if member == "created_at" else "other"
    assert rules(events) == [rule]


def test_a_completed_response_carries_usage() -> None:
    events = text_stream()
    events[-1] = copy.deepcopy(events[-1])
    events[-1]["response"]["usage"] = None
    assert rules(events) == ["usage.missing"]


def test_usage_adds_up() -> None:
    events = text_stream()
    events[-1] = copy.deepcopy(events[-1])
    events[-1]["response"]["usage"]["total_tokens"] = 50
    assert rules(events) == ["usage.totals"]


def test_nothing_after_the_terminal_event() -> None:
    events = text_stream()
    assert rules([*events, events[-1]]) == ["stream.data_after_terminator"]


def test_the_event_name_is_the_data_type() -> None:
    raw = frame(text_stream()).replace(b"event: response.in_progress\n", b"event: message\n", 1)
    assert rules(raw) == ["stream.event_name"]


def test_an_error_event_cuts_the_stream() -> None:
    events = text_stream()[:5]
    v = run([*events, example("event-error.json")])
    assert [f.rule for f in v.findings] == ["stream.error_event"]
    assert v.result.cut == "error_event" and v.result.error["message"] == "Something went wrong"


def test_response_failed_is_the_failure_not_a_missing_end() -> None:
    events = text_stream()[:5]
    failed = copy.deepcopy(events[0])
    failed["type"] = "response.failed"
    failed["response"].update(status="failed", error={"code": "server_error", "message": "The model failed to generate a response."})
    v = run([*events, failed])
    assert [f.rule for f in v.findings] == ["stream.error_event"]  # the open item is no second finding
    assert v.result.cut == "error_event" and v.result.choices[0].finish_reason is None
    assert "failed to generate" in v.findings[0].message


def test_incomplete_is_length_and_its_usage_the_cap() -> None:
    events = text_stream()
    final = copy.deepcopy(events[-1])
    final["type"] = "response.incomplete"
    final["response"].update(status="incomplete", incomplete_details={"reason": "max_output_tokens"})
    for item in final["response"]["output"]:
        item["status"] = "incomplete"
    events[-1] = final
    v = run(events, {**REQUEST, "max_output_tokens": 16})
    assert v.result.choices[0].finish_reason == "length"
    assert [f.rule for f in v.findings] == ["usage.completion_tokens"]  # 11 output tokens, cap 16
    final["response"]["usage"] = {**final["response"]["usage"], "output_tokens": 16, "total_tokens": 53}
    assert rules(events, {**REQUEST, "max_output_tokens": 16}) == []


def test_an_incomplete_reason_outside_the_reference() -> None:
    events = text_stream()
    final = copy.deepcopy(events[-1])
    final["type"] = "response.incomplete"
    final["response"].update(status="incomplete", incomplete_details={"reason": "max_tokens"})  # ERRATA E17
    events[-1] = final
    assert rules(events, check_schema=False) == ["stream.finish_reason_invalid"]
    assert "stream.chunk_schema" in rules(events)  # the schema names the member too


# ---------------------------------------------------------------------- non-stream answers


def test_read_answer_of_the_references_responses() -> None:
    text = read_answer(example("create-text-input-response.json"))
    assert text is not None and text.text.startswith("In a peaceful grove") and text.finish == "completed"
    assert text.usage is not None and text.usage["total_tokens"] == 123 and text.tool_calls == []
    call = read_answer(example("create-functions-response.json"))
    assert call is not None and call.finish == "completed:function_call" and call.text == ""
    assert call.tool_calls == [{
        "id": "call_unLAR8MvFNptuiZK6K6HCy5k", "type": "function", "name": "get_current_weather",
        "arguments": '{"location":"Boston, MA","unit":"celsius"}', "pointer": "/output/0",
    }]
    assert read_answer({"error": {"message": "m"}}) is None and read_answer([1]) is None


@pytest.mark.parametrize(
    ("status", "details", "native"),
    [("completed", None, "completed"), ("incomplete", {"reason": "content_filter"}, "incomplete:content_filter"),
     ("incomplete", None, None), ("failed", None, None), ("in_progress", None, None)],
)
def test_native_finish(status: str, details: Any, native: str | None) -> None:
    assert native_finish({"status": status, "incomplete_details": details, "output": []}) == native


# ---------------------------------------------------------------------- schemas


def test_every_bundled_example_is_indexed_with_its_verdict() -> None:
    # tests/specs/test_specs_examples.py checks each; here: every event type the machine follows has one
    names = {p.name for p in Path(EXAMPLES).glob("event-*.json")}
    for kind in ("response.created", "response.completed", "response.output_text.delta", "response.function_call_arguments.done",
                 "response.reasoning_summary_text.delta", "response.reasoning_text.done", "error"):
        assert f"event-{kind}.json" in names


def delta_event(**over: Any) -> dict[str, Any]:
    return {**example("event-response.output_text.delta.json"), **over}


@pytest.mark.parametrize(
    ("instance", "rule"),
    [
        ({k: v for k, v in delta_event().items() if k != "item_id"}, "item_id.required"),
        ({k: v for k, v in delta_event().items() if k != "sequence_number"}, "sequence_number.required"),
        (delta_event(output_index="0"), "output_index.type"),
        (delta_event(delta=None), "delta.type"),
        (delta_event(logprobs=[{"token": "In"}]), "logprobs.logprob.required"),
        ({**example("event-response.created.json"), "response": {**example("event-response.created.json")["response"], "object": "chat.completion"}}, "response.object.const"),
        ({**example("event-response.output_item.added.json"), "item": {"type": "function_call", "name": "f", "arguments": ""}}, "item.call_id.required"),
        ({**example("event-response.content_part.added.json"), "part": {"type": "output_text", "text": ""}}, "part.annotations.required"),
        ({k: v for k, v in example("event-response.function_call_arguments.done.json").items() if k != "name"}, "name.required"),
        ({**example("event-error.json"), "message": 7}, "message.type"),
    ],
)
def test_broken_events_fail_their_rule(instance: dict[str, Any], rule: str) -> None:
    assert [e.rule for e in validate(DIALECT, "chunk", instance)] == [rule]


def test_events_may_grow() -> None:
    assert validate(DIALECT, "chunk", {"type": "response.audio.delta", "sequence_number": 3, "delta": "AAA"}) == []
    assert validate(DIALECT, "chunk", delta_event(obfuscation="xyz")) == []
    item = {"type": "web_search_call", "id": "ws_1", "status": "completed"}
    assert validate(DIALECT, "chunk", {**example("event-response.output_item.done.json"), "item": item}) == []


BODY = {"model": "gpt-5.4", "input": "hi"}
FN_TOOL = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}


@pytest.mark.parametrize(
    ("body", "rule", "pointer"),
    [
        ({**BODY, "temperature": 2.5}, "temperature.maximum", "/temperature"),
        ({**BODY, "top_p": -0.1}, "top_p.minimum", "/top_p"),
        ({**BODY, "max_output_tokens": 15}, "max_output_tokens.minimum", "/max_output_tokens"),
        ({**BODY, "top_logprobs": 21}, "top_logprobs.maximum", "/top_logprobs"),
        ({**BODY, "input": 7}, "input.type", "/input"),
        ({**BODY, "input": [{"role": "tool", "content": "x"}]}, "input.role.enum", "/input/0/role"),
        ({**BODY, "input": [{"role": "user"}]}, "input.content.required", "/input/0"),
        ({**BODY, "input": [{"role": "user", "content": [{"type": "input_text"}]}]}, "input.content.text.required", "/input/0/content/0"),
        ({**BODY, "input": [{"type": "function_call_output", "call_id": "c"}]}, "input.output.required", "/input/0"),
        ({**BODY, "tools": [{**FN_TOOL, "name": None}]}, "tools.name.type", "/tools/0/name"),
        ({**BODY, "tools": [{"type": "function", "name": "f"}]}, "tools.parameters.required", "/tools/0"),
        ({**BODY, "tool_choice": "sometimes"}, "tool_choice.enum", "/tool_choice"),
        ({**BODY, "tool_choice": {"type": "function"}}, "tool_choice.name.required", "/tool_choice"),
        ({**BODY, "reasoning": {"effort": "extreme"}}, "reasoning.effort.enum", "/reasoning/effort"),
        ({**BODY, "text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema.required", "/text/format"),
        ({**BODY, "metadata": {str(i): "v" for i in range(17)}}, "metadata.maxProperties", "/metadata"),
        ({**BODY, "stream_options": {"include_obfuscation": False}}, "stream_options.requires_stream", ""),
        ({**BODY, "truncation": "sometimes"}, "truncation.enum", "/truncation"),
    ],
)
def test_wrong_requests_fail_their_rule(body: dict[str, Any], rule: str, pointer: str) -> None:
    assert [(e.rule, e.pointer) for e in validate(DIALECT, "request", body)] == [(rule, pointer)]


def test_a_chat_shaped_tool_is_no_responses_tool() -> None:
    chat_tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    assert sorted(e.rule for e in validate(DIALECT, "request", {**BODY, "tools": [chat_tool]})) == [
        "tools.name.required", "tools.parameters.required",
    ]


def test_requests_the_reference_allows() -> None:
    assert validate(DIALECT, "request", {}) == []  # model and input may come from a prompt template
    assert validate(DIALECT, "request", {**BODY, "tools": [{"type": "web_search"}], "tool_choice": {"type": "web_search"}}) == []
    assert validate(DIALECT, "request", {**BODY, "tools": [FN_TOOL], "tool_choice": {"type": "function", "name": "get_weather"}}) == []
    conversation = [
        {"role": "developer", "content": "Be brief."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Sunny."}]},
        {"type": "item_reference", "id": "msg_1"},
    ]
    assert validate(DIALECT, "request", {**BODY, "input": conversation, "max_output_tokens": 16, "temperature": None}) == []


@pytest.mark.parametrize(
    ("instance", "valid"),
    [
        ({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}, True),
        ({"error": {"message": "m", "type": "invalid_request_error", "code": None}}, False),  # param is required (null allowed)
        ({"error": {"message": "m", "type": "t", "param": None, "code": 400}}, False),  # code is a string
        ({"error": "bad"}, False),
    ],
)
def test_error_envelope(instance: dict[str, Any], valid: bool) -> None:
    assert (validate(DIALECT, "error", instance) == []) is valid


def test_broken_responses_fail_their_rule() -> None:
    good = example("create-text-input-response.json")
    assert validate(DIALECT, "response", good) == []
    no_total = copy.deepcopy(good)
    del no_total["usage"]["total_tokens"]
    assert [e.rule for e in validate(DIALECT, "response", no_total)] == ["usage.total_tokens.required"]
    bad_role = copy.deepcopy(good)
    bad_role["output"][0]["role"] = "user"
    assert [e.rule for e in validate(DIALECT, "response", bad_role)] == ["output.role.const"]
    bad_reason = {**good, "status": "incomplete", "incomplete_details": {"reason": "length"}}
    assert [e.rule for e in validate(DIALECT, "response", bad_reason)] == ["incomplete_details.reason.enum"]
    assert [e.rule for e in validate(DIALECT, "response", {k: v for k, v in good.items() if k != "output"})] == ["output.required"]


def test_erratum_e19_is_only_the_missing_comma() -> None:
    text = (EXAMPLES / "event-response.function_call_arguments.delta.json").read_text(encoding="utf-8")
    fixed = text.replace('"delta": "{ \\"arg\\":"\n', '"delta": "{ \\"arg\\":",\n')
    assert validate(DIALECT, "chunk", json.loads(fixed)) == []
