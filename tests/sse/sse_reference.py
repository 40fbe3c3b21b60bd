"""Helpers for the SSE tests: a naive reference interpreter written line by line
from the WHATWG HTML text ("9.2.6 Interpreting an event stream"), and a
decoder driver.

The reference works on the decoded text, one line at a time, with no care for
speed: it is the oracle the fast decoder is compared with. Events are compared
as (type, data, id, retry).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from chatprobe.findings import Finding
from chatprobe.sse import Event, SSEDecoder

# "end-of-line = ( cr lf / cr / lf )" and nothing else.
_LINE = re.compile(r"([^\r\n]*)(\r\n|\r|\n)")


def reference_events(stream: bytes) -> list[tuple[str, str, str, int | None]]:
    # "Streams must be decoded using the UTF-8 decode algorithm": invalid
    # bytes become U+FFFD and one leading BOM is stripped.
    text = stream.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    events: list[tuple[str, str, str, int | None]] = []
    data = ""
    event_type = ""
    last_id = ""
    retry: int | None = None
    # Only lines followed by an end-of-line count: the rest is an unterminated
    # line, discarded at the end of the stream.
    for match in _LINE.finditer(text):
        line = match.group(1)
        if line == "":
            # Dispatch the event.
            if data == "":
                event_type = ""
                retry = None
                continue
            if data.endswith("\n"):
                data = data[:-1]
            events.append((event_type or "message", data, last_id, retry))
            data = ""
            event_type = ""
            retry = None
            continue
        if line.startswith(":"):
            continue
        if ":" in line:
            name, value = line.split(":", 1)
            if value.startswith(" "):
                value = value[1:]
        else:
            name, value = line, ""
        if name == "event":
            event_type = value
        elif name == "data":
            data += value + "\n"
        elif name == "id":
            if "\0" not in value:
                last_id = value
        elif name == "retry" and value and all(c in "0123456789" for c in value):
            retry = int(value)
    return events


@dataclass
class Outcome:
    """Everything observable about one decoding run."""

    events: list[Event]
    findings: list[Finding]
    finding_counts: dict[str, int]
    comments: int
    stopped: bool
    bytes_fed: int

    def triples(self) -> list[tuple[str, str, str, int | None]]:
        return [(e.type, e.data, e.id, e.retry) for e in self.events]

    def without_arrival(self) -> Outcome:
        """The same outcome with arrival_ns blanked (it depends on the chunking)."""
        return Outcome(
            [Event(e.type, e.data, e.id, e.offset, e.end, None, e.retry) for e in self.events],
            self.findings,
            self.finding_counts,
            self.comments,
            self.stopped,
            self.bytes_fed,
        )


def decode_chunks(
    chunks: Iterable[bytes], max_buffer: int | None = None, stamps: Iterable[int] | None = None
) -> Outcome:
    decoder = SSEDecoder() if max_buffer is None else SSEDecoder(max_buffer)
    events: list[Event] = []
    stamp_iter = iter(stamps) if stamps is not None else None
    for chunk in chunks:
        arrival = next(stamp_iter) if stamp_iter is not None else None
        events += decoder.feed(chunk, arrival)
    events += decoder.close()
    return Outcome(
        events,
        list(decoder.findings),
        dict(decoder.finding_counts),
        decoder.comments,
        decoder.stopped,
        decoder.bytes_fed,
    )


def decode(stream: bytes, max_buffer: int | None = None) -> Outcome:
    return decode_chunks([stream], max_buffer)


def split_at(stream: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = sorted({c for c in cuts if 0 < c < len(stream)})
    bounds = [0, *points, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


def rules(outcome: Outcome) -> list[tuple[str, int | None]]:
    return [(f.rule, f.offset) for f in outcome.findings]
