"""The HTTP client that turns one request into an :class:`~chatprobe.exchange.Exchange`.

httpx is the transport (one seam: pass ``transport=httpx.MockTransport(...)``
in unit tests). Every byte read is fed to the project's SSE decoder with the
``perf_counter_ns`` stamp of its arrival, so events carry their own timing.

A misbehaving server never raises out of :meth:`Client.send`: a stall, a
reset, an oversized frame or a refused connection ends the exchange with
``transport_error`` set, memory bounded by :class:`Limits`.

Three bounds end an exchange, however the server behaves:

* ``read_timeout_s``: no byte at all for that long (httpx's read timeout);
* ``event_timeout_s``: an SSE stream whose bytes carry no event for that long
  (only ``: ping`` comments, or a frame that never ends): comments are legal
  keep-alives, so they do not count as progress;
* ``total_timeout_s``: the whole exchange.

The last two are enforced by a watchdog thread that shuts the socket down when
its deadline passes, so a read blocked on a silent server returns at once.

Connection hygiene: a server may close an idle keep-alive connection at any
time (RFC 9112 §9.3.1); a request that went out on such a pooled connection
fails before any byte of its response arrives. That failure belongs to the
connection, not to the request: it is sent once more on a fresh connection
(``Exchange.stale_connection_retry`` says so). A failure on a fresh
connection, or after response bytes arrived, is never retried.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from chatprobe.exchange import Exchange
from chatprobe.sse import SSEDecoder

# A request is retried on a fresh connection at most this many times when each attempt
# went out on a stale pooled connection (one is the norm: a sequential client pools one).
_MAX_STALE_RETRIES = 3
_NO_RESPONSE = "without sending a response"  # httpcore: EOF before any byte of the response

@dataclass(frozen=True, slots=True)
class Limits:
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0  # no byte for this long = a stall
    total_timeout_s: float = 60.0  # whole exchange, however the bytes trickle
    capture_bytes: int = 1 << 20  # raw bytes kept in Exchange.body as evidence
    max_body_bytes: int = 64 << 20  # stop reading past this
    max_frame_bytes: int = 8 << 20  # the SSE decoder's buffer limit
    # An SSE stream with no event for this long is a stall even when comments keep arriving;
    # None: read_timeout_s.
    event_timeout_s: float | None = None

    @property
    def event_timeout(self) -> float:
        return self.read_timeout_s if self.event_timeout_s is None else self.event_timeout_s


class _Watchdog:
    """Ends a read that a deadline overtook: from its own thread it shuts the exchange's socket
    down (a ``recv`` blocked on a silent server then returns EOF at once) and says which deadline
    fired. One per client, started on first use; armed for one exchange at a time."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._armed = False
        self._closed = False
        self._total_ns = 0  # the exchange's total deadline
        self._quiet_ns: int | None = None  # the no-event deadline of an SSE stream
        self._sock: socket.socket | None = None
        self.fired: str | None = None  # "total" or "quiet" once a deadline passed

    def arm(self, total_ns: int) -> None:
        with self._cond:
            self._armed, self._total_ns, self._quiet_ns, self._sock, self.fired = True, total_ns, None, None, None
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="chatprobe-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()

    def attach(self, sock: Any) -> None:
        """The socket to shut down when a deadline passes (only a real socket: a mock has none)."""
        if isinstance(sock, socket.socket):
            with self._cond:
                if self._armed:
                    self._sock = sock
                    if self.fired is not None:  # fired before the socket was known
                        _shutdown(sock)

    def quiet_until(self, deadline_ns: int) -> None:
        """Move the no-event deadline (later as events arrive: the thread re-reads it on waking)."""
        with self._cond:
            earlier = self._quiet_ns is None or deadline_ns < self._quiet_ns
            self._quiet_ns = deadline_ns
            if earlier:
                self._cond.notify()

    def disarm(self) -> None:
        with self._cond:
            self._armed, self._sock = False, None

    def close(self) -> None:
        with self._cond:
            self._closed, self._armed, self._sock = True, False, None
            self._cond.notify()

    def _watch(self) -> None:
        with self._cond:
            while not self._closed:
                if not self._armed or self.fired is not None:
                    self._cond.wait()
                    continue
                deadline = self._total_ns if self._quiet_ns is None else min(self._total_ns, self._quiet_ns)
                now = time.perf_counter_ns()
                if now < deadline:
                    self._cond.wait((deadline - now) / 1e9)
                    continue
                self.fired = "total" if now >= self._total_ns else "quiet"
                if self._sock is not None:
                    _shutdown(self._sock)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed: the read it would have ended is over
        sock.shutdown(socket.SHUT_RDWR)


