"""Start and stop the reference server: in a thread (tests) or as a child process.

Both context managers take the options of ``chatprobe serve`` as keyword
arguments (``faults=[...]``, ``ttft_ms``, ``itl_ms``, ``jitter_ms``,
``max_concurrency``, ``max_queue``, ``itl_per_active_ms``, ``api_key``, ``seed``,
``truth_records``, ``model``, ``host``, ``max_output_tokens``, ``max_body_bytes``,
``max_concurrent_streams``, ``reasoning_ms``, ``reasoning_field``, ``tokenizer``) and yield the base URL
``http://127.0.0.1:PORT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from chatprobe import children
from chatprobe.errors import UsageError
from chatprobe.server.app import ReferenceApp, ServerOptions, install_log_filter
from chatprobe.server.faults import validate_names

LISTENING_PREFIX = "chatprobe reference server listening on "
_START_TIMEOUT_S = 20.0
_STOP_TIMEOUT_S = 10.0
_ABORT_AFTER_S = 0.3  # shutdown: connections still open this long after the app ended its requests
MAX_HEAD_BYTES = 64 * 1024  # a request's line and headers (nginx: 32 KiB, Node: 16 KiB)
HEAD_TIMEOUT_S = 30.0  # ... and the time they may take to arrive


def build_options(**options: Any) -> ServerOptions:
    faults = tuple(options.pop("faults", ()) or ())
    validate_names(faults)
    known = set(ServerOptions.__dataclass_fields__)
    unknown = sorted(set(options) - known)
    if unknown:
        raise UsageError(f"unknown server option(s): {', '.join(unknown)}")
    if options.get("reasoning_field", "reasoning_content") not in ("reasoning_content", "reasoning"):
        raise UsageError(f"the reasoning field must be reasoning_content or reasoning, "
                         f"got {options['reasoning_field']!r}")
    return ServerOptions(faults=faults, **options)


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, ValueError, TypeError, OverflowError) as exc:  # refused, unknown, malformed
        sock.close()
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise UsageError(f"cannot listen on {host}:{port}: {detail}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class StampingProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, stamping each request with the time its first
    bytes reached the server's event loop (``scope["chatprobe.received_ns"]``).

    The truth record's "received" time is then taken where the request comes off
    the socket, not when the app's task first runs: under load the task waits a
    loop iteration behind every due stream, and that wait is the server's, not
    the client's error.

    It also bounds what a request's head (request line and headers, which uvicorn and
    httptools accumulate without a limit) may cost: more than :data:`MAX_HEAD_BYTES`
    is refused 431, a head not complete :data:`HEAD_TIMEOUT_S` after the connection
    opened or the request began is refused 408; either closes the connection."""

    _received_ns = 0
    _head_bytes = 0
    _in_head = True  # between a request's first byte (or the connection's start) and its headers' end
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT_S, self._head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._received_ns = time.perf_counter_ns()
        super().data_received(data)
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse(431, "request_header_fields_too_large",
                             f"request line and headers over {MAX_HEAD_BYTES} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["chatprobe.received_ns"] = self._received_ns  # type: ignore[typeddict-unknown-key]
        self._in_head = True
        self._head_bytes = 0
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(HEAD_TIMEOUT_S, self._head_timeout)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_head_timer()
        super().on_headers_complete()

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self._in_head:
            self._refuse(408, "request_timeout", f"request head not received within {HEAD_TIMEOUT_S:g} s")

    def _refuse(self, status: int, code: str, message: str) -> None:
        self._in_head = False
        self._stop_head_timer()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        body = orjson.dumps({"error": {"message": message, "type": "invalid_request_error",
                                       "param": None, "code": code}})
        reason = HTTPStatus(status).phrase.encode()
        transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                        b"connection: close\r\n\r\n%s" % (status, reason, len(body), body))
        transport.close()


def uvicorn_config(options: ServerOptions, *, configure_logging: bool = True) -> uvicorn.Config:
    """uvicorn on uvloop + httptools, no access log; a thread server leaves logging alone."""
    install_log_filter()
    extra: dict[str, Any] = {} if configure_logging else {"log_config": None}
    return uvicorn.Config(
        ReferenceApp(options), loop="uvloop", http=StampingProtocol, lifespan="off",
        access_log=False, log_level="warning", timeout_graceful_shutdown=1,
        timeout_keep_alive=30, backlog=2048, **extra,
    )


