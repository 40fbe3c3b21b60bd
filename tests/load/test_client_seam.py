"""The load client driven through its transport seam: scripted bytes, no sockets.

``GeventClient(builder, settings, connect=...)`` opens its connections with
``connect``; a connection whose ``raw`` is None is read through its ``sock``
(the path TLS takes), so a whole exchange (HTTP parsing, SSE decoding, stream
checks, the record) runs here in-process, without gevent's hub or a server.
"""

from __future__ import annotations

from typing import ClassVar

import orjson
import pytest

from chatprobe.load.client import Connection, Exchange, Failure, GeventClient, RequestBuilder
from chatprobe.load.state import state
from chatprobe.loadplan import LoadSettings
from chatprobe.metrics import RequestRecord

SETTINGS = LoadSettings(target="http://127.0.0.1:9", max_tokens=8, prompt_tokens=4, stamps="user")


def _sse(*payloads: object) -> bytes:
    return b"".join(b"data: " + (p if isinstance(p, bytes) else orjson.dumps(p)) + b"\n\n" for p in payloads)


def _chunk(id_: str, delta: dict[str, object], finish: str | None = None) -> dict[str, object]:
    return {"id": id_, "object": "chat.completion.chunk", "created": 1, "model": "chatprobe-test",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def _chunked(body: bytes, pieces: int = 3) -> bytes:
    step = max(1, len(body) // pieces)
    parts = [body[i:i + step] for i in range(0, len(body), step)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


STREAM = _sse(
    _chunk("c1", {"role": "assistant", "content": ""}),
    _chunk("c1", {"content": "hello"}),
    _chunk("c1", {"content": " world"}),
    _chunk("c1", {}, "stop"),
    {**_chunk("c1", {}), "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2,
                                                   "total_tokens": 6}},
    b"[DONE]",
)
HEAD_200 = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")


class ScriptedSocket:
    def __init__(self, reads: list[bytes]) -> None:
        self.reads = list(reads)
        self.sent = b""
        self.closed = False

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def recv(self, n: int) -> bytes:
        return self.reads.pop(0) if self.reads else b""

    def close(self) -> None:
        self.closed = True


class ScriptedConnection(Connection):
    """A connection with no socket: its reads are given, one list per connection opened."""

    scripts: ClassVar[list[list[bytes]]] = []
    opened: ClassVar[list[ScriptedSocket]] = []

    def __init__(self, b: RequestBuilder, read_timeout_s: float) -> None:  # no super(): no socket
        self.reusable = True
        self.raw = None
        self.kernel_stamps = False
        self.sock = ScriptedSocket(self.scripts.pop(0))
        self.opened.append(self.sock)


@pytest.fixture
def client() -> GeventClient:
    state.use(SETTINGS)
    ScriptedConnection.scripts, ScriptedConnection.opened = [], []
    return GeventClient(state.builder, SETTINGS, connect=ScriptedConnection)


def _exchange(client: GeventClient) -> tuple[RequestRecord, Exchange]:
    req = state.builder.next()
    record = RequestRecord(request_id="seam-1", dialect="openai", t_sent_ns=0)
    ex = Exchange(record, state.builder.profile, req, False)
    client.exchange(ex, req)
    return record, ex


def test_stream_read_stamped_and_checked(client: GeventClient) -> None:
    body = _chunked(STREAM)
    ScriptedConnection.scripts = [[HEAD_200 + body[:40], body[40:200], body[200:]]]
    record, ex = _exchange(client)
    sent = ScriptedConnection.opened[0].sent
    assert sent.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n") and b"X-Request-Id: seam-1" in sent
    assert record.ok and record.error is None, (record.error, ex.detail)
    assert record.output_tokens == 2 and record.prompt_tokens == 4
    assert len(record.token_arrivals_ns) == 2 and record.t_first_token_ns is not None
    assert ex.validator.result.text() == "hello world"
    assert client.idle  # kept alive for the next request


def test_cut_stream_is_a_reset(client: GeventClient) -> None:
    ScriptedConnection.scripts = [[HEAD_200 + _chunked(STREAM)[:120]]]
    with pytest.raises(Failure) as exc:
        _exchange(client)
    assert exc.value.reason == "reset"


def test_error_status_recorded_with_its_body(client: GeventClient) -> None:
    body = b'{"error": "overloaded"}'
    ScriptedConnection.scripts = [[b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: %d\r\n\r\n%s"
                                   % (len(body), body)]]
    record, ex = _exchange(client)
    assert not record.ok and record.error == "http 503"
    assert ex.detail is not None and "overloaded" in ex.detail


def test_stale_keep_alive_resent_on_a_fresh_connection(client: GeventClient) -> None:
    body = _chunked(STREAM)
    ScriptedConnection.scripts = [[HEAD_200 + body], [HEAD_200 + body]]  # the 1st then says EOF
    _exchange(client)
    before = state.reconnects.get("closed before the response", 0)
    record, _ = _exchange(client)  # the pooled connection answers EOF: sent again
    assert record.ok
    assert state.reconnects.get("closed before the response", 0) == before + 1
    assert len(ScriptedConnection.opened) == 2
