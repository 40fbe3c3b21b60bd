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
* ``POST /v1/messages`` and ``POST /v1/responses`` with ``"stream": true``: the
  reference server's typed events (chatprobe.server.typed) for a text answer
  cut at its cap (``max_tokens`` / ``max_output_tokens``): the opening events
  (``message_start``; ``response.created``, ``response.in_progress``) with the
  headers, the first token with its block's / item's opening events, one delta
  event every ITL, the closing events with the last (Messages: ``message_delta``
  ``max_tokens`` and ``message_stop``; Responses: the ``.done`` events and
  ``response.incomplete``, every event numbered by ``sequence_number``);
* the garbage collector kept to young objects (see ``_freeze_young``);
* ``GET`` / ``DELETE /_chatprobe/truth`` and ``GET /_chatprobe/health`` with
  the reference server's truth-record format (keyed by ``X-Request-Id``):
  ``received_ns`` is stamped as the request's first bytes come off the socket,
  ``token_ns`` just before each token's ``write``.

Schedules (``--schedule``): ``free`` (the default) writes each stream's tokens on its own
clock: first token at received + TTFT, then one every ITL. ``step`` writes them the way a
batching engine (vLLM, TGI, llama.cpp's server) does: one decode step every ITL on a global
grid, each running stream's token written in the step; a request's first token comes with the
first step at or after received + TTFT. ``random``: as ``free``, each stream's first token
later by a random fraction of ITL (uniform), so that the streams' phases are spread evenly
whatever the client does. Under ``free`` the phases come from when each request arrived, i.e.
from the generator: Locust's spawner starts users at regular intervals (1/rate s: at 32/s,
31.25 ms, four phases 1.25 ms apart in a 5 ms cycle), and a client that answers a finished
stream quickly and alike keeps those clusters, its tokens bunched in few server ticks and few
of its own wake-ups, while one whose turnaround is longer or varies more spreads them
(measured, chatprobe at 64 streams: 36 % of a core on chat, 43 % on OpenAI's Responses, whose
longer turnaround dissolves the clusters, under ``free``; 27 % and 29 % under ``step``).
Comparing two clients (or dialects) for cost is fair under ``step`` and ``random``, where the
phases are the server's; ``benchmarks/load_cost.py`` passes it through (``--schedules``).

How it is fast: an ``asyncio.Protocol`` on uvloop (no ASGI, no per-stream
coroutine), every event frame rendered once per stream, and one timer for all
streams: a heap of due times drained by a single callback that writes each
due stream's next event straight to its transport. Times are
``perf_counter_ns`` (CLOCK_MONOTONIC), as the reference server's.

    python benchmarks/fast_server.py [--port 0] [--ttft-ms 50] [--itl-ms 5] [--schedule free|step|random]

prints ``fast server listening on http://127.0.0.1:PORT`` and serves until
SIGINT / SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import heapq
import random
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
    __slots__ = ("frames", "record", "remaining", "seq", "tail", "transport", "word")

    def __init__(self, transport: asyncio.Transport, frames: list[bytes], tail: bytes,
                 tokens: int, record: dict[str, Any], seq: int = -1) -> None:
        self.transport = transport
        self.frames = frames  # frames[0]: role + first token; then one per word
        self.tail = tail  # finish chunk, usage, [DONE], end of chunked body
        self.remaining = tokens
        self.word = 0
        self.record = record
        # openai-responses: the next delta's sequence_number (frames[1:] are then event data
        # with one %d for it, chunked as they are written); -1: frames are ready to write
        self.seq = seq


