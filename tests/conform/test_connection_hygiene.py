"""The client's connection hygiene and deadlines, against tiny hostile servers (tests/hostile.py):

- a request that fails on a reused keep-alive connection before any byte of its response (the
  server had closed it: EOF or reset) is sent again on a fresh connection, and the exchange says so;
- a failure on a fresh connection, or after response bytes arrived, is the request's own (no retry);
- an exchange ends by its total deadline however the bytes trickle, and an SSE stream of comments
  only ends by its no-event deadline, both well before the server would stop.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from chatprobe.client import Client, Limits
from chatprobe.exchange import Exchange
from chatprobe.server.runner import running_server
from tests import hostile

BODY = {"model": "chatprobe-test", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
PATH = "/v1/chat/completions"
SHORT = Limits(connect_timeout_s=2.0, read_timeout_s=1.0, total_timeout_s=1.5)


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with running_server() as url:
        yield url


def _send(client: Client, stream: bool = True) -> Exchange:
    return client.send("openai", "POST", PATH, json_body={**BODY, "stream": stream}, stream=stream)


@pytest.mark.parametrize("reset", [False, True], ids=["eof", "rst"])
@pytest.mark.parametrize("close_after", ["stream", "always"])
def test_stale_keepalive_connection_is_retried_once(upstream: str, close_after: str, reset: bool) -> None:
    """llama-server closes the connection after every stream though it advertises keep-alive: the
    next request on that pooled connection dies before any response byte; it is sent again."""
    with hostile.closing_proxy(upstream, close_after, reset=reset) as proxy, Client(proxy.url) as client:
        exchanges = [_send(client) for _ in range(3)]
    for ex in exchanges:
        assert (ex.status, ex.transport_error) == (200, None), ex.transport_detail
        assert ex.events and ex.events[-1].data == "[DONE]"
    assert [ex.stale_connection_retry for ex in exchanges] == [False, True, True]
    detail = exchanges[1].stale_connection_detail
    assert "reused keep-alive connection" in detail
    assert ("ReadError" if reset else "RemoteProtocolError") in detail
    assert exchanges[1].to_json()["stale_connection_retry"] is True
    assert proxy.requests == 5  # 3 requests + 2 that met a dead connection


def test_500_then_close_is_not_blamed_on_the_next_request() -> None:
    """uvicorn apps close the connection after an unhandled 500: the next request is retried."""
    with hostile.error_500() as server, Client(server.url) as client:
        first, second = _send(client, stream=False), _send(client, stream=False)
    assert (first.status, second.status) == (500, 500)
    assert second.transport_error is None and second.stale_connection_retry
    assert not first.stale_connection_retry


def test_failure_on_a_fresh_connection_is_not_retried() -> None:
    def handler(conn: socket.socket, server: hostile.Server) -> None:
        hostile.read_request(conn, server)  # then close: no response at all

    with hostile.serving(handler) as server, Client(server.url, limits=SHORT) as client:
        ex = _send(client)
    assert ex.transport_error == "reset" and ex.status is None
    assert not ex.stale_connection_retry and ex.connection_reused is False
    assert server.requests == 1


def test_failure_after_response_bytes_is_not_retried() -> None:
    """A reused connection whose server starts answering and then drops it: that is the answer."""

    def handler(conn: socket.socket, server: hostile.Server) -> None:
        hostile.read_request(conn, server)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
        hostile.read_request(conn, server)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-")  # half a head, then EOF

    with hostile.serving(handler) as server, Client(server.url, limits=SHORT) as client:
        first, second = _send(client, stream=False), _send(client, stream=False)
    assert first.status == 200 and first.connection_reused is False
    assert second.transport_error == "reset" and second.connection_reused is True
    assert not second.stale_connection_retry
    assert server.requests == 2


def test_mock_transport_is_never_retried() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)

    with Client("http://mock", transport=httpx.MockTransport(handler)) as client:
        ex = _send(client)
    assert ex.transport_error == "reset" and not ex.stale_connection_retry and ex.connection_reused is None


def test_total_deadline_ends_a_trickle() -> None:
    """A byte every 0.2 s never trips the idle timeout; the total deadline (1.5 s) ends it."""

    def handler(conn: socket.socket, server: hostile.Server) -> None:
        hostile.read_request(conn, server)
        conn.sendall(hostile.JSON_HEAD)
        while not server.stopping.wait(0.2):
            conn.sendall(hostile.chunk(b" "))

    with hostile.serving(handler) as server, Client(server.url, limits=SHORT) as client:
        started = time.monotonic()
        ex = _send(client, stream=False)
        elapsed = time.monotonic() - started
    assert ex.transport_error == "timeout" and "1.5 s in total" in ex.transport_detail
    assert ex.bytes_received > 0
    assert elapsed < 5


def test_comments_only_stream_ends_by_its_no_event_deadline() -> None:
    limits = Limits(read_timeout_s=1.0, total_timeout_s=30.0)
    with hostile.comments_only(interval_s=0.1) as server, Client(server.url, limits=limits) as client:
        started = time.monotonic()
        ex = _send(client)
        elapsed = time.monotonic() - started
    assert ex.status == 200 and ex.transport_error == "timeout"
    assert "only comments for 1 s" in ex.transport_detail
    assert elapsed < 10  # the no-event deadline (1 s), not the total (30 s)


@pytest.mark.parametrize("kind", ["silent", "headers_then_silent"])
def test_silence_ends_by_the_idle_timeout(kind: str) -> None:
    with getattr(hostile, kind)() as server, Client(server.url, limits=SHORT) as client:
        started = time.monotonic()
        ex = _send(client)
        elapsed = time.monotonic() - started
    assert ex.transport_error == "timeout" and not ex.stale_connection_retry
    assert ex.status == (None if kind == "silent" else 200)
    assert elapsed < 10


def test_watchdog_thread_ends_with_the_client() -> None:
    with hostile.silent() as server:
        client = Client(server.url, limits=SHORT)
        _send(client)
        thread = client._watchdog._thread
        assert thread is not None and thread.is_alive()
        client.close()
        thread.join(5)
        assert not thread.is_alive()
