"""The reference server's typed-event dialects: anthropic-messages (POST /v1/messages) and
openai-responses (POST /v1/responses), streamed and not, their errors, their truth records, and
every fault of the catalogue for them (each changes exactly what it says).

The streams are parsed here with the project's SSE decoder only: the shapes are checked
against the published references directly (Anthropic API reference, Streaming Messages;
OpenAI API reference, Responses: Streaming events), not through chatprobe's own validators.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pytest
from server_wire import Wire, exchange

from chatprobe.rules import RULES
from chatprobe.server import validate
from chatprobe.server.faults import BY_NAME, CATALOGUE, TYPED, Fault
from chatprobe.server.runner import running_server
from chatprobe.server.validate import RequestError
from tests.catalogue import fault_servers

MESSAGES, RESPONSES = "/v1/messages", "/v1/responses"
PATHS = {"anthropic-messages": MESSAGES, "openai-responses": RESPONSES}
HELLO = [{"role": "user", "content": "hello"}]
WEATHER = {"type": "object", "required": ["city"],
           "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1, "maximum": 7}}}


def msg(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 256, "messages": HELLO, **fields}


def resp(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "input": "hello", **fields}


def typed_events(wire: Wire) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of every event; the data is always JSON in these dialects."""
    return [(e.type, json.loads(e.data)) for e in wire.events]


def types(wire: Wire) -> list[str]:
    return [data["type"] for _, data in typed_events(wire)]


def data_of(wire: Wire, kind: str) -> list[dict[str, Any]]:
    return [data for _, data in typed_events(wire) if data["type"] == kind]


def deltas(wire: Wire, delta_type: str) -> list[str]:
    """Messages: the text / thinking / partial_json of every delta of that type."""
    field = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json"}[delta_type]
    return [d["delta"][field] for d in data_of(wire, "content_block_delta") if d["delta"]["type"] == delta_type]


def output_text(wire: Wire) -> str:
    return "".join(d["delta"] for d in data_of(wire, "response.output_text.delta"))


