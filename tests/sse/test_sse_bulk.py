"""The decoder's bulk paths (whole runs of "data: <value>" blocks, Elastic's
"event: message" blocks with or without a BOM, CRLF streams) against its
line-by-line path, on realistic streams and on the inputs that must make a bulk
path step aside.

Fed one byte at a time, every line arrives in its own feed and takes the
line-by-line path, so that is the oracle; the naive reference reader checks
the events themselves."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from sse_reference import Outcome, decode, decode_chunks, reference_events, rules

from chatprobe.sse import MAX_FINDINGS_PER_RULE, Event, SSEDecoder

_BOM = b"\xef\xbb\xbf"
_WORDS = [" the", " café", " 日本語", " ✓", ",", " stream", "\ufeff", "\uff0c"]


def _chunk(token: str) -> bytes:
    body = {"object": "chat.completion.chunk", "choices": [{"delta": {"content": token}}]}
    return json.dumps(body, ensure_ascii=False).encode()


def _openai(n: int) -> bytes:
    return b"".join(b"data: " + _chunk(_WORDS[i % 6]) + b"\n\n" for i in range(n)) + (
        b"data: [DONE]\n\n"
    )


def _elastic(n: int, bom: bytes = _BOM) -> bytes:
    return b"".join(
        bom + b"event: message\ndata: " + _chunk(_WORDS[i % 6]) + b"\n\n" for i in range(n)
    )


def _crlf_keepalive(n: int) -> bytes:
    out = []
    for i in range(n):
        if i % 5 == 0:
            out.append(b": keep-alive\r\n\r\n")
        out.append(b"data: " + _chunk(_WORDS[i % 6]) + b"\r\n\r\n")
    return b"".join(out)


def _typed(n: int, names: tuple[bytes, ...] = (b"content_block_delta", b"response.output_text.delta")) -> bytes:
    """Named events, as the typed dialects write them (event: <type> + data: <json>)."""
    return b"".join(
        b"event: " + names[i % len(names)] + b"\ndata: " + _chunk(_WORDS[i % 6]) + b"\n\n" for i in range(n)
    )


def _same_every_way(stream: bytes, max_buffer: int | None = None) -> Outcome:
    """Decode ``stream`` whole, in pieces of several sizes and byte by byte, and
    check that every way gives the same events, findings and counters."""
    whole = decode(stream, max_buffer)
    bytewise = decode_chunks([stream[i : i + 1] for i in range(len(stream))], max_buffer)
    assert bytewise.without_arrival() == whole.without_arrival()
    for size in (2, 7, 100, 1500, 4096):
        starts = list(range(0, len(stream), size))
        pieces = [stream[i : i + size] for i in starts]
        split = decode_chunks(pieces, max_buffer, stamps=starts)
        assert split.without_arrival() == whole.without_arrival(), size
        # Each event carries the stamp of the feed that delivered its first byte.
        assert [e.arrival_ns for e in split.events] == [
            e.offset // size * size for e in split.events
        ]
    if not whole.stopped:
        assert whole.triples() == reference_events(stream)
    return whole


def test_openai_stream_with_non_ascii_values() -> None:
    out = _same_every_way(_openai(40))
    assert len(out.events) == 41 and out.findings == []
    assert out.events[-1].data == "[DONE]"
    assert json.loads(out.events[1].data)["choices"][0]["delta"]["content"] == " café"
    # Offsets are byte offsets: each event ends where the next one starts.
    assert all(a.end == b.offset for a, b in zip(out.events, out.events[1:], strict=False))


def test_elastic_stream_with_a_bom_before_every_event() -> None:
    # The stream's own first BOM is skipped; every later one is a warning, listed
    # up to the cap and counted beyond it.
    n = MAX_FINDINGS_PER_RULE + 30
    out = _same_every_way(_elastic(n))
    assert [e.type for e in out.events] == ["message"] * n
    assert len(out.findings) == MAX_FINDINGS_PER_RULE
    assert out.finding_counts == {"sse.bom_not_at_start": n - 1}
    assert [f.offset for f in out.findings] == [
        e.offset for e in out.events[1 : 1 + len(out.findings)]
    ]


def test_typed_stream_of_named_events() -> None:
    out = _same_every_way(b"event: message_start\ndata: {}\n\n" + _typed(30) + b"event: ping\ndata: {}\n\n")
    assert len(out.events) == 32 and out.findings == []
    assert [e.type for e in out.events[:3]] == ["message_start", "content_block_delta", "response.output_text.delta"]
    assert json.loads(out.events[2].data)["choices"][0]["delta"]["content"] == " café"
    assert all(a.end == b.offset for a, b in zip(out.events, out.events[1:], strict=False))


@pytest.mark.parametrize(
    "odd",
    [
        b"event: \ndata: {}\n\n",  # an empty name: type message
        b"event:x\ndata: {}\n\n",  # no space: the same name, not the bulk shape
        b"event: a:b\ndata: {}\n\n",  # a colon in the name is part of it
        b"event:  x\ndata: {}\n\n",  # a second space is part of the name
        b"event: x\nevent: y\ndata: {}\n\n",  # the last name wins
        b"event: x\nid: 4\ndata: {}\n\n",  # a field between the two lines
        b"event: x\ndata: a\ndata: b\n\n",  # two data lines
        b"event: x\n\n",  # a name without data: no event
        b"event: x\ndata: {}\n\n\n",  # an extra blank line
        b"event: \xff\ndata: {}\n\n",  # invalid UTF-8 in the name
        b"event: x\ndata: caf\xe9\n\n",  # ... and in the value
        b"event: \xef\xbb\xbfx\ndata: {}\n\n",  # a BOM in the name
        b"event: x\ndata: \xef\xbb\xbf\n\n",  # ... and in the value
        b"event: x\rdata: {}\n\n",  # a CR line end inside the block
        b"event: x\ndata: {}\r\n\r\n",  # CRLF after LF
        b"\xef\xbb\xbfevent: message\ndata: {}\n\n",  # Elastic's BOM shape
        b"event: message\ndata: {}\n\n",  # Elastic's shape: also a named block
        b": keep-alive\n\n",
    ],
)
def test_a_block_the_named_path_must_read_as_the_standard_says(odd: bytes) -> None:
    out = _same_every_way(_typed(4) + odd + _typed(4))
    assert len(out.events) >= 8


def test_elastic_stream_without_boms_and_with_crlf() -> None:
    out = _same_every_way(_elastic(12, bom=b"").replace(b"\n", b"\r\n"))
    assert len(out.events) == 12 and out.findings == []
    # A CRLF blank line's LF is not part of the event.
    assert [e.end + 1 for e in out.events[:-1]] == [e.offset for e in out.events[1:]]


def test_crlf_stream_with_keep_alive_comments() -> None:
    out = _same_every_way(_crlf_keepalive(23))
    assert len(out.events) == 23 and out.comments == 5 and out.findings == []


def test_a_run_broken_by_other_blocks_and_shapes() -> None:
    # An "event: error" after a BOM is an unknown field; an id: line sets the id
    # for the events after it; a multi-line data block; a switch of shapes in
    # the middle of a run; a blank-line-only block.
    stream = (
        _elastic(3, bom=b"")
        + _elastic(3)
        + _BOM
        + b"event: error\ndata: {}\n\n"
        + b"id: 9\n\n"
        + _openai(3)
        + b"data: a\ndata: b\n\n\n\n"
        + _elastic(2)
        + b"data: \xef\xbc\x8c\xef\xbb\xbf\n\n"
    )
    out = _same_every_way(stream)
    assert [e.id for e in out.events].count("9") == 8
    assert ("message", "a\nb", "9", None) in out.triples()
    assert rules(out)[-1] == ("sse.bom_not_at_start", len(stream) - 5)


@pytest.mark.parametrize(
    "bad",
    [
        b"data: caf\xe9\n\n",  # invalid UTF-8 in a value
        b"data: x\r\n\r\n",  # a CR among LFs
        b"data: a\rb\r\n\r\n",  # a lone CR inside a value
        b"data: x\ndata: y\n\n",  # two data lines
        b"data: \xef\xbb\xbfx\n\n",  # a BOM inside a value
        b"data\n\n",  # a field with no colon
        b"data:x\n\n",  # no space: not the bulk shape, same meaning
        b"data: x\n\n\n",  # an extra blank line
        b"data: x\r\n\r\n\r\n",  # an extra blank CRLF line
        b"data: x\r\r\n\r\n",  # a CR line end, then blank CRLF lines
        b"data: \xef\xbb\xbfx\n\n: ka\n\n",  # a BOM, then a comment
        b"data: \xef\xbb\xbfx\r\n\r\n: ka\r\n\r\n",
    ],
)
@pytest.mark.parametrize("maker", [_openai, _elastic, _crlf_keepalive])
def test_a_block_the_bulk_paths_must_not_take_in_the_middle_of_a_run(
    maker: Callable[[int], bytes], bad: bytes
) -> None:
    out = _same_every_way(maker(4) + bad + maker(4))
    assert len(out.events) >= 8


def test_the_lines_after_the_last_blank_line_of_a_feed() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"data: a\n\ndata: b\nevent: x\nid: 3\n", arrival_ns=1)
    events += decoder.feed(b"\ndata: c\n\ndata: d", arrival_ns=2)
    events += decoder.feed(b"\n\n", arrival_ns=3)
    assert events == [
        Event("message", "a", "", 0, 9, 1),
        Event("x", "b", "3", 9, 33, 1),
        Event("message", "c", "3", 33, 42, 2),
        Event("message", "d", "3", 42, 51, 2),
    ]


def test_arrival_stamps_within_one_bulk_feed() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b": hello\n\ndata: a", arrival_ns=1) == []
    events = decoder.feed(b"1\n\ndata: b\n\ndata: c\n\ndata: d", arrival_ns=2)
    events += decoder.feed(b"\n\n", arrival_ns=3)
    assert [(e.data, e.arrival_ns) for e in events] == [("a1", 1), ("b", 2), ("c", 2), ("d", 2)]


@pytest.mark.parametrize("max_buffer", range(10, 17))
def test_the_limit_applies_to_a_bulk_feed(max_buffer: int) -> None:
    # The first feed settles the leading-BOM question; the second could be a bulk
    # run. The 14-byte line breaks any smaller limit.
    decoder = SSEDecoder(max_buffer)
    decoder.feed(b"data: 1\n\n")
    events = decoder.feed(b"data: 12345678\n\n")
    assert decoder.stopped == (max_buffer < 14)
    assert [e.data for e in events] == ([] if decoder.stopped else ["12345678"])


def test_a_partial_line_over_the_limit_after_a_bulk_run_stops_at_once() -> None:
    decoder = SSEDecoder(16)
    decoder.feed(b"data: 1\n\n")
    events = decoder.feed(b"data: 2\n\ndata: " + b"x" * 40)
    assert [e.data for e in events] == ["2"]
    assert decoder.stopped
    assert [(f.rule, f.offset) for f in decoder.findings] == [("sse.frame_too_large", 18)]


def test_invalid_utf8_in_a_bulk_run_is_found_once_at_its_byte() -> None:
    stream = _openai(3) + b"data: \xff\n\n" + _openai(2)
    out = _same_every_way(stream)
    assert rules(out) == [("sse.invalid_utf8", len(_openai(3)) + 6)]
    assert "\ufffd" in [e.data for e in out.events]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
def test_invalid_utf8_in_a_run_broken_by_keep_alives(eol: bytes) -> None:
    stream = b"".join(
        [b": keep-alive" + eol + eol, b"data: a" + eol + eol, b"data: \xc3(" + eol + eol] * 3
    )
    out = _same_every_way(stream)
    assert [e.data for e in out.events] == ["a", "\ufffd("] * 3
    assert [f.rule for f in out.findings] == ["sse.invalid_utf8"] * 3


@pytest.mark.parametrize("max_buffer", [9, 10, 17, 18, 19, 30])
def test_the_limit_is_the_same_on_the_bulk_paths(max_buffer: int) -> None:
    stream = b"data: 1\n\ndata: 12345678\n\n" + _BOM + b"event: message\ndata: 1\n\n"
    out = _same_every_way(stream, max_buffer)
    assert out.stopped == (max_buffer < 30)
