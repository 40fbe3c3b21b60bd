"""Every catalogue entry manifests on the wire (and every variant keeps the normal payload).

The test is parametrised over the whole catalogue x each entry's dialects; an
entry without a check in CHECKS fails. Each check compares the faulty server's
answer with the plain server's answer to the same request.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import httpx
import pytest
from server_wire import BOM, Wire, exchange

from chatprobe.rules import RULES
from chatprobe.server.faults import BY_NAME, CATALOGUE, TYPED, Fault
from chatprobe.server.runner import running_server

PATHS = {"openai": "/v1/chat/completions", "atoma": "/v1/chat/completions",
         "adaptive": "/api/v1/chat/completions",
         "elastic-chat": "/_inference/chat_completion/ep/_stream",
         "elastic-completion": "/_inference/completion/ep/_stream"}
ELASTIC_DROPS = ("stream", "stream_options", "n", "logprobs", "top_logprobs", "response_format")


def request_for(fault: Fault, dialect: str) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hello"}],
                            **copy.deepcopy(fault.request)}
    if dialect == "elastic-completion":
        return {"input": body["messages"][-1]["content"]}
    if dialect == "elastic-chat":
        for key in ELASTIC_DROPS:
            body.pop(key, None)
        if "max_tokens" in body:
            body["max_completion_tokens"] = body.pop("max_tokens")
    return body


@dataclass
class Case:
    url: str  # the server with the fault
    plain_url: str  # the server without faults
    fault: Fault
    dialect: str

    @property
    def path(self) -> str:
        return PATHS[self.dialect]

    @property
    def body(self) -> dict[str, Any]:
        return request_for(self.fault, self.dialect)

    @cached_property
    def wire(self) -> Wire:
        return exchange(self.url, self.path, self.body, headers=AUTH)

    @cached_property
    def plain(self) -> Wire:
        return exchange(self.plain_url, self.path, self.body, headers=AUTH)


AUTH = {"Authorization": "Bearer k"}


def _first_choice_chunks(wire: Wire) -> list[dict[str, Any]]:
    return [c for c in wire.choices() if c.get("index", 0) == 0]


def _normalised(wire: Wire) -> list[Any]:
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("created", "x_chatprobe_extra")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value
    return [(e.type, strip(json.loads(e.data)) if e.data != "[DONE]" else e.data)
            for e in wire.events]


def same_payload(case: Case) -> None:
    assert case.wire.status == 200 and case.plain.status == 200
    assert _normalised(case.wire) == _normalised(case.plain)
    assert len(case.plain.events) >= 3


def token_events(wire: Wire) -> int:
    return sum(bool((c.get("delta") or {}).get("content") or (c.get("delta") or {}).get("tool_calls"))
               for c in wire.choices()) + sum(len(c.get("completion") or []) for c in wire.chunks())


# --- checks: one per catalogue entry ------------------------------------------------------

def check_no_done(c: Case) -> None:
    assert c.plain.done_count() == 1 and c.wire.done_count() == 0
    assert c.wire.complete and c.wire.chunks()


def check_data_after_done(c: Case) -> None:
    events = c.wire.events
    done = [i for i, e in enumerate(events) if e.data == "[DONE]"]
    assert done and any(e.data.startswith("{") for e in events[done[0] + 1 :])


def check_double_done(c: Case) -> None:
    assert c.wire.done_count() == 2 and c.plain.done_count() == 1


def check_truncated_event(c: Case) -> None:
    assert c.wire.complete and c.plain.raw.endswith(b"\n\n")
    assert not c.wire.raw.endswith(b"\n\n")
    tail = c.wire.raw.rsplit(b"\n\n", 1)[1]
    assert tail.startswith((b"data: ", b"event: ")) and c.wire.done_count() == 0


def _values(c: Wire, key: str) -> set[Any]:
    values = {chunk[key] for chunk in c.chunks() if key in chunk}
    values |= {ch[key] for ch in c.choices() if key in ch}
    return values


def check_id_changes(c: Case) -> None:
    assert len(_values(c.plain, "id")) == 1 and len(_values(c.wire, "id")) == 2


def check_id_changes_under_load(c: Case) -> None:
    # One stream alone is clean: the fault needs more than UNDER_LOAD_STREAMS at once
    # (tests/load/test_protocol_under_load.py shows it under load).
    assert len(_values(c.plain, "id")) == 1 and len(_values(c.wire, "id")) == 1


def check_model_changes(c: Case) -> None:
    assert len(_values(c.plain, "model")) == 1 and len(_values(c.wire, "model")) == 2


def check_created_changes(c: Case) -> None:
    assert len(_values(c.wire, "created")) == 2


def check_missing_role(c: Case) -> None:
    assert _first_choice_chunks(c.plain)[0]["delta"]["role"] == "assistant"
    assert all("role" not in ch["delta"] for ch in c.wire.choices())


def check_bad_finish_reason(c: Case) -> None:
    assert c.wire.finish_reasons() == ["end"] and c.plain.finish_reasons() == ["stop"]


def check_no_finish_reason(c: Case) -> None:
    assert c.plain.finish_reasons() and not c.wire.finish_reasons()
    assert c.wire.complete


def check_content_after_finish(c: Case) -> None:
    choices = c.wire.choices()
    finished = next(i for i, ch in enumerate(choices) if ch.get("finish_reason"))
    assert any((ch.get("delta") or {}).get("content") for ch in choices[finished + 1 :])


def check_usage_merged(c: Case) -> None:
    assert any(ch.get("choices") == [] for ch in c.plain.chunks())
    assert not any(ch.get("choices") == [] for ch in c.wire.chunks())
    merged = [ch for ch in c.wire.chunks() if isinstance(ch.get("usage"), dict)]
    assert len(merged) == 1 and merged[0]["choices"][0]["finish_reason"]


def check_usage_wrong_total(c: Case) -> None:
    (usage,) = c.wire.usages()
    assert usage["total_tokens"] != usage["prompt_tokens"] + usage["completion_tokens"]
    if c.dialect != "elastic-chat":
        body = exchange(c.url, c.path, {**c.body, "stream": False, "stream_options": None},
                        headers=AUTH).json["usage"]
        assert body["total_tokens"] != body["prompt_tokens"] + body["completion_tokens"]


def check_usage_missing(c: Case) -> None:
    assert c.plain.usages() and not c.wire.usages()


def check_usage_unrequested(c: Case) -> None:
    assert not c.plain.usages() and len(c.wire.usages()) == 1


def check_tool_index_missing(c: Case) -> None:
    deltas = c.wire.tool_deltas()
    assert deltas and all("index" not in d for d in deltas)


def check_tool_index_null(c: Case) -> None:
    deltas = c.wire.tool_deltas()
    assert deltas and all(d["index"] is None for d in deltas)


def check_tool_index_reused(c: Case) -> None:
    firsts = [d for d in c.wire.tool_deltas() if "id" in d]
    assert len(firsts) == 2 and {d["index"] for d in firsts} == {0}
    assert len({d["index"] for d in c.plain.tool_deltas()}) == 2


def check_tool_arguments_object(c: Case) -> None:
    deltas = c.wire.tool_deltas()
    assert deltas and all(isinstance(d["function"]["arguments"], dict) for d in deltas)
    plain = [d for d in c.plain.tool_deltas() if d["index"] == 0]
    assert json.loads("".join(d["function"]["arguments"] for d in plain)) == deltas[0]["function"]["arguments"]


def check_tool_id_missing(c: Case) -> None:
    firsts = [d for d in c.wire.tool_deltas() if "type" in d]
    assert firsts and all("id" not in d for d in firsts)


def check_tool_finish_stop(c: Case) -> None:
    assert c.wire.tool_deltas() and c.wire.finish_reasons() == ["stop"]
    assert c.plain.finish_reasons() == ["tool_calls"]


def check_tool_choice_ignored(c: Case) -> None:
    assert c.plain.tool_deltas() and not c.wire.tool_deltas()


def _invalid(c: Case) -> Wire:
    return exchange(c.url, c.path, c.body, headers=AUTH)


def check_error_envelope_detail(c: Case) -> None:
    assert c.plain.status == 400 and "error" in c.plain.json
    assert c.wire.status == 400 and set(c.wire.json) == {"detail"}


def check_error_envelope_string(c: Case) -> None:
    assert c.wire.status == 400 and isinstance(c.wire.json["error"], str)


def check_error_200(c: Case) -> None:
    assert c.plain.status == 400
    assert c.wire.status == 200 and c.wire.json == c.plain.json


def check_midstream_error_200(c: Case) -> None:
    assert c.wire.status == 200 and c.wire.complete
    errors = [ch for ch in c.wire.chunks() if "error" in ch]
    assert len(errors) == 1 and "error" in c.wire.chunks()[-1]
    assert c.wire.done_count() == 0 and token_events(c.wire) == 3


def check_n_ignored(c: Case) -> None:
    assert {ch["index"] for ch in c.plain.choices()} == {0, 1}
    assert {ch["index"] for ch in c.wire.choices()} == {0}


def check_stop_ignored(c: Case) -> None:
    assert "STOP" not in c.plain.text() and "STOP" in c.wire.text()


def check_stop_included(c: Case) -> None:
    assert c.plain.text() == "one two " and c.wire.text() == "one two STOP"


def check_max_tokens_ignored(c: Case) -> None:
    assert token_events(c.plain) == 2 and c.plain.finish_reasons() == ["length"]
    assert token_events(c.wire) > 2 and c.wire.finish_reasons() == ["stop"]


def check_out_of_range_accepted(c: Case) -> None:
    assert c.plain.status == 400 and c.wire.status == 200


def check_out_of_range_500(c: Case) -> None:
    assert c.plain.status == 400 and c.wire.status == 500


def check_wrong_content_type(c: Case) -> None:
    assert c.plain.headers["content-type"] == "text/event-stream"
    assert c.wire.headers["content-type"] == "application/json"
    assert c.wire.raw == c.plain.raw or _normalised(c.wire) == _normalised(c.plain)


def check_invalid_json_frame(c: Case) -> None:
    bad = [e for e in c.wire.events if e.data != "[DONE]" and not _is_json(e.data)]
    assert len(bad) == 1 and all(_is_json(e.data) or e.data == "[DONE]" for e in c.plain.events)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def check_invalid_utf8(c: Case) -> None:
    assert b"\xff\xfe" in c.wire.raw
    with pytest.raises(UnicodeDecodeError):
        c.wire.raw.decode("utf-8")
    c.plain.raw.decode("utf-8")


def check_reset_mid_stream(c: Case) -> None:
    assert c.plain.complete
    assert c.wire.status == 200 and not c.wire.complete
    assert token_events(c.wire) == 3




def check_stall(c: Case) -> None:
    timeout = httpx.Timeout(5.0, read=0.3)
    received = b""
    with httpx.Client(timeout=timeout) as client, client.stream(
            "POST", c.url + c.path, json=c.body, headers=AUTH) as response:
        assert response.status_code == 200
        chunks = response.iter_raw()
        while token_events(Wire(200, {}, received)) < 3:
            received += next(chunks)
        with pytest.raises(httpx.ReadTimeout):
            next(chunks)
    assert Wire(200, {}, received).done_count() == 0


def check_huge_frame(c: Case) -> None:
    received = bytearray()
    with httpx.Client(timeout=10) as client, client.stream(
            "POST", c.url + c.path, json=c.body, headers=AUTH) as response:
        assert response.status_code == 200
        for piece in response.iter_raw():
            received += piece
            if len(received) > 4 * 1024 * 1024:
                break
    start = received.find(b"xxxxxxxx")
    assert start > 0
    frame_open = received[received.rfind(b"\n", 0, start) + 1 :]
    assert frame_open.startswith(b"data: ") and b"\n" not in frame_open
    assert len(frame_open) > 4 * 1024 * 1024 - 1000 and set(received[-100000:]) == {ord("x")}


def check_choice_index_one(c: Case) -> None:
    assert {ch["index"] for ch in c.plain.choices()} == {0}
    assert {ch["index"] for ch in c.wire.choices()} == {1}


def check_glued_events(c: Case) -> None:
    first = c.wire.events[0].data
    assert "\n" in first and not _is_json(first)
    assert len(c.wire.events) == len(c.plain.events) - 1


def check_empty_data(c: Case) -> None:
    assert [e.data for e in c.wire.events].count("") == 1
    assert len(c.wire.events) == len(c.plain.events) + 1


def check_auth_not_enforced(c: Case) -> None:
    with running_server(api_key="k") as keyed:
        assert exchange(keyed, c.path, c.body).status == 401
    assert exchange(c.url, c.path, c.body).status == 200


def check_elastic_wrong_event_name(c: Case) -> None:
    assert {e.type for e in c.plain.events} == {"message"}
    assert {e.type for e in c.wire.events} == {"chunk"}


def _elastic_error_events(c: Case) -> list[Any]:
    return [e for e in c.wire.events if '"error"' in e.data]


def check_elastic_error_as_message(c: Case) -> None:
    (error,) = _elastic_error_events(c)
    assert error.type == "message" and c.wire.events[-1] is not None
    assert c.wire.done_count() == 0 and "error" not in {e.type for e in c.wire.events}


def check_response_schema(c: Case) -> None:
    assert "created" in c.plain.json and "created" not in c.wire.json
    assert c.wire.status == 200


def check_logprobs_missing(c: Case) -> None:
    assert all(ch["logprobs"] for ch in c.plain.choices() if ch["delta"].get("content"))
    assert all(ch["logprobs"] is None for ch in c.wire.choices())


def check_response_format_ignored(c: Case) -> None:
    assert _is_json(c.plain.text()) and not _is_json(c.wire.text())


def check_unknown_path_200(c: Case) -> None:
    path = c.path + "/chatprobe-no-such-path"
    assert exchange(c.plain_url, path, c.body, headers=AUTH).status == 404
    wire = exchange(c.url, path, c.body, headers=AUTH)
    assert wire.status == 200 and wire.raw
    assert exchange(c.url, "/v2/chatprobe-no-such-path", c.body, headers=AUTH).status == 404


def check_auth_status_403(c: Case) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        assert exchange(c.plain_url, c.path, c.body, headers=headers).status == 401
        wire = exchange(c.url, c.path, c.body, headers=headers)
        assert wire.status == 403 and wire.json["error"]["type"] == "permission_error"
    assert c.wire.status == 200


def check_unknown_model_400(c: Case) -> None:
    assert c.plain.status == 404 and c.plain.json["error"]["code"] == "model_not_found"
    assert c.wire.status == 400 and c.wire.json["error"]["code"] == "model_not_found"
    assert exchange(c.url, c.path, {**c.body, "model": "m"}, headers=AUTH).status == 200


def check_cap_below_min_accepted(c: Case) -> None:
    assert c.plain.status == 400 and c.plain.json["error"]["param"] == "max_tokens"
    assert c.wire.status == 200 and c.wire.complete
    out_of_range = exchange(c.url, c.path, {**c.body, "temperature": 5}, headers=AUTH)
    assert out_of_range.status == 400  # only the cap's minimum is waived


def check_wrong_type_500(c: Case) -> None:
    assert c.plain.status == 400 and c.wire.status == 500
    assert exchange(c.url, c.path, {**c.body, "temperature": 5}, headers=AUTH).status == 400


def check_model_not_listed(c: Case) -> None:
    def ids(url: str) -> list[str]:
        return [m["id"] for m in exchange(url, "/v1/models", method="GET", headers=AUTH).json["data"]]

    assert ids(c.plain_url) == ["chatprobe-reference"]
    assert "chatprobe-reference" not in ids(c.url)


def check_timeout_invalid_accepted(c: Case) -> None:
    assert exchange(c.plain_url, c.path + "?timeout=soon", c.body, headers=AUTH).status == 400
    wire = exchange(c.url, c.path + "?timeout=soon", c.body, headers=AUTH)
    assert wire.status == 200 and wire.done_count() == 1


def check_timeout_minus_one_rejected(c: Case) -> None:
    for value in ("-1", "0"):
        assert exchange(c.plain_url, f"{c.path}?timeout={value}", c.body, headers=AUTH).status == 200
        assert exchange(c.url, f"{c.path}?timeout={value}", c.body, headers=AUTH).status == 400
    assert exchange(c.url, c.path + "?timeout=30s", c.body, headers=AUTH).status == 200


# --- variants --------------------------------------------------------------------------------

def check_crlf(c: Case) -> None:
    same_payload(c)
    assert c.wire.raw.count(b"\r\n") == c.plain.raw.count(b"\n") and b"\n" not in c.wire.raw.replace(b"\r\n", b"")


def check_cr(c: Case) -> None:
    same_payload(c)
    assert b"\n" not in c.wire.raw and c.wire.raw.count(b"\r") == c.plain.raw.count(b"\n")


def check_data_no_space(c: Case) -> None:
    same_payload(c)
    assert b"data:{" in c.wire.raw and b"data: " not in c.wire.raw


def check_comments(c: Case) -> None:
    same_payload(c)
    comments = [line for line in c.wire.raw.split(b"\n") if line.startswith(b":")]
    assert len(comments) == len(c.plain.events)


def check_keepalive(c: Case) -> None:
    same_payload(c)
    assert c.wire.raw.startswith(b": keep-alive\n\n") and c.wire.raw.count(b": keep-alive") > 2


def check_one_byte_writes(c: Case) -> None:
    same_payload(c)
    assert c.wire.writes and all(len(w) == 1 for w in c.wire.writes)


def check_leading_bom(c: Case) -> None:
    same_payload(c)
    assert c.wire.raw.startswith(BOM) and c.wire.raw.count(BOM) == 1


def check_unknown_fields(c: Case) -> None:
    same_payload(c)
    assert b"\nx-chatprobe-extra: " in c.wire.raw
    if c.dialect != "elastic-completion":
        assert all("x_chatprobe_extra" in ch for ch in c.wire.chunks())


def check_multiline_data(c: Case) -> None:
    same_payload(c)
    assert all("\n" in e.data for e in c.wire.events if e.data != "[DONE]")


def check_id_and_retry(c: Case) -> None:
    same_payload(c)
    assert b"retry: 3000" in c.wire.raw
    assert [e.id for e in c.wire.events] == [str(i + 1) for i in range(len(c.wire.events))]


def check_split_writes(c: Case) -> None:
    same_payload(c)
    writes = c.wire.writes
    assert any(a.endswith(b"\r") and b.startswith(b"\n") for a, b in itertools.pairwise(writes))
    assert any(w[-1] >= 0xC0 for w in writes), "no write ends inside a UTF-8 character"
    assert "é" in c.wire.text() or "é" in json.dumps(c.wire.chunks(), ensure_ascii=False)


def check_elastic_bom_every_event(c: Case) -> None:
    same_payload(c)
    assert c.wire.raw.count(BOM) == len(c.plain.events) and c.wire.raw.startswith(BOM + b"event: ")
    assert c.wire.raw.count(b"\n\n" + BOM + b"event: message") == len(c.plain.events) - 1


def check_elastic_midstream_error(c: Case) -> None:
    events = c.wire.events
    assert c.wire.status == 200 and events[-1].type == "error" and c.wire.done_count() == 0
    assert json.loads(events[-1].data)["error"] and token_events(c.wire) == 3


def check_unknown_model_accepted(c: Case) -> None:
    assert c.plain.status == 404 and "error" in c.plain.json
    assert c.wire.status == 200 and c.wire.chunks()


def check_tool_named_finish_stop(c: Case) -> None:
    assert c.plain.tool_deltas() and c.plain.finish_reasons() == ["tool_calls"]
    assert c.wire.tool_deltas() and c.wire.finish_reasons() == ["stop"]
    assert {d["function"]["name"] for d in c.wire.tool_deltas() if "type" in d} == {"get_time"}
    auto = {**c.body, "tool_choice": "auto", "messages": [{"role": "user", "content": "call get_weather"}]}
    assert exchange(c.url, c.path, auto, headers=AUTH).finish_reasons() == ["tool_calls"]
    body = exchange(c.url, c.path, {**c.body, "stream": False}, headers=AUTH).json
    assert body["choices"][0]["finish_reason"] == "stop" and body["choices"][0]["message"]["tool_calls"]


def check_stop_cut_early(c: Case) -> None:
    assert c.plain.text() == "one two " and c.wire.text() == "one"
    assert c.wire.finish_reasons() == ["stop"]


def check_stop_strips_space(c: Case) -> None:
    assert c.plain.text() == "one two " and c.wire.text() == "one two"
    assert c.wire.finish_reasons() == c.plain.finish_reasons() == ["stop"]


def check_length_as_stop(c: Case) -> None:
    assert token_events(c.plain) == token_events(c.wire) == 2
    assert c.plain.finish_reasons() == ["length"] and c.wire.finish_reasons() == ["stop"]


def _non_stream_usage(url: str, c: Case) -> dict[str, Any]:
    body = {**c.body, "stream": False}
    body.pop("stream_options", None)
    usage: dict[str, Any] = exchange(url, c.path, body, headers=AUTH).json["usage"]
    return usage


def _adds_up(usage: dict[str, Any]) -> bool:
    return bool(usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"])


def check_usage_length_undercount(c: Case) -> None:
    (plain,) = c.plain.usages()
    (wire,) = c.wire.usages()
    assert c.wire.finish_reasons() == ["length"] and plain["completion_tokens"] == 4
    assert wire["completion_tokens"] == 3 and _adds_up(wire)
    if c.dialect != "elastic-chat":
        assert _non_stream_usage(c.url, c)["completion_tokens"] == 3


def check_usage_prompt_zero(c: Case) -> None:
    (plain,) = c.plain.usages()
    (wire,) = c.wire.usages()
    assert plain["prompt_tokens"] > 0 and wire["prompt_tokens"] == 0 and _adds_up(wire)
    if c.dialect != "elastic-chat":
        assert _non_stream_usage(c.url, c)["prompt_tokens"] == 0


def check_usage_stream_differs(c: Case) -> None:
    (plain,) = c.plain.usages()
    (wire,) = c.wire.usages()
    assert wire["prompt_tokens"] == plain["prompt_tokens"] + 3 and _adds_up(wire)
    assert _non_stream_usage(c.url, c) == plain  # the non-stream answer is left alone


def _finished_indexes(wire: Wire) -> list[int]:
    return sorted(ch["index"] for ch in wire.choices() if ch.get("finish_reason") is not None)


def check_n_unfinished_choice(c: Case) -> None:
    assert _finished_indexes(c.plain) == [0, 1] and _finished_indexes(c.wire) == [0]


def _first_deltas(wire: Wire) -> dict[int, dict[str, Any]]:
    firsts: dict[int, dict[str, Any]] = {}
    for ch in wire.choices():
        firsts.setdefault(ch["index"], ch.get("delta") or {})
    return firsts


def check_n_role_once(c: Case) -> None:
    assert {i: d.get("role") for i, d in _first_deltas(c.plain).items()} == {0: "assistant", 1: "assistant"}
    assert {i: d.get("role") for i, d in _first_deltas(c.wire).items()} == {0: "assistant", 1: None}


def check_n_sequential(c: Case) -> None:
    indexes = [ch["index"] for ch in c.wire.choices()]
    assert sorted(indexes) == sorted(ch["index"] for ch in c.plain.choices())
    assert indexes == sorted(indexes) and set(indexes) == {0, 1}
    plain = [ch["index"] for ch in c.plain.choices()]
    assert plain != sorted(plain), "the plain stream interleaves its choices"
    assert sorted(map(repr, _normalised(c.wire))) == sorted(map(repr, _normalised(c.plain)))


CHECKS: dict[str, Callable[[Case], None]] = {
    name.removeprefix("check_").replace("_", "-"): fn
    for name, fn in list(globals().items()) if name.startswith("check_") and callable(fn)
}

# The typed dialects' (anthropic-messages, openai-responses) cases: tests/server/test_server_typed.py.
CASES = [(f.name, d) for f in CATALOGUE for d in f.dialects if d != "atoma" and d not in TYPED]


def test_catalogue_shape() -> None:
    assert len([f for f in CATALOGUE if f.kind == "fault"]) >= 30
    assert all(f.kind in ("fault", "variant", "load") for f in CATALOGUE)
    assert all(f.rule in RULES for f in CATALOGUE if f.kind == "fault")
    assert all(f.rule is None or f.rule in RULES for f in CATALOGUE)
    assert set(CHECKS) <= set(BY_NAME), "a check for a fault that is not in the catalogue"


class _Servers:
    """One server per fault, reused across that fault's dialects (cases come grouped by fault)."""

    def __init__(self) -> None:
        self.stack = contextlib.ExitStack()
        self.name: str | None = None
        self.url = ""

    def for_fault(self, name: str) -> str:
        if name != self.name:
            self.stack.close()
            self.url = self.stack.enter_context(running_server(faults=[name], api_key="k"))
            self.name = name
        return self.url


@pytest.fixture(scope="module")
def plain_keyed() -> Iterator[str]:
    with running_server(api_key="k") as url:
        yield url


@pytest.fixture(scope="module")
def fault_servers() -> Iterator[_Servers]:
    servers = _Servers()
    with servers.stack:
        yield servers


@pytest.mark.parametrize(("name", "dialect"), CASES, ids=[f"{n}@{d}" for n, d in CASES])
def test_fault_manifests_on_the_wire(plain_keyed: str, fault_servers: _Servers, name: str,
                                     dialect: str) -> None:
    check = CHECKS.get(name)
    if check is None:
        pytest.fail(f"catalogue entry {name!r} has no wire test")
    check(Case(fault_servers.for_fault(name), plain_keyed, BY_NAME[name], dialect))
