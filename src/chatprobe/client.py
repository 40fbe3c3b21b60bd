"""The HTTP client that turns one request into an :class:`~chatprobe.exchange.Exchange`.

httpx is the transport (one seam: pass ``transport=httpx.MockTransport(...)``
in unit tests). Every byte read is fed to the project's SSE decoder with the
``perf_counter_ns`` stamp of its arrival, so events carry their own timing.

A misbehaving server never raises out of :meth:`Client.send`: a stall, a
reset, an oversized frame or a refused connection ends the exchange with
``transport_error`` set, memory bounded by :class:`Limits`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from chatprobe.exchange import Exchange
from chatprobe.sse import SSEDecoder


@dataclass(frozen=True, slots=True)
class Limits:
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0  # no byte for this long = a stall
    total_timeout_s: float = 60.0  # whole exchange, however the bytes trickle
    capture_bytes: int = 1 << 20  # raw bytes kept in Exchange.body as evidence
    max_body_bytes: int = 64 << 20  # stop reading past this
    max_frame_bytes: int = 8 << 20  # the SSE decoder's buffer limit


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
        self._http = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False)

    def close(self) -> None:
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
        limits = self.limits
        decoder: SSEDecoder | None = None
        captured = bytearray()
        exchange.t_sent_ns = time.perf_counter_ns()
        deadline = exchange.t_sent_ns + int(limits.total_timeout_s * 1e9)
        response: httpx.Response | None = None
        try:
            response = self._http.send(request, stream=True)
            exchange.t_headers_ns = time.perf_counter_ns()
            exchange.status = response.status_code
            exchange.response_headers = list(response.headers.multi_items())
            is_sse = "text/event-stream" in response.headers.get("content-type", "")
            if exchange.stream or is_sse:
                decoder = SSEDecoder(max_buffer=limits.max_frame_bytes)
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
                    exchange.events.extend(decoder.feed(chunk, now))
                    if decoder.stopped:
                        exchange.transport_error = "too_large"
                        exchange.transport_detail = "an SSE frame exceeded the decoder's buffer limit"
                        break
                if exchange.bytes_received > limits.max_body_bytes:
                    exchange.transport_error = "too_large"
                    exchange.transport_detail = f"body exceeded {limits.max_body_bytes} bytes"
                    break
                if now > deadline:
                    exchange.transport_error = "timeout"
                    exchange.transport_detail = f"exchange exceeded {limits.total_timeout_s:g} s in total"
                    break
        except httpx.TimeoutException as exc:
            exchange.transport_error = "connect" if isinstance(exc, httpx.ConnectTimeout) else "timeout"
            exchange.transport_detail = f"{type(exc).__name__}: no data for {limits.read_timeout_s:g} s"
        except httpx.ConnectError as exc:
            exchange.transport_error = "connect"
            exchange.transport_detail = str(exc) or type(exc).__name__
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            exchange.transport_error = "reset"
            exchange.transport_detail = str(exc) or type(exc).__name__
        except httpx.DecodingError as exc:
            exchange.transport_error = "reset"
            exchange.transport_detail = f"content decoding failed: {exc}"
        finally:
            if response is not None:
                response.close()
            exchange.t_end_ns = time.perf_counter_ns()
            exchange.body = bytes(captured)
            if decoder is not None:
                # A cut-short stream still reports what it had; close() flags a dangling event.
                if exchange.transport_error is None:
                    exchange.events.extend(decoder.close())
                exchange.sse_findings = list(decoder.findings)