_sending = threading.local()  # .attempt: the _Attempt this thread is sending, for _Stream.write


class _Stream(httpcore.NetworkStream):
    """httpcore's network stream, counting what it carried: how many requests went out on it and
    how many bytes came in, so a failure can be told apart: a pooled connection that was dead
    before the request (retry) from a server that answered badly (the request's verdict)."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner
        self.requests = 0
        self.received = 0

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = self._inner.read(max_bytes, timeout)
        self.received += len(data)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        attempt: _Attempt | None = getattr(_sending, "attempt", None)
        if attempt is not None and attempt.stream is not self:
            attempt.use(self)
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        return _Stream(self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        return _Stream(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _counting_transport() -> httpx.HTTPTransport:
    """httpx's own transport, its connection pool on a counting network backend. The pool's
    backend is not a public httpx option: when it cannot be reached, the trace extension
    (connect_tcp or not) still tells a reused connection."""
    transport = httpx.HTTPTransport()
    pool = getattr(transport, "_pool", None)
    inner = getattr(pool, "_network_backend", None)
    if isinstance(inner, httpcore.NetworkBackend):
        pool._network_backend = _Backend(inner)  # type: ignore[union-attr]
    return transport


class _Attempt:
    """One attempt at a request: which connection carried it (fresh or reused) and how many bytes
    of its response arrived, from the counting stream or, failing that, httpcore's trace."""

    __slots__ = ("connected", "received_before", "requested", "stream", "stream_reused", "watchdog")

    def __init__(self, watchdog: _Watchdog) -> None:
        self.watchdog = watchdog
        self.stream: _Stream | None = None
        self.stream_reused = False
        self.received_before = 0
        self.connected = False  # trace: connection.connect_tcp ran (a fresh connection)
        self.requested = False  # trace: httpcore sent the request (not a mock transport)

    def use(self, stream: _Stream) -> None:
        self.stream, self.stream_reused, self.received_before = stream, stream.requests > 0, stream.received
        stream.requests += 1
        self.watchdog.attach(stream.get_extra_info("socket"))

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's trace extension."""
        if event.startswith("connection.connect_tcp."):
            self.connected = True
            if event.endswith(".complete") and self.stream is None:
                stream = info.get("return_value")
                if stream is not None:
                    self.watchdog.attach(stream.get_extra_info("socket"))
        elif event == "http11.send_request_headers.started":
            self.requested = True

    @property
    def reused(self) -> bool | None:
        if self.stream is not None:
            return self.stream_reused
        return None if not self.requested else not self.connected

    def stale(self, exc: Exception) -> bool:
        """Failed the way a connection the server had closed fails: on a reused connection, before
        any byte of the response (a reset, an EOF, a broken pipe)."""
        if not self.reused or not isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
            return False
        if self.stream is not None:
            return self.stream.received == self.received_before
        return not isinstance(exc, httpx.RemoteProtocolError) or _NO_RESPONSE in str(exc)