def _collapse(names: list[str]) -> list[str]:
    """Runs of one event type shown once (the deltas)."""
    return [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with running_server() as base:
        yield base


def post(base: str, path: str, body: dict[str, Any], **headers: str) -> Wire:
    return exchange(base, path, body, headers=headers or None)


# --- anthropic-messages -------------------------------------------------------------------------

def test_messages_stream_shape_and_usage(url: str) -> None:
    wire = post(url, MESSAGES, msg(stream=True))
    assert wire.status == 200 and wire.headers["content-type"].startswith("text/event-stream")
    events = typed_events(wire)
    assert all(name == data["type"] for name, data in events), "event: name = data type"
    assert _collapse(types(wire)) == ["message_start", "content_block_start", "ping", "content_block_delta",
                                      "content_block_stop", "message_delta", "message_stop"]
    start = data_of(wire, "message_start")[0]["message"]
    assert start["content"] == [] and start["role"] == "assistant" and start["id"].startswith("msg_")
    assert start["stop_reason"] is None and start["usage"]["output_tokens"] == 0
    text = deltas(wire, "text_delta")
    assert 16 <= len(text) <= 48
    (final,) = data_of(wire, "message_delta")
    assert final["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert final["usage"]["output_tokens"] == len(text)
    whole = post(url, MESSAGES, msg())
    assert whole.status == 200
    body = whole.json
    assert body["type"] == "message" and body["content"] == [{"type": "text", "text": "".join(text)}]
    assert body["stop_reason"] == "end_turn" and body["usage"]["output_tokens"] == len(text)
    assert body["usage"]["input_tokens"] == start["usage"]["input_tokens"] == 3 + 4 + 1


def test_messages_cap_is_exact(url: str) -> None:
    wire = post(url, MESSAGES, msg(stream=True, max_tokens=5))
    assert len(deltas(wire, "text_delta")) == 5
    (final,) = data_of(wire, "message_delta")
    assert final["delta"]["stop_reason"] == "max_tokens" and final["usage"]["output_tokens"] == 5
    body = post(url, MESSAGES, msg(max_tokens=5)).json
    assert body["stop_reason"] == "max_tokens" and body["usage"]["output_tokens"] == 5
    empty = post(url, MESSAGES, msg(max_tokens=0)).json  # 0: the current reference's prompt-cache warm-up
    assert empty["content"] == [] and empty["stop_reason"] == "max_tokens" and empty["usage"]["output_tokens"] == 0


def test_messages_stop_sequence(url: str) -> None:
    request = msg(stream=True, stop_sequences=["STOP"], messages=[{"role": "user", "content": "say: one two STOP three"}])
    wire = post(url, MESSAGES, request)
    text = "".join(deltas(wire, "text_delta"))
    assert text == "one two " and "STOP" not in text
    (final,) = data_of(wire, "message_delta")
    assert final["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "STOP"}
    assert final["usage"]["output_tokens"] == len(deltas(wire, "text_delta"))
    body = post(url, MESSAGES, {**request, "stream": False}).json
    assert body["content"][0]["text"] == text and body["stop_sequence"] == "STOP"


def test_messages_forced_tool_call(url: str) -> None:
    tools = [{"name": "get_time", "input_schema": {"type": "object", "properties": {"zone": {"type": "string"}}}},
             {"name": "get_weather", "description": "weather", "input_schema": WEATHER}]
    request = msg(stream=True, tools=tools, tool_choice={"type": "tool", "name": "get_weather"})
    wire = post(url, MESSAGES, request)
    starts = data_of(wire, "content_block_start")
    assert [s["content_block"]["type"] for s in starts] == ["tool_use"]
    block = starts[0]["content_block"]
    assert block["name"] == "get_weather" and block["input"] == {} and block["id"].startswith("toolu_")
    fragments = deltas(wire, "input_json_delta")
    assert len(fragments) > 1 and all(len(f) <= 8 for f in fragments)
    arguments = json.loads("".join(fragments))
    assert isinstance(arguments, dict) and isinstance(arguments["city"], str)
    (final,) = data_of(wire, "message_delta")
    assert final["delta"]["stop_reason"] == "tool_use" and final["usage"]["output_tokens"] == len(fragments)
    body = post(url, MESSAGES, {**request, "stream": False}).json
    assert body["stop_reason"] == "tool_use"
    assert body["content"] == [{"type": "tool_use", "id": block["id"], "name": "get_weather", "input": arguments}]
    none = post(url, MESSAGES, msg(tools=tools, tool_choice={"type": "none"},
                                   messages=[{"role": "user", "content": "call get_weather"}])).json
    assert none["stop_reason"] == "end_turn" and none["content"][0]["type"] == "text"


def test_messages_thinking_then_text(url: str) -> None:
    request = msg(stream=True, max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 1024})
    wire = post(url, MESSAGES, request)
    starts = [s["content_block"]["type"] for s in data_of(wire, "content_block_start")]
    assert starts == ["thinking", "text"]
    block_deltas = [d["delta"]["type"] for d in data_of(wire, "content_block_delta") if d["index"] == 0]
    assert block_deltas[-1] == "signature_delta" and set(block_deltas[:-1]) == {"thinking_delta"}
    names = types(wire)
    signature_at = next(i for i, (_, d) in enumerate(typed_events(wire))
                        if d["type"] == "content_block_delta" and d["delta"]["type"] == "signature_delta")
    assert names[signature_at + 1] == "content_block_stop"
    thinking, text = deltas(wire, "thinking_delta"), deltas(wire, "text_delta")
    assert len(thinking) == 8  # DEFAULT_REASONING_TOKENS without serve --reasoning-ms
    (final,) = data_of(wire, "message_delta")
    assert final["usage"]["output_tokens"] == len(thinking) + len(text)
    body = post(url, MESSAGES, {**request, "stream": False}).json
    assert [b["type"] for b in body["content"]] == ["thinking", "text"]
    assert body["content"][0]["thinking"] == "".join(thinking) and body["content"][0]["signature"]
    assert body["content"][1]["text"] == "".join(text)
    capped = post(url, MESSAGES, {**request, "stream": True, "max_tokens": 1030, "thinking": {
        "type": "enabled", "budget_tokens": 1024}})
    assert data_of(capped, "message_delta")[0]["delta"]["stop_reason"] == "end_turn"


def test_messages_deterministic_and_system_counted(url: str) -> None:
    first = post(url, MESSAGES, msg(temperature=0)).json
    second = post(url, MESSAGES, msg(temperature=0)).json
    assert first["content"] == second["content"]
    with_system = post(url, MESSAGES, msg(temperature=0, system="be brief please")).json
    assert with_system["usage"]["input_tokens"] == first["usage"]["input_tokens"] + 4 + 3
    blocks = post(url, MESSAGES, msg(system=[{"type": "text", "text": "be brief please"}],
                                     messages=[{"role": "user", "content": [{"type": "text", "text": "hello"}]}])).json
    assert blocks["usage"]["input_tokens"] == with_system["usage"]["input_tokens"]


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "m", "messages": HELLO}, "max_tokens"),
    (msg(max_tokens=-1), "max_tokens"),
    (msg(temperature=1.5), "temperature"),
    (msg(messages=[{"role": "system", "content": "x"}]), "messages[0].role"),
    (msg(messages=[]), "messages"),
    (msg(stop_sequences="STOP"), "stop_sequences"),
    (msg(tools=[{"name": "bad name!", "input_schema": {"type": "object"}}]), "tools[0].name"),
    (msg(tools=[{"name": "f"}]), "tools[0].input_schema"),
    (msg(tool_choice={"type": "required"}), "tool_choice"),
    (msg(thinking={"type": "enabled", "budget_tokens": 512}), "thinking.budget_tokens"),
    (msg(max_tokens=1024, thinking={"type": "enabled", "budget_tokens": 1024}), "thinking.budget_tokens"),
])
def test_messages_invalid_requests(url: str, body: dict[str, Any], param: str) -> None:
    wire = post(url, MESSAGES, body)
    assert wire.status == 400, (param, wire.raw)
    error = wire.json
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert isinstance(error["error"]["message"], str) and error["request_id"].startswith("req_")


