"""Properties of the decoder over generated streams: any split of the bytes gives
the same events and findings, one byte at a time included; arrival stamps
follow the bytes; the events are those of a naive reading of the standard."""

from __future__ import annotations

from bisect import bisect_right

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sse_reference import decode, decode_chunks, reference_events, split_at

_BOM = b"\xef\xbb\xbf"

# Characters that trip parsers: colon, space, NUL, BOM, non-ASCII, and the
# Unicode/ASCII separators that must NOT end a line.
_VALUE_CHARS = st.sampled_from(
    ["a", "1", "0", " ", ":", "\x00", "é", "日", "\ufeff", "\u2028", "\x85", "\x0b", "\x1c"]
)
_RAW = st.sampled_from([b"\xff", b"\xe2\x82", b"\x80", b"\xc3(", _BOM])
_VALUES = st.lists(
    st.one_of(st.text(_VALUE_CHARS, max_size=4).map(str.encode), _RAW), max_size=3
).map(b"".join)
_NAMES = st.sampled_from([b"data", b"event", b"id", b"retry", b"Data", b"x-vendor", b"", b"dat"])
_EOLS = st.sampled_from([b"\n", b"\r", b"\r\n"])


@st.composite
def _line(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["simple", "simple", "field", "field", "comment", "blank"]))
    if kind == "simple":  # a whole "data: ...\n\n" block, the common case
        return b"data: " + draw(st.text('ab{}":é ', max_size=8)).encode() + b"\n\n"
    eol = draw(_EOLS)
    if kind == "blank":
        return eol
    if kind == "comment":
        return b":" + draw(_VALUES) + eol
    name = draw(_NAMES)
    separator = draw(st.sampled_from([b":", b": ", b"", b":  "]))
    value = draw(_VALUES) if separator else b""
    if not separator and name == b"":
        return eol
    return name + separator + value + eol


@st.composite
def _mixed_streams(draw: st.DrawFn) -> bytes:
    head = draw(st.sampled_from([b"", b"", _BOM, _BOM + _BOM, b"\xef\xbb"]))
    body = b"".join(draw(st.lists(_line(), max_size=14)))
    tail = draw(st.sampled_from([b"", b"", b"data: x", b"data", b": c", b"\r", b"id: 1", b"\xef"]))
    return head + body + tail


@st.composite
def _block(draw: st.DrawFn, eol: bytes) -> bytes:
    """A block of one of the shapes the decoder takes in bulk (usually with a
    clean value; sometimes a BOM, invalid UTF-8 or a colon in it), or a block
    that breaks a run: a keep-alive, an id line, a second data line, a blank."""
    kind = draw(st.sampled_from(["data", "data", "data", "bom", "event", "named", "named", "break"]))
    value = draw(st.one_of(st.text('ab{}":é日 ', max_size=6).map(str.encode), _VALUES))
    if kind == "data":
        return b"data: " + value + eol + eol
    if kind == "named":  # the typed dialects' event: <type> blocks (names odd at times)
        name = draw(st.one_of(st.sampled_from([b"content_block_delta", b"response.output_text.delta", b"x"]),
                              st.text("ab:é ", max_size=4).map(str.encode), _VALUES))
        return b"event: " + name + eol + b"data: " + value + eol + eol
    if kind == "bom":
        return _BOM + b"event: message" + eol + b"data: " + value + eol + eol
    if kind == "event":
        return b"event: message" + eol + b"data: " + value + eol + eol
    lines = draw(
        st.sampled_from([[b": keep-alive"], [b"id: 7", b"data: i"], [b"data: a", b"data: b"], []])
    )
    return b"".join(line + eol for line in lines) + eol


@st.composite
def _uniform_streams(draw: st.DrawFn) -> bytes:
    """Streams with one kind of line end throughout, as real servers write them."""
    eol = draw(st.sampled_from([b"\n", b"\r\n"]))
    head = draw(st.sampled_from([b"", _BOM]))
    body = b"".join(draw(st.lists(_block(eol), max_size=12)))
    tail = draw(st.sampled_from([b"", b"data: x" + eol, b"event: message" + eol, _BOM]))
    return head + body + tail


def streams() -> st.SearchStrategy[bytes]:
    return st.one_of(_mixed_streams(), _uniform_streams())


_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(
    stream=streams(),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
    max_buffer=st.sampled_from([None, None, 3, 8, 20, 64]),
)
def test_any_split_gives_identical_events_and_findings(
    stream: bytes, cuts: list[int], max_buffer: int | None
) -> None:
    whole = decode(stream, max_buffer)
    chunks = split_at(stream, cuts)
    starts = [0]
    for chunk in chunks[:-1]:
        starts.append(starts[-1] + len(chunk))
    split = decode_chunks(chunks, max_buffer, stamps=starts)
    assert split.without_arrival() == whole.without_arrival()
    # Each event carries the stamp of the feed that delivered its first byte.
    for event in split.events:
        assert event.arrival_ns == starts[bisect_right(starts, event.offset) - 1]


@_SETTINGS
@given(stream=streams(), max_buffer=st.sampled_from([None, 8, 20]))
def test_one_byte_at_a_time_gives_identical_events_and_findings(
    stream: bytes, max_buffer: int | None
) -> None:
    whole = decode(stream, max_buffer)
    chunks = [stream[i : i + 1] for i in range(len(stream))]
    bytewise = decode_chunks(chunks, max_buffer, stamps=range(len(stream)))
    assert bytewise.without_arrival() == whole.without_arrival()
    assert [e.arrival_ns for e in bytewise.events] == [e.offset for e in bytewise.events]


@_SETTINGS
@given(stream=streams())
def test_events_match_a_naive_reading_of_the_standard(stream: bytes) -> None:
    out = decode(stream)
    assert out.triples() == reference_events(stream)
    # Offsets are ordered and inside the stream; findings come in offset order.
    for event in out.events:
        assert 0 <= event.offset < event.end <= len(stream)
    offsets = [f.offset for f in out.findings if f.rule != "sse.unterminated_event"]
    assert offsets == sorted(offsets)


def test_one_byte_at_a_time_over_a_realistic_stream() -> None:
    stream = (
        b"\xef\xbb\xbf: keep-alive\r\n\r\n"
        b'data: {"choices":[{"delta":{"content":"caf\xc3\xa9"}}]}\n\n'
        b"event: message\r\ndata: a\r\ndata: b\r\nid: 42\r\nretry: 1500\r\n\r\n"
        b"\xef\xbb\xbfevent: error\ndata: {}\n\n"
        b"data: [DONE]\r\r"
    )
    whole = decode(stream)
    bytewise = decode_chunks([stream[i : i + 1] for i in range(len(stream))])
    assert bytewise.without_arrival() == whole.without_arrival()
    assert whole.triples() == [
        ("message", '{"choices":[{"delta":{"content":"café"}}]}', "", None),
        ("message", "a\nb", "42", 1500),
        ("message", "{}", "42", None),
        ("message", "[DONE]", "42", None),
    ]
    assert [f.rule for f in whole.findings] == ["sse.bom_not_at_start"]
