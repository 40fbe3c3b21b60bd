"""StreamValidator's token fast path gives exactly the full path's answer.

The load generator relies on it (streams.py, ``_Template``): an event whose
data is a learned prefix + an escape-free token + suffix skips JSON parsing.
Here both paths run on the same events and every observable result is
compared: findings (rule, message, offset, pointer), choices (text, role,
finish, tool calls, deltas), token arrival stamps, usage, terminator, error.
Inputs: every stream of the reference server's fault catalogue in each of its
dialects (captured over HTTP), and generated streams whose tokens hold
quotes, backslashes, control characters and non-ASCII text, raw or escaped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatprobe.client import Client, Limits
from chatprobe.server.faults import Fault
from chatprobe.server.runner import running_server
from chatprobe.sse import SSEDecoder
from chatprobe.streams import StreamValidator
from tests.catalogue import cases, fault_servers, trigger

# huge-frame sends 50 MB (the decoder stops at its buffer limit) and stall waits
# for a read timeout: neither says anything about token shapes.
_SKIP = {"huge-frame", "stall"}
CASES = [(f, d) for f, d in cases() if f.name not in _SKIP and "api_key" not in f.needs
         and trigger(f, d).stream]


def observe(v: StreamValidator) -> dict[str, Any]:
    res = v.result
    return {
        "findings": [(f.rule, f.severity, f.message, f.offset, f.pointer, f.evidence) for f in v.findings],
        "choices": res.choices,
        "usage": res.usage,
        "usage_offset": res.usage_offset,
        "terminator_seen": res.terminator_seen,
        "error": res.error,
        "chunks": res.chunks,
        "token_arrivals_ns": res.token_arrivals_ns,
        "first_choices_ns": res.first_choices_ns,
        "ids": res.ids,
    }


def both_paths(dialect: str, request: dict[str, Any] | None, pieces: list[bytes]) -> tuple[dict[str, Any], int]:
    """Decode once; validate with and without the fast path; return the full path's
    observation (asserted equal to the fast one's) and the fast path's event count."""
    decoder = SSEDecoder()
    batches = [decoder.feed(piece, n) for n, piece in enumerate(pieces)]
    batches.append(decoder.close())
    fast = StreamValidator(dialect, request, check_schema=False)
    full = StreamValidator(dialect, request, check_schema=False, fast_path=False)
    for batch in batches:
        assert fast.feed(batch) == full.feed(batch)
    assert fast.finish() == full.finish()
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


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    """One reference server per fault, started when first needed and kept for the module."""
    with fault_servers() as urls:
        yield urls


@pytest.mark.parametrize(("fault", "dialect"), CASES, ids=[f"{f.name}-{d}" for f, d in CASES])
def test_fast_path_equals_full_path_on_catalogue(fault: Fault, dialect: str, servers: dict[str, str]) -> None:
    spec = trigger(fault, dialect)
    limits = Limits(read_timeout_s=1.0, total_timeout_s=10.0, capture_bytes=4 << 20)
    with Client(servers[fault.name], limits=limits) as client:
        ex = client.send(dialect, spec.method, spec.path, json_body=spec.body, stream=True,
                         params=dict(spec.query))
    if ex.status != 200:
        pytest.skip(f"{fault.name} answers {ex.status} in {dialect}: no stream to compare")
    for pieces in chunkings(ex.body):
        both_paths(dialect, spec.body, pieces)


def test_fast_path_is_taken_on_plain_streams() -> None:
    """A paced chat stream in each dialect: all but a few events take the fast path."""
    for dialect in ("openai", "elastic-chat", "elastic-completion", "adaptive"):
        with running_server() as url:
            spec = trigger(Fault("plain", "variant", None, (dialect,), "", {"stream": True, "max_tokens": 40}),
                           dialect)
            with Client(url) as client:
                ex = client.send(dialect, spec.method, spec.path, json_body=spec.body, stream=True,
                                 params=dict(spec.query))
        seen, fast_events = both_paths(dialect, spec.body, list(chunkings(ex.body))[2])
        assert not [f for f in seen["findings"] if f[1] == "error"], seen["findings"]
        assert len(seen["token_arrivals_ns"]) >= 10
        assert fast_events >= len(seen["token_arrivals_ns"]) - 3, (dialect, fast_events)


# ---------------------------------------------------------------------------
# Generated streams: tokens of any text, escaped (valid JSON) or spliced raw
# ---------------------------------------------------------------------------
def _chunk(content: str | None, *, role: bool = False, finish: str | None = None) -> dict[str, Any]:
    delta: dict[str, Any] = {"role": "assistant"} if role else {}
    if content is not None:
        delta["content"] = content
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


_PREFIX, _SUFFIX = orjson.dumps(_chunk("@@")).split(b"@@")


@settings(max_examples=150, deadline=None)
@given(
    tokens=st.lists(st.tuples(st.text(max_size=6), st.booleans()), min_size=1, max_size=12),
    finish_at=st.integers(0, 14),
    usage=st.booleans(),
)
def test_fast_path_equals_full_path_on_generated_tokens(
    tokens: list[tuple[str, bool]], finish_at: int, usage: bool
) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True,
            "stream_options": {"include_usage": usage}}
    events = [b"data: " + orjson.dumps(_chunk("", role=True)) + b"\n\n",
              b"data: " + orjson.dumps(_chunk("a")) + b"\n\n"]
    for n, (token, raw) in enumerate(tokens):
        if n == finish_at:
            events.append(b"data: " + orjson.dumps(_chunk(None, finish="stop")) + b"\n\n")
        # raw: spliced into the template's bytes unescaped (quotes, backslashes and
        # control characters then make invalid JSON or another structure)
        data = _PREFIX + token.encode() + _SUFFIX if raw else orjson.dumps(_chunk(token))
        events.append(b"data: " + data.replace(b"\r", b"").replace(b"\n", b"") + b"\n\n")
    if usage:
        events.append(b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m",'
                      b'"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}\n\n')
    events.append(b"data: [DONE]\n\n")
    both_paths("openai", body, events)