class Server:
    def __init__(self, ttft_ms: float, itl_ms: float, truth_records: int, schedule: str = "free") -> None:
        self.ttft_ns = int(ttft_ms * 1e6)
        self.itl_ns = int(itl_ms * 1e6)
        self.step = schedule == "step"  # tokens on a global ITL grid (see the module's docstring)
        self.jitter = schedule == "random"  # first token later by U(0, ITL)
        self.rng = random.Random(0)
        self.truth: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self.truth_max = truth_records
        self.heap: list[tuple[int, int, Stream]] = []
        self.seq = 0
        self.timer: asyncio.TimerHandle | None = None
        self.timer_due = 0
        self.loop = asyncio.get_event_loop()
        self.created = int(time.time())

    # -- the one timer -------------------------------------------------------------

    def first_due(self, started: int) -> int:
        """When a stream started at ``started`` writes its first token: after TTFT, and under
        the ``step`` schedule at the next step (later tokens follow every ITL: on the grid)."""
        due = started + self.ttft_ns
        if self.jitter:
            return due + self.rng.randrange(max(self.itl_ns, 1))
        return -(-due // self.itl_ns) * self.itl_ns if self.step and self.itl_ns > 0 else due

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
                if stream.seq >= 0:
                    frame = _chunked(frame % stream.seq)
                    stream.seq += 1
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
        elif path in TYPED_PATHS and method == b"POST":
            self.typed(transport, headers, body, received_ns, TYPED_PATHS[path])
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
        self.schedule(self.first_due(started), Stream(transport, frames, tail, tokens, record))

    def typed(self, transport: asyncio.Transport, headers: dict[bytes, bytes], body: bytes,
              received_ns: int, dialect: str) -> None:
        """anthropic-messages / openai-responses: the reference server's event sequence
        (chatprobe.server.typed) for a text answer cut at the cap (ignore_eos), without
        faults or options. The opening events (message_start; response.created and
        response.in_progress) go out with the headers, as the reference server sends them;
        the first token comes with its block's / item's opening events, the last with the
        closing ones."""
        cap_field = "max_tokens" if dialect == MESSAGES else "max_output_tokens"
        try:
            req = orjson.loads(body)
            tokens = int(req.get(cap_field) or 16)
            assert req.get("stream") is True and tokens >= 1
        except Exception:
            transport.write(_response(400, b'{"error":{"message":"fast_server: streaming requests with '
                                      b'a cap >= 1 only"}}', b"application/json"))
            return
        self.seq += 1
        model = str(req.get("model") or "fast")
        words = [_WORDS[0]] + [_WORDS[(k - 1) % len(_WORDS)] for k in range(1, tokens)]
        text = b"".join(words).decode()
        turns = req.get("messages") if dialect == MESSAGES else req.get("input")
        prompt = sum(len(str(m.get("content", "")).split()) for m in turns or [] if isinstance(m, dict))
        if dialect == MESSAGES:
            ident = f"msg_fast{self.seq}"
            opening, frames, tail, seq = _messages_frames(ident, model, prompt, tokens)
        else:
            ident = f"resp_fast{self.seq}"
            opening, frames, tail, seq = _responses_frames(ident, model, prompt, tokens, text,
                                                           self.created, req.get(cap_field))
        key = (headers.get(b"x-request-id") or ident.encode()).decode(errors="replace")
        started = time.perf_counter_ns()
        record: dict[str, Any] = {
            "request_id": key, "path": "/v1/messages" if dialect == MESSAGES else "/v1/responses",
            "dialect": dialect, "status": 200, "stream": True, "received_ns": received_ns,
            "started_ns": started, "token_ns": [], "finished_ns": None, "tokens": tokens}
        self.truth[key] = record
        if len(self.truth) > self.truth_max:
            self.truth.popitem(last=False)
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
                        b"transfer-encoding: chunked\r\nx-request-id: " + key.encode() + b"\r\n\r\n"
                        + opening)
        self.schedule(self.first_due(started), Stream(transport, frames, tail, tokens, record, seq))


MESSAGES, RESPONSES = "anthropic-messages", "openai-responses"
TYPED_PATHS = {b"/v1/messages": MESSAGES, b"/v1/responses": RESPONSES}


def _typed_event(obj: dict[str, Any]) -> bytes:
    """One typed event (``event: <type>`` + its JSON), not yet chunked."""
    return b"event: %s\ndata: %s\n\n" % (obj["type"].encode(), orjson.dumps(obj))


