"""The one record of a request/response exchange, shared by every front-end.

An :class:`Exchange` holds what was sent, what came back (status, headers,
raw bytes up to a limit, the decoded SSE events each stamped with
``perf_counter_ns`` when its first byte arrived), how the transport ended,
and the timestamps the metrics need. Checks read it; metrics read it; reports
serialise it (secrets redacted). Nothing in it is specific to pytest, Locust
or the CLI.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from chatprobe import redact
from chatprobe.findings import Finding
from chatprobe.redact import REDACTED, redact_headers
from chatprobe.sse import Event

__all__ = ["REDACTED", "Exchange", "redact_headers"]  # the rule itself lives in chatprobe.redact


@dataclass(slots=True)
class Exchange:
    dialect: str
    method: str
    url: str
    request_headers: dict[str, str]
    request_body: bytes
    stream: bool
    request_json: Any = None  # the body as a Python value, when it was JSON

    # timestamps, time.perf_counter_ns()
    t_scheduled_ns: int | None = None
    t_sent_ns: int = 0
    t_headers_ns: int | None = None
    t_first_byte_ns: int | None = None
    t_end_ns: int | None = None

    status: int | None = None
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""  # raw body as received, capped at the client's capture limit
    body_truncated: bool = False  # True when more arrived than was captured
    bytes_received: int = 0
    events: list[Event] = field(default_factory=list)
    sse_findings: list[Finding] = field(default_factory=list)  # the decoder's
    # How the transport ended: None (complete), "timeout", "reset", "too_large", "connect".
    transport_error: str | None = None
    transport_detail: str = ""
    # Connection hygiene: the request went out on a pooled keep-alive connection (None: unknown,
    # e.g. a mock transport); a first attempt on such a connection failed before any response
    # byte (the server had closed it) and the request was sent again on a fresh connection.
    # That belongs to the connection, never to this request: at most an informational note.
    connection_reused: bool | None = None
    stale_connection_retry: bool = False
    stale_connection_detail: str = ""  # what the first attempt saw

    # ---- convenience -------------------------------------------------------
    def header(self, name: str) -> str | None:
        lname = name.lower()
        for key, value in self.response_headers:
            if key.lower() == lname:
                return value
        return None

    @property
    def content_type(self) -> str:
        return (self.header("content-type") or "").split(";", 1)[0].strip().lower()

    def json_body(self) -> Any:
        """The response body parsed as JSON; raises ValueError when it is not."""
        return json.loads(self.body)

    # ---- reporting --------------------------------------------------------------
    def curl(self) -> str:
        """A reproducer with each secret written as a reference to its environment variable."""
        return redact.curl(self.method, self.url, self.request_headers, self.request_body, stream=self.stream)

    def to_json(self, body_limit: int = 4096) -> dict[str, Any]:
        body_text = self.body[:body_limit].decode("utf-8", "replace")
        return {
            "dialect": self.dialect,
            "request": {
                "method": self.method,
                "url": redact.redact_url(self.url),
                "headers": redact_headers(self.request_headers),
                "body": self.request_json
                if self.request_json is not None
                else self.request_body[:body_limit].decode("utf-8", "replace"),
            },
            "response": {
                "status": self.status,
                "headers": redact_headers(dict(self.response_headers)),
                "body_excerpt": body_text,
                "body_truncated": self.body_truncated or len(self.body) > body_limit,
                "bytes_received": self.bytes_received,
                "events": len(self.events),
            },
            "transport_error": self.transport_error,
            "transport_detail": self.transport_detail,
            "stale_connection_retry": self.stale_connection_retry,
            **({"stale_connection_detail": self.stale_connection_detail} if self.stale_connection_retry else {}),
            "reproducer": self.curl(),
        }

