"""Hostile servers for tests: plain sockets on 127.0.0.1, an ephemeral port, a thread per
connection, stopped (every socket closed) when the context manager exits.

    silent()                      accepts the connection, reads the request, says nothing
    headers_then_silent()         sends the response head (SSE for a stream, JSON otherwise), then nothing
    comments_only(interval_s)     answers every request with an SSE stream of `: ping` comments only
    error_500()                   answers every request with a bare 500, then closes the connection
                                  when the next request arrives on it (a stale keep-alive connection)
    closing_proxy(upstream, ...)  a transparent HTTP/1.1 proxy in front of a correct server that
                                  advertises keep-alive but closes the connection after a response
                                  (every one, streamed ones, or 5xx ones) as soon as the next request
                                  arrives on it: the race a client meets with llama.cpp's
                                  llama-server (after every stream) or uvicorn apps (after a 500).

Each yields the base URL. The late close is deliberate: a connection closed right after its
response is discarded by httpcore before reuse (it sees the socket readable); one closed just
after the next request went out is the stale connection a client must not blame on that request.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
from collections.abc import Callable, Iterator

Handler = Callable[[socket.socket, "Server"], None]
_HEAD_LIMIT = 1 << 16


class Server:
    """Accept loop in a thread; ``handler(conn, server)`` per connection in its own thread."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.stopping = threading.Event()
        self.connections: list[socket.socket] = []
        self.requests = 0  # requests read, over all connections
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="hostile-accept", daemon=True)

    def start(self) -> Server:
        self._acceptor.start()
        return self

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                if self.stopping.is_set():
                    conn.close()
                    return
                self.connections.append(conn)
                thread = threading.Thread(target=self._serve, args=(conn,), name="hostile-conn", daemon=True)
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            self.handler(conn, self)
        with contextlib.suppress(OSError):
            conn.close()

    def count_request(self) -> None:
        with self._lock:
            self.requests += 1

    def stop(self) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self._lock:
            for conn in self.connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            threads = list(self._threads)
        self._acceptor.join(5)
        for thread in threads:
            thread.join(5)


@contextlib.contextmanager
def serving(handler: Handler) -> Iterator[Server]:
    server = Server(handler).start()
    try:
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------- HTTP/1.1 pieces


def read_request(conn: socket.socket, server: Server | None = None) -> tuple[bytes, bytes] | None:
    """One request (head, body) from ``conn``; None at EOF before a request."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        data = conn.recv(65536)
        if not data:
            return None
        buffer += data
        if len(buffer) > _HEAD_LIMIT:
            return None
    head, _, body = buffer.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        data = conn.recv(65536)
        if not data:
            return None
        body += data
    if server is not None:
        server.count_request()
    return head, body


def wants_stream(body: bytes) -> bool:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        return False
    return isinstance(value, dict) and value.get("stream") is True


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
JSON_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"


def close_with_reset(conn: socket.socket) -> None:
    """Close so that the peer sees a reset (RST), not an orderly EOF."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


# --------------------------------------------------------------------------- the servers


@contextlib.contextmanager
def silent() -> Iterator[Server]:
    def handler(conn: socket.socket, server: Server) -> None:
        while read_request(conn, server) is not None and not server.stopping.is_set():
            server.stopping.wait()

    with serving(handler) as server:
        yield server


@contextlib.contextmanager
def headers_then_silent() -> Iterator[Server]:
    def handler(conn: socket.socket, server: Server) -> None:
        request = read_request(conn, server)
        if request is None:
            return
        conn.sendall(SSE_HEAD if wants_stream(request[1]) else JSON_HEAD)
        server.stopping.wait()

    with serving(handler) as server:
        yield server


@contextlib.contextmanager
def comments_only(interval_s: float = 0.5) -> Iterator[Server]:
    """Every request, stream or not, gets an SSE stream that only ever carries comments."""

    def handler(conn: socket.socket, server: Server) -> None:
        if read_request(conn, server) is None:
            return
        conn.sendall(SSE_HEAD)
        while not server.stopping.wait(interval_s):
            conn.sendall(chunk(b": ping\n\n"))

    with serving(handler) as server:
        yield server


ERROR_500 = b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n\r\nInternal Server Error"


@contextlib.contextmanager
def error_500(reset: bool = False) -> Iterator[Server]:
    """A bare 500 (keep-alive implied), and the connection dropped when the next request comes."""

    def handler(conn: socket.socket, server: Server) -> None:
        if read_request(conn, server) is None:
            return
        conn.sendall(ERROR_500)
        if read_request(conn, server) is not None and reset:
            close_with_reset(conn)

    with serving(handler) as server:
        yield server


# which responses end their connection: (status, head) -> bool
CLOSE_POLICIES: dict[str, Callable[[int, bytes], bool]] = {
    "always": lambda status, head: True,
    "stream": lambda status, head: b"text/event-stream" in head.lower(),
    "error": lambda status, head: status >= 500,
}


@contextlib.contextmanager
def closing_proxy(upstream: str, close_after: str = "stream", reset: bool = False) -> Iterator[Server]:
    """Relay each request to ``upstream`` (a new upstream connection per request); the response
    keeps its framing but loses any ``Connection`` header, so the client pools the connection.
    After a response that ``close_after`` picks, the next request on that connection is read and
    the connection closed without a response (``reset``: with an RST instead of an EOF)."""
    host, _, port = upstream.removeprefix("http://").partition(":")
    closes = CLOSE_POLICIES[close_after]

    def handler(conn: socket.socket, server: Server) -> None:
        doomed = False
        while not server.stopping.is_set():
            request = read_request(conn, server)
            if request is None:
                return
            if doomed:
                if reset:
                    close_with_reset(conn)
                return  # the with-suppress in Server closes it: an EOF before any response byte
            head, body = request
            status, response_head = _relay(conn, (host, int(port)), head, body)
            doomed = closes(status, response_head)

    with serving(handler) as server:
        yield server


def _relay(conn: socket.socket, address: tuple[str, int], head: bytes, body: bytes) -> tuple[int, bytes]:
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
    with socket.create_connection(address, timeout=60) as up:
        up.sendall(b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + body)
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            data = up.recv(65536)
            if not data:
                raise OSError("upstream closed before its response head")
            buffer += data
        response_head, _, rest = buffer.partition(b"\r\n\r\n")
        kept = [line for line in response_head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
        conn.sendall(b"\r\n".join(kept) + b"\r\n\r\n" + rest)
        while data := up.recv(65536):
            conn.sendall(data)
    status = int(response_head.split(b" ", 2)[1])
    return status, response_head