class ReferenceServer(uvicorn.Server):
    """uvicorn's server; its shutdown first ends every request of the app at once
    (:meth:`ReferenceApp.close`) and, :data:`_ABORT_AFTER_S` later, drops every connection
    still open (a client that reads nothing would keep its unsent bytes, and uvicorn
    waiting, for good): a few hundred ms however many streams are open, not uvicorn's
    graceful wait for each response to finish."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if isinstance(self.config.app, ReferenceApp):
            self.config.app.close()
        asyncio.get_running_loop().call_later(_ABORT_AFTER_S, self._abort_connections)
        await super().shutdown(sockets)

    def _abort_connections(self) -> None:
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()


def base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}"


@contextlib.contextmanager
def running_server(**options: Any) -> Iterator[str]:
    """The server in a background thread with its own (uvloop) event loop."""
    import uvloop

    options.setdefault("port", 0)
    opts = build_options(**options)
    sock = bind_socket(opts.host, opts.port)
    config = uvicorn_config(opts, configure_logging=False)
    server = ReferenceServer(config)
    failure: list[BaseException] = []
    started = threading.Event()
    loop_box: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def main() -> None:
        # uvicorn's own serve() polls should_exit every 100 ms; an event stops us at once.
        stop = asyncio.Event()
        loop_box.append((asyncio.get_running_loop(), stop))
        config.load()
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[sock])
        started.set()
        await stop.wait()
        await server.shutdown(sockets=[sock])

    def serve() -> None:
        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(main())
        except BaseException as exc:  # reported to the caller below
            failure.append(exc)
        finally:
            started.set()

    thread = threading.Thread(target=serve, name="chatprobe-reference-server", daemon=True)
    thread.start()
    try:
        if not started.wait(_START_TIMEOUT_S) or failure or not server.started:
            raise RuntimeError(f"reference server did not start: {failure or 'timeout'}")
        yield base_url(sock)
    finally:
        if loop_box:
            loop, stop = loop_box[0]
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(stop.set)
        thread.join(_STOP_TIMEOUT_S)
        sock.close()


def serve_argv(**options: Any) -> list[str]:
    """The ``chatprobe serve`` command line for these options (port 0)."""
    opts = build_options(**{**options, "port": 0})
    argv = [sys.executable, "-m", "chatprobe", "serve", "--host", opts.host, "--port", "0",
            "--ttft-ms", str(opts.ttft_ms), "--itl-ms", str(opts.itl_ms),
            "--jitter-ms", str(opts.jitter_ms), "--itl-per-active-ms", str(opts.itl_per_active_ms),
            "--seed", str(opts.seed), "--truth-records", str(opts.truth_records),
            "--model", opts.model, "--max-output-tokens", str(opts.max_output_tokens),
            "--max-body-bytes", str(opts.max_body_bytes),
            "--max-concurrent-streams", str(opts.max_concurrent_streams)]
    if opts.reasoning_ms:
        argv += ["--reasoning-ms", str(opts.reasoning_ms), "--reasoning-field", opts.reasoning_field]
    if opts.tokenizer:
        argv += ["--tokenizer", opts.tokenizer]
    if opts.max_concurrency is not None:
        argv += ["--max-concurrency", str(opts.max_concurrency)]
    if opts.max_queue is not None:
        argv += ["--max-queue", str(opts.max_queue)]
    for name in opts.faults:
        argv += ["--fault", name]
    if opts.api_key is not None:
        argv += ["--api-key-env", "CHATPROBE_SERVE_API_KEY"]
    return argv


@contextlib.contextmanager
def spawn_server(cpu: int | None = None, **options: Any) -> Iterator[str]:
    """``python -m chatprobe serve --port 0`` as a child process (pinned to ``cpu`` if given)."""
    with spawn_server_process(cpu, **options) as (url, _child):
        yield url


@contextlib.contextmanager
def spawn_server_process(
    cpu: int | None = None, **options: Any
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Like :func:`spawn_server`, also yielding the child (for CPU accounting)."""
    argv = serve_argv(**options)
    key = options.get("api_key")
    env = children.python_env({"CHATPROBE_SERVE_API_KEY": str(key)} if key is not None else None)
    with tempfile.TemporaryFile() as errors, children.started(
        argv, stdout=subprocess.PIPE, stderr=errors, env=env, cpus={cpu} if cpu is not None else None,
        grace_s=_STOP_TIMEOUT_S,
    ) as child:
        yield read_listening_line(child, errors), child


def read_listening_line(child: subprocess.Popen[bytes], errors: Any) -> str:
    """The base URL from the child's first line on stdout (its stderr's last line if it fails)."""
    assert child.stdout is not None
    line = b""
    deadline = time.monotonic() + _START_TIMEOUT_S
    with selectors.DefaultSelector() as selector:
        selector.register(child.stdout, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                break
            byte = os.read(child.stdout.fileno(), 1)
            if not byte:
                break
            line += byte
    text = line.decode(errors="replace").strip()
    if not text.startswith(LISTENING_PREFIX):
        children.stop(child, _STOP_TIMEOUT_S)
        errors.seek(0)
        detail = errors.read().decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"reference server failed to start: {detail[-1] if detail else text!r}")
    return text[len(LISTENING_PREFIX):]
