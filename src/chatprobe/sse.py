"""A sans-IO decoder of ``text/event-stream``, written from the WHATWG HTML standard.

Bytes go in (:meth:`SSEDecoder.feed`), :class:`Event` records come out; no IO, no
httpx, no locust. It follows "Parsing an event stream" / "Interpreting an event
stream" of the HTML standard exactly, and records every deviation it sees as a
:class:`~chatprobe.findings.Finding` with the byte offset where it starts.

Decisions the standard leaves to us (all split-invariant: any chunking of the
same bytes gives the same events and findings):

* ``Event.offset`` is the offset of the block's first *field* line; comment
  lines (keep-alives) before it do not count, so a keep-alive sent 15 s before
  the data does not stamp the event. A leading BOM is not part of any line.
  ``Event.arrival_ns`` is the ``arrival_ns`` of the ``feed()`` that delivered
  the byte at ``offset``.
* ``Event.end`` is the offset just past the CR or LF that ended the
  dispatching blank line. When that line ends with CRLF the LF is not counted:
  the event is dispatched on the CR (waiting for the next read would delay it),
  and the offsets must not depend on where the network split the bytes.
* ``sse.unterminated_event`` is reported at :meth:`SSEDecoder.close` only when
  the discarded block would have dispatched an event (its data buffer is
  non-empty, counting a final ``data`` line that has no line end). A trailing
  comment, ``id:``/``event:`` without data, or half a line ending is not one.
* ``sse.invalid_utf8``: one finding per line holding invalid bytes, at the
  first of them (evidence: how many U+FFFD the line decodes with).
* ``sse.bom_not_at_start``: one finding per U+FEFF after the stream's start.
* ``sse.frame_too_large``: a line longer than ``max_buffer`` bytes, or an
  event whose block (first field line to the first line-end byte of its
  current field line) spans more than ``max_buffer`` bytes. Decoding then stops for good: the
  decoder never holds much more than ``max_buffer`` bytes.
* Each rule is listed at most :data:`MAX_FINDINGS_PER_RULE` times (a server
  that writes a BOM before every event would otherwise grow the list with the
  stream); ``finding_counts`` keeps the full count per rule.
* An empty ``retry:`` value is "not digits" (ignored, warned). A valid one with
  more than 18 significant digits is clamped to ``2**63 - 1`` ms.

Speed: the decoder works on whole runs of complete lines, never byte by byte.
``feed()`` has a hot path: when the bytes up to the last blank line start with
``data: <value>\n\n`` blocks (the usual chat stream), or with ``event:
<name>\ndata: <value>\n\n`` blocks (the typed dialects' named events,
:func:`_named_py`), they become events at once. Otherwise a run whose blank
lines are ``\n\n`` or ``\r\n\r\n`` is cut where a block of one of
:data:`_SHAPES` starts (``data: <value>``, Elastic's ``event: message`` +
``data:``, with or without a BOM before it), or, with ``\n\n``, a named block,
and runs of such blocks whose values (and names) are clean (no CR, LF or BOM;
valid UTF-8; a name not empty) become events the same way. Every other block,
and runs with other line ends, go line by line through the general interpreter,
which decodes only the values it keeps and looks for stray BOMs / invalid UTF-8
only in non-ASCII lines. Any split of the input gives the same events and
findings.

Those runs are walked by the optional C extension ``chatprobe._ssefast``
(memchr over the buffer, values decoded in place, each Event built as the tuple
subclass) when it was compiled at install; otherwise by ``bytes.split``, memchr
checks and a plain Python loop. :data:`ACCELERATED` says which is in use; both
give identical events and findings (the tests run every case through both).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import accumulate, repeat
from operator import add, or_
from typing import Any, NamedTuple

from chatprobe.findings import Finding, Severity, error, warning

__all__ = ["ACCELERATED", "DEFAULT_MAX_BUFFER", "MAX_FINDINGS_PER_RULE", "Event", "SSEDecoder"]

DEFAULT_MAX_BUFFER = 8 * 1024 * 1024
MAX_FINDINGS_PER_RULE = 100

_BOM = b"\xef\xbb\xbf"
_RETRY_MAX = 2**63 - 1
_BOM_MESSAGE = (
    "U+FEFF after the start of the stream: the standard skips only a "
    "leading one, so the line it starts is misread"
)


class Event(NamedTuple):
    """One dispatched event. Immutable and hashable; a named tuple because it is
    built hundreds of thousands of times a second, and ``tuple.__new__(Event,
    fields)`` builds one about 3x faster than a frozen dataclass's ``__init__``."""

    type: str  # event type; "message" when no event: field
    data: str  # data buffer with the one trailing LF removed
    id: str  # the last-event-id in force at dispatch ("" if none)
    offset: int  # byte offset in the whole stream of the event's first field line
    end: int  # byte offset just past the blank line that dispatched it (see below)
    arrival_ns: int | None  # arrival_ns of the feed() that delivered the byte at `offset`
    retry: int | None = None  # reconnection time if a valid retry: was in this block


