"""The WHATWG HTML standard's own examples and rules for event streams
("9.2.5 Parsing an event stream", "9.2.6 Interpreting an event stream"),
one test each, plus chatprobe's findings for each deviation."""

from __future__ import annotations

import pytest
from sse_reference import decode, decode_chunks, rules

import chatprobe.sse
from chatprobe.findings import Severity
from chatprobe.sse import DEFAULT_MAX_BUFFER, MAX_FINDINGS_PER_RULE, Event, SSEDecoder

# --- the standard's examples ------------------------------------------------------


def test_example_stock_ticker_multiline_data_is_joined_with_lf() -> None:
    # "data: YHOO / data: +2 / data: 10" -> one event whose data is the three
    # lines joined by LF.
    out = decode(b"data: YHOO\ndata: +2\ndata: 10\n\n")
    assert out.events == [Event("message", "YHOO\n+2\n10", "", 0, 30, None)]
    assert out.findings == []


def test_example_test_stream_comment_then_first_second_third_event() -> None:
    stream = (
        b": test stream\n\n"
        b"data: first event\nid: 1\n\n"
        b"data:second event\nid\n\n"
        b"data:  third event\n\n"
    )
    out = decode(stream)
    # The comment block fires nothing; "id" alone resets the last event ID;
    # only one leading space is stripped from "  third event".
    assert out.triples() == [
        ("message", "first event", "1", None),
        ("message", "second event", "", None),
        ("message", " third event", "", None),
    ]
    assert out.comments == 1
    assert [e.offset for e in out.events] == [15, 40, 62]
    assert out.findings == []


def test_example_data_data_colon_blocks_give_empty_and_newline_data() -> None:
    # "The first block fires events with the data set to the empty string, as
    # would the last block if it was followed by a blank line. The middle block
    # fires an event with the data set to a single newline character. The last
    # block is discarded because it is not followed by a blank line."
    out = decode(b"data\n\ndata\ndata\n\ndata:")
    assert out.triples() == [("message", "", "", None), ("message", "\n", "", None)]
    assert rules(out) == [("sse.unterminated_event", 17)]


def test_example_data_colon_and_data_colon_space_give_two_identical_events() -> None:
    out = decode(b"data:test\n\ndata: test\n\n")
    assert out.triples() == [("message", "test", "", None)] * 2


# --- decoding ---------------------------------------------------------------------


def test_leading_bom_is_skipped() -> None:
    out = decode(b"\xef\xbb\xbfdata: x\n\n")
    assert out.events == [Event("message", "x", "", 3, 12, None)]
    assert out.findings == []