def test_messages_errors_by_status(url: str, keyed_server_url: str) -> None:
    unknown = post(url, MESSAGES, msg(model="chatprobe-no-such-model"))
    assert unknown.status == 404 and unknown.json["error"]["type"] == "not_found_error"
    assert post(keyed_server_url, MESSAGES, msg()).json["error"]["type"] == "authentication_error"
    bearer = post(keyed_server_url, MESSAGES, msg(), Authorization="Bearer sekret")
    assert bearer.status == 401  # the Messages API takes its key in x-api-key
    assert post(keyed_server_url, MESSAGES, msg(), **{"x-api-key": "wrong"}).status == 401
    assert post(keyed_server_url, MESSAGES, msg(), **{"x-api-key": "sekret"}).status == 200
    # statuses this server meets only under load or shutdown: Anthropic's names and 529
    for status, kind in ((413, "request_too_large"), (429, "rate_limit_error"), (503, "overloaded_error"),
                         (500, "api_error")):
        body = validate.error_body("anthropic-messages", RequestError(status, "x"))
        assert body["error"]["type"] == kind
    assert validate.status_for("anthropic-messages", 503) == 529
    assert validate.status_for("openai-responses", 503) == 503


def test_messages_overload_is_529() -> None:
    """K=1 and no queue: while one stream holds the slot the next Messages request is refused at
    once, 529 overloaded_error (Anthropic's status for an overloaded API) with Retry-After."""
    import httpx

    with running_server(max_concurrency=1, max_queue=0, itl_ms=20) as base, \
            httpx.Client(base_url=base, timeout=10) as http:
        with http.stream("POST", MESSAGES, json=msg(stream=True, max_tokens=10)) as first:
            lines = first.iter_lines()
            while "content_block_delta" not in next(lines):  # a token out: it holds the only slot
                pass
            refused = http.post(MESSAGES, json=msg(max_tokens=2))
            assert refused.status_code == 529 and refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["type"] == "overloaded_error"
            for _ in lines:
                pass
        assert http.post(MESSAGES, json=msg(max_tokens=2)).status_code == 200


def test_messages_body_too_large_is_413() -> None:
    with running_server(max_body_bytes=200) as base:
        wire = post(base, MESSAGES, msg(messages=[{"role": "user", "content": "x" * 400}]))
    assert wire.status == 413 and wire.json["error"]["type"] == "request_too_large"


# --- openai-responses ---------------------------------------------------------------------------

def _sequence_ok(wire: Wire) -> None:
    numbers = [data["sequence_number"] for _, data in typed_events(wire)]
    assert numbers == list(range(len(numbers)))


def test_responses_stream_shape_and_usage(url: str) -> None:
    wire = post(url, RESPONSES, resp(stream=True))
    assert wire.status == 200 and wire.headers["content-type"].startswith("text/event-stream")
    events = typed_events(wire)
    assert all(name == data["type"] for name, data in events)
    _sequence_ok(wire)
    assert _collapse(types(wire)) == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed"]
    created = data_of(wire, "response.created")[0]["response"]
    assert created["status"] == "in_progress" and created["output"] == [] and created["id"].startswith("resp_")
    text_deltas = data_of(wire, "response.output_text.delta")
    item_id = data_of(wire, "response.output_item.added")[0]["item"]["id"]
    assert {(d["item_id"], d["output_index"], d["content_index"]) for d in text_deltas} == {(item_id, 0, 0)}
    assert all(d["logprobs"] == [] for d in text_deltas)
    text = output_text(wire)
    assert data_of(wire, "response.output_text.done")[0]["text"] == text
    assert data_of(wire, "response.content_part.done")[0]["part"]["text"] == text
    completed = data_of(wire, "response.completed")[0]["response"]
    assert completed["status"] == "completed" and completed["id"] == created["id"]
    assert completed["output"] == [data_of(wire, "response.output_item.done")[0]["item"]]
    usage = completed["usage"]
    assert usage["output_tokens"] == len(text_deltas)
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["input_tokens_details"] == {"cached_tokens": 0}
    assert usage["output_tokens_details"] == {"reasoning_tokens": 0}
    whole = post(url, RESPONSES, resp())
    body = whole.json
    assert whole.status == 200 and body["object"] == "response" and body["status"] == "completed"
    assert body["output"][0]["content"][0]["text"] == text and body["usage"] == usage


