"""chatprobe's Locust users: exact TTFT / ITL / TPOT / E2E per request.

Usable two ways:

* ``chatprobe load …`` (the usual way) runs these users through
  ``loadtests/run.py``, which writes summary.json, records and the report;
* ``locust -f loadtests/chatprobe_locust.py OpenAIUser`` with the settings in
  ``CHATPROBE_LOAD_SETTINGS`` (JSON of :class:`chatprobe.loadplan.LoadSettings`,
  or ``@file.json``) for Locust's own UI; ``--master`` / ``--worker`` work as
  usual and the workers' records reach the master (``worker_report``).

Timing (see "Metric definitions" in the design). ``t_sent`` is stamped just
before the request's bytes are written; every read is stamped and its body
bytes go straight into the project's SSE decoder with that stamp, so each
event carries the arrival of its first byte;
:class:`chatprobe.streams.StreamValidator` decides which events bear tokens
(one definition for the whole project). On plain-TCP Linux sockets the stamp
is the kernel's receive time (SO_TIMESTAMPNS, read with ``recvmsg``; see
:class:`KernelClock`), so TTFT / ITL do not depend on when the hub got round
to the socket; elsewhere (TLS, no SO_TIMESTAMPNS) it is ``perf_counter_ns()``
as ``recv()`` returns.

The client: one keep-alive socket per user (closed loop) or a pool (open
loop), HTTP parsed by geventhttpclient's C parser (llhttp) fed by our own
``recv`` loop; benchmarks/load_cost.py measures it against httpx under
gevent (``client: httpx`` in the settings selects that one).
"""

from __future__ import annotations

import _socket
import base64
import contextlib
import gc
import itertools
import os
import random
import socket as _stdsocket
import struct
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import gevent
import gevent.event
import gevent.lock
import gevent.pool
import gevent.socket
import gevent.ssl
import orjson
from geventhttpclient._parser import HTTPParseError, HTTPResponseParser
from geventhttpclient.response import HTTPResponse
from locust import LoadTestShape, User, events, task
from locust.env import Environment
from locust.runners import MasterRunner

from chatprobe import redact
from chatprobe.dialects import auth_headers, place
from chatprobe.findings import Severity
from chatprobe.inputs import read_dataset
from chatprobe.loadplan import SETTINGS_ENV, LoadSettings, rate_at, stage_at
from chatprobe.metrics import (
    MetricsCollector,
    RequestRecord,
    clock_offset_ns,
    resolve_output_tokens,
)
from chatprobe.specs import Profile, load_profile
from chatprobe.sse import SSEDecoder
from chatprobe.streams import StreamValidator

__all__ = [
    "AdaptiveUser",
    "AtomaUser",
    "ChatUser",
    "ElasticChatUser",
    "ElasticCompletionUser",
    "HealthMonitor",
    "KernelClock",
    "OpenAIUser",
    "OpenLoopUser",
    "PlanShape",
    "kernel_clock",
    "state",
    "user_classes_for",
]

# Findings that make a request a failure under load; other protocol findings
# (a missing role, a model that changes…) are counted but the user still got
# tokens. Transport failures are reasons of their own ("reset", "timeout"…).
FAILURE_RULES = frozenset({
    "stream.data_not_json",
    "stream.terminator_missing",
    "stream.error_in_200",
    "stream.data_after_terminator",
    "stream.empty",
    "sse.unterminated_event",
    "sse.frame_too_large",
    "sse.empty_data",
})
_RECV_BYTES = 65536
# Kernel receive timestamps. Python's socket module lacks the constant; 35 is
# SO_TIMESTAMPNS(_OLD) in asm-generic (x86, arm, riscv…), whose cmsg is a native
# struct timespec (two C longs). Other Linux ABIs use other numbers: no stamps there.
_SO_TIMESTAMPNS: int | None = getattr(_stdsocket, "SO_TIMESTAMPNS", None)
if _SO_TIMESTAMPNS is None and sys.platform == "linux" and os.uname().machine in {
        "x86_64", "i686", "i386", "aarch64", "armv7l", "armv6l", "riscv64", "s390x", "ppc64le"}:
    _SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@ll")
_ANC_BYTES = _stdsocket.CMSG_SPACE(_TIMESPEC.size) if hasattr(_stdsocket, "CMSG_SPACE") else 0
_MAX_BODY_BYTES = 64 * 1024 * 1024
_PROMPT_POOL = 64  # distinct prompts per process, built up front (off the hot path)
_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
          "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo")


# ---------------------------------------------------------------------------
# Per-process state (one per Locust process: local, master or worker)
# ---------------------------------------------------------------------------
class _State:
    def __init__(self) -> None:
        self.settings: LoadSettings | None = None
        self.collector = MetricsCollector()
        self.shipped = 0  # records already sent to the master
        self.worker_id = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.t0_ns: int | None = None  # test start (this process's clock)
        self.stopping = False
        self.inflight = gevent.pool.Group()  # open-loop request greenlets
        self.findings: dict[str, int] = {}  # non-failing protocol findings, per rule
        # Keep-alive connections the server closed, per when it was seen (not failures:
        # the request was sent again on a fresh connection, or never sent on that one).
        self.reconnects: dict[str, int] = {}
        # One example per failure reason (an error body's start, a finding's message).
        self.failure_examples: dict[str, str] = {}
        self.health: HealthMonitor | None = None
        self._builder: _RequestBuilder | None = None
        # Processes generating load, everywhere: an open-loop dispatcher takes this
        # share of the rate. Local workers: --processes; the master tells every
        # worker the total (remote ones included) before the load starts.
        self.generators: int | None = None

    def load(self) -> LoadSettings:
        if self.settings is None:
            raw = os.environ.get(SETTINGS_ENV)
            if not raw:
                raise RuntimeError(f"set {SETTINGS_ENV} (JSON load settings, or @file.json)")
            self.settings = LoadSettings.loads(raw)
        return self.settings

    def share(self) -> int:
        if self.generators is None:
            s = self.load()
            self.generators = s.processes + s.expect_workers if s.distributed else 1
        return self.generators

    @property
    def builder(self) -> _RequestBuilder:
        if self._builder is None:
            self._builder = _RequestBuilder(self.load())
        return self._builder

    def elapsed_s(self) -> float:
        return 0.0 if self.t0_ns is None else (time.perf_counter_ns() - self.t0_ns) / 1e9


