"""Per-dialect SSE framing: chunk dicts in, bytes out.

openai / atoma / adaptive: ``data: <json>\\n\\n``, terminator ``data: [DONE]``
(adaptive sends no terminator: the stream ends with the body, as document 002
shows none). elastic-chat / elastic-completion: ``event: message\\ndata:
<json>\\n\\n`` with the chunk inside ``{"chat_completion": ...}`` (chat; the
completion chunk is already ``{"completion": [...]}``), terminator
``event: message\\ndata: [DONE]``, errors as ``event: error``.
anthropic-messages / openai-responses (typed events): ``event: <type>\\ndata:
<json>\\n\\n``, the event named by its data's ``type`` (Anthropic API reference,
Streaming Messages: Event types; OpenAI API reference, Responses: Streaming
events), no terminator; openai-responses numbers every event
(``sequence_number``, from 0, increasing across the whole stream: written here,
after the fault hooks, so a dropped or added event keeps the numbering whole).

The :class:`Framing` knobs are the byte-level hook point of the fault
catalogue (line ends, comments, BOMs, field spelling...); the default framing
is the plain, standard one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from chatprobe.server.chunks import CHUNK, DONE, ERROR, Item

BOM = b"\xef\xbb\xbf"
ELASTIC = frozenset({"elastic-chat", "elastic-completion"})
TYPED = frozenset({"anthropic-messages", "openai-responses"})
SEQUENCED = frozenset({"openai-responses"})


@dataclass(slots=True)
class Framing:
    eol: bytes = b"\n"
    data_field: bytes = b"data: "
    multiline_data: bool = False
    comments: bool = False  # a comment line before every event's fields
    keepalive: bool = False  # ": keep-alive" blocks at the start and after every 2nd event
    leading_bom: bool = False
    bom_every_event: bool = False
    id_and_retry: bool = False
    unknown_field: bool = False
    message_event: bytes = b"message"
    error_event: bytes = b"error"
    glue_event: int = -1  # event number whose blank line is left out
    empty_data_after: int = -1  # an empty `data:` event after this event number
    broken_json_event: int = -1  # event number whose JSON is cut short
    invalid_utf8_event: int = -1  # event number with an invalid UTF-8 byte in its text
    # typed dialects: the first token event's `event:` line names the event before it
    stale_event_name: bool = False
    sequence_repeat_event: int = -1  # openai-responses: this event repeats the previous sequence_number

    @property
    def plain(self) -> bool:
        return self == _PLAIN


_PLAIN = Framing()


class Encoder:
    """Encodes the items of one stream; keeps the event counter the framing knobs refer to."""

    def __init__(self, dialect: str, framing: Framing) -> None:
        self.dialect = dialect
        self.framing = framing
        self.elastic = dialect in ELASTIC
        self.wrap_chat = dialect == "elastic-chat"
        self.typed = dialect in TYPED
        self.sequenced = dialect in SEQUENCED
        self.fast = framing.plain
        self.count = 0
        self.sequence = 0  # openai-responses: the next event's sequence_number
        self._names: dict[str, bytes] = {}  # typed: event type -> its `event:` name, encoded once
        self._last_name = b""
        self._renamed = False

    def data(self, item: Item) -> bytes:
        if item.kind == DONE:
            return b"[DONE]"
        assert item.body is not None
        body: Any = item.body
        if self.wrap_chat and item.kind == CHUNK:
            body = {"chat_completion": body}
        if self.sequenced:
            number = self.sequence
            self.sequence += 1
            if 0 <= self.framing.sequence_repeat_event <= self.count:
                number -= 1  # that event repeats its predecessor's number; the rest follow on from it
            body["sequence_number"] = number
        if self.framing.multiline_data:
            return orjson.dumps(body, option=orjson.OPT_INDENT_2)
        return orjson.dumps(body)

    def start(self) -> bytes:
        f = self.framing
        out = b""
        if f.leading_bom:
            out += BOM
        if f.keepalive:
            out += b": keep-alive" + f.eol + f.eol
        return out

    def name(self, item: Item) -> bytes:
        """A typed event's `event:` name: its data's ``type``."""
        kind = item.body.get("type") if item.body is not None else None
        if not isinstance(kind, str):
            kind = "message"
        name = self._names.get(kind)
        if name is None:
            name = self._names[kind] = kind.encode()
        if self.framing.stale_event_name and item.token and not self._renamed:
            self._renamed = True
            name = self._last_name or b"message"
        self._last_name = name
        return name

    def encode(self, item: Item) -> bytes:
        data = self.data(item)
        if self.fast:
            self.count += 1
            if self.typed:
                return b"event: " + self.name(item) + b"\ndata: " + data + b"\n\n"
            if self.elastic:
                name = b"error" if item.kind == ERROR else b"message"
                return b"event: " + name + b"\ndata: " + data + b"\n\n"
            return b"data: " + data + b"\n\n"
        return self._encode_slow(item, data)

    def _encode_slow(self, item: Item, data: bytes) -> bytes:
        f = self.framing
        n = self.count
        self.count += 1
        eol = f.eol
        if n == f.broken_json_event:
            data = data[: len(data) // 2]
        if n == f.invalid_utf8_event:
            for marker in (b'"content":"', b'"delta":"', b'"message":"', b'"text":"', b'"partial_json":"'):
                if marker in data:
                    data = data.replace(marker, marker + b"\xff\xfe", 1)
                    break
        lines: list[bytes] = []
        if f.comments:
            lines.append(b": chatprobe comment")
        if f.id_and_retry:
            if n == 0:
                lines.append(b"retry: 3000")
            lines.append(b"id: " + str(n + 1).encode())
        if self.elastic:
            lines.append(b"event: " + (f.error_event if item.kind == ERROR else f.message_event))
        elif self.typed:
            lines.append(b"event: " + self.name(item))
        if f.unknown_field:
            lines.append(b"x-chatprobe-extra: ignored by the standard")
        lines.extend(f.data_field + line for line in data.split(b"\n"))
        if f.bom_every_event:  # as real Elasticsearch does: the BOM starts every event
            lines[0] = BOM + lines[0]
        out = eol.join(lines) + eol
        if n != f.glue_event:
            out += eol
        if n == f.empty_data_after:
            out += b"data:" + eol + eol
        if f.keepalive and n % 2 == 1:
            out += b": keep-alive" + eol + eol
        return out
