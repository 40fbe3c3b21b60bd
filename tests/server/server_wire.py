"""Test helpers: a raw HTTP/1.1 exchange that keeps the server's write boundaries."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from chatprobe.sse import Event, SSEDecoder

BOM = b"\xef\xbb\xbf"


def parse_sse(raw: bytes) -> list[Event]:
    """Events as the standard dispatches them: the project's one SSE parser
    (its own tests check it against the WHATWG text)."""
    decoder = SSEDecoder()
    return decoder.feed(raw) + decoder.close()


@dataclass
class Wire:
    status: int
    headers: dict[str, str]
    raw: bytes  # the body (de-chunked)
    writes: list[bytes] = field(default_factory=list)  # one per chunked-encoding chunk
    complete: bool = True  # the chunked body ended with its zero-size chunk

    @property
    def events(self) -> list[Event]:
        return parse_sse(self.raw)

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    def chunks(self) -> list[dict[str, Any]]:
        """Every event's JSON (Elastic's chat_completion wrapper removed), [DONE] and non-JSON skipped."""
        out = []
        for event in self.events:
            try:
                value = json.loads(event.data)
            except ValueError:
                continue
            if isinstance(value, dict) and isinstance(value.get("chat_completion"), dict):
                value = value["chat_completion"]
            if isinstance(value, dict):
                out.append(value)
        return out

    def done_count(self) -> int:
        return sum(e.data == "[DONE]" for e in self.events)

    def choices(self) -> list[dict[str, Any]]:
        return [c for chunk in self.chunks() for c in chunk.get("choices") or []]

    def text(self) -> str:
        parts = []
        for chunk in self.chunks():
            for piece in chunk.get("completion") or []:
                parts.append(piece.get("delta", ""))
            for choice in chunk.get("choices") or []:
                if choice.get("index") == 0:
                    parts.append((choice.get("delta") or {}).get("content") or "")
        return "".join(parts)

    def finish_reasons(self) -> list[str]:
        return [c["finish_reason"] for c in self.choices() if c.get("finish_reason") is not None]

    def tool_deltas(self) -> list[dict[str, Any]]:
        return [t for c in self.choices() for t in (c.get("delta") or {}).get("tool_calls") or []]

    def usages(self) -> list[dict[str, Any]]:
        return [c["usage"] for c in self.chunks() if isinstance(c.get("usage"), dict)]


def exchange(base_url: str, path: str, body: Any = None, *, method: str = "POST",
             headers: dict[str, str] | None = None, raw_body: bytes | None = None,
             timeout: float = 10.0) -> Wire:
    """One request on a fresh connection; reads the whole response, keeping chunk boundaries."""
    url = urlsplit(base_url)
    payload = raw_body if raw_body is not None else (
        json.dumps(body).encode() if body is not None else b"")
    head = {"Host": url.netloc, "Connection": "close", "Content-Length": str(len(payload))}
    if body is not None and raw_body is None:
        head["Content-Type"] = "application/json"
    head.update(headers or {})
    request = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items())
    with socket.create_connection((url.hostname, url.port), timeout=timeout) as sock:
        sock.sendall(request.encode() + b"\r\n" + payload)
        received = bytearray()
        while chunk := sock.recv(65536):
            received += chunk
    head_bytes, _, rest = bytes(received).partition(b"\r\n\r\n")
    status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
    response_headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        response_headers[name.strip().lower()] = value.strip()
    status = int(status_line.split()[1])
    if response_headers.get("transfer-encoding") != "chunked":
        return Wire(status, response_headers, rest)
    writes: list[bytes] = []
    position = 0
    complete = False
    while True:
        line_end = rest.find(b"\r\n", position)
        if line_end < 0:
            break  # truncated chunked body (reset): keep what arrived
        size = int(rest[position:line_end].split(b";")[0], 16)
        if size == 0:
            complete = True
            break
        writes.append(rest[line_end + 2 : line_end + 2 + size])
        position = line_end + 2 + size + 2
    return Wire(status, response_headers, b"".join(writes), writes, complete)