# tuple.__new__(Event, seven_items) builds an Event without running Event.__new__
# or Event._make, which are Python functions.
_tuple_new = tuple.__new__


def _scan_py(
    region: bytes,
    start: int,
    stop: int,
    prefix: bytes,
    sep: bytes,
    back: int,
    pos: int,
    last_id: str,
    first: int | None,
    arrival: int | None,
    event_type: type[Event],
) -> tuple[list[Event], int, int]:
    """Events for ``region[start:stop]`` when it is all ``prefix + value + sep``
    blocks, each value free of CR, LF and BOM and valid UTF-8: "message" events
    at stream offsets from ``pos``, stamped ``first`` then ``arrival``, each
    ``end`` ``back`` bytes before the next block's offset. Returns the events,
    where it stopped in ``region`` and that stop's stream offset: ``stop``, or
    ``start`` and no events when a block is not clean.

    ``region[start:stop]`` must start with ``prefix`` and end with ``sep``.
    ``chatprobe._ssefast.scan`` does this in C, and also takes the clean blocks
    before one that is not (the caller interprets the rest either way)."""
    values = region[start + len(prefix) : stop - len(sep)].split(sep + prefix)
    joined = b"".join(values)
    # memchr for 0xEF first: BOMs are rare, other U+F000-U+FFFF characters too.
    if not (b"\n" in joined or b"\r" in joined or (b"\xef" in joined and _BOM in joined)):
        built = _events_py(values, len(sep) + len(prefix), back, pos, last_id, first, arrival, event_type)
        if built is not None:  # else: invalid UTF-8, the caller's general path reports it
            return built[0], stop, built[1]
    return [], start, pos


def _events_py(
    values: list[bytes],
    stride: int,
    back: int,
    pos: int,
    last_id: str,
    first: int | None,
    arrival: int | None,
    event_type: type[Event],
) -> tuple[list[Event], int] | None:
    """The "message" events of ``values``, one block each (``stride`` bytes of
    prefix and separator around each value), and the offset after the last;
    None if a value is not UTF-8."""
    events: list[Event] = []
    stamp = first
    try:
        # A plain loop: on CPython 3.11 it beats map/zip/accumulate.
        for value in values:
            nxt = pos + len(value) + stride
            event = ("message", value.decode(), last_id, pos, nxt - back, stamp, None)
            events.append(_tuple_new(event_type, event))
            pos = nxt
            stamp = arrival
    except UnicodeDecodeError:
        return None
    return events, pos


