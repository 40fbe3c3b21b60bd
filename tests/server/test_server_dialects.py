"""Each dialect's behaviour over real HTTP on loopback."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import jsonschema
import pytest
from server_wire import Wire, exchange

CHAT = "/v1/chat/completions"
ADAPTIVE = "/api/v1/chat/completions"
ELASTIC_CHAT = "/_inference/chat_completion/my-endpoint/_stream"
ELASTIC_COMPLETION = "/_inference/completion/my-endpoint/_stream"

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "required": ["city", "unit"], "additionalProperties": False,
    "properties": {"city": {"type": "string", "minLength": 2}, "unit": {"enum": ["c", "f"]},
                   "days": {"type": "integer", "minimum": 1, "maximum": 7},
                   "ratio": {"type": "number", "minimum": 0, "maximum": 1},
                   "hourly": {"type": "boolean"},
                   "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2}}}}}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}}


def chat(content: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": "test-model", "messages": [{"role": "user", "content": content}], **extra}


def token_chunks(wire: Wire) -> list[dict[str, Any]]:
    return [c for c in wire.choices() if (c.get("delta") or {}).get("content")
            or (c.get("delta") or {}).get("tool_calls")]


# --- openai ---------------------------------------------------------------------------

def test_non_stream_response(server_url: str) -> None:
    wire = exchange(server_url, CHAT, chat())
    assert wire.status == 200 and wire.headers["content-type"] == "application/json"
    body = wire.json
    assert body["object"] == "chat.completion" and body["model"] == "test-model"
    choice = body["choices"][0]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"]
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    # same request, same text
    assert exchange(server_url, CHAT, chat()).json["choices"] == body["choices"]


def test_deterministic_and_request_dependent(server_url: str) -> None:
    first = exchange(server_url, CHAT, chat("one")).json["choices"][0]["message"]["content"]
    again = exchange(server_url, CHAT, chat("one")).json["choices"][0]["message"]["content"]
    other = exchange(server_url, CHAT, chat("two")).json["choices"][0]["message"]["content"]
    assert first == again and first != other


def test_stream_framing_and_usage(server_url: str) -> None:
    wire = exchange(server_url, CHAT, chat(stream=True, stream_options={"include_usage": True}))
    assert wire.status == 200 and wire.headers["content-type"] == "text/event-stream"
    events = wire.events
    assert events[-1].data == "[DONE]" and wire.done_count() == 1
    assert wire.raw.endswith(b"data: [DONE]\n\n")
    chunks = wire.chunks()
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    assert {c["created"] for c in chunks} == {chunks[0]["created"]}
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    *body_chunks, usage_chunk = chunks
    assert all(c["usage"] is None for c in body_chunks)
    assert usage_chunk["choices"] == []
    tokens = token_chunks(wire)
    assert usage_chunk["usage"]["completion_tokens"] == len(tokens)
    assert usage_chunk["usage"]["total_tokens"] == (usage_chunk["usage"]["prompt_tokens"]
                                                    + len(tokens))
    assert wire.finish_reasons() == ["stop"]
    assert body_chunks[-1]["choices"][0]["finish_reason"] == "stop"
    # the stream's text is the non-stream text
    plain = exchange(server_url, CHAT, chat()).json["choices"][0]["message"]["content"]
    assert wire.text() == plain


def test_stream_without_include_usage_has_no_usage(server_url: str) -> None:
    wire = exchange(server_url, CHAT, chat(stream=True))
    assert wire.usages() == []
    assert all("usage" not in c for c in wire.chunks())


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_gives_length(server_url: str, field: str) -> None:
    wire = exchange(server_url, CHAT, chat(stream=True, **{field: 3},
                                           stream_options={"include_usage": True}))
    assert len(token_chunks(wire)) == 3
    assert wire.finish_reasons() == ["length"]
    assert wire.usages()[0]["completion_tokens"] == 3
    body = exchange(server_url, CHAT, chat(**{field: 3})).json
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3


def test_ignore_eos_fixes_the_length(server_url: str) -> None:
    wire = exchange(server_url, CHAT, chat(stream=True, max_tokens=200, ignore_eos=True))
    assert len(token_chunks(wire)) == 200


@pytest.mark.parametrize(("stop", "expected"), [
    (["STOP"], "one two "), ("STOP", "one two "), ([" two", "zzz"], "one"),
    (["ne tw"], "o"),  # a stop string inside tokens: the straddling token is cut to its prefix
])
def test_stop_truncates_before_the_stop_string(server_url: str, stop: Any, expected: str) -> None:
    wire = exchange(server_url, CHAT, chat("say: one two STOP three", stream=True, stop=stop))
    assert wire.text() == expected
    assert wire.finish_reasons() == ["stop"]
    body = exchange(server_url, CHAT, chat("say: one two STOP three", stop=stop)).json
    assert body["choices"][0]["message"]["content"] == expected


def test_n_choices_interleaved(server_url: str) -> None:
    wire = exchange(server_url, CHAT, chat(stream=True, n=3, stream_options={"include_usage": True}))
    indices = [c["index"] for c in wire.choices()]
    assert indices[:3] == [0, 1, 2]
    for index in range(3):
        mine = [c for c in wire.choices() if c["index"] == index]
        assert mine[0]["delta"]["role"] == "assistant"
        assert mine[-1]["finish_reason"] == "stop"
        assert all(c["finish_reason"] is None for c in mine[:-1])
    assert wire.usages()[0]["completion_tokens"] == len(token_chunks(wire))
    body = exchange(server_url, CHAT, chat(n=3)).json
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]


def _arguments(wire: Wire) -> dict[int, dict[str, Any]]:
    calls: dict[int, dict[str, Any]] = {}
    for delta in wire.tool_deltas():
        call = calls.setdefault(delta["index"], {"arguments": ""})
        if "id" in delta:
            assert delta["type"] == "function" and delta["function"]["name"]
            assert "id" not in call, "a second first-delta for one index"
            call.update(id=delta["id"], name=delta["function"]["name"])
        call["arguments"] += delta["function"]["arguments"]
    return calls


@pytest.mark.parametrize(("content", "tool_choice", "expected"), [
    ("what is the weather? ask get_weather", "auto", ["get_weather"]),
    ("please call a tool", "auto", ["get_weather"]),
    ("use get_time and get_weather", None, ["get_weather", "get_time"]),
    ("just chat", "auto", []),
    ("get_weather please", "none", []),
    ("just chat", "required", ["get_weather"]),
    ("get_weather please", {"type": "function", "function": {"name": "get_time"}}, ["get_time"]),
])
def test_tool_calls_streamed(server_url: str, content: str, tool_choice: Any,
                             expected: list[str]) -> None:
    extra: dict[str, Any] = {"tools": [WEATHER, CLOCK], "stream": True}
    if tool_choice is not None:
        extra["tool_choice"] = tool_choice
    wire = exchange(server_url, CHAT, chat(content, **extra, stream_options={"include_usage": True}))
    calls = _arguments(wire)
    assert [calls[i]["name"] for i in sorted(calls)] == expected
    schemas = {"get_weather": WEATHER, "get_time": CLOCK}
    for call in calls.values():
        assert call["id"].startswith("call_")
        jsonschema.validate(json.loads(call["arguments"]),
                            schemas[call["name"]]["function"]["parameters"])
    if expected:
        assert wire.finish_reasons() == ["tool_calls"] and wire.text() == ""
        assert len(wire.tool_deltas()) > len(expected)  # arguments come in pieces
        assert wire.usages()[0]["completion_tokens"] == len(wire.tool_deltas())
        assert wire.choices()[0]["delta"]["role"] == "assistant"
    else:
        assert wire.finish_reasons() == ["stop"] and wire.text()


def test_tool_calls_non_stream(server_url: str) -> None:
    body = exchange(server_url, CHAT, chat("get_weather", tools=[WEATHER])).json
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert isinstance(call["function"]["arguments"], str)
    jsonschema.validate(json.loads(call["function"]["arguments"]), WEATHER["function"]["parameters"])


def test_response_format_json(server_url: str) -> None:
    body = exchange(server_url, CHAT, chat(response_format={"type": "json_object"})).json
    assert isinstance(json.loads(body["choices"][0]["message"]["content"]), dict)
    schema = {"type": "object", "required": ["name", "age", "tags"], "properties": {
        "name": {"type": "string"}, "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}}}}
    wire = exchange(server_url, CHAT, chat(stream=True, response_format={
        "type": "json_schema", "json_schema": {"name": "person", "schema": schema}}))
    jsonschema.validate(json.loads(wire.text()), schema)


def test_logprobs(server_url: str) -> None:
    wire = exchange(server_url, CHAT, chat(stream=True, logprobs=True, top_logprobs=3))
    for choice in token_chunks(wire):
        entry = choice["logprobs"]["content"][0]
        assert entry["token"] == choice["delta"]["content"] and entry["logprob"] <= 0
        assert len(entry["top_logprobs"]) == 3
        assert entry["bytes"] == list(entry["token"].encode())
    body = exchange(server_url, CHAT, chat(logprobs=True)).json
    content = body["choices"][0]["logprobs"]["content"]
    assert "".join(e["token"] for e in content) == body["choices"][0]["message"]["content"]
    assert exchange(server_url, CHAT, chat()).json["choices"][0]["logprobs"] is None


def test_models_and_unknown_path(server_url: str) -> None:
    models = exchange(server_url, "/v1/models", method="GET")
    assert models.status == 200 and models.json["data"][0]["object"] == "model"
    missing = exchange(server_url, "/v2/nothing", chat())
    assert missing.status == 404 and missing.headers["content-type"] == "application/json"
    assert set(missing.json["error"]) == {"message", "type", "param", "code"}
    assert exchange(server_url, CHAT, method="GET").status == 405


INVALID: list[tuple[str, dict[str, Any]]] = [
    ("temperature", {"temperature": 2.5}), ("temperature", {"temperature": -0.1}),
    ("top_p", {"top_p": 1.5}), ("n", {"n": 0}), ("presence_penalty", {"presence_penalty": 3}),
    ("frequency_penalty", {"frequency_penalty": -2.5}), ("stop", {"stop": ["a", "b", "c", "d", "e"]}),
    ("messages", {"messages": []}), ("messages[0].role", {"messages": [{"role": "robot", "content": "x"}]}),
    ("top_logprobs", {"top_logprobs": 2}), ("top_logprobs", {"logprobs": True, "top_logprobs": 21}),
    ("stream_options", {"stream_options": {"include_usage": True}}),
    ("logit_bias", {"logit_bias": {"50256": -101}}), ("temperature", {"temperature": "hot"}),
    ("max_tokens", {"max_tokens": "ten"}), ("stream", {"stream": "yes"}), ("n", {"n": 1.5}),
    ("messages", {"messages": "hello"}), ("tool_choice", {"tool_choice": "sometimes"}),
    ("response_format", {"response_format": {"type": "yaml"}}),
]


@pytest.mark.parametrize(("param", "change"), INVALID, ids=[f"{p}-{i}" for i, (p, _) in enumerate(INVALID)])
def test_validation_errors(server_url: str, param: str, change: dict[str, Any]) -> None:
    wire = exchange(server_url, CHAT, {**chat(), **change})
    assert wire.status == 400, wire.raw
    error = wire.json["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param and error["type"] == "invalid_request_error"


def test_missing_model_malformed_json_and_content_type(server_url: str) -> None:
    no_model = exchange(server_url, CHAT, {"messages": [{"role": "user", "content": "x"}]})
    assert no_model.status == 400 and no_model.json["error"]["param"] == "model"
    broken = exchange(server_url, CHAT, raw_body=b'{"model": "m", "messages": [',
                      headers={"Content-Type": "application/json"})
    assert broken.status == 400 and broken.json["error"]["code"] == "invalid_json"
    form = exchange(server_url, CHAT, raw_body=json.dumps(chat()).encode(),
                    headers={"Content-Type": "text/plain"})
    assert form.status == 415 and "error" in form.json


# --- atoma: the API key guards every dialect route --------------------------------------

@pytest.mark.parametrize("path", [CHAT, ADAPTIVE, ELASTIC_CHAT, "/v1/models"])
def test_api_key_required(keyed_server_url: str, path: str) -> None:
    method = "GET" if path == "/v1/models" else "POST"
    body = None if method == "GET" else chat()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "sekret"}):
        wire = exchange(keyed_server_url, path, body, method=method, headers=headers)
        assert wire.status == 401
        error = wire.json["error"]
        if path == ELASTIC_CHAT:
            assert error["type"] == "security_exception" and wire.json["status"] == 401
        else:
            assert set(error) == {"message", "type", "param", "code"}
    ok = exchange(keyed_server_url, path, body, method=method,
                  headers={"Authorization": "Bearer sekret"})
    assert ok.status == 200
    assert exchange(keyed_server_url, "/_chatprobe/health", method="GET").status == 200


def test_atoma_stream(keyed_server_url: str) -> None:
    wire = exchange(keyed_server_url, CHAT, chat(stream=True, stream_options={"include_usage": True}),
                    headers={"Authorization": "Bearer sekret"})
    assert wire.status == 200 and wire.done_count() == 1 and wire.usages()


# --- elastic -------------------------------------------------------------------------------

def test_elastic_chat_stream(server_url: str) -> None:
    wire = exchange(server_url, ELASTIC_CHAT, {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "say: hello elastic"}]}], "max_completion_tokens": 2})
    assert wire.status == 200 and wire.headers["content-type"] == "text/event-stream"
    blocks = wire.raw.split(b"\n\n")
    assert blocks[-1] == b"" and all(b.startswith(b"event: message\ndata: ") for b in blocks[:-1])
    assert blocks[-2] == b"event: message\ndata: [DONE]"
    events = wire.events
    assert all(json.loads(e.data).keys() == {"chat_completion"} for e in events[:-1])
    chunks = wire.chunks()
    assert all("created" not in c for c in chunks)
    assert wire.text() == "hello elastic"
    assert wire.finish_reasons() == ["length"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 2


def test_elastic_chat_tools(server_url: str) -> None:
    body = {"messages": [{"role": "user", "content": "price?"}], "tools": [WEATHER],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}
    wire = exchange(server_url, ELASTIC_CHAT, body)
    assert [c["name"] for c in _arguments(wire).values()] == ["get_weather"]


@pytest.mark.parametrize("path", [ELASTIC_COMPLETION, "/_inference/my-endpoint/_stream"])
@pytest.mark.parametrize("timeout", [None, "30s", "2m", "500ms", "-1", "0"])
def test_elastic_completion_stream(server_url: str, path: str, timeout: str | None) -> None:
    query = "" if timeout is None else f"?timeout={timeout}"
    wire = exchange(server_url, path + query, {"input": "say: what is elastic"})
    assert wire.status == 200
    events = wire.events
    assert all(e.type == "message" for e in events)
    assert events[-1].data == "[DONE]"
    assert all(set(json.loads(e.data)) == {"completion"} for e in events[:-1])
    assert wire.text().startswith("what is elastic")


@pytest.mark.parametrize(("path", "body", "query"), [
    (ELASTIC_COMPLETION, {"input": "x"}, "?timeout=soon"),
    (ELASTIC_COMPLETION, {"inputs": "x"}, ""),
    (ELASTIC_CHAT, {"messages": []}, ""),
    (ELASTIC_CHAT, {"messages": [{"role": "user", "content": "x"}], "temperature": 9}, ""),
    ("/_inference/text_embedding/e/_stream", {"input": "x"}, ""),
])
def test_elastic_errors_are_sse_error_events(server_url: str, path: str, body: Any,
                                             query: str) -> None:
    wire = exchange(server_url, path + query, body)
    assert wire.status == 400 and wire.headers["content-type"] == "text/event-stream"
    (event,) = wire.events
    assert event.type == "error"
    error = json.loads(event.data)
    if "chat_completion" in path:
        assert set(error["error"]) == {"code", "message", "param", "type"}
    else:
        assert error["status"] == 400 and error["error"]["root_cause"][0]["reason"]


# --- adaptive --------------------------------------------------------------------------------

def test_adaptive_non_stream(server_url: str) -> None:
    body = exchange(server_url, ADAPTIVE, chat(model="proj/model", n=2)).json
    assert {"id", "created", "choices", "session_id", "usage"} <= set(body)
    assert "object" not in body
    for index, choice in enumerate(body["choices"]):
        assert choice["index"] == index and choice["model"] == "proj/model"
        assert choice["completion_id"] == choice["message"]["id"]
        assert choice["message"]["role"] == "assistant" and choice["finish_reason"] == "stop"
    session = "3c90c3cc-0d44-4b50-8888-8dd25736052a"
    assert exchange(server_url, ADAPTIVE, chat(session_id=session)).json["session_id"] == session


def test_adaptive_stream_has_no_done_and_no_object(server_url: str) -> None:
    wire = exchange(server_url, ADAPTIVE, chat(stream=True, stream_options={"include_usage": True}))
    assert wire.status == 200 and wire.done_count() == 0
    chunks = wire.chunks()
    assert all("object" not in c and c["session_id"] for c in chunks)
    assert all(c["completion_id"] and c["model"] for c in wire.choices())
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == len(
        token_chunks(wire))


def test_adaptive_ranges(server_url: str) -> None:
    assert exchange(server_url, ADAPTIVE, chat(n=0, max_tokens=0)).status == 200
    wire = exchange(server_url, ADAPTIVE, chat(temperature=3))
    assert wire.status == 400 and set(wire.json["error"]) == {"message", "type", "param", "code"}


# --- truth records --------------------------------------------------------------------------

def test_truth_received_is_when_the_first_bytes_arrive(server_url: str) -> None:
    """"received" is stamped as the request's first bytes come off the socket, not
    when the whole head has arrived and the app's task runs."""
    body = json.dumps(chat(max_tokens=1)).encode()
    head = (f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"X-Request-Id: first-bytes\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode()
    host, port = server_url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head[:10])  # half a request line
        time.sleep(0.2)  # a deliberate gap the stamp must not include
        rest_sent = time.perf_counter_ns()
        sock.sendall(head[10:] + body)
        while sock.recv(65536):
            pass
    with httpx.Client(base_url=server_url, timeout=10) as client:
        records = {r["request_id"]: r for r in client.get("/_chatprobe/truth").json()["records"]}
    assert rest_sent - records["first-bytes"]["received_ns"] >= 150_000_000


def test_truth_records_keyed_by_request_id(server_url: str) -> None:
    with httpx.Client(base_url=server_url, timeout=10) as client:
        response = client.post(CHAT, json=chat(stream=True, max_tokens=5),
                               headers={"X-Request-Id": "truth-1"})
        assert response.headers["x-request-id"] == "truth-1"
        records = {r["request_id"]: r for r in client.get("/_chatprobe/truth").json()["records"]}
        record = records["truth-1"]
        assert record["tokens"] == 5 and len(record["token_ns"]) == 5
        assert record["received_ns"] <= record["started_ns"] <= record["first_token_ns"]
        assert record["token_ns"] == sorted(record["token_ns"])
        assert record["token_ns"][-1] <= record["finished_ns"]
        plain = client.post(CHAT, json=chat())
        ids = [r["request_id"] for r in client.get("/_chatprobe/truth").json()["records"]]
        assert plain.json()["id"] in ids
        assert client.delete("/_chatprobe/truth").json()["cleared"] >= 2
        assert client.get("/_chatprobe/truth").json()["records"] == []