def test_responses_cap_is_incomplete(url: str) -> None:
    wire = post(url, RESPONSES, resp(stream=True, max_output_tokens=16))
    _sequence_ok(wire)
    assert types(wire)[-1] == "response.incomplete" and not data_of(wire, "response.completed")
    response = data_of(wire, "response.incomplete")[0]["response"]
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["usage"]["output_tokens"] == 16 == len(data_of(wire, "response.output_text.delta"))
    assert response["output"][0]["status"] == "incomplete"
    body = post(url, RESPONSES, resp(max_output_tokens=16)).json
    assert body["status"] == "incomplete" and body["usage"]["output_tokens"] == 16


def test_responses_forced_function_call(url: str) -> None:
    tools = [{"type": "function", "name": "get_weather", "parameters": WEATHER},
             {"type": "function", "name": "get_time", "parameters": None}]
    request = resp(stream=True, tools=tools, tool_choice={"type": "function", "name": "get_weather"})
    wire = post(url, RESPONSES, request)
    _sequence_ok(wire)
    assert _collapse(types(wire)) == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed"]
    item = data_of(wire, "response.output_item.added")[0]["item"]
    assert item["type"] == "function_call" and item["name"] == "get_weather" and item["arguments"] == ""
    pieces = [d["delta"] for d in data_of(wire, "response.function_call_arguments.delta")]
    arguments = "".join(pieces)
    assert isinstance(json.loads(arguments)["city"], str)
    assert data_of(wire, "response.function_call_arguments.done")[0]["arguments"] == arguments
    completed = data_of(wire, "response.completed")[0]["response"]
    assert completed["output"][0]["arguments"] == arguments and completed["output"][0]["call_id"] == item["call_id"]
    assert completed["usage"]["output_tokens"] == len(pieces)
    body = post(url, RESPONSES, {**request, "stream": False}).json
    assert body["output"][0]["arguments"] == arguments and body["output"][0]["status"] == "completed"


def test_responses_reasoning_item_first(url: str) -> None:
    wire = post(url, RESPONSES, resp(stream=True, reasoning={"effort": "low", "summary": "auto"}))
    _sequence_ok(wire)
    added = [d["item"]["type"] for d in data_of(wire, "response.output_item.added")]
    assert added == ["reasoning", "message"]
    summary = [d["delta"] for d in data_of(wire, "response.reasoning_summary_text.delta")]
    assert len(summary) == 8
    assert data_of(wire, "response.reasoning_summary_text.done")[0]["text"] == "".join(summary)
    usage = data_of(wire, "response.completed")[0]["response"]["usage"]
    assert usage["output_tokens_details"]["reasoning_tokens"] == 8
    assert usage["output_tokens"] == 8 + len(data_of(wire, "response.output_text.delta"))
    plain = post(url, RESPONSES, resp(stream=True, reasoning={"effort": "none"}))
    assert [d["item"]["type"] for d in data_of(plain, "response.output_item.added")] == ["message"]


def test_responses_input_forms_and_instructions(url: str) -> None:
    bare = post(url, RESPONSES, resp()).json
    items = post(url, RESPONSES, resp(input=[{"type": "message", "role": "user",
                                               "content": [{"type": "input_text", "text": "hello"}]}])).json
    assert items["usage"]["input_tokens"] == bare["usage"]["input_tokens"]
    told = post(url, RESPONSES, resp(instructions="answer in French")).json
    assert told["usage"]["input_tokens"] == bare["usage"]["input_tokens"] + 4 + 3
    assert told["instructions"] == "answer in French"
    modelless = post(url, RESPONSES, {"input": "hello"})
    assert modelless.status == 200 and modelless.json["model"] == "chatprobe-reference"
    echo = post(url, RESPONSES, resp(input="say: un deux trois", max_output_tokens=16)).json
    assert echo["output"][0]["content"][0]["text"].startswith("un deux trois")


@pytest.mark.parametrize(("body", "status"), [
    (resp(max_output_tokens=15), 400),
    (resp(temperature=2.5), 400),
    (resp(input=42), 400),
    (resp(input=[{"role": "wizard", "content": "x"}]), 400),
    (resp(tools=[{"type": "function", "name": "f"}]), 400),
    (resp(tool_choice="sometimes"), 400),
    (resp(tools=[{"type": "function", "name": "f", "parameters": None}], tool_choice={"type": "function", "name": "g"}), 400),
    (resp(reasoning={"effort": "huge"}), 400),
    (resp(text={"format": {"type": "json_schema"}}), 400),
    (resp(previous_response_id="resp_123"), 404),
    (resp(model="chatprobe-no-such-model"), 404),
])
def test_responses_invalid_requests(url: str, body: dict[str, Any], status: int) -> None:
    wire = post(url, RESPONSES, body)
    assert wire.status == status, wire.raw
    error = wire.json["error"]
    assert set(error) == {"message", "type", "param", "code"}


