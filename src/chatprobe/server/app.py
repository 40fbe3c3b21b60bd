"""The reference server as a raw ASGI application (no framework on the hot path).

Routes (one port, every dialect):

* ``POST /v1/chat/completions`` — openai (atoma when ``--api-key`` is set),
  ``GET /v1/models``;
* ``POST /_inference/chat_completion/{id}/_stream`` — elastic-chat;
* ``POST /_inference/{task_type}/{id}/_stream`` (task_type ``completion``) and
  ``POST /_inference/{id}/_stream`` — elastic-completion (``?timeout=``);
* ``POST /api/v1/chat/completions`` — adaptive;
* control plane (never behind the API key: it is the harness's, not the
  dialect's): ``GET /_chatprobe/health``, ``GET`` / ``DELETE /_chatprobe/truth``.

With an API key every dialect route requires ``Authorization: Bearer KEY``
(Elastic routes also take ``ApiKey KEY``).
A ``Content-Type`` other than JSON is answered 415; a missing one is
accepted (curl's ``-d`` sends a form type; we do not guess). Unknown paths
get 404 JSON, wrong methods 405, both in the path's dialect envelope when it
has one. Every model id is served except those containing ``no-such-model``,
which get 404 ``model_not_found`` (OpenAI's answer for an unknown model).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from chatprobe.server import chunks, faults, generate, validate
from chatprobe.server.chunks import CHUNK, ERROR, HUGE, RESET, STALL, TRUNCATE, Item
from chatprobe.server.faults import FaultHooks
from chatprobe.server.latency import Capacity, Schedule
from chatprobe.server.truth import TruthLog, TruthRecord
from chatprobe.server.validate import RequestError
from chatprobe.server.wire import Encoder

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_MODEL = "chatprobe-reference"
UNKNOWN_MODEL_MARKER = "no-such-model"  # model ids the reference server does not serve
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_BATCH_EVENTS = 256  # events per send when a stream is behind; then yield to other streams
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


class _ResetConnection(Exception):
    """Raised to drop the connection mid-response (the reset-mid-stream fault)."""


class ReferenceApp:
    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        names = faults.validate_names(options.faults)
        self.hooks = {d: FaultHooks(names, d) for d in faults.ALL}
        self.capacity = Capacity(options.max_concurrency, options.itl_per_active_ms, options.max_queue)
        self.truth = TruthLog(options.truth_records)
        self._freezing = False
        self._freeze_ticks = 0
        self.ttft_ns = int(options.ttft_ms * 1_000_000)
        self.itl_ns = int(options.itl_ms * 1_000_000)
        self.jitter_ns = int(options.jitter_ms * 1_000_000)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if self.options.freeze_gc and not self._freezing:
            self._freezing = True
            self._freeze_young()
        # When its first bytes came off the socket (runner.StampingProtocol), else now.
        received_ns = scope.get("chatprobe.received_ns") or time.perf_counter_ns()
        path: str = scope["path"]
        method: str = scope["method"]
        headers = dict(scope["headers"])
        if path.startswith("/_chatprobe/"):
            await self._control(path, method, send)
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
                headers.get(b"authorization") not in _credentials(dialect, self.options.api_key)
            ):
                raise RequestError(401, "missing or invalid API key (Authorization: Bearer KEY)",
                                   None, "auth", "invalid_api_key")
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
        await self._serve(scope, receive, send, dialect, params, hooks, body, headers, received_ns)

    async def _read_json(self, receive: Receive, headers: dict[bytes, bytes]) -> Any:
        content_type = headers.get(b"content-type")
        if content_type is not None:
            media = content_type.split(b";")[0].strip().lower()
            if media != _JSON and not media.endswith(b"+json"):
                raise RequestError(415, f"unsupported Content-Type {content_type.decode(errors='replace')!r}; "
                                   "use application/json", None, "media", "unsupported_media_type")
        chunks_: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestError(400, "client disconnected", None, "syntax")
            chunks_.append(message.get("body", b""))
            size += len(chunks_[-1])
            if size > MAX_BODY_BYTES:
                raise RequestError(413, "request body too large", None, "syntax")
            if not message.get("more_body"):
                break
        try:
            return orjson.loads(b"".join(chunks_))
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
        if hooks.dialect.startswith("elastic") and error.kind not in ("auth", "path", "model"):
            # as Elasticsearch does before a stream opens: an SSE error event with a 4xx status
            data = b"event: error\ndata: " + orjson.dumps(body) + b"\n\n"
            await _send_whole(send, status, b"text/event-stream", data, extra)
        else:
            await _json(send, status, body, extra)
        return True

    async def _serve(self, scope: Scope, receive: Receive, send: Send, dialect: str,
                     params: dict[str, str], hooks: FaultHooks, body: dict[str, Any],
                     headers: dict[bytes, bytes], received_ns: int) -> None:
        model = body.get("model") if isinstance(body.get("model"), str) else None
        plan = generate.make_plan(
            body, dialect=dialect, model=model or params.get("inference_id") or self.options.model,
            server_seed=self.options.seed, created=int(time.time()), quirks=hooks.quirks)
        stream = dialect.startswith("elastic") or body.get("stream") is True
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
            schedule = Schedule(record.started_ns, self.ttft_ns, self.itl_ns, self.jitter_ns,
                                self.capacity, plan.choices[0].token_count if plan.choices else 0)
            if stream:
                items = hooks.items(chunks.stream_items(plan, dialect), plan, body)
                await self._stream(receive, send, hooks, items, record, schedule,
                                   response_headers)
            else:
                last = max((c.token_count for c in plan.choices), default=1)
                due = schedule.due(max(last - 1, 0))
                delay = due - time.perf_counter_ns()
                if delay > 0:
                    await asyncio.sleep(delay / 1e9)
                response = hooks.response(chunks.response_body(plan, dialect), body)
                record.status = 200
                await _json(send, 200, response, response_headers)
            record.finished_ns = time.perf_counter_ns()
        except _ResetConnection:
            record.finished_ns = time.perf_counter_ns()
        finally:
            self.capacity.release()

    async def _stream(self, receive: Receive, send: Send, hooks: FaultHooks,
                      items: Iterator[Item], record: TruthRecord, schedule: Schedule,
                      headers: list[tuple[bytes, bytes]]) -> None:
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

        async def flush() -> None:
            nonlocal pending_tokens
            if not out:
                return
            written = time.perf_counter_ns()
            if pending_tokens:
                record.token_ns.extend([written] * pending_tokens)
                pending_tokens = 0
            data = b"".join(out)
            out.clear()
            for piece in split(data):
                await send({"type": "http.response.body", "body": piece, "more_body": True})

        try:
            step = -1
            for item in items:
                if item.step != step:
                    step = item.step
                    delay = schedule.due(step) - time.perf_counter_ns()
                    if delay > 0:
                        await flush()
                        await asyncio.sleep(delay / 1e9)
                        if disconnect.event.is_set():
                            return
                    elif len(out) >= MAX_BATCH_EVENTS:
                        await flush()
                        await asyncio.sleep(0)
                        if disconnect.event.is_set():
                            return
                kind = item.kind
                if kind <= ERROR:
                    out.append(encoder.encode(item))
                    pending_tokens += item.token
                elif kind == TRUNCATE:
                    event = encoder.encode(item._replace(kind=CHUNK))
                    out.append(event[: len(event) // 2])
                    break
                elif kind == RESET:
                    await flush()
                    raise _ResetConnection
                elif kind == STALL:
                    await flush()
                    await disconnect.event.wait()
                    return
                elif kind == HUGE:
                    await flush()
                    await _huge_event(send, encoder.encode(item._replace(kind=CHUNK)), record)
            await flush()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
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

    async def _control(self, path: str, method: str, send: Send) -> None:
        if path == "/_chatprobe/health" and method == "GET":
            await _json(send, 200, {"status": "ok"})
        elif path == "/_chatprobe/truth" and method == "GET":
            await _json(send, 200, self.truth.to_json())
        elif path == "/_chatprobe/truth" and method == "DELETE":
            cleared = len(self.truth.records)
            self.truth.clear()
            await _json(send, 200, {"cleared": cleared})
        else:
            await _json(send, 404, {"error": {"message": f"no route for {method} {path}",
                                              "type": "not_found_error", "param": None,
                                              "code": "not_found"}})


async def _huge_event(send: Send, event: bytes, record: TruthRecord) -> None:
    """The event with 50 MB of text spliced into its first string value, sent in 1 MB pieces."""
    for marker in (b'"content":"', b'"delta":"', b'"arguments":"'):
        cut = event.find(marker)
        if cut >= 0:
            cut += len(marker)
            break
    else:
        cut = len(event) // 2
    record.token_ns.append(time.perf_counter_ns())
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
    parts = path.split("/")
    if len(parts) in (4, 5) and parts[1] == "_inference" and parts[-1] == "_stream" and all(parts[2:-1]):
        if len(parts) == 4:
            return "elastic-completion", {"inference_id": parts[2]}
        task_type, inference_id = parts[2], parts[3]
        dialect = "elastic-chat" if task_type == "chat_completion" else "elastic-completion"
        return dialect, {"task_type": task_type, "inference_id": inference_id}
    return None


def _credentials(dialect: str, key: str) -> tuple[bytes, ...]:
    """The Authorization values that carry ``key``: Bearer, and for Elastic also ApiKey
    (Elasticsearch's scheme for API keys, the profiles' elastic auth scheme)."""
    raw = key.encode()
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