def _messages_frames(ident: str, model: str, prompt: int,
                     tokens: int) -> tuple[bytes, list[bytes], bytes, int]:
    """Messages: the opening bytes, the token frames (chunked) and the tail."""
    start = {"type": "message_start", "message": {
        "id": ident, "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": prompt, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                  "output_tokens": 0}}}

    def delta(word: bytes) -> bytes:
        return _typed_event({"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": word.decode()}})

    first = (_typed_event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
             + _typed_event({"type": "ping"}) + delta(_WORDS[0]))
    frames = [_chunked(first)] + [_chunked(delta(w)) for w in _WORDS]
    tail = (_typed_event({"type": "content_block_stop", "index": 0})
            + _typed_event({"type": "message_delta", "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
                            "usage": {"output_tokens": tokens}})
            + _typed_event({"type": "message_stop"}))
    return _chunked(_typed_event(start)), frames, _chunked(tail) + b"0\r\n\r\n", -1


def _responses_frames(ident: str, model: str, prompt: int, tokens: int, text: str, created: int,
                      cap: Any) -> tuple[bytes, list[bytes], bytes, int]:
    """Responses: as _messages_frames; frames[1:] take their sequence_number (%d) when written.
    Every event's number is known ahead: 0, 1 opening; 2, 3 the item and part; token k at 4 + k."""
    msg_id = "msg_" + ident.removeprefix("resp_")
    seq = iter(range(1 << 30))

    def numbered(obj: dict[str, Any]) -> bytes:
        return _typed_event({**obj, "sequence_number": next(seq)})

    def response(status: str, output: list[Any], usage: Any) -> dict[str, Any]:
        return {"id": ident, "object": "response", "created_at": created, "status": status, "background": False,
                "error": None, "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
                "model": model, "output": output, "instructions": None, "max_output_tokens": cap, "metadata": {},
                "parallel_tool_calls": True, "previous_response_id": None,
                "reasoning": {"effort": None, "summary": None}, "store": False, "temperature": 1.0,
                "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": 1.0,
                "truncation": "disabled", "user": None, "usage": usage}

    at = {"item_id": msg_id, "output_index": 0, "content_index": 0}
    opening = (numbered({"type": "response.created", "response": response("in_progress", [], None)})
               + numbered({"type": "response.in_progress", "response": response("in_progress", [], None)}))
    first = (numbered({"type": "response.output_item.added", "output_index": 0, "item": {
        "id": msg_id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}})
        + numbered({"type": "response.content_part.added", **at,
                    "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}})
        + numbered({"type": "response.output_text.delta", **at, "delta": _WORDS[0].decode(), "logprobs": []}))
    frames = [_chunked(first)] + [
        _typed_event({"type": "response.output_text.delta", **at, "delta": w.decode(), "logprobs": [],
                      "sequence_number": 0}).replace(b'"sequence_number":0}', b'"sequence_number":%d}')
        for w in _WORDS]
    for _ in range(tokens - 1):
        next(seq)  # the deltas' numbers
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    item = {"id": msg_id, "type": "message", "status": "incomplete", "role": "assistant", "content": [part]}
    usage = {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": tokens,
             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": prompt + tokens}
    tail = (numbered({"type": "response.output_text.done", **at, "text": text, "logprobs": []})
            + numbered({"type": "response.content_part.done", **at, "part": part})
            + numbered({"type": "response.output_item.done", "output_index": 0, "item": item})
            + numbered({"type": "response.incomplete", "response": response("incomplete", [item], usage)}))
    return _chunked(opening), frames, _chunked(tail) + b"0\r\n\r\n", 5


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


async def serve(host: str, port: int, ttft_ms: float, itl_ms: float, truth_records: int,
                schedule: str = "free") -> None:
    loop = asyncio.get_running_loop()
    _freeze_young(loop)
    server = Server(ttft_ms, itl_ms, truth_records, schedule)
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
    ap.add_argument("--schedule", choices=("free", "step", "random"), default="free",
                    help="free: each stream on its own clock; step: one decode step every ITL for all "
                         "streams; random: free, each stream's first token later by U(0, ITL)")
    args = ap.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("fast_server: loopback only")
    uvloop.run(serve(args.host, args.port, args.ttft_ms, args.itl_ms, args.truth_records, args.schedule))


if __name__ == "__main__":
    main()