state = _State()


# ---------------------------------------------------------------------------
# Requests: bodies built once, then reused
# ---------------------------------------------------------------------------
class _Prepared:
    __slots__ = ("body", "body_json", "head_tail", "method", "path", "stream")

    def __init__(self, method: str, path: str, body: dict[str, Any], stream: bool, head_tail: bytes) -> None:
        self.method = method
        self.path = path
        self.body = body
        self.body_json = orjson.dumps(body)
        self.stream = stream
        self.head_tail = head_tail  # headers after X-Request-Id, ending with the blank line


class _RequestBuilder:
    def __init__(self, s: LoadSettings) -> None:
        self.settings = s
        self.profile: Profile = load_profile(s.profile or s.dialect)
        url = urlsplit(s.target)
        self.tls = url.scheme == "https"
        self.stamps = stamps_used(s)  # "kernel": plain-TCP reads ask for the kernel's stamp
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or (443 if self.tls else 80)
        self.base_path = url.path.rstrip("/")
        userinfo, _, self.host_header = url.netloc.rpartition("@")  # never userinfo in Host
        key = os.environ.get(s.api_key_env) if s.api_key_env else None
        redact.add_secret(key, s.api_key_env)
        self.headers = {"Content-Type": "application/json",
                        "Accept": "text/event-stream" if s.stream else "application/json",
                        **auth_headers(self.profile, key)}
        if userinfo and "Authorization" not in self.headers:  # as httpx does (conform, probe)
            credential = base64.b64encode(unquote(userinfo).encode()).decode()
            redact.add_secret(credential, "PASSWORD")
            self.headers["Authorization"] = f"Basic {credential}"
        model = s.model or ("chatprobe-test" if self.profile.model_in != "none" else None)
        rng = random.Random(s.seed ^ os.getpid())
        self.prepared = [self._prepare(conv, model) for conv in self._conversations(rng)]
        self._cycle = itertools.cycle(self.prepared)

    def _conversations(self, rng: random.Random) -> Iterator[list[dict[str, Any]]]:
        s = self.settings
        if s.dataset:
            # The one reader of datasets (chatprobe.inputs), the one `chatprobe load` checked it with.
            yield from read_dataset(s.dataset)
            return
        for _ in range(_PROMPT_POOL):
            # The reference server counts one token per word; real tokenizers differ a little.
            words = " ".join(rng.choice(_WORDS) for _ in range(s.prompt_tokens))
            yield [{"role": "user", "content": words}]

    def _prepare(self, messages: list[dict[str, Any]], model: str | None) -> _Prepared:
        s, profile = self.settings, self.profile
        if profile.body == "completion":
            body: dict[str, Any] = {"input": "\n".join(str(m.get("content", "")) for m in messages)}
        else:
            body = {"messages": messages}
            if profile.max_tokens_field:
                body[profile.max_tokens_field] = s.max_tokens
            if s.ignore_eos:
                body["ignore_eos"] = True
        spec = place(profile, body, model=model, stream=s.stream,
                     include_usage=True if s.include_usage else None)
        path = self.base_path + spec.path
        if spec.query:
            path += "?" + "&".join(f"{k}={v}" for k, v in spec.query.items())
        tail = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
        head_tail = f"Content-Length: {len(orjson.dumps(spec.body))}\r\n{tail}\r\n".encode("latin-1")
        return _Prepared(spec.method, path, spec.body, spec.stream, head_tail)

    def next(self) -> _Prepared:
        return next(self._cycle)

    def head(self, req: _Prepared, request_id: str) -> bytes:
        return (f"{req.method} {req.path} HTTP/1.1\r\nHost: {self.host_header}\r\n"
                f"X-Request-Id: {request_id}\r\n").encode("latin-1") + req.head_tail


def new_request_id() -> str:
    """The X-Request-Id of one request: a random (version 4) UUID in its canonical form.

    Some real servers validate the header and answer 400 to any value that is not a
    UUID, which would fail every request of the run. os.urandom-backed: unique across
    processes and machines without coordination."""
    return str(uuid.uuid4())


