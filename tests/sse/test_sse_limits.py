"""The buffer limit: a line or an event larger than ``max_buffer`` stops the
decoder with ``sse.frame_too_large``, and memory stays bounded."""

from __future__ import annotations

import tracemalloc

from sse_reference import decode, decode_chunks, rules

from chatprobe.findings import Severity
from chatprobe.sse import DEFAULT_MAX_BUFFER, SSEDecoder


def test_a_50_mb_line_fed_in_64_kib_pieces_stops_at_the_limit_with_bounded_memory() -> None:
    piece = b"x" * (64 * 1024)
    decoder = SSEDecoder()
    tracemalloc.start()
    try:
        events = decoder.feed(b"data: before\n\ndata: ")
        fed = 0
        while fed < 50 * 1024 * 1024:
            events += decoder.feed(piece)
            fed += len(piece)
        events += decoder.feed(b"\n\n")
        events += decoder.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [e.data for e in events] == ["before"]
    assert decoder.stopped
    assert [(f.rule, f.offset, f.severity) for f in decoder.findings] == [
        ("sse.frame_too_large", 14, Severity.ERROR)
    ]
    assert decoder.bytes_fed == 20 + 50 * 1024 * 1024 + 2
    # The decoder held at most about max_buffer bytes (never the 50 MB).
    assert peak < 1.5 * DEFAULT_MAX_BUFFER


def test_after_stopping_feed_returns_nothing_and_close_reports_nothing_more() -> None:
    decoder = SSEDecoder(max_buffer=8)
    assert decoder.feed(b"data: 123456789") == []
    assert decoder.stopped
    assert decoder.feed(b"\n\ndata: a\n\n") == []
    assert decoder.close() == []
    assert [f.rule for f in decoder.findings] == ["sse.frame_too_large"]


def test_a_complete_line_over_the_limit_in_one_feed_stops_after_the_events_before_it() -> None:
    out = decode(b"data: a\n\n: " + b"c" * 30 + b"\ndata: b\n\n", max_buffer=16)
    assert out.triples() == [("message", "a", "", None)]
    assert rules(out) == [("sse.frame_too_large", 9)]


def test_an_event_over_the_limit_is_reported_at_its_first_line() -> None:
    # Each line is small; the event's block grows past the limit.
    out = decode(b"data: a\n\nevent: e\n" + b"data: 1234\n" * 4 + b"\n", max_buffer=32)
    assert out.triples() == [("message", "a", "", None)]
    assert rules(out) == [("sse.frame_too_large", 9)]
    assert out.findings[0].evidence == {"max_buffer": 32}


def test_comments_inside_an_event_do_not_count_until_a_field_line_follows() -> None:
    # Lines at the limit are fine; the comment lines do not trip the event check.
    stream = b"data: 12\n: 1234567\n: 1234567\n\n"
    assert decode(stream, max_buffer=10).triples() == [("message", "12", "", None)]


def test_trailing_partial_line_over_the_limit_in_the_same_feed() -> None:
    out = decode_chunks([b"data: a\n\ndata: " + b"z" * 40], max_buffer=16)
    assert out.triples() == [("message", "a", "", None)]
    assert rules(out) == [("sse.frame_too_large", 9)]


def test_invalid_text_after_the_stopping_line_is_not_reported() -> None:
    # Whether or not the bytes after the oversized line arrived in the same read,
    # the decoder stops there: nothing after it is looked at.
    stream = b"data: " + b"y" * 40 + b"\n\xff\xef\xbb\xbf\n\n"
    assert rules(decode(stream, max_buffer=16)) == [("sse.frame_too_large", 0)]
