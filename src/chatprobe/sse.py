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
A run made only of ``data: <value>\n\n`` blocks (the usual chat stream) is
recognised with a few C scans, decoded at once and split into the values. Other
runs are cut into blocks and lines with ``bytes.split``/``splitlines`` (which,
unlike ``str.splitlines``, split only on CR, LF and CRLF), decode only the
values they keep, and look for stray BOMs / invalid UTF-8 only in non-ASCII
lines.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from itertools import repeat
from typing import Any

from chatprobe.findings import Finding, error, warning

__all__ = ["DEFAULT_MAX_BUFFER", "MAX_FINDINGS_PER_RULE", "Event", "SSEDecoder"]

DEFAULT_MAX_BUFFER = 8 * 1024 * 1024
MAX_FINDINGS_PER_RULE = 100

_BOM = b"\xef\xbb\xbf"
_RETRY_MAX = 2**63 - 1
_ONES = repeat(1)  # line-end lengths of an LF-only run (never exhausted, so shareable)


@dataclass(frozen=True, slots=True)
class Event:
    type: str  # event type; "message" when no event: field
    data: str  # data buffer with the one trailing LF removed
    id: str  # the last-event-id in force at dispatch ("" if none)
    offset: int  # byte offset in the whole stream of the event's first field line
    end: int  # byte offset just past the blank line that dispatched it (see below)
    arrival_ns: int | None  # arrival_ns of the feed() that delivered the byte at `offset`
    retry: int | None = None  # reconnection time if a valid retry: was in this block


class _EventBuilder:
    """A mutable twin of :class:`Event` with the same slots.

    A frozen dataclass's ``__init__`` sets each field through
    ``object.__setattr__``, which makes it ~3x slower to build than a plain slots
    object; at hundreds of thousands of events per second that dominated the
    decoder. The decoder builds this twin and then switches its ``__class__`` to
    :class:`Event` (allowed because the slot layouts are identical), so callers
    get a genuine frozen ``Event``.
    """

    __slots__ = Event.__slots__

    def __init__(
        self,
        type: str,
        data: str,
        id: str,
        offset: int,
        end: int,
        arrival_ns: int | None,
        retry: int | None,
    ) -> None:
        self.type = type
        self.data = data
        self.id = id
        self.offset = offset
        self.end = end
        self.arrival_ns = arrival_ns
        self.retry = retry