def test_responses_auth_is_bearer(keyed_server_url: str) -> None:
    assert post(keyed_server_url, RESPONSES, resp()).status == 401
    assert post(keyed_server_url, RESPONSES, resp(), **{"x-api-key": "sekret"}).status == 401
    assert post(keyed_server_url, RESPONSES, resp(), Authorization="Bearer sekret").status == 200


def test_opening_events_go_out_before_the_first_token() -> None:
    """message_start / response.created and in_progress are written when the request gets its
    slot; the first token's events wait for its due time (a separate write: no timing asserted)."""
    from server_wire import parse_sse

    with running_server(ttft_ms=30) as base:
        messages = post(base, MESSAGES, msg(stream=True))
        responses = post(base, RESPONSES, resp(stream=True))
    assert [e.type for e in parse_sse(messages.writes[0])] == ["message_start"]
    assert [e.type for e in parse_sse(messages.writes[1])][:3] == ["content_block_start", "ping", "content_block_delta"]
    assert [e.type for e in parse_sse(responses.writes[0])] == ["response.created", "response.in_progress"]
    assert next(e.type for e in parse_sse(responses.writes[1])) == "response.output_item.added"


def test_openai_sdk_reads_responses(url: str) -> None:
    """The official openai SDK's Responses client: its stream accumulator (which rebuilds the
    response from the events, in their order) and its non-stream parse."""
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0, timeout=10)
    try:
        # (its accumulator returns a final response for response.completed only)
        with client.responses.stream(model="m", input="hello", reasoning={"effort": "low"}) as stream:
            streamed = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
            final = stream.get_final_response()
        assert final.output_text == streamed and final.status == "completed"
        assert [item.type for item in final.output] == ["reasoning", "message"]
        assert final.usage is not None and final.usage.output_tokens_details.reasoning_tokens == 8
        tools: Any = [{"type": "function", "name": "get_weather", "parameters": WEATHER, "strict": False}]
        called = client.responses.create(model="m", input="hello", tools=tools, tool_choice="required")
        call = called.output[0]
        assert call.type == "function_call" and json.loads(call.arguments)["city"]
        assert client.responses.create(model="m", input="hello").output_text
    finally:
        client.close()


# --- truth records --------------------------------------------------------------------------------

def test_truth_records_one_stamp_per_token_event() -> None:
    with running_server(itl_ms=1) as base:
        exchange(base, "/_chatprobe/truth", method="DELETE")
        requests = {
            "m-text": (MESSAGES, msg(stream=True, max_tokens=6)),
            "m-think": (MESSAGES, msg(stream=True, max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 1024})),
            "r-text": (RESPONSES, resp(stream=True, max_output_tokens=16)),
            "r-reason": (RESPONSES, resp(stream=True, max_output_tokens=20, reasoning={"effort": "low"})),
            "r-tool": (RESPONSES, resp(stream=True, tools=[{"type": "function", "name": "f", "parameters": WEATHER}],
                                       tool_choice="required")),
        }
        token_events = {}
        for key, (path, body) in requests.items():
            wire = post(base, path, body, **{"X-Request-Id": key})
            assert wire.headers["x-request-id"] == key
            token_events[key] = sum(
                d["type"] in ("response.output_text.delta", "response.reasoning_summary_text.delta",
                              "response.function_call_arguments.delta")
                or (d["type"] == "content_block_delta" and d["delta"]["type"] != "signature_delta")
                for _, d in typed_events(wire))
        records = {r["request_id"]: r for r in exchange(base, "/_chatprobe/truth", method="GET").json["records"]}
    assert token_events == {"m-text": 6, "m-think": token_events["m-think"], "r-text": 16, "r-reason": 20,
                            "r-tool": token_events["r-tool"]}
    for key, path_and_body in requests.items():
        record = records[key]
        assert record["dialect"] == {MESSAGES: "anthropic-messages", RESPONSES: "openai-responses"}[path_and_body[0]]
        assert record["stream"] and record["status"] == 200
        assert record["tokens"] == len(record["token_ns"]) == token_events[key]
        assert record["token_ns"] == sorted(record["token_ns"]) and record["finished_ns"] >= record["token_ns"][-1]
    assert records["m-think"]["reasoning_tokens"] == 8 and records["r-reason"]["reasoning_tokens"] == 8
    # the answer's first token (after the reasoning): the 9th token event's write
    for key in ("m-think", "r-reason"):
        assert records[key]["first_output_ns"] == records[key]["token_ns"][8]
    assert records["m-text"]["first_output_ns"] == records["m-text"]["token_ns"][0]


# --- faults ---------------------------------------------------------------------------------------

