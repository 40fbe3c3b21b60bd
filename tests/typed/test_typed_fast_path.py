"""The typed dialects' token fast path gives exactly the full path's answer.

The load generator relies on it (chatprobe.typed.base ``_Template``): a text delta whose data is
a learned prefix + an escape-free token + suffix (OpenAI's Responses: + its sequence_number +
tail) skips JSON parsing and the machine's dispatch. Here both paths run on the same decoded
events and every observable result is compared: findings (rule, message, offset, pointer,
evidence), the whole StreamResult (answer, tool calls, token stamps, usage, finish, cut, error)
and the native usage. Inputs: the reference streams and every violation of the machines' own
tests; every stream of the reference server's fault catalogue in the typed dialects, and plain
answers (text, reasoning, tools), captured over HTTP; and generated streams whose tokens hold
quotes, backslashes, control characters and non-ASCII text, raw or escaped, broken in the ways
that must make the fast path step aside (a closed block or part, a message_delta, a renamed
event, sequence numbers that repeat, go back, or are no plain integer, another item or part).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatprobe.client import Client, Limits
from chatprobe.server.faults import CATALOGUE, Fault
from chatprobe.server.runner import running_server
from chatprobe.sse import SSEDecoder
from chatprobe.streams import validator
from chatprobe.typed.base import TypedValidator
from tests.catalogue import fault_servers, trigger
from tests.typed import test_messages_stream as messages_tests
from tests.typed import test_responses_stream as responses_tests

MESSAGES, RESPONSES = "anthropic-messages", "openai-responses"


def observe(v: TypedValidator) -> dict[str, Any]:
    return {
        "findings": [(f.rule, f.severity, f.message, f.offset, f.pointer, f.evidence) for f in v.findings],
        "result": v.result,
        "native_usage": v.native_usage,
    }


def both_paths(dialect: str, request: dict[str, Any] | None, pieces: list[bytes]) -> tuple[dict[str, Any], int]:
    """Decode once; validate with and without the fast path; return the full path's
    observation (asserted equal to the fast one's) and the fast path's event count."""
    decoder = SSEDecoder()
    batches = [decoder.feed(piece, n) for n, piece in enumerate(pieces)]
    batches.append(decoder.close())
    fast = validator(dialect, request, check_schema=False)
    full = validator(dialect, request, check_schema=False, fast_path=False)
    assert isinstance(fast, TypedValidator) and isinstance(full, TypedValidator)
    for batch in batches:
        assert fast.feed(batch) == full.feed(batch)
    assert fast.finish(True, len(b"".join(pieces))) == full.finish(True, len(b"".join(pieces)))
    assert full.fast_events == 0
    seen = observe(full)
    assert observe(fast) == seen
    return seen, fast.fast_events


def chunkings(raw: bytes) -> Iterator[list[bytes]]:
    yield [raw]
    yield [raw[i:i + 97] for i in range(0, len(raw), 97)]
    # one event per read, as a paced server delivers them
    events = raw.split(b"\n\n")
    yield [e + b"\n\n" for e in events[:-1]] + ([events[-1]] if events[-1] else [])


def every_way(dialect: str, request: dict[str, Any] | None, raw: bytes) -> tuple[dict[str, Any], int]:
    out = [both_paths(dialect, request, pieces) for pieces in chunkings(raw)]
    return out[-1]


# ---------------------------------------------------------------------------
# The machines' own test streams
# ---------------------------------------------------------------------------
def _more_text(events: list[Any], delta_type: str) -> list[Any]:
    """``events`` with each text delta repeated (so a learned template meets later deltas)."""
    out: list[Any] = []
    for e in events:
        data = e[1] if isinstance(e, tuple) else e
        out.append(e)
        if isinstance(data, dict) and data.get("type") == delta_type and (
                delta_type != "content_block_delta" or data["delta"].get("type") == "text_delta"):
            out += [e, e]
    return out


MESSAGES_STREAMS = [("text", messages_tests.TEXT_STREAM.encode()), ("tool", messages_tests.TOOL_STREAM.encode()),
                    ("thinking", messages_tests.THINKING_STREAM.encode()),
                    ("thinking-usage", messages_tests.THINKING_WITH_USAGE.encode())]
MESSAGES_STREAMS += [(name, messages_tests.frame(events)) for name, events, _ in messages_tests.VIOLATIONS]
MESSAGES_STREAMS += [(name + " (more deltas)", messages_tests.frame(_more_text(events, "content_block_delta")))
                     for name, events, _ in messages_tests.VIOLATIONS]


@pytest.mark.parametrize("raw", [r for _, r in MESSAGES_STREAMS], ids=[n for n, _ in MESSAGES_STREAMS])
def test_messages_reference_streams_and_violations(raw: bytes) -> None:
    every_way(MESSAGES, messages_tests.REQUEST, raw)


def _responses_streams() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    base = {"text": responses_tests.text_stream(), "function": responses_tests.function_stream(),
            "reasoning": responses_tests.reasoning_stream(), "two_parts": responses_tests.two_part_message()}
    for name, events in base.items():
        yield name, events
        longer = _more_text(events, "response.output_text.delta")
        yield name + " (more deltas)", longer
        yield name + " (no indexes)", responses_tests.without_indexes(longer)
        at = [i for i, e in enumerate(longer) if e["type"] == "response.output_text.delta"]
        if at:  # a delta after its part's done events, and after the item's
            for after in ("response.output_text.done", "response.content_part.done", "response.output_item.done"):
                done = next((i for i, e in enumerate(longer) if e["type"] == after), None)
                if done is not None:
                    yield f"{name} (a delta after {after})", [*longer[:done + 1], longer[at[0]], *longer[done + 1:]]
            yield name + " (a delta for another item)", [
                *longer[:at[1]], {**longer[at[1]], "item_id": "msg_other"}, *longer[at[1]:]]
            yield name + " (a delta for another part)", [
                *longer[:at[1]], {**longer[at[1]], "content_index": 1}, *longer[at[1]:]]


RESPONSES_STREAMS = list(_responses_streams())


@pytest.mark.parametrize("events", [e for _, e in RESPONSES_STREAMS], ids=[n for n, _ in RESPONSES_STREAMS])
@pytest.mark.parametrize("numbering", ["numbered", "unnumbered", "repeats", "backwards"])
def test_responses_reference_streams_and_variants(events: list[dict[str, Any]], numbering: str) -> None:
    if numbering == "unnumbered":
        raw = responses_tests.frame(events, numbered=False)
    else:
        numbers = list(range(len(events)))
        if numbering == "repeats":
            numbers = [n - (n > 5) for n in numbers]  # the 7th event repeats the 6th's number
        elif numbering == "backwards":
            numbers = [n if n < 5 else n + 10 if n < 7 else n for n in numbers]
        raw = responses_tests.frame([{**e, "sequence_number": n} for e, n in zip(events, numbers, strict=True)],
                                    numbered=False)
    every_way(RESPONSES, responses_tests.REQUEST, raw)


# ---------------------------------------------------------------------------
# The reference server: its fault catalogue and plain answers, over HTTP
# ---------------------------------------------------------------------------
_TYPED_CASES = [(f, d) for f in CATALOGUE for d in f.dialects if d in (MESSAGES, RESPONSES)
                and "api_key" not in f.needs and trigger(f, d).stream]
_WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
_PLAIN = [
    ("text", {"stream": True, "max_tokens": 40}),
    ("capped", {"stream": True, "max_tokens": 17, "ignore_eos": True}),
    ("stop-sequence", {"stream": True, "max_tokens": 60, "stop": [" the"]}),
    ("tools", {"stream": True, "tools": [{"type": "function", "function": {"name": "f", "parameters": _WEATHER}}],
               "tool_choice": "required"}),
]


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    """One reference server per fault ("": none), started when first needed and kept for the module."""
    with fault_servers() as urls:
        yield urls


def _captured(url: str, dialect: str, fault: Fault, extra: dict[str, Any] | None = None) -> tuple[dict[str, Any], bytes]:
    spec = trigger(fault, dialect)
    body = copy.deepcopy(spec.body)
    if extra:
        body.update(extra)
    limits = Limits(read_timeout_s=1.0, total_timeout_s=10.0, capture_bytes=4 << 20)
    with Client(url, limits=limits) as client:
        ex = client.send(dialect, spec.method, spec.path, json_body=body, stream=True, params=dict(spec.query))
    if ex.status != 200:
        pytest.skip(f"{fault.name} answers {ex.status} in {dialect}: no stream to compare")
    return body, ex.body


@pytest.mark.parametrize(("fault", "dialect"), _TYPED_CASES, ids=[f"{f.name}-{d}" for f, d in _TYPED_CASES])
def test_fast_path_equals_full_path_on_the_fault_catalogue(fault: Fault, dialect: str, servers: dict[str, str]) -> None:
    body, raw = _captured(servers[fault.name], dialect, fault)
    every_way(dialect, body, raw)


@pytest.mark.parametrize("dialect", [MESSAGES, RESPONSES])
@pytest.mark.parametrize(("name", "request_fragment"), _PLAIN, ids=[n for n, _ in _PLAIN])
def test_plain_answers_take_the_fast_path(dialect: str, name: str, request_fragment: dict[str, Any],
                                          servers: dict[str, str]) -> None:
    """A paced answer: every text delta after the first takes the fast path, with no finding."""
    fault = Fault("plain", "variant", None, (dialect,), "", request_fragment)
    body, raw = _captured(servers[""], dialect, fault)
    seen, fast_events = every_way(dialect, body, raw)
    assert seen["findings"] == []
    tokens = len(seen["result"].token_arrivals_ns)
    if name == "tools":  # argument fragments take the full path
        assert fast_events == 0
    else:
        assert tokens >= 5 and fast_events == tokens - 1, (tokens, fast_events)


def test_responses_logprobs_take_the_full_path(servers: dict[str, str]) -> None:
    """Deltas carrying logprobs (include message.output_text.logprobs): never a template, every
    entry collected, the same as the full path's."""
    fault = Fault("plain", "variant", None, (RESPONSES,), "",
                  {"stream": True, "max_tokens": 24, "ignore_eos": True, "logprobs": True, "top_logprobs": 2})
    body, raw = _captured(servers[""], RESPONSES, fault)
    assert body.get("include") == ["message.output_text.logprobs"]
    seen, fast_events = every_way(RESPONSES, body, raw)
    assert seen["findings"] == [] and fast_events == 0
    choice = seen["result"].choices[0]
    assert len(choice.logprobs) == len(seen["result"].token_arrivals_ns) == 24
    assert all(len(entry["top_logprobs"]) == 2 for entry in choice.logprobs)


@pytest.mark.parametrize("dialect", [MESSAGES, RESPONSES])
def test_reasoning_answers(dialect: str) -> None:
    thinking = ({"thinking": {"type": "enabled", "budget_tokens": 1024}} if dialect == MESSAGES
                else {"reasoning": {"effort": "low"}})
    fault = Fault("plain", "variant", None, (dialect,), "", {"stream": True, "max_tokens": 2048, **thinking})
    with running_server(itl_ms=0) as url:
        body, raw = _captured(url, dialect, fault)
    seen, fast_events = every_way(dialect, body, raw)
    assert seen["findings"] == [] and seen["result"].reasoning_events == 8
    assert fast_events == len(seen["result"].token_arrivals_ns) - 8 - 1  # the reasoning, the first text delta


# ---------------------------------------------------------------------------
# Generated streams: tokens of any text, escaped (valid JSON) or spliced raw; breaks
# ---------------------------------------------------------------------------
_TOKENS = st.lists(st.tuples(st.text(max_size=6), st.booleans()), min_size=1, max_size=10)
_MESSAGES_BREAKS = st.lists(st.tuples(st.integers(0, 12), st.sampled_from([
    "stop-block", "start-block-1", "delta-block-1", "message-delta", "message-stop", "renamed", "unnamed",
    "error", "extra-field", "thinking-delta", "ping"])), max_size=3)
_RESPONSES_BREAKS = st.lists(st.tuples(st.integers(0, 12), st.sampled_from([
    "seq-repeat", "seq-back", "seq-jump", "seq-leading-zero", "seq-huge", "seq-float", "seq-negative", "seq-missing",
    "text-done", "part-done", "item-done", "other-item", "other-part", "other-output", "renamed", "logprobs",
    "completed", "error"])), max_size=3)


def _delta_data(prefix: bytes, suffix: bytes, obj: dict[str, Any], token: str, raw: bool) -> bytes:
    # raw: the token spliced into the serialised event unescaped (quotes, backslashes and
    # control characters then make invalid JSON or another structure)
    data = prefix + token.encode() + suffix if raw else orjson.dumps(obj)
    return data.replace(b"\r", b"").replace(b"\n", b"")


def _sse(name: str | None, data: bytes) -> bytes:
    return (b"event: " + name.encode() + b"\n" if name is not None else b"") + b"data: " + data + b"\n\n"


def messages_stream(tokens: list[tuple[str, bool]], breaks: list[tuple[int, str]]) -> bytes:
    """A Messages text stream: a delta per token, with ``breaks`` before the tokens they name."""

    def delta(index: int, text: str, kind: str = "text_delta", key: str = "text") -> dict[str, Any]:
        return {"type": "content_block_delta", "index": index, "delta": {"type": kind, key: text}}

    prefix, suffix = orjson.dumps(delta(0, "@@")).split(b"@@")
    head = [messages_tests.TEXT[0], messages_tests.start(0, {"type": "text", "text": ""}), {"type": "ping"},
            delta(0, "Hi")]
    out = [_sse(e["type"], orjson.dumps(e)) for e in head]
    at = dict(breaks)
    for n, (token, raw) in enumerate(tokens):
        brk = at.get(n)
        obj = delta(0, token)
        name: str | None = "content_block_delta"
        if brk == "stop-block":
            out.append(_sse("content_block_stop", orjson.dumps(messages_tests.stop(0))))
        elif brk == "start-block-1":
            out.append(_sse("content_block_start", orjson.dumps(messages_tests.start(1, {"type": "text", "text": ""}))))
        elif brk == "delta-block-1":
            obj = delta(1, token)
        elif brk == "message-delta":
            out.append(_sse("message_delta", orjson.dumps(messages_tests.message_delta("end_turn", 3))))
        elif brk == "message-stop":
            out.append(_sse("message_stop", b'{"type":"message_stop"}'))
        elif brk == "renamed":
            name = "ping"
        elif brk == "unnamed":
            name = None
        elif brk == "error":
            out.append(_sse("error", b'{"type":"error","error":{"type":"overloaded_error","message":"x"}}'))
        elif brk == "extra-field":
            obj = {**obj, "extra": 1}
        elif brk == "thinking-delta":
            obj = delta(0, token, "thinking_delta", "thinking")
        elif brk == "ping":
            out.append(_sse("ping", b'{"type":"ping"}'))
        raw_here = raw and obj == delta(0, token)
        out.append(_sse(name, _delta_data(prefix, suffix, obj, token, raw_here)))
    out += [_sse(e["type"], orjson.dumps(e)) for e in (messages_tests.stop(0), messages_tests.message_delta("end_turn", 9),
                                                       {"type": "message_stop"})]
    return b"".join(out)


def responses_stream(tokens: list[tuple[str, bool]], breaks: list[tuple[int, str]]) -> bytes:
    """A Responses text stream (the reference's example): a delta per token, with ``breaks``."""
    events = responses_tests.text_stream()  # created, in_progress, item added, part added, 2 deltas, done x3, completed
    first_delta = responses_tests.index_of(events, "response.output_text.delta")
    head, tail = events[:first_delta + 1], events[first_delta + 2:]
    template = events[first_delta]
    seq = 0
    out = []
    for e in head:
        out.append(_sse(e["type"], orjson.dumps({**e, "sequence_number": seq})))
        seq += 1
    prefix, suffix = orjson.dumps({**template, "delta": "@@", "sequence_number": 0}).split(b"@@")
    suffix = suffix[: -len(b"0}")]
    at = dict(breaks)
    text = template["delta"]
    for n, (token, raw) in enumerate(tokens):
        brk = at.get(n)
        obj: dict[str, Any] = {**template, "delta": token}
        name = "response.output_text.delta"
        number: bytes = str(seq).encode()
        if brk == "seq-repeat":
            number = str(seq - 1).encode()
        elif brk == "seq-back":
            number = str(max(seq - 3, 0)).encode()
        elif brk == "seq-jump":
            seq += 5
            number = str(seq).encode()
        elif brk == "seq-leading-zero":
            number = b"0" + number
        elif brk == "seq-huge":
            number = b"1" + b"0" * 19
        elif brk == "seq-float":
            number += b".0"
        elif brk == "seq-negative":
            number = b"-" + number
        elif brk in ("text-done", "part-done", "item-done", "completed"):
            kind = {"text-done": "response.output_text.done", "part-done": "response.content_part.done",
                    "item-done": "response.output_item.done", "completed": "response.completed"}[brk]
            done = next(e for e in tail if e["type"] == kind)
            out.append(_sse(kind, orjson.dumps({**done, "sequence_number": seq})))
            seq += 1
            number = str(seq).encode()
        elif brk == "other-item":
            obj["item_id"] = "msg_other"
        elif brk == "other-part":
            obj["content_index"] = 1
        elif brk == "other-output":
            obj["output_index"] = 1
        elif brk == "renamed":
            name = "response.refusal.delta"
        elif brk == "logprobs":
            obj["logprobs"] = [{"token": "x", "logprob": -0.1}]
        elif brk == "error":
            out.append(_sse("error", orjson.dumps({"type": "error", "code": "server_error", "message": "x",
                                                   "param": None, "sequence_number": seq})))
            seq += 1
            number = str(seq).encode()
        if brk == "seq-missing":
            data = orjson.dumps(obj)
        elif raw and obj == {**template, "delta": token}:
            data = _delta_data(prefix, suffix, obj, token, True) + number + b"}"
        else:
            data = orjson.dumps({**obj, "sequence_number": 0})[: -len(b"0}")] + number + b"}"
        out.append(_sse(name, data))
        seq += 1
        text += token
    for e in tail:  # the done events state the text as the escaped deltas give it
        e = json.loads(json.dumps(e).replace(json.dumps(responses_tests.TEXT)[1:-1], json.dumps(text)[1:-1]))
        out.append(_sse(e["type"], orjson.dumps({**e, "sequence_number": seq})))
        seq += 1
    return b"".join(out)


@settings(max_examples=200, deadline=None)
@given(tokens=_TOKENS, breaks=_MESSAGES_BREAKS)
def test_generated_messages_streams(tokens: list[tuple[str, bool]], breaks: list[tuple[int, str]]) -> None:
    for pieces in chunkings(messages_stream(tokens, breaks)):
        both_paths(MESSAGES, messages_tests.REQUEST, pieces)


@settings(max_examples=200, deadline=None)
@given(tokens=_TOKENS, breaks=_RESPONSES_BREAKS)
def test_generated_responses_streams(tokens: list[tuple[str, bool]], breaks: list[tuple[int, str]]) -> None:
    for pieces in chunkings(responses_stream(tokens, breaks)):
        both_paths(RESPONSES, responses_tests.REQUEST, pieces)


@pytest.mark.parametrize(("dialect", "build", "request_body"), [
    (MESSAGES, messages_stream, messages_tests.REQUEST), (RESPONSES, responses_stream, responses_tests.REQUEST)])
@pytest.mark.parametrize("raw", [False, True], ids=["escaped", "raw"])
def test_generated_plain_streams_take_the_fast_path(dialect: str, build: Any, request_body: dict[str, Any],
                                                    raw: bool) -> None:
    """The generators' streams without a break go fast after the learned delta (raw tokens too,
    when they hold nothing JSON escapes); a break sends the events it touches the full way."""
    tokens = [("a", raw), (" b", raw), ("é", raw), ("日本", raw)]
    for pieces in chunkings(build(tokens, [])):
        seen, fast = both_paths(dialect, request_body, pieces)
        assert fast == 4 and seen["findings"] == [], seen["findings"]
    # after a message_delta every delta is out of place; a repeated number is one event's
    breaks = ([(2, "message-delta")] if dialect == MESSAGES else [(2, "seq-repeat")])
    seen, fast = both_paths(dialect, request_body, [build(tokens, breaks)])
    assert fast == (2 if dialect == MESSAGES else 3) and [f[0] for f in seen["findings"]][:1] == [
        "stream.event_order" if dialect == MESSAGES else "stream.sequence_number"]
