"""Per-dialect SSE framing: chunk dicts in, bytes out.

openai / atoma / adaptive: ``data: <json>\\n\\n``, terminator ``data: [DONE]``
(adaptive sends no terminator: the stream ends with the body, as document 002
shows none). elastic-chat / elastic-completion: ``event: message\\ndata:
<json>\\n\\n`` with the chunk inside ``{"chat_completion": ...}`` (chat; the
completion chunk is already ``{"completion": [...]}``), terminator
``event: message\\ndata: [DONE]``, errors as ``event: error``.

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
        self.fast = framing.plain
        self.count = 0

    def data(self, item: Item) -> bytes:
        if item.kind == DONE:
            return b"[DONE]"
        assert item.body is not None
        body: Any = item.body
        if self.wrap_chat and item.kind == CHUNK:
            body = {"chat_completion": body}
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

    def encode(self, item: Item) -> bytes:
        data = self.data(item)
        if self.fast:
            self.count += 1
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
            for marker in (b'"content":"', b'"delta":"', b'"message":"'):
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