def native(fault: Fault, dialect: str) -> dict[str, Any]:
    """The fault's (OpenAI-style) request fragment in the dialect's own shapes."""
    fragment = copy.deepcopy(fault.request)
    messages = fragment.pop("messages", HELLO)
    cap = fragment.pop("max_tokens", None)
    stop = fragment.pop("stop", None)
    tools = [t["function"] for t in fragment.pop("tools", [])]
    choice = fragment.pop("tool_choice", None)
    named = choice["function"]["name"] if isinstance(choice, dict) else None
    if dialect == "anthropic-messages":
        body = msg(messages=messages, max_tokens=cap or 256, **fragment)
        if stop:
            body["stop_sequences"] = stop
        if tools:
            body["tools"] = [{"name": t["name"], "description": t["description"], "input_schema": t["parameters"]}
                             for t in tools]
        if choice is not None:
            body["tool_choice"] = {"type": "tool", "name": named} if named else {
                "type": {"required": "any"}.get(choice, choice)}
        return body
    assert stop is None, "the Responses API has no stop parameter"
    fmt = fragment.pop("response_format", None)
    if fmt is not None:  # Responses > Create: text.format (json_schema flattened)
        fragment["text"] = {"format": {"type": fmt["type"], **fmt.get("json_schema", {})}}
    if fragment.pop("logprobs", None):  # Responses > Create: include message.output_text.logprobs
        fragment["include"] = ["message.output_text.logprobs"]
    body = resp(input=messages, **fragment)
    if cap is not None:
        body["max_output_tokens"] = cap
    if tools:
        body["tools"] = [{"type": "function", **t} for t in tools]
    if choice is not None:
        body["tool_choice"] = {"type": "function", "name": named} if named else choice
    return body


@dataclass
class Case:
    url: str
    plain_url: str
    fault: Fault
    dialect: str

    @property
    def path(self) -> str:
        return PATHS[self.dialect]

    @property
    def body(self) -> dict[str, Any]:
        return native(self.fault, self.dialect)

    @cached_property
    def wire(self) -> Wire:
        return post(self.url, self.path, self.body)

    @cached_property
    def plain(self) -> Wire:
        return post(self.plain_url, self.path, self.body)

    def whole(self, base: str) -> dict[str, Any]:
        wire = post(base, self.path, {**self.body, "stream": False})
        assert wire.status == 200
        body: dict[str, Any] = wire.json
        return body


def same_except(c: Case, kinds: set[str]) -> None:
    """Every event but those of ``kinds`` as the plain server sends them."""
    keep = [d for _, d in typed_events(c.wire) if d["type"] not in kinds]
    plain = [d for _, d in typed_events(c.plain) if d["type"] not in kinds]
    assert _strip(keep) == _strip(plain)