class Client:
    def __init__(
        self,
        base_url: str,
        headers: dict[str, str] | None = None,
        limits: Limits | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers or {})
        self.limits = limits or Limits()
        timeout = httpx.Timeout(
            connect=self.limits.connect_timeout_s,
            read=self.limits.read_timeout_s,
            write=self.limits.read_timeout_s,
            pool=self.limits.connect_timeout_s,
        )
        self._http = httpx.Client(timeout=timeout, transport=transport or _counting_transport(), follow_redirects=False)
        self._watchdog = _Watchdog()

    def close(self) -> None:
        self._watchdog.close()
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(
        self,
        dialect: str,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        params: dict[str, str] | None = None,
        t_scheduled_ns: int | None = None,
    ) -> Exchange:
        """Send one request; read the whole response (bounded); never raise for server faults."""
        all_headers = {**self.headers, **(headers or {})}
        if content is None:
            content = b"" if json_body is None else json.dumps(json_body).encode()
            if json_body is not None:
                all_headers.setdefault("Content-Type", "application/json")
        url = self.base_url + path
        request = self._http.build_request(method, url, content=content, headers=all_headers, params=params)
        exchange = Exchange(
            dialect=dialect,
            method=method,
            url=str(request.url),
            request_headers=all_headers,
            request_body=content,
            request_json=json_body,
            stream=stream,
            t_scheduled_ns=t_scheduled_ns,
        )
        self._run(request, exchange)
        return exchange

    def _run(self, request: httpx.Request, exchange: Exchange) -> None:
        for attempt in range(_MAX_STALE_RETRIES + 1):
            trace = _Attempt(self._watchdog)
            request.extensions["trace"] = trace
            stale = self._attempt(request, exchange, trace, retry_allowed=attempt < _MAX_STALE_RETRIES)
            if stale is None:
                return
            # The pooled connection was dead before this request could use it: not the request's
            # doing. httpcore dropped that connection; the next attempt gets another (a fresh one).
            if not exchange.stale_connection_retry:
                exchange.stale_connection_detail = stale
            exchange.stale_connection_retry = True
            _reset(exchange)

    def _attempt(self, request: httpx.Request, exchange: Exchange, trace: _Attempt, *, retry_allowed: bool) -> str | None:
        """One attempt; returns what it saw when it failed on a stale pooled connection and may be retried."""
        limits = self.limits
        decoder: SSEDecoder | None = None
        captured = bytearray()
        watchdog = self._watchdog
        exchange.t_sent_ns = time.perf_counter_ns()
        deadline = exchange.t_sent_ns + int(limits.total_timeout_s * 1e9)
        quiet_ns = int(limits.event_timeout * 1e9)
        last_event_ns = comments_seen = bytes_at_event = 0
        watchdog.arm(deadline)
        response: httpx.Response | None = None
        try:
            _sending.attempt = trace
            try:
                response = self._http.send(request, stream=True)
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                exchange.connection_reused = trace.reused
                if retry_allowed and watchdog.fired is None and trace.stale(exc):
                    return f"{type(exc).__name__}: {exc or 'connection closed'} (on a reused keep-alive connection)"
                raise
            finally:
                _sending.attempt = None
            exchange.connection_reused = trace.reused
            exchange.t_headers_ns = time.perf_counter_ns()
            stream = response.extensions.get("network_stream")
            if stream is not None:
                watchdog.attach(stream.get_extra_info("socket"))
            exchange.status = response.status_code
            exchange.response_headers = list(response.headers.multi_items())
            is_sse = "text/event-stream" in response.headers.get("content-type", "")
            if exchange.stream or is_sse:
                decoder = SSEDecoder(max_buffer=limits.max_frame_bytes)
                last_event_ns = exchange.t_headers_ns
                watchdog.quiet_until(last_event_ns + quiet_ns)
            for chunk in response.iter_bytes():
                now = time.perf_counter_ns()
                if exchange.t_first_byte_ns is None:
                    exchange.t_first_byte_ns = now
                exchange.bytes_received += len(chunk)
                room = limits.capture_bytes - len(captured)
                if room > 0:
                    captured += chunk[:room]
                if len(chunk) > room:
                    exchange.body_truncated = True
                if decoder is not None:
                    events = decoder.feed(chunk, now)
                    if events:
                        exchange.events.extend(events)
                        last_event_ns, comments_seen, bytes_at_event = now, decoder.comments, exchange.bytes_received
                        watchdog.quiet_until(now + quiet_ns)
                    if decoder.stopped:
                        exchange.transport_error = "too_large"
                        exchange.transport_detail = "an SSE frame exceeded the decoder's buffer limit"
                        break
                    if now - last_event_ns > quiet_ns:
                        self._timed_out(exchange, "quiet", decoder.comments - comments_seen, exchange.bytes_received - bytes_at_event)
                        break
                if exchange.bytes_received > limits.max_body_bytes:
                    exchange.transport_error = "too_large"
                    exchange.transport_detail = f"body exceeded {limits.max_body_bytes} bytes"
                    break
                if now > deadline:
                    self._timed_out(exchange, "total")
                    break
            if exchange.transport_error is None and watchdog.fired is not None:
                # A close-delimited body ends at EOF: the watchdog's shutdown looks like its end.
                self._timed_out(exchange, watchdog.fired, *_since(decoder, comments_seen, exchange.bytes_received - bytes_at_event))
        except httpx.TimeoutException as exc:
            if watchdog.fired is not None:
                self._timed_out(exchange, watchdog.fired, *_since(decoder, comments_seen, exchange.bytes_received - bytes_at_event))
            else:
                exchange.transport_error = "connect" if isinstance(exc, httpx.ConnectTimeout) else "timeout"
                exchange.transport_detail = f"{type(exc).__name__}: no data for {limits.read_timeout_s:g} s"
        except httpx.ConnectError as exc:
            exchange.transport_error = "connect"
            exchange.transport_detail = str(exc) or type(exc).__name__
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            if watchdog.fired is not None:  # the watchdog's shutdown, not the server's doing
                self._timed_out(exchange, watchdog.fired, *_since(decoder, comments_seen, exchange.bytes_received - bytes_at_event))
            else:
                exchange.transport_error = "reset"
                exchange.transport_detail = str(exc) or type(exc).__name__
        except httpx.DecodingError as exc:
            exchange.transport_error = "reset"
            exchange.transport_detail = f"content decoding failed: {exc}"
        finally:
            watchdog.disarm()
            if response is not None:
                response.close()
            exchange.t_end_ns = time.perf_counter_ns()
            exchange.body = bytes(captured)
            if decoder is not None:
                # A cut-short stream still reports what it had; close() flags a dangling event.
                if exchange.transport_error is None:
                    exchange.events.extend(decoder.close())
                exchange.sse_findings = list(decoder.findings)
        return None

    def _timed_out(self, exchange: Exchange, which: str, comments: int = 0, quiet_bytes: int = 0) -> None:
        limits = self.limits
        exchange.transport_error = "timeout"
        if which == "total":
            exchange.transport_detail = f"exchange exceeded {limits.total_timeout_s:g} s in total"
        elif comments and quiet_bytes:
            exchange.transport_detail = (
                f"only comments for {limits.event_timeout:g} s: {comments} SSE comment(s) and no event"
            )
        elif quiet_bytes:
            exchange.transport_detail = f"no complete SSE event for {limits.event_timeout:g} s ({quiet_bytes} bytes of an unfinished frame)"
        else:
            exchange.transport_detail = f"no data for {limits.event_timeout:g} s"


def _since(decoder: SSEDecoder | None, comments_at_event: int, quiet_bytes: int) -> tuple[int, int]:
    return (0 if decoder is None else decoder.comments - comments_at_event), quiet_bytes


def _reset(exchange: Exchange) -> None:
    """Forget a failed attempt's response (the retry fills it anew)."""
    exchange.t_headers_ns = exchange.t_first_byte_ns = exchange.t_end_ns = None
    exchange.status = None
    exchange.response_headers = []
    exchange.body = b""
    exchange.body_truncated = False
    exchange.bytes_received = 0
    exchange.events = []
    exchange.sse_findings = []
    exchange.transport_error = None
    exchange.transport_detail = ""