def _named_py(
    region: bytes,
    start: int,
    stop: int,
    pos: int,
    last_id: str,
    first: int | None,
    arrival: int | None,
    event_type: type[Event],
) -> tuple[list[Event], int, int]:
    """Events for the run of ``event: <name>\n`` + ``data: <value>\n\n`` blocks at
    ``region[start:stop]`` (the typed dialects' streams: Anthropic's Messages, OpenAI's
    Responses): each one event of type ``name`` with data ``value``, as the line-by-line path
    reads it, at stream offsets from ``pos``, stamped ``first`` then ``arrival``, when the name
    is not empty (an empty one means "message") and neither holds a CR, LF or BOM and both are
    UTF-8. Stops before the first block that is not such a block (the caller interprets it
    line by line). Returns the events, where it stopped in ``region`` and that stop's stream
    offset. ``chatprobe._ssefast.scan_named`` does this in C."""
    events: list[Event] = []
    stamp = first
    find = region.find
    startswith = region.startswith
    at = start
    while at < stop and startswith(b"event: ", at):
        name_end = find(b"\n", at + 7, stop)
        if name_end <= at + 7 or not startswith(b"data: ", name_end + 1):
            break  # an empty name, or not the data line next
        value_end = find(b"\n", name_end + 7, stop)
        nxt = value_end + 2
        if (value_end < 0 or nxt > stop or region[value_end + 1] != 10 or find(b"\r", at, value_end) >= 0
                or find(_BOM, at, value_end) >= 0):
            break  # not one data line then the blank line; a CR (a line end) or a BOM (a finding)
        try:
            name = region[at + 7 : name_end].decode()
            value = region[name_end + 7 : value_end].decode()
        except UnicodeDecodeError:
            break  # the line-by-line path reports it
        events.append(_tuple_new(event_type, (name, value, last_id, pos, pos + nxt - at, stamp, None)))
        pos += nxt - at
        at = nxt
        stamp = arrival
    return events, at, pos


_Named = Callable[
    [bytes, int, int, int, str, int | None, int | None, type[Event]],
    tuple[list[Event], int, int],
]
_Scan = Callable[
    [bytes, int, int, bytes, bytes, int, int, str, int | None, int | None, type[Event]],
    tuple[list[Event], int, int],
]
_scan_c: _Scan | None
_scan_named_c: _Named | None
try:
    from chatprobe._ssefast import scan as _scan_c
except ImportError:  # not compiled (CHATPROBE_NO_EXT=1, no compiler): _scan_py and _bulk
    _scan_c = None
try:
    from chatprobe._ssefast import scan_named as _scan_named_c
except ImportError:  # not compiled, or compiled before it had scan_named: _named_py
    _scan_named_c = None

ACCELERATED = _scan_c is not None
"""Whether the decoder uses the compiled ``chatprobe._ssefast.scan`` for runs of
simple blocks (the same events and findings, about 2x the events/s on chat
streams). False when the extension is not built; set it False to force pure Python."""


class _Shape(NamedTuple):
    """A block shape whose whole meaning is "one event of type message whose data
    is the rest of the block", when the rest holds no CR, LF or BOM."""

    prefix: bytes  # the block's first bytes, up to the data value
    sep: bytes  # the line end that closes the data line + the blank line
    joint: bytes  # sep + prefix: what lies between two values of a run
    boms: int  # BOMs per block (each is a sse.bom_not_at_start finding)
    end_back: int  # next block's offset - Event.end: a CRLF's LF is not counted


def _shape(prefix: bytes, eol: bytes) -> _Shape:
    sep = eol + eol
    return _Shape(prefix, sep, sep + prefix, prefix.count(_BOM), len(eol) - 1)


def _first_true(flags: list[bool], start: int) -> int:
    """Index of the first True in ``flags[start:]``, or ``len(flags)``."""
    try:
        return flags.index(True, start)
    except ValueError:
        return len(flags)


# Per line end, the block shapes that take the bulk path. With a BOM the
# "event: message" line is an unknown field ("\ufeffevent"): still type message.
_SHAPES = {
    eol: (
        _shape(b"data: ", eol),
        _shape(_BOM + b"event: message" + eol + b"data: ", eol),
        _shape(b"event: message" + eol + b"data: ", eol),
    )
    for eol in (b"\n", b"\r\n")
}
# The lines of each shape before its data line: what _lines holds back when a
# feed ends right after them.
_HEADS = {
    eol: frozenset(s.prefix[: -len(b"data: ")] for s in shapes if s.prefix != b"data: ")
    for eol, shapes in _SHAPES.items()
}


