"""The reference server as a raw ASGI application (no framework on the hot path).

Routes (one port, every dialect):

* ``POST /v1/chat/completions`` — openai (atoma when ``--api-key`` is set),
  ``GET /v1/models``;
* ``POST /_inference/chat_completion/{id}/_stream`` — elastic-chat;
* ``POST /_inference/{task_type}/{id}/_stream`` (task_type ``completion``) and
  ``POST /_inference/{id}/_stream`` — elastic-completion (``?timeout=``);
* ``POST /api/v1/chat/completions`` — adaptive;
* ``POST /v1/messages`` — anthropic-messages; ``POST /v1/responses`` —
  openai-responses (typed event streams, :mod:`chatprobe.server.typed`);
* control plane (never behind the API key: it is the harness's, not the
  dialect's): ``GET /_chatprobe/health``, ``GET`` / ``DELETE /_chatprobe/truth``;
  ``GET /metrics``: Prometheus text in vLLM's names (server/metrics.py; as
  vLLM's, not behind the API key).

With an API key every dialect route requires ``Authorization: Bearer KEY``
(Elastic routes also take ``ApiKey KEY``; anthropic-messages takes ``x-api-key: KEY``
instead, as Anthropic's API does).
A ``Content-Type`` other than JSON is answered 415; a missing one is
accepted (curl's ``-d`` sends a form type; we do not guess). Unknown paths
get 404 JSON, wrong methods 405, both in the path's dialect envelope when it
has one. Every model id is served except those containing ``no-such-model``,
which get 404 ``model_not_found`` (OpenAI's answer for an unknown model).

Safe to expose (the limits hold whatever faults are on; each refusal is in
the route's dialect envelope with a message saying which limit and how to
change it):

* a body over ``--max-body-bytes`` (default 4 MiB) is refused 413, by its
  ``Content-Length`` before it is read or as soon as it grows past the cap,
  and the bodies being read at once hold at most :data:`BODY_BYTES_IN_FLIGHT`
  (past it: 429);
* an output cap (``max_tokens``, ``max_completion_tokens``, ``min_tokens``)
  over ``--max-output-tokens`` (default 32768), more choices, logprobs, stop
  sequences or tools than :func:`validate.check_limits` allows: 400;
* more than ``--max-concurrent-streams`` requests in flight (default 1024,
  streams and non-stream answers, read, queued or generating): 429 with
  ``Retry-After: 1``;
* tokens are generated as they are written (a plan holds no token list; a
  long non-stream body is written in pieces, chunked) and every write waits
  for the client (uvicorn's flow control): memory does not grow with the
  answer;
* shutdown (SIGTERM, SIGINT): :meth:`ReferenceApp.close` ends every request at
  once — a request not yet answered gets 503, an open stream is cut — so the
  process exits well within 2 s, however many streams are open.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from chatprobe.server import chunks, faults, generate, typed, validate
from chatprobe.server.chunks import CHUNK, ERROR, HUGE, RESET, STALL, TRUNCATE, Item
from chatprobe.server.faults import FaultHooks
from chatprobe.server.generate import DEFAULT_MAX_OUTPUT_TOKENS, Plan
from chatprobe.server.latency import DEFAULT_MAX_OPEN, Capacity, Schedule, reasoning_tokens
from chatprobe.server.metrics import CONTENT_TYPE, ServerMetrics
from chatprobe.server.truth import TruthLog, TruthRecord
from chatprobe.server.validate import RequestError
from chatprobe.server.wire import Encoder

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_MODEL = "chatprobe-reference"
UNKNOWN_MODEL_MARKER = "no-such-model"  # model ids the reference server does not serve
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024  # serve --max-body-bytes
BODY_BYTES_IN_FLIGHT = 64 * 1024 * 1024  # request bodies being read at once, all requests
MAX_BATCH_EVENTS = 256  # events per send when a stream is behind; then yield to other streams
WHOLE_BODY_BYTES = 1024 * 1024  # a longer non-stream body is written in pieces (chunked)
PIECE_BYTES = 256 * 1024  # ... of about this size, yielding to other requests between them
_JSON = b"application/json"
_SSE_HEADERS = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]


@dataclass(slots=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    ttft_ms: float = 0.0
    itl_ms: float = 0.0
    jitter_ms: float = 0.0
    max_concurrency: int | None = None
    max_queue: int | None = None
    itl_per_active_ms: float = 0.0
    api_key: str | None = None
    faults: tuple[str, ...] = ()
    seed: int = 0
    truth_records: int = 10_000
    model: str = DEFAULT_MODEL
    max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_concurrent_streams: int = DEFAULT_MAX_OPEN
    # Reasoning mode (openai, atoma): each answer is preceded by reasoning_ms of reasoning deltas
    # in this field (latency.py: the answer's first token is due reasoning_ms after token 0).
    reasoning_ms: float = 0.0
    reasoning_field: str = "reasoning_content"
    # A tokenizer.json or model directory: usage counted with it (server/tokens.py); None: words.
    tokenizer: str | None = None
    # The process is the server's own (chatprobe serve): keep the garbage collector
    # to young objects (see ReferenceApp._freeze_young). Never in a test's thread server.
    freeze_gc: bool = False


class _Disconnect:
    """Watches the request's receive channel for the client leaving."""

    __slots__ = ("event", "task")

    def __init__(self, receive: Receive) -> None:
        self.event = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
            self.event.set()
        except asyncio.CancelledError:
            # close(): end normally. A task that ends cancelled keeps its CancelledError,
            # whose traceback holds this frame, which holds the task: a reference cycle
            # per request, garbage only the (pausing) cyclic collector could free.
            return

    def close(self) -> None:
        self.task.cancel()