def _strip(value: Any) -> Any:
    """Without created_at / sequence_number / request ids (they may differ between two servers)."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in ("created_at", "sequence_number")}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _final(wire: Wire) -> dict[str, Any]:
    return data_of(wire, "message_delta")[-1]


def _terminal(wire: Wire) -> dict[str, Any]:
    (terminal,) = data_of(wire, "response.completed") + data_of(wire, "response.incomplete")
    response: dict[str, Any] = terminal["response"]
    return response


def check_messages_no_message_stop(c: Case) -> None:
    assert types(c.plain)[-1] == "message_stop" and types(c.wire)[-1] == "message_delta"
    same_except(c, {"message_stop"})


def check_messages_delta_before_start(c: Case) -> None:
    names = types(c.wire)
    assert names.index("content_block_delta") < names.index("content_block_start")
    assert sorted(map(repr, _strip([d for _, d in typed_events(c.wire)]))) == sorted(
        map(repr, _strip([d for _, d in typed_events(c.plain)])))


def check_messages_delta_after_stop(c: Case) -> None:
    names = types(c.wire)
    stop = names.index("content_block_stop")
    assert names[stop + 1] == "content_block_delta" and data_of(c.wire, "content_block_delta")[-1]["index"] == 0
    assert len(names) == len(types(c.plain)) + 1


def check_messages_block_unclosed(c: Case) -> None:
    assert "content_block_stop" in types(c.plain) and "content_block_stop" not in types(c.wire)
    same_except(c, {"content_block_stop"})


def check_messages_tool_input_invalid(c: Case) -> None:
    plain, faulty = deltas(c.plain, "input_json_delta"), deltas(c.wire, "input_json_delta")
    assert json.loads("".join(plain)) and faulty == plain[:1] + plain[2:]
    with pytest.raises(ValueError):
        json.loads("".join(faulty))


def check_messages_bad_stop_reason(c: Case) -> None:
    assert _final(c.plain)["delta"]["stop_reason"] == "end_turn" and _final(c.wire)["delta"]["stop_reason"] == "stop"
    assert c.whole(c.url)["stop_reason"] == "stop"


def check_messages_usage_not_cumulative(c: Case) -> None:
    first, second = data_of(c.wire, "message_delta")
    (plain,) = data_of(c.plain, "message_delta")
    assert second == plain and first["usage"]["output_tokens"] == plain["usage"]["output_tokens"] + 2


def check_messages_usage_cap_undercount(c: Case) -> None:
    assert _final(c.plain)["usage"]["output_tokens"] == 16 == len(deltas(c.wire, "text_delta"))
    assert _final(c.wire)["usage"]["output_tokens"] == 15
    assert c.whole(c.url)["usage"]["output_tokens"] == 15


def check_messages_event_name_mismatch(c: Case) -> None:
    renamed = [(name, d["type"]) for name, d in typed_events(c.wire) if name != d["type"]]
    assert renamed == [("ping", "content_block_delta")]
    assert all(name == d["type"] for name, d in typed_events(c.plain))
    same_except(c, set())


def check_messages_midstream_error(c: Case) -> None:
    names = types(c.wire)
    assert names[-1] == "error" and len(deltas(c.wire, "text_delta")) == 3
    error = typed_events(c.wire)[-1]
    assert error[0] == "error" and error[1]["error"]["type"] == "overloaded_error"


def check_messages_stop_included(c: Case) -> None:
    assert "".join(deltas(c.plain, "text_delta")) == "one two "
    assert "".join(deltas(c.wire, "text_delta")) == "one two STOP"
    assert _final(c.wire)["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "STOP"}


def check_messages_stop_sequence_end_turn(c: Case) -> None:
    assert "".join(deltas(c.wire, "text_delta")) == "".join(deltas(c.plain, "text_delta")) == "one two "
    assert _final(c.plain)["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "STOP"}
    assert _final(c.wire)["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    whole = c.whole(c.url)
    assert whole["stop_reason"] == "end_turn" and whole["stop_sequence"] is None


def check_messages_max_tokens_ignored(c: Case) -> None:
    assert len(deltas(c.plain, "text_delta")) == 16
    assert len(deltas(c.wire, "text_delta")) > 16 and _final(c.wire)["delta"]["stop_reason"] == "end_turn"


def check_messages_tool_use_end_turn(c: Case) -> None:
    assert _final(c.plain)["delta"]["stop_reason"] == "tool_use"
    assert _final(c.wire)["delta"]["stop_reason"] == "end_turn" and deltas(c.wire, "input_json_delta")
    assert c.whole(c.url)["stop_reason"] == "end_turn"


def check_messages_length_as_end_turn(c: Case) -> None:
    assert _final(c.plain)["delta"]["stop_reason"] == "max_tokens"
    assert _final(c.wire)["delta"]["stop_reason"] == "end_turn" and len(deltas(c.wire, "text_delta")) == 16


def check_responses_no_completed(c: Case) -> None:
    assert types(c.plain)[-1] == "response.completed" and types(c.wire)[-1] == "response.output_item.done"
    same_except(c, {"response.completed"})
    _sequence_ok(c.wire)


def check_responses_delta_before_item(c: Case) -> None:
    names = types(c.wire)
    assert names.index("response.output_text.delta") < names.index("response.output_item.added")
    assert names.index("response.output_text.delta") < names.index("response.content_part.added")
    _sequence_ok(c.wire)


def check_responses_delta_after_done(c: Case) -> None:
    names = types(c.wire)
    done = names.index("response.content_part.done")
    assert names[done + 1] == "response.output_text.delta"
    _sequence_ok(c.wire)


def check_responses_item_unclosed(c: Case) -> None:
    assert "response.output_item.done" in types(c.plain) and "response.output_item.done" not in types(c.wire)
    same_except(c, {"response.output_item.done"})


def check_responses_arguments_invalid(c: Case) -> None:
    plain = [d["delta"] for d in data_of(c.plain, "response.function_call_arguments.delta")]
    faulty = [d["delta"] for d in data_of(c.wire, "response.function_call_arguments.delta")]
    assert faulty == plain[:1] + plain[2:]
    sent = "".join(faulty)
    with pytest.raises(ValueError):
        json.loads(sent)
    assert data_of(c.wire, "response.function_call_arguments.done")[0]["arguments"] == sent
    assert data_of(c.wire, "response.output_item.done")[0]["item"]["arguments"] == sent
    assert _terminal(c.wire)["output"][0]["arguments"] == sent


def check_responses_bad_incomplete_reason(c: Case) -> None:
    assert _terminal(c.plain)["incomplete_details"] == {"reason": "max_output_tokens"}
    assert _terminal(c.wire)["incomplete_details"] == {"reason": "length"}
    assert c.whole(c.url)["incomplete_details"] == {"reason": "length"}


def check_responses_usage_cap_undercount(c: Case) -> None:
    plain, faulty = _terminal(c.plain)["usage"], _terminal(c.wire)["usage"]
    assert plain["output_tokens"] == 16 and faulty["output_tokens"] == 15
    assert faulty["total_tokens"] == faulty["input_tokens"] + 15
    assert c.whole(c.url)["usage"]["output_tokens"] == 15


def check_responses_usage_wrong_total(c: Case) -> None:
    usage = _terminal(c.wire)["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] + 7
    whole = c.whole(c.url)["usage"]
    assert whole["total_tokens"] == whole["input_tokens"] + whole["output_tokens"] + 7


def check_responses_event_name_mismatch(c: Case) -> None:
    renamed = [(name, d["type"]) for name, d in typed_events(c.wire) if name != d["type"]]
    assert renamed == [("response.content_part.added", "response.output_text.delta")]
    same_except(c, set())


def check_responses_sequence_repeat(c: Case) -> None:
    numbers = [d["sequence_number"] for _, d in typed_events(c.wire)]
    assert numbers[:6] == [0, 1, 2, 3, 3, 4] and numbers[5:] == list(range(4, len(numbers) - 1))
    assert types(c.wire)[4] == "response.output_text.delta"
    same_except(c, set())


def check_responses_done_text_mismatch(c: Case) -> None:
    text = output_text(c.wire)
    assert data_of(c.wire, "response.output_text.done")[0]["text"] == text[:-1]
    assert data_of(c.wire, "response.content_part.done")[0]["part"]["text"] == text
    same_except(c, {"response.output_text.done"})


def check_responses_status_mismatch(c: Case) -> None:
    assert _terminal(c.plain)["status"] == "completed" and _terminal(c.wire)["status"] == "in_progress"


def check_responses_midstream_error(c: Case) -> None:
    name, error = typed_events(c.wire)[-1]
    assert name == "error" and error["type"] == "error" and error["code"] == "server_error"
    assert len(data_of(c.wire, "response.output_text.delta")) == 3
    _sequence_ok(c.wire)


def check_responses_max_tokens_ignored(c: Case) -> None:
    assert len(data_of(c.plain, "response.output_text.delta")) == 16
    assert len(data_of(c.wire, "response.output_text.delta")) > 16 and _terminal(c.wire)["status"] == "completed"


def check_responses_incomplete_as_completed(c: Case) -> None:
    assert types(c.plain)[-1] == "response.incomplete" and types(c.wire)[-1] == "response.completed"
    assert len(data_of(c.wire, "response.output_text.delta")) == 16


def check_response_format_ignored(c: Case) -> None:
    assert isinstance(json.loads(output_text(c.plain)), dict)
    with pytest.raises(ValueError):
        json.loads(output_text(c.wire))


def check_logprobs_missing(c: Case) -> None:
    """Asked for (include message.output_text.logprobs): the plain server's text deltas carry one
    entry each, the closing text and part all of them; the fault's carry empty lists."""
    plain = data_of(c.plain, "response.output_text.delta")
    assert plain and all(len(d["logprobs"]) == 1 for d in plain)
    assert len(data_of(c.plain, "response.output_text.done")[0]["logprobs"]) == len(plain)
    assert all(d["logprobs"] == [] for d in data_of(c.wire, "response.output_text.delta"))
    assert data_of(c.wire, "response.output_text.done")[0]["logprobs"] == []
    assert data_of(c.wire, "response.content_part.done")[0]["part"]["logprobs"] == []
    same_except(c, {"response.output_text.delta", "response.output_text.done", "response.content_part.done",
                    "response.output_item.done", "response.completed", "response.incomplete"})
    whole = c.whole(c.url)["output"][0]["content"][0]
    assert whole["logprobs"] == [] and len(c.whole(c.plain_url)["output"][0]["content"][0]["logprobs"]) == len(plain)