class SSEDecoder:
    """Incremental event-stream decoder: ``feed(bytes) -> [Event]``, ``close() -> [Event]``.

    Runs of simple blocks go through the compiled ``chatprobe._ssefast`` when
    :data:`ACCELERATED` is true, else through pure Python: same results."""

    def __init__(self, max_buffer: int = DEFAULT_MAX_BUFFER) -> None:
        if max_buffer < 1:
            raise ValueError("max_buffer must be positive")
        self.max_buffer = max_buffer
        self.findings: list[Finding] = []
        self.finding_counts: dict[str, int] = {}
        self.bytes_fed = 0
        self.comments = 0
        self.stopped = False
        self._closed = False
        # Line assembly.
        self._pos = 0  # stream offset of the first byte not yet part of a complete line
        self._partial = bytearray()  # the incomplete line at the end of the input so far
        self._partial_arrival: int | None = None  # arrival_ns of the partial's first byte
        self._held = 0  # complete head lines at the partial's start, not yet interpreted (_lines)
        self._skip_lf = False  # the last line ended with a CR that may pair with an LF
        self._bom_pending = True  # the first three bytes have not been seen yet
        # The event being built (the standard's buffers).
        self._data: list[str] = []
        self._type = ""
        self._retry: int | None = None
        self._last_id = ""
        self._ev_offset = -1  # -1: no field line in the current block yet
        self._ev_arrival: int | None = None

    # -- public API ------------------------------------------------------------

    def feed(self, data: bytes, arrival_ns: int | None = None) -> list[Event]:
        """Decode the next bytes of the stream; return the events they complete."""
        if self._closed:
            raise RuntimeError("SSEDecoder.feed() called after close()")
        self.bytes_fed += len(data)
        partial = self._partial
        if not (self._skip_lf or self._bom_pending or self.stopped) and self._ev_offset < 0:
            # The hot path: the bytes up to the last blank line start with
            # "data: <value>\n\n" blocks, each value free of CR, LF and BOM, and
            # valid UTF-8 (the usual chat stream). Those become events at once;
            # anything else, and the bytes after them, take the general path.
            # The partial holds no LF, unless it starts with held head lines
            # (_lines): then it starts with a BOM or "event:", not "data: ".
            cut = data.rfind(b"\n\n") + len(partial)
            if cut >= len(partial) and cut < self.max_buffer:  # no line or event can break the limit
                region = b"".join((partial, data)) if partial else data
                # Only the first block can have begun in an earlier feed.
                first = self._partial_arrival if partial else arrival_ns
                if region.startswith(b"data: "):
                    scan = _scan_c if ACCELERATED and _scan_c is not None else _scan_py
                    events, at, pos = scan(
                        region, 0, cut + 2, b"data: ", b"\n\n", 0, self._pos, self._last_id,
                        first, arrival_ns, Event,
                    )  # fmt: skip
                    if events:  # else the first block is not clean: nothing was done
                        self._pos = pos
                        if at == len(region):  # the usual read: whole events
                            if partial:
                                partial.clear()
                            return events
                        return self._after_run(events, region, at, arrival_ns)
                elif region.startswith(b"event: "):
                    # The typed dialects' named events, the same way (see _named_py; a CR
                    # anywhere in a block, e.g. in held CRLF head lines, stops the run there).
                    named = _scan_named_c if ACCELERATED and _scan_named_c is not None else _named_py
                    events, at, self._pos = named(region, 0, cut + 2, self._pos, self._last_id, first,
                                                  arrival_ns, Event)
                    if events:
                        self._held = 0  # held head lines began the first block: dispatched
                        if at == len(region):  # the usual read: whole events
                            if partial:
                                partial.clear()
                            return events
                        return self._after_run(events, region, at, arrival_ns)
        return self._feed(data, arrival_ns)

    def _after_run(self, events: list[Event], region: bytes, at: int, arrival_ns: int | None) -> list[Event]:
        """After the hot path dispatched ``region[:at]`` (the partial's bytes and this feed's):
        the rest, from this feed (the partial held no LF), goes the general way, or is kept as
        the partial line it usually is."""
        partial = self._partial
        partial.clear()
        if at < len(region):
            if (
                region.find(b"\n", at) >= 0
                or region.find(b"\r", at) >= 0
                or len(region) - at > self.max_buffer
            ):
                events += self._feed(region[at:], arrival_ns)
            else:  # the usual case: a partial line
                self._partial_arrival = arrival_ns
                partial += memoryview(region)[at:]
        return events

    def _feed(self, data: bytes, arrival_ns: int | None) -> list[Event]:
        if self.stopped or not data:
            return []
        start = 0
        partial = self._partial
        if self._skip_lf:
            # A CR ended the previous feed: an LF here is the second half of a CRLF.
            self._skip_lf = False
            if data[0] == 10:
                start = 1
                self._pos += 1
        if self._bom_pending:
            head = bytes(partial) + data[start : start + 3]
            if len(head) < 3 and _BOM.startswith(head):
                # Could still become a BOM: wait for more bytes.
                if not partial:
                    self._partial_arrival = arrival_ns
                partial += data[start:]
                return []
            self._bom_pending = False
            if head.startswith(_BOM):
                # The one BOM the standard skips; the partial held only its first bytes.
                start += 3 - len(partial)
                partial.clear()
                self._pos += 3
        lf = data.rfind(b"\n", start)
        cr = data.rfind(b"\r", start)
        last = lf if lf > cr else cr
        if last < 0:
            self._extend_partial(data, start, arrival_ns)
            return []
        stop = last + 1
        if partial:
            first_arrival = self._partial_arrival
            region = b"".join((partial, memoryview(data)[start:stop]))
            partial.clear()
            self._held = 0  # held head lines are interpreted with the region
        else:
            first_arrival = arrival_ns
            region = data if start == 0 and stop == len(data) else data[start:stop]
        events = self._lines(region, first_arrival, arrival_ns)
        if self.stopped:
            return events
        if stop < len(data):
            self._extend_partial(data, stop, arrival_ns)
        elif region[-1] == 13:
            self._skip_lf = True
        return events

    def close(self) -> list[Event]:
        """End of stream. The standard discards an unterminated event, so this never
        returns one; it reports it as ``sse.unterminated_event``."""
        if self._closed:
            return []
        self._closed = True
        if self.stopped:
            return []
        self._flush_held()
        partial = bytes(self._partial)
        if self._data or (partial and partial.partition(b":")[0] == b"data"):
            offset = self._ev_offset if self._ev_offset >= 0 else self._pos
            self._report(
                error,
                "sse.unterminated_event",
                "the stream ended inside an event (no blank line after it); "
                "the standard discards that event",
                offset,
            )
        self._partial.clear()
        self._data = []
        return []

    # -- internals ---------------------------------------------------------------

    def _extend_partial(self, data: bytes, start: int, arrival_ns: int | None) -> None:
        partial = self._partial
        if len(partial) - self._held + len(data) - start > self.max_buffer:
            self._flush_held()  # its findings come first, at their offsets
            self._too_large(self._pos, "line")
            return
        if not partial:
            self._partial_arrival = arrival_ns
        partial += memoryview(data)[start:]

    def _lines(self, region: bytes, first_arrival: int | None, arrival: int | None) -> list[Event]:
        """Interpret ``region``, a run of complete lines starting at ``self._pos``."""
        events: list[Event] = []
        ev_offset = self._ev_offset
        # Only a run that could break the limit pays for the per-line checks.
        if len(region) + (self._pos - ev_offset if ev_offset >= 0 else 0) > self.max_buffer:
            self._span(region, 0, len(region), first_arrival, arrival, events, True)
            return events
        # "\n\n" and "\r\n\r\n" are each a line end then a blank line, whatever
        # the other line ends are; the bulk shapes are looked for with the one the
        # run seems to use (memchr: a CR anywhere says CRLF).
        eol = b"\r\n" if b"\r" in region else b"\n"
        sep = eol + eol
        cut = region.rfind(sep)
        if cut >= 0:
            cut += len(sep)  # just past the last blank line
            start = 0
            if ev_offset >= 0:  # the first block continues an event begun earlier
                start = region.find(sep) + len(sep)
                self._span(region, 0, start, first_arrival, arrival, events, False)
            self._blocks(region, start, cut, sep, _SHAPES[eol], first_arrival, arrival, events)
        else:
            cut = 0
        if cut < len(region):  # the lines after the last blank line
            if self._ev_offset < 0 and region[cut:] in _HEADS[eol]:
                # Only the head of a bulk shape (Elastic's "event: message"): hold
                # it back in the partial, uninterpreted, so the next feed's region
                # starts with the whole block and takes the bulk path.
                self._held = len(region) - cut
                self._partial += memoryview(region)[cut:]
                self._partial_arrival = first_arrival if cut == 0 else arrival
            else:
                self._span(region, cut, len(region), first_arrival, arrival, events, False)
        return events

    def _flush_held(self) -> None:
        """Interpret the head lines held back at the partial's start (see _lines)."""
        held = self._held
        if held:
            self._held = 0
            head = bytes(self._partial[:held])
            del self._partial[:held]
            self._span(head, 0, held, self._partial_arrival, self._partial_arrival, [], False)

    def _blocks(
        self,
        region: bytes,
        start: int,
        stop: int,
        sep: bytes,
        shapes: tuple[_Shape, ...],
        first_arrival: int | None,
        arrival: int | None,
        events: list[Event],
    ) -> None:
        """Interpret ``region[start:stop]``: whole blocks, the first one starting in
        a clean state (no field line pending). ``sep``: a line end + a blank line;
        ``shapes``: those to look for."""
        scan = _scan_c if ACCELERATED else None
        while start < stop:
            for index, shape in enumerate(shapes):  # noqa: B007 (both used after the loop)
                if region.startswith(shape.prefix, start):
                    break
            else:
                index = -1
            if index >= 0 and scan is not None:
                # Compiled: the run of clean blocks of this shape at ``start``, up
                # to the first block that is not clean (interpreted just below).
                run, at, self._pos = scan(
                    region, start, stop, shape.prefix, shape.sep, shape.end_back, self._pos,
                    self._last_id, first_arrival if start == 0 else arrival, arrival, Event,
                )  # fmt: skip
                if run:
                    events += run
                    self._bom_findings(shape, run)
                    start = at
                    continue
            if index < 0 and sep == b"\n\n" and region.startswith(b"event: ", start):
                # Typed dialects' named events (Anthropic's Messages, OpenAI's Responses): the
                # run of simple ones at ``start``; the first that is not goes line by line below.
                named = _scan_named_c if ACCELERATED and _scan_named_c is not None else _named_py
                run, at, self._pos = named(region, start, stop, self._pos, self._last_id,
                                           first_arrival if start == 0 else arrival, arrival, Event)
                if run:
                    events += run
                    start = at
                    continue
            if index < 0 or scan is not None:
                # One block, up to the next blank line; without one (as in "\n\n\n",
                # where the blank line the caller found overlaps the one before), to ``stop``.
                end = region.find(sep, start, stop)
                end = stop if end < 0 else end + len(sep)
                self._span(region, start, end, first_arrival, arrival, events, False)
                start = end
                continue
            # Pure Python: the whole run at once, in bulk.
            # Blocks of this shape follow each other joined by ``joint``: split
            # there, and each piece is a block's value, unless it holds a line end
            # or a BOM (then that block is not of the shape, and it and the blocks
            # after it up to the next joint go the slow way).
            values = region[start + len(shape.prefix) : stop - len(sep)].split(shape.joint)
            joined = b"".join(values)
            flags = [
                (b"\n", b"\n" in joined),
                (b"\r", b"\r" in joined),
                (_BOM, b"\xef" in joined and _BOM in joined),  # memchr first: BOMs are rare
            ]
            if not any(found for _, found in flags):  # the usual case: all clean
                first = first_arrival if start == 0 else arrival
                if not self._bulk(values, 0, len(values), shape, first, arrival, events):
                    # Invalid UTF-8: the slow path reports it.
                    self._span(region, start, stop, first_arrival, arrival, events, False)
                return
            bad = [False] * len(values)
            for needle, found in flags:
                if found:
                    bad = list(map(or_, bad, map(bytes.__contains__, values, repeat(needle))))
            # bounds[i]: stream offset of block i; bounds[-1] that of ``stop``.
            stride = len(shape.joint)
            base = self._pos - start
            bounds = list(accumulate(map(add, map(len, values), repeat(stride)), initial=self._pos))
            others = shapes[:index] + shapes[index + 1 :]
            i = 0
            n = len(values)
            while i < n:
                j = _first_true(bad, i)
                stop_j = j  # blocks i to stop_j go in bulk
                if j < n:
                    # A value followed by other blocks (a keep-alive, say) up to the
                    # next joint: the value itself may still be clean.
                    k = values[j].find(sep)
                    head = values[j][:k]
                    if k >= 0 and not (b"\n" in head or b"\r" in head or _BOM in head):
                        values[j] = head
                        stop_j = j + 1
                first = first_arrival if i == 0 and start == 0 else arrival
                after = bounds[j] - base  # where the bulk blocks end
                if stop_j > j:
                    after += len(values[j]) + stride
                if stop_j > i and not self._bulk(values, i, stop_j, shape, first, arrival, events):
                    # Invalid UTF-8: the slow path reports it.
                    self._span(
                        region, bounds[i] - base, after, first_arrival, arrival, events, False
                    )
                if j == n:
                    break
                if stop_j == j:  # block j is not of the shape: interpret it
                    after = region.find(sep, after) + len(sep)
                    self._span(
                        region, bounds[j] - base, after, first_arrival, arrival, events, False
                    )
                # What follows, up to the next joint, holds no block of this shape.
                rest = bounds[j + 1] - base
                if after < rest:
                    self._blocks(region, after, rest, sep, others, first_arrival, arrival, events)
                i = j + 1
            return

    def _bulk(
        self,
        values: list[bytes],
        i: int,
        j: int,
        shape: _Shape,
        first: int | None,
        arrival: int | None,
        events: list[Event],
    ) -> bool:
        """Dispatch blocks ``i`` to ``j`` (exclusive), all of ``shape``; ``first`` is
        the first one's arrival stamp. False, having done nothing, if a value is
        not UTF-8."""
        built = _events_py(values[i:j], len(shape.joint), shape.end_back, self._pos,
                           self._last_id, first, arrival, Event)
        if built is None:
            return False
        run, pos = built
        events += run
        self._bom_findings(shape, run)
        self._pos = pos
        return True

    def _bom_findings(self, shape: _Shape, run: list[Event]) -> None:
        if shape.boms:  # each block starts with a BOM that is not the stream's first
            rule = "sse.bom_not_at_start"
            count = self.finding_counts.get(rule, 0)
            self.finding_counts[rule] = count + len(run)
            for dispatched in run[: max(MAX_FINDINGS_PER_RULE - count, 0)]:
                # Finding() itself: warning()'s **kw would cost more than the event.
                finding = Finding(rule, Severity.WARNING, _BOM_MESSAGE, dispatched.offset, None, {})
                self.findings.append(finding)

    def _span(
        self,
        region: bytes,
        start: int,
        stop: int,
        first_arrival: int | None,
        arrival: int | None,
        events: list[Event],
        check_limit: bool,
    ) -> None:
        """Interpret the complete lines ``region[start:stop]`` one by one."""
        span = region[start:stop]
        seps: Iterable[int]
        if b"\r" in span:  # bytes.splitlines splits only on CR, LF and CRLF
            raw = span.splitlines(True)
            lines = [r.rstrip(b"\r\n") for r in raw]
            seps = [len(r) - len(s) for r, s in zip(raw, lines, strict=True)]
        else:
            lines = span.split(b"\n")
            lines.pop()  # the empty piece after the final LF
            seps = repeat(1)
        self._interpret(
            lines, seps, first_arrival if start == 0 else arrival, arrival, events, check_limit
        )

    def _interpret(
        self,
        lines: list[bytes],
        seps: Iterable[int],
        line_arrival: int | None,
        arrival: int | None,
        events: list[Event],
        check_limit: bool,
    ) -> None:
        """The general path: interpret ``lines`` one by one, as the standard says.
        ``seps`` gives each line end's length; ``line_arrival`` is the first line's
        arrival stamp and ``arrival`` that of the others."""
        pos = self._pos
        max_buffer = self.max_buffer
        data = self._data
        event_type = self._type
        retry = self._retry
        last_id = self._last_id
        ev_offset = self._ev_offset
        ev_arrival = self._ev_arrival
        comments = 0
        for line, sep in zip(lines, seps, strict=False):  # seps may be endless
            nxt = pos + len(line) + sep
            if check_limit:
                if len(line) > max_buffer:
                    self._too_large(pos, "line")
                    break
                # Up to the first byte of the line end: a CRLF's LF may come later.
                span = pos + len(line) + 1 - ev_offset
                if ev_offset >= 0 and line and line[0] != 58 and span > max_buffer:
                    self._too_large(ev_offset, "event")
                    break
            if not line:  # blank line: dispatch
                if data:
                    events.append(
                        _tuple_new(Event, (
                            event_type or "message",
                            "\n".join(data),
                            last_id,
                            ev_offset,
                            pos + 1,  # past the CR or LF: a CRLF's LF may not be here yet
                            ev_arrival,
                            retry,
                        ))
                    )  # fmt: skip
                    data = []
                event_type = ""
                retry = None
                ev_offset = -1
            elif line[0] == 58:  # ':' comment
                comments += 1
                if not line.isascii():
                    self._scan_text(line, pos)
            else:
                if ev_offset < 0:
                    ev_offset = pos
                    ev_arrival = line_arrival
                if line.startswith(b"data: "):
                    value = line[6:]
                    name = b"data"
                else:
                    name, _, value = line.partition(b":")
                    if value.startswith(b" "):
                        value = value[1:]
                if name == b"data":
                    data.append(value.decode("utf-8", "replace"))
                elif name == b"event":
                    event_type = value.decode("utf-8", "replace")
                elif name == b"id":
                    if b"\0" in value:
                        self._report(
                            warning,
                            "sse.id_contains_nul",
                            "id field contains U+0000; the standard ignores it",
                            pos,
                        )
                    else:
                        last_id = value.decode("utf-8", "replace")
                elif name == b"retry":
                    if value.isdigit():  # bytes.isdigit: ASCII digits only, False if empty
                        value = value.lstrip(b"0") or b"0"
                        retry = int(value) if len(value) <= 18 else _RETRY_MAX
                    else:
                        self._report(
                            warning,
                            "sse.retry_not_digits",
                            "retry field is not all ASCII digits; the standard ignores it",
                            pos,
                            {"value": value[:64].decode("utf-8", "replace")},
                        )
                # Any other field name is legal and ignored.
                if not line.isascii():
                    self._scan_text(line, pos)
            pos = nxt
            line_arrival = arrival
        self._pos = pos
        self._type = event_type
        self._retry = retry
        self._last_id = last_id
        self._ev_offset = ev_offset
        self._ev_arrival = ev_arrival
        self.comments += comments
        self._data = [] if self.stopped else data

    def _scan_text(self, line: bytes, pos: int) -> None:
        """Report stray BOMs and invalid UTF-8 in a non-ASCII line, in offset order."""
        bad_at = -1
        bad = 0
        at = 0
        while True:
            try:
                line[at:].decode("utf-8")
                break
            except UnicodeDecodeError as exc:
                if bad_at < 0:
                    bad_at = at + exc.start
                bad += 1
                at += exc.end
        i = line.find(_BOM)
        while i >= 0:
            if bad and bad_at < i:  # keep the findings in offset order
                self._report_invalid_utf8(pos + bad_at, bad)
                bad = 0
            self._report(
                warning,
                "sse.bom_not_at_start",
                _BOM_MESSAGE,
                pos + i,
            )
            i = line.find(_BOM, i + 3)
        if bad:
            self._report_invalid_utf8(pos + bad_at, bad)

    def _report_invalid_utf8(self, offset: int, replacements: int) -> None:
        self._report(
            error,
            "sse.invalid_utf8",
            "bytes that are not valid UTF-8 (decoded as U+FFFD)",
            offset,
            {"replacements": replacements},
        )

    def _too_large(self, offset: int, what: str) -> None:
        self._report(
            error,
            "sse.frame_too_large",
            f"a single {what} exceeded the decoder's limit of {self.max_buffer} bytes; "
            "decoding stopped",
            offset,
            {"max_buffer": self.max_buffer},
        )
        self.stopped = True
        self._partial = bytearray()
        self._held = 0
        self._data = []

    def _report(
        self,
        make: Callable[..., Finding],
        rule: str,
        message: str,
        offset: int,
        evidence: dict[str, Any] | None = None,
    ) -> None:
        count = self.finding_counts.get(rule, 0) + 1
        self.finding_counts[rule] = count
        if count <= MAX_FINDINGS_PER_RULE:  # build the Finding only when it is kept
            self.findings.append(make(rule, message, offset=offset, evidence=evidence or {}))