class KernelClock:
    """Maps the kernel's CLOCK_REALTIME receive stamps onto ``perf_counter_ns``.

    perf_counter is CLOCK_MONOTONIC on Linux (the reference server's truth uses
    it too). The offset REALTIME - MONOTONIC is measured by sandwiching
    ``time_ns()`` between two ``perf_counter_ns()`` calls, keeping the
    narrowest of a few tries, and re-measured every ``REFRESH_NS``. Residual
    error: half the sandwich (well under 1 us here) plus NTP slewing of
    REALTIME since the last refresh (at most 500 ppm, i.e. <= 0.5 ms after
    1 s, typically a few us). A step of the wall clock is absorbed at the next
    refresh; in between the caller's clamps (not before the request went out,
    not before the previous read, not after now) keep the stamps sane.

    The kernel reports the arrival of the *last* segment a ``recvmsg`` consumed:
    when one read gathers several segments (the reader fell behind by more than
    the gap between them), all of them get that last arrival. That is never later
    than the user-space stamp it replaces.
    """

    REFRESH_NS = 1_000_000_000

    def __init__(self) -> None:
        self.offset_ns = 0  # REALTIME - MONOTONIC
        self.width_ns = 0  # the sandwich of the last measurement
        self.next_refresh_ns = 0
        self.refresh()

    def refresh(self) -> None:
        best: tuple[int, int] | None = None
        for _ in range(5):
            a = time.perf_counter_ns()
            wall = time.time_ns()
            b = time.perf_counter_ns()
            if best is None or b - a < best[0]:
                best = (b - a, wall - (a + b) // 2)
        assert best is not None
        self.width_ns, self.offset_ns = best
        self.next_refresh_ns = time.perf_counter_ns() + self.REFRESH_NS

    def to_perf(self, realtime_ns: int, now: int) -> int:
        """A REALTIME stamp taken before ``now`` (a perf_counter_ns) on perf_counter's scale."""
        if now >= self.next_refresh_ns:
            self.refresh()
        return realtime_ns - self.offset_ns

    def stamp(self, ancdata: list[tuple[int, int, bytes]], now: int) -> int | None:
        """The receive stamp in a recvmsg's ancillary data, mapped; None when absent."""
        for level, kind, data in ancdata:
            if kind == _SO_TIMESTAMPNS and level == _stdsocket.SOL_SOCKET and len(data) >= _TIMESPEC.size:
                sec, nsec = _TIMESPEC.unpack_from(data)
                return self.to_perf(sec * 1_000_000_000 + nsec, now)
        return None


kernel_clock = KernelClock()


def kernel_stamps_supported() -> bool:
    """Whether this platform gives plain-TCP reads a kernel receive stamp."""
    return _SO_TIMESTAMPNS is not None and _ANC_BYTES > 0


def stamps_used(s: LoadSettings) -> str:
    """How this run's reads are stamped: "kernel" or "user" (TLS, other platforms, --stamps user)."""
    tls = urlsplit(s.target).scheme == "https"  # as _RequestBuilder decides
    return "kernel" if s.stamps == "kernel" and kernel_stamps_supported() and not tls else "user"


class _Failure(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------------------
# The exchange: send, read, stamp, decode, validate
# ---------------------------------------------------------------------------
class _Parser(HTTPResponse):
    """llhttp via geventhttpclient; body bytes go to the exchange with the current recv's stamp."""

    def __init__(self, ex: _Exchange) -> None:
        super().__init__(method="POST")
        self.ex = ex
        self.body_bytes = 0

    def _on_headers_complete(self) -> int | bool | None:
        result = super()._on_headers_complete()
        ex = self.ex
        ex.status = self.get_code()
        ex.decoding = ex.stream and ex.status == 200
        return result

    def _on_body(self, buf: bytearray) -> None:
        # llhttp calls this once per chunk of the chunked body (about one per event);
        # the pieces of one recv() are decoded together by feed() below.
        self.body_bytes += len(buf)
        if self.body_bytes > _MAX_BODY_BYTES:
            raise _Failure("http.body_too_large")
        self.ex.pending.append(bytes(buf))  # llhttp reuses buf

    def feed(self, data: bytes) -> None:  # type: ignore[override]
        """Parse one recv()'s bytes, then hand its whole body to the exchange at once:
        one SSE-decoder call per read, not per chunk (the same events and stamps,
        as the decoder is split-invariant and every piece has the read's stamp)."""
        _llhttp_feed(self, data)
        if self.ex.pending:
            self.ex.take_pending()


# llhttp's own feed: HTTPResponse.feed only adds a recovery for HEAD responses (we send POST).
_llhttp_feed: Callable[[HTTPResponseParser, bytes], None] = HTTPResponseParser.feed


class _Exchange:
    """One request's decoding state; feeds the record as bytes arrive."""

    __slots__ = ("body", "decoder", "decoding", "detail", "now", "pending", "record", "status", "stream",
                 "validator")

    def __init__(self, record: RequestRecord, profile: Profile, req: _Prepared, check_schema: bool) -> None:
        self.record = record
        self.stream = req.stream
        self.decoding = False  # a 200 stream: body bytes go to the SSE decoder
        self.decoder = SSEDecoder()
        self.validator = StreamValidator(profile, req.body, check_schema=check_schema)
        self.body: list[bytes] = []
        self.pending: list[bytes] = []  # body pieces of the recv() being parsed
        self.now = 0  # perf_counter_ns of the recv() being parsed
        self.status = 0
        self.detail: str | None = None  # evidence for a failure: an error body, a finding's message

    def take_pending(self) -> None:
        pending = self.pending
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        if self.decoding:
            events = self.decoder.feed(data, self.now)
            if events:
                self.validator.feed(events)
        else:
            self.body.append(data)

    def on_body(self, data: bytes) -> None:
        if self.stream and self.status == 200:
            events = self.decoder.feed(data, self.now)
            if events:
                self.validator.feed(events)
        else:
            self.body.append(data)

    def finish(self, complete: bool) -> None:
        """The response ended (complete) or was cut; fill in the record."""
        r = self.record
        if self.status != 200:
            r.error = f"http {self.status}"
            self.detail = _snippet(b"".join(self.body))
            return
        if not self.stream:
            self._finish_plain()
            return
        v = self.validator
        events = self.decoder.close()
        if events:
            v.feed(events)
        v.finish(complete=complete)
        res = v.result
        if res.token_arrivals_ns:
            r.t_first_token_ns = res.token_arrivals_ns[0]
            r.token_arrivals_ns.extend(res.token_arrivals_ns)
        r.t_first_choices_ns = res.first_choices_ns
        usage = res.usage if isinstance(res.usage, dict) else None
        completion = usage.get("completion_tokens") if usage else None
        prompt = usage.get("prompt_tokens") if usage else None
        r.output_tokens, r.output_tokens_source = resolve_output_tokens(
            completion if isinstance(completion, int) else None, len(res.token_arrivals_ns), res.text())
        r.prompt_tokens = prompt if isinstance(prompt, int) else None
        failure = None
        for f in (*self.decoder.findings, *v.findings):
            if f.severity is Severity.ERROR and f.rule in FAILURE_RULES:
                if failure is None:
                    failure, self.detail = f.rule, f.message[:300]
            else:
                state.findings[f.rule] = state.findings.get(f.rule, 0) + 1
        if res.error is not None and failure is None:
            failure = "stream.error_event"
            self.detail = _snippet(orjson.dumps(res.error, default=str))
        if failure is None and not res.token_arrivals_ns:
            failure = "stream.empty"
        if not complete:
            failure, self.detail = "reset", None
        r.error = failure
        r.ok = failure is None

    def _finish_plain(self) -> None:
        r = self.record
        assert r.t_end_ns is not None
        try:
            body = orjson.loads(b"".join(self.body))
            choice = body["choices"][0]
            text = choice["message"].get("content") or ""
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
            r.error = "response.not_json"
            self.detail = _snippet(b"".join(self.body))
            return
        r.add_token_event(r.t_end_ns)  # the whole body is the one token-bearing "event"
        r.t_first_choices_ns = r.t_end_ns
        usage = body.get("usage") if isinstance(body, dict) else None
        completion = usage.get("completion_tokens") if isinstance(usage, dict) else None
        r.output_tokens, r.output_tokens_source = resolve_output_tokens(
            completion if isinstance(completion, int) else None, 0, str(text))
        r.ok = True


def _snippet(body: bytes, limit: int = 300) -> str:
    text = body[:limit * 4].decode("utf-8", errors="replace").strip()
    return (text[:limit] + "…") if len(text) > limit else text or "(empty body)"


class _Connection:
    """One keep-alive HTTP/1.1 connection.

    Plain TCP (the usual case) keeps a non-blocking stdlib socket and a libev
    read watcher: the response is read from the watcher's callback, in gevent's
    hub, one recv() per readiness and no greenlet switch per read (a switch and
    gevent's recv wrapper per event were the largest per-token cost). TLS keeps
    a gevent socket read by the user's greenlet.
    """

    def __init__(self, b: _RequestBuilder, read_timeout_s: float) -> None:
        sock = gevent.socket.create_connection((b.host, b.port), timeout=min(read_timeout_s, 10.0))
        sock.setsockopt(_stdsocket.IPPROTO_TCP, _stdsocket.TCP_NODELAY, 1)
        self.reusable = True
        self.raw: _socket.socket | None = None
        self.sock: Any = None
        self.kernel_stamps = False  # reads use recvmsg and the kernel's receive stamp
        if b.tls:
            sock = gevent.ssl.create_default_context().wrap_socket(sock, server_hostname=b.host)
            sock.settimeout(read_timeout_s)
            self.sock = sock
            return
        raw = _socket.socket(fileno=sock.detach())
        raw.setblocking(False)
        self.raw = raw
        if b.stamps == "kernel":
            assert _SO_TIMESTAMPNS is not None
            with contextlib.suppress(OSError):
                raw.setsockopt(_stdsocket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
                self.kernel_stamps = True
        loop = gevent.get_hub().loop
        self.reader = loop.io(raw.fileno(), 1)
        self.writer = loop.io(raw.fileno(), 2)

    def open_for_reuse(self) -> bool:
        """Whether an idle plain-TCP connection still looks open: nothing readable (a
        peek sees neither EOF, an error nor unsolicited bytes)."""
        assert self.raw is not None
        try:
            self.raw.recv(1, _stdsocket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return True  # nothing to read: open, as far as we can tell
        except OSError:
            return False
        return False  # EOF, or bytes nobody asked for: not reusable

    def close(self) -> None:
        self.reusable = False
        if self.raw is not None:
            self.reader.stop()  # a watcher must not outlive its fd
            self.writer.stop()
            self.reader.close()
            self.writer.close()
            with contextlib.suppress(OSError):
                self.raw.close()
        else:
            with contextlib.suppress(OSError):
                self.sock.close()


class _Stale(Exception):
    """A reused keep-alive socket the server had closed: resend once on a new one."""


class _WatchedRead:
    """Reads one response on a plain-TCP connection from its libev watcher callback.

    ``on_readable`` runs in the hub: one recv(), the stamp, llhttp, then the
    SSE decoder and validator through :class:`_Parser`. It never blocks and
    never raises; it ends by stopping the watcher and setting ``done``.
    """

    __slots__ = ("conn", "done", "ex", "outcome", "parser", "reused")

    def __init__(self, conn: _Connection, ex: _Exchange, parser: _Parser, reused: bool) -> None:
        self.conn = conn
        self.ex = ex
        self.parser = parser
        self.reused = reused
        self.done = gevent.event.Event()
        self.outcome: BaseException | None = None  # None: the response is complete

    def _end(self, outcome: BaseException | None) -> None:
        self.conn.reader.stop()
        self.outcome = outcome
        self.done.set()

    def on_readable(self) -> None:
        ex = self.ex
        r = ex.record
        conn = self.conn
        assert conn.raw is not None
        try:
            if conn.kernel_stamps:
                data, anc, _, _ = conn.raw.recvmsg(_RECV_BYTES, _ANC_BYTES)
            else:
                data = conn.raw.recv(_RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._end(_Stale() if self.reused and r.t_first_byte_ns is None else _Failure("reset"))
            return
        now = time.perf_counter_ns()
        if conn.kernel_stamps and data:
            kernel = kernel_clock.stamp(anc, now)
            if kernel is not None:
                # Clamped: not after now, not before this request went out or the previous read.
                now = max(min(kernel, now), r.t_sent_ns, ex.now)
        ex.now = now
        parser = self.parser
        try:
            if not data:
                self._eof(now)
                return
            if r.t_first_byte_ns is None:
                r.t_first_byte_ns = now
            parser.feed(data)
            if parser.message_complete:
                r.t_end_ns = now
                self._end(None)
        except _Failure as failure:
            self._end(failure)
        except HTTPParseError:  # garbage on the wire
            self._end(_Failure("http.parse"))
        except Exception as exc:  # a bug of ours: counted with its name, never fatal to the run
            self._end(_Failure(f"client error: {type(exc).__name__}: {exc}"[:200]))

    def _eof(self, now: int) -> None:
        r = self.ex.record
        parser = self.parser
        if self.reused and r.t_first_byte_ns is None:
            self._end(_Stale())
            return
        r.t_end_ns = now
        self.conn.reusable = False
        if parser.headers_complete:
            # EOF ends a body delimited by the connection's close, and cuts any other.
            with contextlib.suppress(HTTPParseError):
                parser.feed(b"")
            if parser.message_complete:
                self._end(None)
                return
        self._end(_Failure("reset"))


class _GeventClient:
    """Connections for one user (closed loop: one; open loop: a shared pool)."""

    def __init__(self, b: _RequestBuilder, s: LoadSettings) -> None:
        self.b = b
        self.s = s
        self.idle: list[_Connection] = []

    def _idle_connection(self) -> _Connection | None:
        """A pooled connection the server has not visibly closed (a FIN or RST already
        received is seen here, without sending anything on it); None when there is none."""
        while self.idle:
            conn = self.idle.pop()
            if conn.raw is None or conn.open_for_reuse():
                return conn
            state.reconnects["closed while idle"] = state.reconnects.get("closed while idle", 0) + 1
            conn.close()
        return None

    def exchange(self, ex: _Exchange, req: _Prepared, fresh: bool = False) -> None:
        """Send ``req`` and read its response into ``ex``.

        A request that fails on a reused keep-alive connection before any byte of
        its response (EOF, reset, a failed write: the server closed the idle
        connection, which RFC 9112 §9.3.1 allows at any time) is sent once more, on a
        fresh connection (``fresh``), and is not counted as a failure; the resend is
        counted in ``state.reconnects`` (summary.json ``run.reconnects``). A failure
        on a fresh connection is the request's own."""
        conn = None if fresh else self._idle_connection()
        reused = conn is not None
        if conn is None:
            try:
                conn = _Connection(self.b, self.s.read_timeout_s)
            except TimeoutError:
                raise _Failure("connect timeout") from None
            except OSError as exc:
                raise _Failure(f"connect: {exc.strerror or exc}") from None
        payload = self.b.head(req, ex.record.request_id) + req.body_json
        parser = _Parser(ex)
        try:
            if conn.raw is not None:
                self._watched(conn, ex, parser, payload, reused)
            else:
                self._blocking(conn, ex, parser, payload, reused)
        except _Stale:
            conn.close()
            self.close()  # the server likely dropped its other idle connections too
            state.reconnects["closed before the response"] = (
                state.reconnects.get("closed before the response", 0) + 1)
            return self.exchange(ex, req, fresh=True)
        except BaseException:  # includes gevent.Timeout (the whole-request limit)
            conn.close()
            raise
        if parser.should_keep_alive() and conn.reusable:
            self.idle.append(conn)
        else:
            conn.close()
        ex.finish(complete=True)
        return None

    def _watched(self, conn: _Connection, ex: _Exchange, parser: _Parser, payload: bytes, reused: bool) -> None:
        r = ex.record
        raw = conn.raw
        assert raw is not None
        read = _WatchedRead(conn, ex, parser, reused)
        r.t_sent_ns = time.perf_counter_ns()
        try:
            view = memoryview(payload)
            while view:
                with contextlib.suppress(BlockingIOError):
                    view = view[raw.send(view):]
                if view:
                    gevent.get_hub().wait(conn.writer)
        except OSError:
            raise _Stale() if reused else _Failure("reset") from None
        conn.reader.start(read.on_readable)
        try:
            # The watcher does the reading; this greenlet only enforces the read timeout
            # (silence on the wire since the last recv, or since the request went out).
            limit_ns = int(self.s.read_timeout_s * 1e9)
            while not read.done.wait(timeout=(limit_ns - (time.perf_counter_ns() - max(ex.now, r.t_sent_ns))) / 1e9):
                if time.perf_counter_ns() - max(ex.now, r.t_sent_ns) >= limit_ns:
                    raise _Failure("timeout")
        finally:
            conn.reader.stop()
        outcome, read.outcome = read.outcome, None
        if outcome is not None:
            # Raised without a cycle: kept in ``read`` or in this frame, the exception
            # would hold its traceback, which holds this frame, which holds it. Cyclic
            # garbage per failed request, which the frozen collector leaves alone.
            try:
                raise outcome
            finally:
                del outcome

    def _blocking(self, conn: _Connection, ex: _Exchange, parser: _Parser, payload: bytes, reused: bool) -> None:
        """TLS: the user's greenlet reads its gevent socket."""
        r = ex.record
        sock = conn.sock
        try:
            r.t_sent_ns = time.perf_counter_ns()
            sock.sendall(payload)
            while True:
                data = sock.recv(_RECV_BYTES)
                ex.now = now = time.perf_counter_ns()
                if not data:
                    if reused and r.t_first_byte_ns is None:
                        raise _Stale
                    r.t_end_ns = now
                    conn.reusable = False
                    if parser.headers_complete:
                        # EOF ends a body delimited by the connection's close, and cuts any other.
                        with contextlib.suppress(HTTPParseError):
                            parser.feed(b"")
                        if parser.message_complete:
                            break
                    raise _Failure("reset")
                if r.t_first_byte_ns is None:
                    r.t_first_byte_ns = now
                parser.feed(data)
                if parser.message_complete:
                    r.t_end_ns = now
                    break
        except (_Failure, _Stale):
            raise
        except TimeoutError:
            raise _Failure("timeout") from None
        except OSError:
            if reused and r.t_first_byte_ns is None:
                raise _Stale from None
            raise _Failure("reset") from None
        except HTTPParseError:  # garbage on the wire
            raise _Failure("http.parse") from None
        except Exception as exc:  # a bug of ours: counted with its name, never fatal to the run
            raise _Failure(f"client error: {type(exc).__name__}: {exc}"[:200]) from None

    def close(self) -> None:
        for c in self.idle:
            c.close()
        self.idle.clear()


class _HttpxClient:
    """httpx (sync) under gevent: the alternative measured by benchmarks/load_cost.py."""

    def __init__(self, b: _RequestBuilder, s: LoadSettings) -> None:
        import httpx

        self.httpx = httpx
        self.b = b
        self.client = httpx.Client(
            base_url=f"{'https' if b.tls else 'http'}://{b.host_header}",
            timeout=httpx.Timeout(s.read_timeout_s, connect=min(s.read_timeout_s, 10.0)),
            limits=httpx.Limits(max_connections=s.max_in_flight, max_keepalive_connections=s.max_in_flight),
        )

    def _idle(self) -> list[Any]:
        """httpx's idle pooled connections (httpcore's public pool API, reached through
        the transport's pool attribute)."""
        pool = getattr(getattr(self.client, "_transport", None), "_pool", None)
        return [c for c in getattr(pool, "connections", ()) if c.is_idle()]

    def exchange(self, ex: _Exchange, req: _Prepared, retried: bool = False) -> None:
        """As :meth:`_GeventClient.exchange`, stale keep-alive connections included: httpcore
        drops an idle connection already seen closed; one closed after the request went out
        and before any response byte fails here and the request is sent once more."""
        httpx = self.httpx
        r = ex.record
        headers = {**self.b.headers, "X-Request-Id": r.request_id}
        maybe_reused = not retried and bool(self._idle())
        try:
            r.t_sent_ns = time.perf_counter_ns()
            with self.client.stream(req.method, req.path, content=req.body_json, headers=headers) as resp:
                r.t_first_byte_ns = time.perf_counter_ns()  # headers parsed: the best httpx offers
                ex.status = resp.status_code
                for chunk in resp.iter_raw(_RECV_BYTES):
                    ex.now = time.perf_counter_ns()
                    ex.on_body(chunk)
                r.t_end_ns = time.perf_counter_ns()
        except httpx.TimeoutException:
            raise _Failure("timeout") from None
        except httpx.ConnectError as exc:
            raise _Failure(f"connect: {exc}") from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
            if not (maybe_reused and r.t_first_byte_ns is None):
                raise _Failure("reset") from None
            state.reconnects["closed before the response"] = (
                state.reconnects.get("closed before the response", 0) + 1)
            for conn in self._idle():  # likely dead too; httpcore drops closed ones
                conn.close()
            self.exchange(ex, req, retried=True)
            return
        except httpx.HTTPError:
            raise _Failure("reset") from None
        ex.finish(complete=True)

    def close(self) -> None:
        self.client.close()


def _make_client(s: LoadSettings) -> _GeventClient | _HttpxClient:
    b = state.builder
    return _HttpxClient(b, s) if s.client == "httpx" else _GeventClient(b, s)


def send_one(environment: Environment, client: _GeventClient | _HttpxClient,
             t_scheduled_ns: int | None = None) -> RequestRecord:
    """One request, timed, recorded and reported to Locust's stats."""
    s = state.load()
    b = state.builder
    req = b.next()
    record = RequestRecord(request_id=new_request_id(), dialect=b.profile.dialect,
                           t_sent_ns=0, t_scheduled_ns=t_scheduled_ns, worker_id=state.worker_id)
    ex = _Exchange(record, b.profile, req, s.check_schema)
    try:
        with gevent.Timeout(s.timeout_s, _Failure("timeout")):
            client.exchange(ex, req)
    except _Failure as failure:
        record.error = failure.reason
        record.ok = False
    except Exception as exc:  # a bug of ours: counted with its name, never fatal to the run
        record.error = f"client error: {type(exc).__name__}: {exc}"[:200]
        record.ok = False
    if not record.ok and record.error not in state.failure_examples and len(state.failure_examples) < 50:
        state.failure_examples[record.error or "unknown"] = ex.detail or _transport_detail(record.error)
    if record.t_sent_ns == 0:
        record.t_sent_ns = time.perf_counter_ns()
    if record.t_end_ns is None:
        record.t_end_ns = time.perf_counter_ns()
    record.status = ex.status or None
    state.collector.add(record)
    _fire(environment, record, req.path)
    return record


def _transport_detail(reason: str | None) -> str:
    return {
        "reset": "the connection closed before the response was complete",
        "timeout": "no complete response within the request's time limit, or silence past the read timeout",
        "http.parse": "the bytes received are not an HTTP/1.1 response",
    }.get(reason or "", reason or "unknown")


def _fire(environment: Environment, r: RequestRecord, path: str) -> None:
    """Locust's own stats (UI, CSV): rounded there; our report never reads them."""
    fire: Callable[..., Any] = environment.events.request.fire
    exc = None if r.ok else _Failure(r.error or "failed")
    e2e = r.e2e_ms if r.ok else ((r.t_end_ns or r.t_sent_ns) - r.t_sent_ns) / 1e6
    fire(request_type="POST", name=path, response_time=e2e, response_length=r.output_tokens or 0,
         exception=exc, context={})
    if r.ok and r.ttft_ms is not None:
        fire(request_type="TTFT", name=r.dialect, response_time=r.ttft_ms, response_length=0,
             exception=None, context={})
        tpot = r.tpot_ms
        if tpot is not None:
            fire(request_type="TPOT", name=r.dialect, response_time=tpot, response_length=0,
                 exception=None, context={})


# ---------------------------------------------------------------------------
# Users
# ---------------------------------------------------------------------------
class ChatUser(User):
    """Closed loop: send, wait for the whole response, send again."""

    abstract = True
    dialect = "openai"

    def on_start(self) -> None:
        self._client = _make_client(state.load())

    def on_stop(self) -> None:
        self._client.close()

    @task
    def chat(self) -> None:
        send_one(self.environment, self._client)


class OpenAIUser(ChatUser):
    dialect = "openai"


class ElasticChatUser(ChatUser):
    dialect = "elastic-chat"


class ElasticCompletionUser(ChatUser):
    dialect = "elastic-completion"


class AdaptiveUser(ChatUser):
    dialect = "adaptive"


class AtomaUser(ChatUser):
    dialect = "atoma"


class OpenLoopUser(User):
    """One per process: schedules requests at the planned rate (constant or Poisson).

    Each request runs in its own greenlet (a pool of keep-alive connections is
    shared); at most ``max_in_flight / processes`` at once. A request that has
    to wait for a free slot, or whose greenlet starts late, shows it in its
    queue delay (t_sent - t_scheduled): the plan is never silently stretched.
    """

    abstract = True  # run.py makes it concrete for the settings

    def on_start(self) -> None:
        s = state.load()
        self._client = _make_client(s)
        self._slots = gevent.lock.BoundedSemaphore(max(1, s.max_in_flight // state.share()))

    def on_stop(self) -> None:
        state.inflight.kill(block=False)
        self._client.close()

    def _rate(self, s: LoadSettings) -> float | None:
        share = state.share()  # each process's dispatcher takes an equal share
        if s.stages:
            r = rate_at(s.stages, state.elapsed_s())
            return None if r is None else r / share
        assert s.rate is not None
        return s.rate / share

    @task
    def dispatch(self) -> None:
        s = state.load()
        rng = random.Random(s.seed * 7919 + os.getpid())
        next_ns = time.perf_counter_ns()
        while not state.stopping:
            rate = self._rate(s)
            if rate is None:
                return
            if rate <= 0:
                gevent.sleep(0.05)
                next_ns = time.perf_counter_ns()
                continue
            gap = rng.expovariate(rate) if s.mode == "poisson" else 1.0 / rate
            next_ns += int(gap * 1e9)
            wait = (next_ns - time.perf_counter_ns()) / 1e9
            if wait > 0:
                gevent.sleep(wait)
            self._slots.acquire()
            state.inflight.spawn(self._one, next_ns)

    def _one(self, t_scheduled_ns: int) -> None:
        try:
            send_one(self.environment, self._client, t_scheduled_ns)
        finally:
            self._slots.release()


_DIALECT_USERS: dict[str, type[ChatUser]] = {
    c.dialect: c for c in (OpenAIUser, ElasticChatUser, ElasticCompletionUser, AdaptiveUser, AtomaUser)
}


def user_classes_for(s: LoadSettings) -> list[type[User]]:
    """The one user class these settings run."""
    if s.open_loop:
        return [type("OpenLoop", (OpenLoopUser,), {"abstract": False})]
    base = _DIALECT_USERS.get(s.dialect, ChatUser)
    return [type(base.__name__, (base,), {"abstract": False})]


class PlanShape(LoadTestShape):
    """Stages of a YAML plan: users (closed loop) or one dispatcher per process (open)."""

    def tick(self) -> tuple[int, float] | None:
        s = state.load()
        now = stage_at(s.stages, float(self.get_run_time()))  # type: ignore[no-untyped-call]
        if now is None:
            return None
        _, stage = now
        if stage.users is None:  # open loop: the dispatchers read the rate themselves
            return state.share(), float(state.share())
        return stage.users, stage.spawn_rate or float(stage.users)


# ---------------------------------------------------------------------------
# Generator health
# ---------------------------------------------------------------------------
class HealthMonitor:
    """This process's CPU, gevent loop lag (a greenlet sleeping 10 ms, oversleep)
    and garbage-collector pauses.

    CPU is process time over wall time per second (100 % = one core busy).
    ``stop()`` freezes the mean at the end of the load, so writing the records
    and the summary afterwards is not charged to the generator.

    The collector: a pause of the whole process delays every read, and a read
    delayed past the next event's arrival gets that later event's kernel stamp
    (the kernel merges queued segments and keeps the newest stamp), so a 10 ms
    pause at 5 ms ITL puts some TTFTs two ITLs late. CPython's young
    generations here held every in-flight request's state and the finished
    records (lists of 256 stamps each): collections of 2-11 ms, measured. So
    while the load runs, each tick ``gc.freeze()``s what exists (O(1)), and the
    collector only ever scans objects younger than a tick; objects frozen while
    in flight are still freed by reference counting when their request ends
    (the per-request state forms no cycles: checked with ``gc.DEBUG_SAVEALL``).
    ``stop()`` unfreezes, so cycles that outlived a tick are collected after the
    run. Pauses are recorded (``gc.callbacks``) and reported.
    """

    PERIOD_S = 0.010

    def __init__(self) -> None:
        self.lags_ms: list[float] = []
        self.lag_at_ns: list[int] = []  # when each lag sample was taken
        self.cpu_percent: list[float] = []
        self.gc_pauses_ms: list[float] = []
        self._gc_started = 0
        self._greenlet: gevent.Greenlet[Any, Any] | None = None
        self.t_start_cpu = time.process_time()
        self.t_start_wall = time.perf_counter()
        self._stopped_at: tuple[float, float] | None = None  # (cpu, wall) when stopped

    def start(self) -> None:
        self.t_start_cpu = time.process_time()
        self.t_start_wall = time.perf_counter()
        gc.callbacks.append(self._on_gc)
        gc.freeze()  # start-up's objects (imports, locust, the profile): never scanned again
        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._stopped_at is None:
            self._stopped_at = (time.process_time(), time.perf_counter())
            if self._on_gc in gc.callbacks:
                gc.callbacks.remove(self._on_gc)
            gc.unfreeze()
        if self._greenlet is not None:
            self._greenlet.kill(block=False)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter_ns()
        else:
            self.gc_pauses_ms.append((time.perf_counter_ns() - self._gc_started) / 1e6)

    def _run(self) -> None:
        period_ns = int(self.PERIOD_S * 1e9)
        last_cpu, last_wall = time.process_time(), time.perf_counter()
        while True:
            t = time.perf_counter_ns()
            gevent.sleep(self.PERIOD_S)
            woke = time.perf_counter_ns()
            gc.freeze()
            self.lags_ms.append(max(0, woke - t - period_ns) / 1e6)
            self.lag_at_ns.append(woke)
            wall = time.perf_counter()
            if wall - last_wall >= 1.0:
                cpu = time.process_time()
                self.cpu_percent.append(100.0 * (cpu - last_cpu) / (wall - last_wall))
                last_cpu, last_wall = cpu, wall

    def to_json(self) -> dict[str, Any]:
        cpu_now, wall_now = self._stopped_at or (time.process_time(), time.perf_counter())
        wall = wall_now - self.t_start_wall
        cpu = cpu_now - self.t_start_cpu
        return {
            "pid": os.getpid(),
            "cpu_percent_mean": 100.0 * cpu / wall if wall > 0 else None,
            "cpu_percent_samples": [round(x, 1) for x in self.cpu_percent],
            "loop_lag_ms": [round(x, 3) for x in self.lags_ms],
            "loop_lag_at_ns": list(self.lag_at_ns),
            "gc_pauses": len(self.gc_pauses_ms),
            "gc_pause_total_ms": round(sum(self.gc_pauses_ms), 3),
            "gc_pause_max_ms": round(max(self.gc_pauses_ms), 3) if self.gc_pauses_ms else None,
        }


# ---------------------------------------------------------------------------
# Distribution: workers ship their new records with each stats report
# ---------------------------------------------------------------------------
def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip() or None
    except OSError:
        return None


_BOOT_ID = _boot_id()


def clock_sample() -> dict[str, Any]:
    """This process's monotonic and wall clocks read together (see metrics.clock_offset_ns)."""
    before = time.perf_counter_ns()
    wall = time.time_ns()
    after = time.perf_counter_ns()
    return {"boot_id": _BOOT_ID, "host": _stdsocket.gethostname(),
            "perf_ns": (before + after) // 2, "wall_ns": wall}


def worker_payload(final: bool) -> dict[str, Any]:
    records = state.collector.records
    new = records[state.shipped:]
    state.shipped = len(records)
    return {
        "clock": clock_sample(),
        "worker_id": state.worker_id,
        "records": [r.to_json() for r in new],
        "sent_total": state.shipped,
        "final": final,
        "findings": dict(state.findings),
        "reconnects": dict(state.reconnects),
        "failure_examples": dict(state.failure_examples),
        "health": state.health.to_json() if state.health is not None else None,
    }


def _on_report_to_master(client_id: str, data: dict[str, Any]) -> None:
    data["chatprobe"] = worker_payload(final=False)


class MasterInbox:
    """What the master has received from each worker (records merged exactly).

    A worker on another machine stamps with its own monotonic clock: its
    records and loop-lag stamps are moved onto the master's clock on arrival
    (metrics.clock_offset_ns; 0 for workers on the master's machine)."""

    def __init__(self) -> None:
        self.records: dict[str, int] = {}  # worker -> records received
        self.final: dict[str, dict[str, Any]] = {}  # worker -> its final payload
        self.latest: dict[str, dict[str, Any]] = {}  # worker -> its latest payload
        self.clock_offsets_ns: dict[str, int] = {}  # worker -> the last offset applied

    def take(self, payload: dict[str, Any]) -> None:
        wid = payload["worker_id"]
        offset = clock_offset_ns(clock_sample(), payload["clock"]) if payload.get("clock") else 0
        self.clock_offsets_ns[wid] = offset
        records = [RequestRecord.from_json(r) for r in payload["records"]]
        state.collector.extend([r.shifted(offset) for r in records] if offset else records)
        health = payload.get("health")
        if offset and health:
            health["loop_lag_at_ns"] = [t + offset for t in health["loop_lag_at_ns"]]
        if health:
            health["clock_offset_ms"] = offset / 1e6
        self.records[wid] = self.records.get(wid, 0) + len(payload["records"])
        self.latest[wid] = payload
        if payload["final"]:
            self.final[wid] = payload


inbox = MasterInbox()


def _on_worker_report(client_id: str, data: dict[str, Any]) -> None:
    payload = data.get("chatprobe")
    if payload:
        inbox.take(payload)


def _on_test_start(environment: Environment, **_: Any) -> None:
    state.load()
    if not isinstance(environment.runner, MasterRunner):
        state.builder  # noqa: B018  (profile, schemas, request bodies: built before the clock starts)
    state.t0_ns = time.perf_counter_ns()
    state.stopping = False
    if state.health is None:
        state.health = HealthMonitor()
        state.health.start()


def _on_test_stopping(environment: Environment, **_: Any) -> None:
    state.stopping = True
    state.inflight.kill(block=False)


events.report_to_master.add_listener(_on_report_to_master)  # type: ignore[no-untyped-call]
events.worker_report.add_listener(_on_worker_report)  # type: ignore[no-untyped-call]
events.test_start.add_listener(_on_test_start)  # type: ignore[no-untyped-call]
events.test_stopping.add_listener(_on_test_stopping)  # type: ignore[no-untyped-call]