class _Tracked:
    """The ASGI send of one request, noting whether its response has started."""

    __slots__ = ("send", "started")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self.send(message)


class _ResetConnection(Exception):
    """Raised to drop the connection mid-response (the reset-mid-stream fault)."""


_SHUTTING_DOWN = RequestError(503, "the server is shutting down; retry later", None, "overload", "shutting_down")


class ReferenceApp:
    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        names = faults.validate_names(options.faults)
        self.hooks = {d: FaultHooks(names, d) for d in faults.DIALECTS}
        self.capacity = Capacity(options.max_concurrency, options.itl_per_active_ms, options.max_queue,
                                 options.max_concurrent_streams)
        for hooks in self.hooks.values():
            hooks.active = lambda: self.capacity.active
        self.truth = TruthLog(options.truth_records)
        self.metrics = ServerMetrics(options.model, self.capacity)
        self.closing = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._body_bytes = 0  # bytes of request bodies being read, all requests
        self._freezing = False
        self._freeze_ticks = 0
        self.ttft_ns = int(options.ttft_ms * 1_000_000)
        self.itl_ns = int(options.itl_ms * 1_000_000)
        self.jitter_ns = int(options.jitter_ms * 1_000_000)
        self.reasoning_ns = int(options.reasoning_ms * 1_000_000)
        self.reasoning_tokens = reasoning_tokens(self.reasoning_ns, self.itl_ns)
        self.tokenizer = None
        if options.tokenizer:
            from chatprobe.server.tokens import ServerTokenizer

            self.tokenizer = ServerTokenizer(options.tokenizer)

    def close(self) -> None:
        """Shutdown: end every request now (the process is about to exit). A request not
        yet answered gets 503, an open stream is cut; no new request is served."""
        self.closing = True
        for task in list(self._tasks):
            task.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if self.closing:
            await self._shutting_down(scope, send)
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        tracked = _Tracked(send)
        try:
            await self._http(scope, receive, tracked)
        except asyncio.CancelledError:
            if not self.closing:
                raise
            task.uncancel()  # ours (close()): answer if nothing was sent yet, and end normally
            if not tracked.started:
                await self._shutting_down(scope, send)
        finally:
            self._tasks.discard(task)

    async def _shutting_down(self, scope: Scope, send: Send) -> None:
        """503: the server is going away (at most 200 ms spent on it: a client that reads
        nothing gets its connection closed instead)."""
        route = _route(scope["path"])
        dialect = route[0] if route is not None else "openai"
        body = validate.error_body(dialect, _SHUTTING_DOWN)
        status = validate.status_for(dialect, 503)
        with contextlib.suppress(RuntimeError, OSError, TimeoutError):
            async with asyncio.timeout(0.2):
                await _json(send, status, body, [(b"retry-after", b"1"), (b"connection", b"close")])

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.options.freeze_gc and not self._freezing:
            self._freezing = True
            self._freeze_young()
        # When its first bytes came off the socket (runner.StampingProtocol), else now.
        received_ns = scope.get("chatprobe.received_ns") or time.perf_counter_ns()
        path: str = scope["path"]
        method: str = scope["method"]
        headers = dict(scope["headers"])
        if path.startswith("/_chatprobe/"):
            await self._control(path, method, receive, send)
            return
        if path == "/metrics" and method == "GET":
            await _send_whole(send, 200, CONTENT_TYPE, self.metrics.exposition())
            return
        route = _route(path)
        if route is None and "unknown-path-200" in self.options.faults:
            route = _route_prefix(path)
        if route is None:
            await _json(send, 404, {"error": {"message": f"no route for {method} {path}",
                                              "type": "not_found_error", "param": None,
                                              "code": "not_found"}})
            return
        dialect, params = route
        if dialect == "openai" and self.options.api_key is not None:
            dialect = "atoma"
        hooks = self.hooks[dialect]
        try:
            if self.options.api_key is not None and hooks.enforce_auth and (
                headers.get(_AUTH_HEADER.get(dialect, b"authorization"))
                not in _credentials(dialect, self.options.api_key)
            ):
                how = "x-api-key: KEY" if dialect == typed.MESSAGES else "Authorization: Bearer KEY"
                raise RequestError(401, f"missing or invalid API key ({how})", None, "auth", "invalid_api_key")
            if params.get("models"):
                if method != "GET":
                    raise RequestError(405, f"method {method} not allowed", None, "path")
                listed = ("chatprobe-listed-other" if "model-not-listed" in hooks.names
                          else self.options.model)
                await _json(send, 200, {"object": "list", "data": [
                    {"id": listed, "object": "model", "created": 0, "owned_by": "chatprobe"}]})
                return
            if method != "POST":
                raise RequestError(405, f"method {method} not allowed", None, "path")
            if not self.capacity.enter():
                streams = self.options.max_concurrent_streams
                await self._reject(send, hooks, RequestError(
                    429, f"too many requests in flight: this server serves at most {streams} at once "
                    "(chatprobe serve --max-concurrent-streams); retry later", None, "admission",
                    "too_many_requests"), headers, [(b"retry-after", b"1")])
                return
        except RequestError as error:
            await self._reject(send, hooks, error, headers)
            return
        try:
            await self._admitted(scope, receive, send, dialect, params, hooks, headers, received_ns)
        finally:
            self.capacity.leave()

    async def _admitted(self, scope: Scope, receive: Receive, send: Send, dialect: str,
                        params: dict[str, str], hooks: FaultHooks, headers: dict[bytes, bytes],
                        received_ns: int) -> None:
        """A dialect request counted in flight: read, validate, plan, serve."""
        try:
            if "task_type" in params and params["task_type"] not in ("completion",
                                                                      "chat_completion"):
                raise RequestError(400, f"task type [{params['task_type']}] does not support "
                                   "streaming", "task_type", "type")
            if dialect.startswith("elastic"):
                try:
                    validate.validate_timeout(_query(scope).get("timeout"),
                                              durations_only="timeout-minus-one-rejected" in hooks.names)
                except RequestError as error:
                    if await self._reject(send, hooks, error, headers):
                        return
            body = await self._read_json(receive, headers)
        except RequestError as error:
            await self._reject(send, hooks, error, headers)
            return
        try:
            if dialect == "elastic-completion":
                validate.validate_completion(body)
            elif dialect == typed.MESSAGES:
                validate.validate_messages(body)
            elif dialect == typed.RESPONSES:
                validate.validate_responses(body)
            else:
                validate.validate_chat(body, dialect)
        except RequestError as error:
            if await self._reject(send, hooks, error, headers):
                return
        try:
            _check_model(body, params)
        except RequestError as error:
            if await self._reject(send, hooks, error, headers):
                return
        try:  # never bypassed by a fault: what this server does for anyone
            validate.check_limits(body, self.options.max_output_tokens)
        except RequestError as error:
            await self._reject(send, hooks, error, headers)
            return
        # Planned at once, and the body dropped: an open request holds its plan, not its body.
        model = body.get("model") if isinstance(body.get("model"), str) else None
        reasoning, reasoning_field, source = self.reasoning_tokens, self.options.reasoning_field, body
        if dialect in typed.TYPED and isinstance(body, dict):  # read as a chat body (server/typed.py)
            source, asked = typed.chat_body(body, dialect)
            reasoning, reasoning_field = typed.reasoning_for(asked, self.reasoning_tokens), "reasoning"
        plan = generate.make_plan(
            source, dialect=dialect, model=model or params.get("inference_id") or self.options.model,
            server_seed=self.options.seed, created=int(time.time()), quirks=hooks.quirks,
            max_output_tokens=self.options.max_output_tokens,
            reasoning_tokens=reasoning, reasoning_field=reasoning_field,
            tokenizer=self.tokenizer)
        del source
        if dialect in typed.TYPED and isinstance(body, dict):
            plan.extra = typed.echo_fields(body, dialect)
        stream = dialect.startswith("elastic") or body.get("stream") is True
        request = {"tool_choice": body.get("tool_choice")}  # all the fault hooks read of it
        del body
        await self._serve(scope, receive, send, dialect, hooks, plan, stream, request, headers,
                          received_ns)

    async def _read_json(self, receive: Receive, headers: dict[bytes, bytes]) -> Any:
        content_type = headers.get(b"content-type")
        if content_type is not None:
            media = content_type.split(b";")[0].strip().lower()
            if media != _JSON and not media.endswith(b"+json"):
                raise RequestError(415, f"unsupported Content-Type {content_type.decode(errors='replace')!r}; "
                                   "use application/json", None, "media", "unsupported_media_type")
        cap = self.options.max_body_bytes
        too_large = RequestError(413, f"request body too large: this server reads at most {cap} bytes "
                                 "(chatprobe serve --max-body-bytes)", None, "admission", "request_too_large")
        declared = headers.get(b"content-length", b"").strip()
        if declared.isdigit() and (len(declared) > 18 or int(declared) > cap):
            raise too_large  # before reading a byte of it
        chunks_: list[bytes] = []
        size = 0
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise RequestError(400, "client disconnected", None, "syntax")
                piece = message.get("body", b"")
                size += len(piece)
                self._body_bytes += len(piece)
                if size > cap:
                    raise too_large
                if self._body_bytes > max(BODY_BYTES_IN_FLIGHT, cap):
                    raise RequestError(429, "too many request bodies being read at once; retry later",
                                       None, "admission", "too_many_requests")
                chunks_.append(piece)
                if not message.get("more_body"):
                    break
            data = b"".join(chunks_)
        finally:
            self._body_bytes -= size
        del chunks_
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise RequestError(400, f"malformed JSON body: {exc}", None, "syntax",
                               "invalid_json") from None

    async def _reject(self, send: Send, hooks: FaultHooks, error: RequestError,
                      headers: dict[bytes, bytes],
                      more_headers: list[tuple[bytes, bytes]] | None = None) -> bool:
        """Send the error response; False if a fault says to serve the request anyway."""
        decided = hooks.on_error(error)
        if decided is None:
            return False
        status, body = decided
        extra = _request_id_header(headers) + (more_headers or [])
        if error.status == 413:  # the rest of the body is not read: do not keep the connection
            extra.append((b"connection", b"close"))
        if hooks.dialect.startswith("elastic") and error.kind not in ("auth", "path", "model", "admission"):
            # as Elasticsearch does before a stream opens: an SSE error event with a 4xx status
            data = b"event: error\ndata: " + orjson.dumps(body) + b"\n\n"
            await _send_whole(send, status, b"text/event-stream", data, extra)
        else:
            await _json(send, status, body, extra)
        return True

    async def _serve(self, scope: Scope, receive: Receive, send: Send, dialect: str,
                     hooks: FaultHooks, plan: Plan, stream: bool, request: dict[str, Any],
                     headers: dict[bytes, bytes], received_ns: int) -> None:
        request_id = headers.get(b"x-request-id")
        record = TruthRecord(request_id.decode(errors="replace") if request_id else plan.id,
                             scope["path"], dialect, received_ns, stream=stream)
        self.truth.add(record)
        response_headers = [(b"x-request-id", record.key.encode())]
        if self.capacity.full():
            record.status = 503
            record.finished_ns = time.perf_counter_ns()
            overloaded = RequestError(503, f"server overloaded: {self.capacity.max_queue} requests already "
                                      "queued; retry later", None, "overload", "overloaded")
            if await self._reject(send, hooks, overloaded, headers, [(b"retry-after", b"1")]):
                return
        await self.capacity.acquire()
        try:
            record.started_ns = time.perf_counter_ns()
            answer_step = plan.choices[0].reasoning if plan.reasoning_field is not None and plan.choices else 0
            record.reasoning_tokens = sum(c.reasoning for c in plan.choices)
            # A typed request that asked for reasoning without serve --reasoning-ms: its answer
            # follows its reasoning at the ITL (no reasoning time to wait for).
            schedule = Schedule(record.started_ns, self.ttft_ns, self.itl_ns, self.jitter_ns,
                                self.capacity, plan.choices[0].token_count if plan.choices else 0,
                                answer_step if self.reasoning_ns else 0, self.reasoning_ns)
            if stream:
                source = (typed.stream_items(plan, dialect) if dialect in typed.TYPED
                          else chunks.stream_items(plan, dialect, hooks.sequential))
                items = hooks.items(source, plan, request)
                answered = await self._stream(receive, send, hooks, items, record, schedule,
                                              response_headers, answer_step)
            else:
                last = max((c.token_count for c in plan.choices), default=1)
                due = schedule.due(max(last - 1, 0))
                delay = due - time.perf_counter_ns()
                if delay > 0:
                    await asyncio.sleep(delay / 1e9)
                skeleton = (typed.response_body(plan, dialect) if dialect in typed.TYPED
                            else chunks.response_body(plan, dialect))
                skeleton = skeleton._replace(body=hooks.response(skeleton.body, request))
                record.status = 200
                await _send_parts(send, receive, chunks.body_parts(skeleton), response_headers)
                answered = True
            record.finished_ns = time.perf_counter_ns()
            if answered:
                self.metrics.finished(record, plan.prompt_tokens, record.tokens if stream else plan.completion_tokens,
                                      plan.choices[0].finish_reason if plan.choices else "stop")
        except _ResetConnection:
            record.finished_ns = time.perf_counter_ns()
        finally:
            self.capacity.release()

    async def _stream(self, receive: Receive, send: Send, hooks: FaultHooks,
                      items: Iterator[Item], record: TruthRecord, schedule: Schedule,
                      headers: list[tuple[bytes, bytes]], answer_step: int = 0) -> bool:
        """Write the stream's items at their due times; True when written to its end (not cut
        by a fault, not left by the client). ``answer_step`` > 0 (reasoning): the
        step of the answer's first token, whose write time the truth keeps (first_output_ns)."""
        record.status = 200
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", hooks.stream_content_type), *_SSE_HEADERS,
                                *headers]})
        disconnect = _Disconnect(receive)
        encoder = Encoder(hooks.dialect, hooks.framing)
        split = hooks.split
        out: list[bytes] = []
        start = encoder.start()
        if start:
            out.append(start)
        pending_tokens = 0
        answer_pending = False

        truth = self.truth

        async def flush() -> None:
            nonlocal pending_tokens, answer_pending
            if not out:
                return
            written = time.perf_counter_ns()
            if pending_tokens:
                truth.stamp(record, written, pending_tokens)
                pending_tokens = 0
            if answer_pending:
                record.first_output_ns = written
                answer_pending = False
            data = b"".join(out)
            out.clear()
            for piece in split(data):
                await send({"type": "http.response.body", "body": piece, "more_body": True})

        whole = True
        try:
            step = -1
            for item in items:
                if item.step != step:
                    step = item.step
                    # step -1: a typed stream's opening events, written at once (before token 0)
                    delay = schedule.due(step) - time.perf_counter_ns() if step >= 0 else 0
                    if delay > 0:
                        await flush()
                        await asyncio.sleep(delay / 1e9)
                        if disconnect.event.is_set():
                            return False
                    elif len(out) >= MAX_BATCH_EVENTS:
                        await flush()
                        await asyncio.sleep(0)
                        if disconnect.event.is_set():
                            return False
                kind = item.kind
                if kind <= ERROR:
                    out.append(encoder.encode(item))
                    pending_tokens += item.token
                    if answer_step and item.token and item.step >= answer_step and record.first_output_ns is None:
                        answer_pending = True
                elif kind == TRUNCATE:
                    event = encoder.encode(item._replace(kind=CHUNK))
                    out.append(event[: len(event) // 2])
                    whole = False
                    break
                elif kind == RESET:
                    await flush()
                    raise _ResetConnection
                elif kind == STALL:
                    await flush()
                    await disconnect.event.wait()
                    return False
                elif kind == HUGE:
                    await flush()
                    self.truth.stamp(record, time.perf_counter_ns())
                    await _huge_event(send, encoder.encode(item._replace(kind=CHUNK)))
            await flush()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return whole
        finally:
            disconnect.close()

    def _freeze_young(self) -> None:
        """Every 10 ms, ``gc.freeze()`` what exists, so the cyclic collector only scans
        objects younger than that. Unfrozen, its young generations held every open
        stream's state and the truth records: pauses of 4-6 ms (gen 1) and 15-43 ms
        (gen 2) at 128 streams, measured, each one stalling every stream and the
        "received" stamps. Per-request objects form no cycles (tests/server/
        test_server_cycles.py), so reference counting frees them frozen or not;
        every 60 s everything is unfrozen, leaving any cycle to the collector's
        ordinary full collections."""
        self._freeze_ticks += 1
        if self._freeze_ticks % 6000 == 0:
            gc.unfreeze()
        else:
            gc.freeze()
        asyncio.get_running_loop().call_later(0.010, self._freeze_young)

    async def _control(self, path: str, method: str, receive: Receive, send: Send) -> None:
        if path == "/_chatprobe/health" and method == "GET":
            await _json(send, 200, {"status": "ok"})
        elif path == "/_chatprobe/truth" and method == "GET":
            await _send_parts(send, receive, self.truth.json_parts())
        elif path == "/_chatprobe/truth" and method == "DELETE":
            cleared = len(self.truth.records)
            self.truth.clear()
            await _json(send, 200, {"cleared": cleared})
        else:
            await _json(send, 404, {"error": {"message": f"no route for {method} {path}",
                                              "type": "not_found_error", "param": None,
                                              "code": "not_found"}})


async def _huge_event(send: Send, event: bytes) -> None:
    """The event with 50 MB of text spliced into its first string value, sent in 1 MB pieces."""
    for marker in (b'"content":"', b'"delta":"', b'"arguments":"'):
        cut = event.find(marker)
        if cut >= 0:
            cut += len(marker)
            break
    else:
        cut = len(event) // 2
    await send({"type": "http.response.body", "body": event[:cut], "more_body": True})
    piece = b"x" * (1024 * 1024)
    for _ in range(faults.HUGE_FRAME_BYTES // len(piece)):
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": event[cut:], "more_body": True})


def _route(path: str) -> tuple[str, dict[str, str]] | None:
    if path == "/v1/chat/completions":
        return "openai", {}
    if path == "/v1/models":
        return "openai", {"models": "1"}
    if path == "/api/v1/chat/completions":
        return "adaptive", {}
    if path == "/v1/messages":
        return typed.MESSAGES, {}
    if path == "/v1/responses":
        return typed.RESPONSES, {}
    parts = path.split("/")
    if len(parts) in (4, 5) and parts[1] == "_inference" and parts[-1] == "_stream" and all(parts[2:-1]):
        if len(parts) == 4:
            return "elastic-completion", {"inference_id": parts[2]}
        task_type, inference_id = parts[2], parts[3]
        dialect = "elastic-chat" if task_type == "chat_completion" else "elastic-completion"
        return dialect, {"task_type": task_type, "inference_id": inference_id}
    return None


# The header a dialect's key travels in (others: Authorization).
_AUTH_HEADER = {typed.MESSAGES: b"x-api-key"}


def _credentials(dialect: str, key: str) -> tuple[bytes, ...]:
    """The values of the dialect's auth header that carry ``key``: Bearer, and for Elastic
    also ApiKey (Elasticsearch's scheme for API keys, the profiles' elastic auth scheme);
    anthropic-messages: the key itself (x-api-key, Anthropic API reference: Authentication)."""
    raw = key.encode()
    if dialect == typed.MESSAGES:
        return (raw,)
    if dialect.startswith("elastic"):
        return (b"Bearer " + raw, b"ApiKey " + raw)
    return (b"Bearer " + raw,)


def _route_prefix(path: str) -> tuple[str, dict[str, str]] | None:
    """The unknown-path-200 fault: the route of the longest leading part of ``path`` that is one."""
    parts = path.rstrip("/").split("/")
    while len(parts) > 2:
        parts.pop()
        found = _route("/".join(parts))
        if found is not None:
            return found
    return None


def _check_model(body: Any, params: dict[str, str]) -> None:
    """The reference server serves every model id (as many servers do) except those containing
    ``no-such-model``: those it does not have, and refuses with 404 (OpenAI's status)."""
    model = body.get("model") if isinstance(body, dict) else None
    for name in (model, params.get("inference_id")):
        if isinstance(name, str) and UNKNOWN_MODEL_MARKER in name:
            raise RequestError(404, f"The model '{name}' does not exist or you do not have access to it.",
                               "model", "model", "model_not_found")


def _query(scope: Scope) -> dict[str, str]:
    from urllib.parse import parse_qsl

    raw: bytes = scope.get("query_string", b"")
    return dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True))


def _request_id_header(headers: dict[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    request_id = headers.get(b"x-request-id")
    return [(b"x-request-id", request_id)] if request_id else []


async def _send_whole(send: Send, status: int, content_type: bytes, body: bytes,
                      headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_parts(send: Send, receive: Receive, parts: Iterable[bytes],
                      headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """A 200 JSON body made of ``parts``: whole (with Content-Length) when short; else
    chunked, written in pieces as they are made, other requests served between pieces,
    each write waiting for the client (flow control) — never the whole body in memory."""
    parts = iter(parts)
    head: list[bytes] = []
    size = 0
    for part in parts:
        head.append(part)
        size += len(part)
        if size >= WHOLE_BODY_BYTES:
            break
    else:
        await _send_whole(send, 200, _JSON, b"".join(head), headers)
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", _JSON), *(headers or [])]})
    disconnect = _Disconnect(receive)
    try:
        for part in parts:
            head.append(part)
            size += len(part)
            if size >= PIECE_BYTES:
                await send({"type": "http.response.body", "body": b"".join(head), "more_body": True})
                head.clear()
                size = 0
                await asyncio.sleep(0)
                if disconnect.event.is_set():
                    return
        await send({"type": "http.response.body", "body": b"".join(head), "more_body": False})
    finally:
        disconnect.close()


async def _json(send: Send, status: int, body: Any,
                headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await _send_whole(send, status, _JSON, orjson.dumps(body), headers)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class _DropResetNoise(logging.Filter):
    """uvicorn logs an error when an app ends a response early; reset-mid-stream does it on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing response" not in record.getMessage()


def install_log_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DropResetNoise) for f in logger.filters):
        logger.addFilter(_DropResetNoise())