class SSEDecoder:
    """Incremental event-stream decoder: ``feed(bytes) -> [Event]``, ``close() -> [Event]``."""

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
        if len(partial) + len(data) - start > self.max_buffer:
            self._too_large(self._pos, "line")
            return
        if not partial:
            self._partial_arrival = arrival_ns
        partial += memoryview(data)[start:]

    def _lines(self, region: bytes, first_arrival: int | None, arrival: int | None) -> list[Event]:
        """Interpret ``region``, a run of complete lines starting at ``self._pos``."""
        events: list[Event] = []
        pos = self._pos
        # The run is cut into blocks: each piece of ``blocks`` is some lines then a
        # blank line ("...\n\n"); the lines after the last blank line (or, when
        # there are CRs, all the lines) are the tail, marked by None.
        max_buffer = self.max_buffer
        ev_offset = self._ev_offset
        ev_arrival = self._ev_arrival
        # Only a run that could break the limit pays for the per-line checks.
        check_limit = len(region) + (pos - ev_offset if ev_offset >= 0 else 0) > max_buffer
        # memmem over the run is cheap; it spares the per-line BOM search.
        has_bom = not region.isascii() and _BOM in region
        tail_seps: list[int] | repeat[int]
        blocks: list[bytes | None]
        all_simple = False
        run_text: str | None = None
        if b"\r" in region:
            raw = region.splitlines(True)
            tail_lines = [r.rstrip(b"\r\n") for r in raw]
            tail_seps = [len(r) - len(s) for r, s in zip(raw, tail_lines, strict=True)]
            blocks = [None]
        else:
            tail_seps = _ONES
            # The fastest case: every block of the run is exactly "data: <value>\n\n"
            # (two C scans tell: the only LFs are the blocks' own two). Then the
            # whole run is decoded at once and split into the values themselves.
            cut = region.rfind(b"\n\n") + 2  # just past the last blank line
            if (
                cut > 1
                and ev_offset < 0
                and not has_bom
                and not check_limit
                and region.startswith(b"data: ")
                and region.count(b"\n", 0, cut) == 2 * region.count(b"\n\ndata: ", 0, cut) + 2
            ):
                # Invalid UTF-8 leaves run_text None: the block loop reports it.
                with suppress(UnicodeDecodeError):
                    run_text = str(memoryview(region)[6 : cut - 2], "utf-8")
            if run_text is not None:
                tail_lines = region[cut:].split(b"\n")
                tail_lines.pop()  # the empty piece after the tail's final LF
                blocks = [None]
            else:
                pieces = region.split(b"\n\n")
                tail = pieces.pop()
                tail_lines = tail.split(b"\n")
                tail_lines.pop()
                blocks = [*pieces, None]
                # Are all blocks after the first exactly "data: <value>\n\n"? The
                # same scans answer for the lot, so the loop need not ask per block.
                k = len(pieces) - 1
                if k > 0 and not has_bom and not check_limit:
                    a = len(pieces[0]) + 2
                    b = len(region) - len(tail)
                    all_simple = (
                        region.startswith(b"data: ", a)
                        and region.count(b"\n", a, b) == 2 * k
                        and region.count(b"\n\ndata: ", a, b) == k - 1
                    )
        data = self._data
        event_type = self._type
        retry = self._retry
        last_id = self._last_id
        comments = 0
        line_arrival = first_arrival  # only the first line can start in an earlier feed
        if run_text is not None:
            for text in run_text.split("\n\ndata: "):
                # str.isascii() is O(1); only non-ASCII values pay to count their bytes.
                nxt = pos + (len(text) if text.isascii() else len(text.encode())) + 8
                event = _EventBuilder("message", text, last_id, pos, nxt, line_arrival, None)
                event.__class__ = Event  # type: ignore[assignment]
                events.append(event)  # type: ignore[arg-type]
                pos = nxt
                line_arrival = arrival
        simple = False  # the first block is checked on its own: it may continue an event
        for block in blocks:
            if block is not None and (
                simple
                or (
                    ev_offset < 0  # nothing pending from an earlier line
                    and not check_limit
                    and block.startswith(b"data: ")
                    and 10 not in block  # no LF: a single line
                    and not (has_bom and _BOM in block)
                )
            ):
                # The hot path: a block that is exactly "data: <value>\n\n".
                try:
                    text = block[6:].decode("utf-8")
                except UnicodeDecodeError:
                    pass  # the line-by-line path reports it
                else:
                    nxt = pos + len(block) + 2
                    event = _EventBuilder("message", text, last_id, pos, nxt, line_arrival, None)
                    event.__class__ = Event  # type: ignore[assignment]
                    events.append(event)  # type: ignore[arg-type]
                    pos = nxt
                    line_arrival = arrival
                    simple = all_simple
                    continue
            simple = all_simple
            if block is None:
                lines, seps = tail_lines, tail_seps
            else:
                lines = block.split(b"\n")
                lines.append(b"")  # the blank line that ends the block
                seps = _ONES
            stop = False
            for line, sep in zip(lines, seps, strict=False):  # seps may be endless
                nxt = pos + len(line) + sep
                if check_limit:
                    if len(line) > max_buffer:
                        self._too_large(pos, "line")
                        stop = True
                        break
                    # Up to the first byte of the line end: a CRLF's LF may come later.
                    span = pos + len(line) + 1 - ev_offset
                    if ev_offset >= 0 and line and line[0] != 58 and span > max_buffer:
                        self._too_large(ev_offset, "event")
                        stop = True
                        break
                if not line:  # blank line: dispatch
                    if data:
                        event = _EventBuilder(
                            event_type or "message",
                            "\n".join(data),
                            last_id,
                            ev_offset,
                            pos + 1,  # past the CR or LF: a CRLF's LF may not be here yet
                            ev_arrival,
                            retry,
                        )
                        event.__class__ = Event  # type: ignore[assignment]
                        events.append(event)  # type: ignore[arg-type]
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
            if stop:
                break
        self._pos = pos
        self._data = data
        self._type = event_type
        self._retry = retry
        self._last_id = last_id
        self._ev_offset = ev_offset
        self._ev_arrival = ev_arrival
        self.comments += comments
        if self.stopped:
            self._data = []
        return events

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
                "U+FEFF after the start of the stream: the standard skips only a "
                "leading one, so the line it starts is misread",
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