CHECKS: dict[str, Callable[[Case], None]] = {
    name.removeprefix("check_").replace("_", "-"): fn
    for name, fn in list(globals().items()) if name.startswith("check_") and callable(fn)
}
# Keyed by each fault's own dialects: the typed dialects' faults (and any shared fault that lists them).
CASES = [(f.name, d) for f in CATALOGUE for d in f.dialects if d in TYPED]


def test_every_typed_fault_has_a_check() -> None:
    names = {name for name, _ in CASES}
    assert names == set(CHECKS), (names ^ set(CHECKS))
    assert all(BY_NAME[n].rule in RULES and BY_NAME[n].kind == "fault" for n in names)
    for dialect in TYPED:  # what the brief asks of each dialect at least
        rules = {BY_NAME[n].rule for n, d in CASES if d == dialect}
        assert {"stream.terminator_missing", "stream.event_order", "tools.arguments_invalid",
                "stream.finish_reason_invalid", "usage.completion_tokens", "stream.event_name",
                "stream.error_event", "param.max_tokens_ignored"} <= rules, dialect


@pytest.fixture(scope="module")
def servers() -> Iterator[Callable[[str], str]]:
    with fault_servers() as urls:
        yield urls.__getitem__


@pytest.mark.parametrize(("name", "dialect"), CASES, ids=[f"{n}@{d}" for n, d in CASES])
def test_typed_fault_manifests_on_the_wire(url: str, servers: Callable[[str], str], name: str, dialect: str) -> None:
    case = Case(servers(name), url, BY_NAME[name], dialect)
    assert case.plain.status == 200 and case.wire.status == 200
    CHECKS[name](case)
