"""A minimal, fast OpenAI streaming server for the generator-cost benchmark.

Not the reference server and not part of chatprobe: a benchmark fixture, as
the issue asks ("measured ... on one core against a fast server"). The
reference server (``chatprobe serve``) is built for exactness and faults: one
ASGI coroutine per stream, one timer and one ``send`` per event. It tops out
around 40-50k events/s on a core, below what a load generator must be driven
at to find its own limit. This server keeps only what the benchmark needs:

* ``POST /v1/chat/completions`` with ``"stream": true``: a role + first token
  event at TTFT, one content event every ITL after it (``max_tokens`` of them;
  EOS is never chosen), then the finish chunk, the usage chunk (when
  ``stream_options.include_usage``) and ``[DONE]``, chunked transfer encoding;
* the garbage collector kept to young objects (see ``_freeze_young``);
* ``GET`` / ``DELETE /_chatprobe/truth`` and ``GET /_chatprobe/health`` with
  the reference server's truth-record format (keyed by ``X-Request-Id``):
  ``received_ns`` is stamped as the request's first bytes come off the socket,
  ``token_ns`` just before each token's ``write``.

How it is fast: an ``asyncio.Protocol`` on uvloop (no ASGI, no per-stream
coroutine), every event frame rendered once per stream, and one timer for all
streams: a heap of due times drained by a single callback that writes each
due stream's next event straight to its transport. Times are
``perf_counter_ns`` (CLOCK_MONOTONIC), as the reference server's.

    python benchmarks/fast_server.py [--port 0] [--ttft-ms 50] [--itl-ms 5]

prints ``fast server listening on http://127.0.0.1:PORT`` and serves until
SIGINT / SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import heapq
import signal
import socket
import sys
import time
from typing import Any

import orjson
import uvloop

LISTENING_PREFIX = "fast server listening on "
_WORDS = [b" the", b" model", b" streams", b" a", b" token", b" of", b" text", b" here"]
_MAX_HEAD = 64 * 1024
_MAX_BODY = 16 * 1024 * 1024
_SLACK_NS = 200_000  # a timer that fires this early still writes: no spinning on ms timers


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _response(status: int, body: bytes, content_type: bytes, extra: bytes = b"") -> bytes:
    reason = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}.get(status, b"Error")
    return (b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n%s\r\n%s"
            % (status, reason, content_type, len(body), extra, body))


class Stream:
    __slots__ = ("frames", "record", "remaining", "tail", "transport", "word")

    def __init__(self, transport: asyncio.Transport, frames: list[bytes], tail: bytes,
                 tokens: int, record: dict[str, Any]) -> None:
        self.transport = transport
        self.frames = frames  # frames[0]: role + first token; then one per word
        self.tail = tail  # finish chunk, usage, [DONE], end of chunked body
        self.remaining = tokens
        self.word = 0
        self.record = record


class Server:
    def __init__(self, ttft_ms: float, itl_ms: float, truth_records: int) -> None:
        self.ttft_ns = int(ttft_ms * 1e6)
        self.itl_ns = int(itl_ms * 1e6)
        self.truth: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self.truth_max = truth_records
        self.heap: list[tuple[int, int, Stream]] = []
        self.seq = 0
        self.timer: asyncio.TimerHandle | None = None
        self.timer_due = 0
        self.loop = asyncio.get_event_loop()
        self.created = int(time.time())

    # -- the one timer -------------------------------------------------------------

    def schedule(self, due: int, stream: Stream) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (due, self.seq, stream))
        if self.timer is None or due < self.timer_due:
            self._arm(due)

    def _arm(self, due: int) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer_due = due
        self.timer = self.loop.call_later(max(due - time.perf_counter_ns(), 0) / 1e9, self._tick)

    def _tick(self) -> None:
        self.timer = None
        heap = self.heap
        pop, push, clock = heapq.heappop, heapq.heappush, time.perf_counter_ns
        now = clock()
        while heap and heap[0][0] <= now + _SLACK_NS:
            due, _, stream = pop(heap)
            transport = stream.transport
            if transport.is_closing():
                continue
            record = stream.record
            written = clock()
            record["token_ns"].append(written)
            stream.remaining -= 1
            if stream.word == 0:
                frame = stream.frames[0]
                stream.word = 1
            else:
                frame = stream.frames[stream.word]
                stream.word = stream.word % (len(stream.frames) - 1) + 1
            if stream.remaining <= 0:
                transport.write(frame + stream.tail)
                record["finished_ns"] = clock()
            else:
                transport.write(frame)
                self.seq += 1
                push(heap, (due + self.itl_ns, self.seq, stream))
            now = written
        if heap:
            self._arm(heap[0][0])

    # -- requests ---------------------------------------------------------------------

    def handle(self, transport: asyncio.Transport, method: bytes, path: bytes,
               headers: dict[bytes, bytes], body: bytes, received_ns: int) -> None:
        if path == b"/_chatprobe/health":
            transport.write(_response(200, b'{"status":"ok"}', b"application/json"))
        elif path == b"/_chatprobe/truth" and method == b"GET":
            doc = {"clock": "perf_counter_ns", "records": list(self.truth.values())}
            transport.write(_response(200, orjson.dumps(doc), b"application/json"))
        elif path == b"/_chatprobe/truth" and method == b"DELETE":
            cleared = len(self.truth)
            self.truth.clear()
            transport.write(_response(200, orjson.dumps({"cleared": cleared}), b"application/json"))
        elif path == b"/v1/chat/completions" and method == b"POST":
            self.chat(transport, headers, body, received_ns)
        else:
            transport.write(_response(404, b'{"error":{"message":"no route"}}', b"application/json"))

    def chat(self, transport: asyncio.Transport, headers: dict[bytes, bytes], body: bytes,
             received_ns: int) -> None:
        try:
            req = orjson.loads(body)
            tokens = int(req.get("max_completion_tokens") or req.get("max_tokens") or 16)
            assert req.get("stream") is True and tokens >= 1
        except Exception:
            transport.write(_response(400, b'{"error":{"message":"fast_server: streaming chat '
                                      b'requests with max_tokens >= 1 only"}}', b"application/json"))
            return
        self.seq += 1
        cid = b"chatcmpl-fast%d" % self.seq
        model = str(req.get("model") or "fast").encode()
        head = (b'{"id":"%s","object":"chat.completion.chunk","created":%d,"model":"%s","choices":'
                % (cid, self.created, orjson.dumps(model.decode())[1:-1]))

        def event(choices: bytes, usage: bytes = b"") -> bytes:
            return _chunked(b"data: " + head + choices + usage + b"}\n\n")

        frames = [event(b'[{"index":0,"delta":{"role":"assistant","content":"%s"},"finish_reason":null}]'
                        % _WORDS[0])]
        frames += [event(b'[{"index":0,"delta":{"content":"%s"},"finish_reason":null}]' % w)
                   for w in _WORDS]
        tail = event(b'[{"index":0,"delta":{},"finish_reason":"length"}]')
        if (req.get("stream_options") or {}).get("include_usage"):
            prompt = sum(len(str(m.get("content", "")).split()) for m in req.get("messages") or [])
            tail += event(b"[]", b',"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}'
                          % (prompt, tokens, prompt + tokens))
        tail += _chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n"
        key = (headers.get(b"x-request-id") or cid).decode(errors="replace")
        started = time.perf_counter_ns()
        record: dict[str, Any] = {
            "request_id": key, "path": "/v1/chat/completions", "dialect": "openai", "status": 200,
            "stream": True, "received_ns": received_ns, "started_ns": started, "token_ns": [],
            "finished_ns": None, "tokens": tokens}
        self.truth[key] = record
        if len(self.truth) > self.truth_max:
            self.truth.popitem(last=False)
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
                        b"transfer-encoding: chunked\r\nx-request-id: " + key.encode() + b"\r\n\r\n")
        self.schedule(started + self.ttft_ns, Stream(transport, frames, tail, tokens, record))


class Connection(asyncio.Protocol):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.buf = bytearray()
        self.received_ns = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if not self.buf:
            self.received_ns = time.perf_counter_ns()  # the request's first bytes
        self.buf += data
        while self.transport is not None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > _MAX_HEAD:
                    self.transport.close()
                return
            lines = bytes(self.buf[:end]).split(b"\r\n")
            try:
                method, path, _ = lines[0].split(b" ", 2)
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get(b"content-length", b"0"))
                assert 0 <= length <= _MAX_BODY
            except (ValueError, AssertionError):
                self.transport.write(_response(400, b"bad request", b"text/plain",
                                               b"connection: close\r\n"))
                self.transport.close()
                return
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4 : end + 4 + length])
            del self.buf[: end + 4 + length]
            self.server.handle(self.transport, method, path.split(b"?")[0], headers, body,
                               self.received_ns)
            if self.buf:
                self.received_ns = time.perf_counter_ns()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def _freeze_young(loop: asyncio.AbstractEventLoop) -> None:
    """Every 10 ms, ``gc.freeze()`` what exists: the collector then scans only objects
    younger than that. Unfrozen, this process's young generations held the truth
    records (256 stamps each) and collections took up to 37 ms, measured: a pause
    that stamps requests "received" late. Records and streams form no cycles, so
    reference counting still frees them once they are dropped."""
    gc.freeze()
    loop.call_later(0.010, _freeze_young, loop)


async def serve(host: str, port: int, ttft_ms: float, itl_ms: float, truth_records: int) -> None:
    loop = asyncio.get_running_loop()
    _freeze_young(loop)
    server = Server(ttft_ms, itl_ms, truth_records)
    listener = await loop.create_server(lambda: Connection(server), host, port, backlog=4096)
    bound = listener.sockets[0].getsockname()
    print(f"{LISTENING_PREFIX}http://{bound[0]}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    listener.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ttft-ms", type=float, default=50.0)
    ap.add_argument("--itl-ms", type=float, default=5.0)
    ap.add_argument("--truth-records", type=int, default=200_000)
    args = ap.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("fast_server: loopback only")
    uvloop.run(serve(args.host, args.port, args.ttft_ms, args.itl_ms, args.truth_records))


if __name__ == "__main__":
    main()