def test_only_one_leading_bom_is_skipped_and_a_later_one_is_a_warning() -> None:
    # The second BOM makes the line's field name "\ufeffdata": an unknown field.
    out = decode(b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n")
    assert out.events == []
    assert rules(out) == [("sse.bom_not_at_start", 3)]
    assert out.findings[0].severity is Severity.WARNING


def test_bom_before_every_event_misreads_the_event_line_but_keeps_the_data() -> None:
    # Elastic writes a BOM before every event: the later "event: error" lines
    # become unknown fields, so those events are plain messages.
    stream = b"\xef\xbb\xbfevent: message\ndata: a\n\n\xef\xbb\xbfevent: error\ndata: b\n\n"
    out = decode(stream)
    assert out.triples() == [("message", "a", "", None), ("message", "b", "", None)]
    assert rules(out) == [("sse.bom_not_at_start", 27)]


def test_invalid_utf8_becomes_replacement_character_and_an_error() -> None:
    out = decode(b"data: a\xffb\xe2\x82\n\n")
    assert out.triples() == [("message", "a\ufffdb\ufffd", "", None)]
    assert rules(out) == [("sse.invalid_utf8", 7)]
    assert out.findings[0].severity is Severity.ERROR
    assert out.findings[0].evidence == {"replacements": 2}


def test_invalid_utf8_in_a_comment_is_reported_too() -> None:
    out = decode(b": \xc3(\n\n")
    assert rules(out) == [("sse.invalid_utf8", 2)]


def test_findings_within_a_line_come_in_offset_order() -> None:
    out = decode(b"data: \xef\xbb\xbf\xff\n: \xff\xef\xbb\xbf\n\n")
    assert rules(out) == [
        ("sse.bom_not_at_start", 6),
        ("sse.invalid_utf8", 9),
        ("sse.invalid_utf8", 13),
        ("sse.bom_not_at_start", 14),
    ]


def test_utf8_character_split_across_feeds_decodes_whole() -> None:
    stream = "data: café 日本 ✓ 😀\n\n".encode()
    for cut in range(len(stream) + 1):
        out = decode_chunks([stream[:cut], stream[cut:]])
        assert out.triples() == [("message", "café 日本 ✓ 😀", "", None)], cut
        assert out.findings == []


# --- lines --------------------------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\n", b"\r", b"\r\n"])
def test_each_line_ending_cr_lf_crlf(eol: bytes) -> None:
    out = decode(b"data: a" + eol + b"data: b" + eol + eol)
    assert out.triples() == [("message", "a\nb", "", None)]
    assert out.events[0].end == 14 + 2 * len(eol) + 1  # a CRLF's LF is not counted


def test_mixed_line_endings_in_one_stream() -> None:
    out = decode(b"data: a\r\ndata: b\rdata: c\n\r\ndata: d\r\r")
    assert out.triples() == [("message", "a\nb\nc", "", None), ("message", "d", "", None)]
    assert [(e.offset, e.end) for e in out.events] == [(0, 26), (27, 36)]


def test_cr_lf_split_across_feeds_is_one_line_end() -> None:
    out = decode_chunks([b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"])
    assert out.triples() == [("message", "a\nb", "", None)]
    # A blank line's CRLF may be split by the network: the event is dispatched at
    # the CR, so `end` never counts the LF.
    assert out.events[0].end == 19


def test_cr_then_non_lf_in_next_feed_is_a_line_end_and_a_new_line() -> None:
    out = decode_chunks([b"data: a\r", b"\r"])
    assert out.triples() == [("message", "a", "", None)]


@pytest.mark.parametrize(
    "separator", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
)
def test_only_cr_and_lf_end_lines_not_other_unicode_separators(separator: str) -> None:
    out = decode(f"data: a{separator}b\n\n".encode())
    assert out.triples() == [("message", f"a{separator}b", "", None)]


def test_blank_lines_without_data_dispatch_nothing() -> None:
    assert decode(b"\n\n\r\n\r\r\n").events == []


# --- fields -------------------------------------------------------------------------


def test_line_without_colon_is_a_field_with_empty_value() -> None:
    assert decode(b"data\n\n").triples() == [("message", "", "", None)]


def test_only_one_leading_space_is_removed_from_the_value() -> None:
    assert decode(b"data:   x \n\n").triples() == [("message", "  x ", "", None)]


def test_value_may_contain_colons() -> None:
    assert decode(b"data: a: b:c\n\n").triples() == [("message", "a: b:c", "", None)]


def test_field_names_are_case_sensitive() -> None:
    out = decode(b"Data: x\nEVENT: y\n\ndata: z\n\n")
    assert out.triples() == [("message", "z", "", None)]


def test_unknown_fields_are_ignored_without_findings() -> None:
    out = decode(b"foo: bar\ndata: x\nx-vendor\n\n")
    assert out.triples() == [("message", "x", "", None)]
    assert out.findings == []


def test_event_field_sets_the_type_for_one_event_only() -> None:
    out = decode(b"event: add\ndata: 1\n\ndata: 2\n\n")
    assert out.triples() == [("add", "1", "", None), ("message", "2", "", None)]


def test_empty_event_field_gives_type_message() -> None:
    assert decode(b"event:\ndata: x\n\n").triples() == [("message", "x", "", None)]


def test_dispatch_with_empty_data_buffer_does_nothing_but_resets_the_type() -> None:
    out = decode(b"event: foo\n\ndata: x\n\n")
    assert out.triples() == [("message", "x", "", None)]


def test_id_alone_fires_no_event() -> None:
    # httpx-sse and openai-python emit an empty event here; the standard does not.
    assert decode(b"id: 7\n\n").events == []


def test_last_event_id_persists_across_events() -> None:
    out = decode(b"id: 7\n\ndata: a\n\ndata: b\nid: 8\n\ndata: c\n\n")
    assert [e.id for e in out.events] == ["7", "8", "8"]


def test_id_with_nul_is_ignored_and_warned() -> None:
    out = decode(b"id: 1\n\ndata: a\nid: x\x00y\n\n")
    assert out.triples() == [("message", "a", "1", None)]
    assert rules(out) == [("sse.id_contains_nul", 15)]
    assert out.findings[0].severity is Severity.WARNING


def test_retry_with_ascii_digits_is_attached_to_its_event_only() -> None:
    out = decode(b"retry: 3000\ndata: a\n\ndata: b\n\nretry: 0\n\ndata: c\n\n")
    assert [e.retry for e in out.events] == [3000, None, None]
    assert out.findings == []


@pytest.mark.parametrize("value", [b"", b"1.5", b"-1", b"  10", b"1e3", "\u0661".encode()])
def test_retry_not_all_ascii_digits_is_ignored_and_warned(value: bytes) -> None:
    out = decode(b"retry: 5\nretry:" + value + b"\ndata: a\n\n")
    assert out.events[0].retry == 5
    assert rules(out) == [("sse.retry_not_digits", 9)]


def test_retry_with_leading_zeros_and_huge_values() -> None:
    out = decode(b"retry: 007\ndata: a\n\nretry: " + b"9" * 5000 + b"\ndata: b\n\n")
    assert [e.retry for e in out.events] == [7, 2**63 - 1]


# --- end of stream ------------------------------------------------------------------


def test_unterminated_event_is_discarded_and_reported() -> None:
    out = decode(b"data: a\n\nevent: x\ndata: b\n")
    assert out.triples() == [("message", "a", "", None)]
    assert rules(out) == [("sse.unterminated_event", 9)]
    assert out.findings[0].severity is Severity.ERROR


def test_unterminated_data_line_without_line_end_is_reported() -> None:
    out = decode(b"data: a\n\ndata: b")
    assert rules(out) == [("sse.unterminated_event", 9)]


@pytest.mark.parametrize(
    "tail", [b": keep-alive\n", b": keep-alive", b"event: x\n", b"id: 3\n", b"retry: 1", b"\r"]
)
def test_trailing_block_that_would_fire_no_event_is_not_reported(tail: bytes) -> None:
    out = decode(b"data: a\n\n" + tail)
    assert len(out.events) == 1
    assert out.findings == []


def test_close_returns_no_events_and_is_idempotent() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert decoder.close() == []
    assert decoder.close() == []
    assert [f.rule for f in decoder.findings] == ["sse.unterminated_event"]


def test_feed_after_close_is_a_caller_error() -> None:
    decoder = SSEDecoder()
    decoder.close()
    with pytest.raises(RuntimeError):
        decoder.feed(b"data: a\n\n")


def test_stream_that_is_only_a_partial_bom() -> None:
    out = decode_chunks([b"\xef", b"\xbb"])
    assert out.events == [] and out.findings == []


# --- offsets, arrival stamps, counters -----------------------------------------------


def test_event_offset_is_its_first_field_line_after_comments() -> None:
    out = decode(b": keep-alive\n\n: ping\nid: 1\ndata: x\n\n")
    assert (out.events[0].offset, out.events[0].end) == (21, 36)


def test_arrival_ns_is_that_of_the_feed_with_the_events_first_byte() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b": keep-alive\n\nda", arrival_ns=100) == []
    assert decoder.feed(b"ta: a\n", arrival_ns=200) == []
    events = decoder.feed(b"\ndata: b\n\ndata", arrival_ns=300)
    events += decoder.feed(b": c\n\n", arrival_ns=400)
    assert [(e.data, e.arrival_ns) for e in events] == [("a", 100), ("b", 300), ("c", 300)]


def test_arrival_ns_skips_a_leading_bom_delivered_in_its_own_feed() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"\xef\xbb", arrival_ns=1) == []
    assert decoder.feed(b"\xbf", arrival_ns=2) == []
    events = decoder.feed(b"data: a\n\n", arrival_ns=3)
    assert [(e.offset, e.arrival_ns) for e in events] == [(3, 3)]


def test_arrival_ns_of_an_event_started_after_a_partial_line() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: a\n\nevent: x\nda", arrival_ns=1)
    events = decoder.feed(b"ta: b\n\n", arrival_ns=2)
    assert [(e.type, e.arrival_ns) for e in events] == [("x", 1)]


def test_comment_and_byte_counters() -> None:
    decoder = SSEDecoder()
    decoder.feed(b": a\n: b\r\n:\n\ndata: x\n\n", 0)
    decoder.feed(b"", 0)
    assert (decoder.comments, decoder.bytes_fed) == (3, 21)


def test_findings_per_rule_are_capped_but_counted() -> None:
    stream = b"".join(
        b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n" for _ in range(MAX_FINDINGS_PER_RULE + 50)
    )
    out = decode(stream)
    assert len(out.findings) == MAX_FINDINGS_PER_RULE
    # The very first BOM is the one the standard skips.
    assert out.finding_counts == {"sse.bom_not_at_start": 2 * (MAX_FINDINGS_PER_RULE + 50) - 1}


# --- the public surface ---------------------------------------------------------------


def test_public_names_and_event_fields_are_pinned() -> None:
    assert chatprobe.sse.__all__ == [
        "ACCELERATED",
        "DEFAULT_MAX_BUFFER",
        "MAX_FINDINGS_PER_RULE",
        "Event",
        "SSEDecoder",
    ]
    assert list(Event._fields) == [
        "type", "data", "id", "offset", "end", "arrival_ns", "retry",
    ]  # fmt: skip
    assert DEFAULT_MAX_BUFFER == 8 * 1024 * 1024


def test_events_are_real_immutable_events() -> None:
    # Both the bulk path ("data:" blocks) and the general path (an id: line).
    events = decode(b"data: x\n\nid: 1\ndata: y\n\n").events
    assert [type(e) for e in events] == [Event, Event]
    assert events == [
        Event("message", "x", "", 0, 9, None),
        Event(type="message", data="y", id="1", offset=9, end=24, arrival_ns=None),
    ]
    assert hash(events[0]) == hash(Event("message", "x", "", 0, 9, None))
    assert events[1].retry is None
    with pytest.raises(AttributeError):
        events[0].data = "y"  # type: ignore[misc]


def test_max_buffer_must_be_positive() -> None:
    with pytest.raises(ValueError):
        SSEDecoder(0)
