"""The load generator's HTTP/1.1 streaming client: build, send, read, stamp, decode, validate.

``t_sent`` is stamped just before the request's bytes are written; every read is
stamped (:mod:`chatprobe.load.clocks`) and its body bytes go straight into the
project's SSE decoder with that stamp, so each event carries the arrival of its
first byte; :class:`chatprobe.streams.StreamValidator` decides which events bear
tokens (one definition for the whole project).

One keep-alive socket per user (closed loop) or a pool (open loop), HTTP parsed
by geventhttpclient's C parser (llhttp) fed by our own ``recv`` loop;
benchmarks/load_cost.py measures it against httpx under gevent (``client: httpx``
in the settings selects :class:`HttpxClient`).

The transport seam: :class:`GeventClient` opens its connections through its
``connect`` argument (default :class:`Connection`). A connection whose ``raw`` is
None is read through its ``sock`` (``sendall``, ``recv``, ``close``), so tests can
drive the whole exchange over scripted bytes, without sockets.

One builder, one reader, one rule registry with conformance: requests are built by
:func:`chatprobe.dialects.conversation_request` (once per prompt, at start-up: the hot
path only writes the request id into a prepared head); streams are judged by the
project's SSE decoder and :class:`~chatprobe.streams.StreamValidator`, non-stream
bodies by :func:`chatprobe.checks.response_body_findings`, :func:`~chatprobe.checks.choices_of`
(every choice) and :func:`~chatprobe.checks.usage_of`, as conformance judges them; and
every failure reason is a rule id of :data:`chatprobe.rules.RULES` or one of the labels
of :data:`chatprobe.rules.LOAD_LABELS`, each naming the rule conformance reports for
the same failure (``tests/load/test_load_reasons.py``).

Why :class:`Exchange` here is not :class:`chatprobe.exchange.Exchange`: that record
keeps the request's headers and bytes, the response's headers, raw body and every
decoded event, for reports and reproducers. Under load that is an allocation per
event and a copy of every stream, on the path the generator's tokens/s is measured
on (benchmarks/load_cost.py); so the load record is a slim view that keeps only
decoding state and writes what the metrics need into a
:class:`~chatprobe.metrics.RequestRecord`. Field by field, against exchange.Exchange:
``status`` = ``status``; ``stream`` = ``stream``; ``body`` (pieces, non-stream or
error answers only) = ``body``; ``decoder.findings`` = ``sse_findings``; the events
go to ``validator`` as they are decoded instead of ``events``; ``record.t_sent_ns`` /
``t_first_byte_ns`` / ``t_end_ns`` / ``t_scheduled_ns`` = the same timestamps;
``record.request_id`` = the X-Request-Id of ``request_headers``; a transport end
(``Failure`` reason ``reset`` / ``timeout`` / ``http.body_too_large``) = ``transport_error``
``reset`` / ``timeout`` / ``too_large``; ``detail`` = ``transport_detail`` (or a finding's
message). The request itself (method, path, body) is the shared :class:`Prepared`.

gevent and geventhttpclient, never locust (see :mod:`chatprobe.load.users`).
"""

from __future__ import annotations

import _socket
import base64
import contextlib
import ipaddress
import itertools
import os
import socket as _stdsocket
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import gevent
import gevent.event
import gevent.socket
import gevent.ssl
import orjson
from geventhttpclient._parser import HTTPParseError, HTTPResponseParser
from geventhttpclient.response import HTTPResponse

from chatprobe import redact
from chatprobe.checks import Outcome, choices_of, response_body_findings, usage_of
from chatprobe.dialects import auth_headers, conversation_request
from chatprobe.findings import Severity
from chatprobe.load.clocks import ANC_BYTES as _ANC_BYTES
from chatprobe.load.clocks import SO_TIMESTAMPNS as _SO_TIMESTAMPNS
from chatprobe.load.clocks import deadline_timers, kernel_clock, stamps_used
from chatprobe.load.state import state
from chatprobe.loadplan import LoadSettings
from chatprobe.metrics import RequestRecord, resolve_output_tokens
from chatprobe.specs import Profile, load_profile
from chatprobe.sse import SSEDecoder
from chatprobe.streams import validator as stream_validator
from chatprobe.traces import prompt_words, read_trace
from chatprobe.workload import WorkItem, WorkloadSpec, build_workload

__all__ = ["FAILURE_RULES", "Connection", "Exchange", "Failure", "GeventClient", "HttpxClient",
           "Prepared", "RequestBuilder", "make_client", "new_request_id", "reply_text", "sleep_until",
           "transport_detail"]

# Findings that make a request a failure under load (rule ids of chatprobe.rules); other
# protocol findings (a missing role, a model that changes…) are counted but the user still
# got tokens. Transport failures have labels of their own ("reset", "timeout"…), each naming
# its rule in chatprobe.rules.LOAD_LABELS.
FAILURE_RULES = frozenset({
    "stream.data_not_json",
    "stream.terminator_missing",
    "stream.error_in_200",
    "stream.data_after_terminator",
    "stream.empty",
    "sse.unterminated_event",
    "sse.frame_too_large",
    "sse.empty_data",
    "response.not_json",
    "response.error_in_200",
})
# A non-stream answer without any choice fails as "response.schema" (the stream's
# "stream.empty"); other schema findings are counted, as stream.chunk_schema is.
_RECV_BYTES = 65536
_MAX_BODY_BYTES = 64 * 1024 * 1024



# ---------------------------------------------------------------------------
# Requests: bodies built once, then reused
# ---------------------------------------------------------------------------
class Prepared:
    __slots__ = ("body", "body_json", "head_tail", "method", "path", "prefix_group", "prompt_tokens",
                 "stream", "want_tokens")

    def __init__(self, method: str, path: str, body: dict[str, Any], stream: bool, head_tail: bytes,
                 item: WorkItem | None = None, cap_sent: bool = True) -> None:
        self.method = method
        self.path = path
        self.body = body
        self.body_json = orjson.dumps(body)
        self.stream = stream
        self.head_tail = head_tail  # headers after X-Request-Id, ending with the blank line
        # The workload's request (chatprobe.workload.WorkItem): copied into each record. No
        # requested output length where the dialect has no cap to send it in (Elastic completion).
        self.prompt_tokens = item.prompt_tokens if item is not None else None
        self.want_tokens = item.max_tokens if item is not None and cap_sent else None
        self.prefix_group = item.prefix_group if item is not None else None


class RequestBuilder:
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
        self.model = model  # multi-turn sessions build their later turns' requests with it
        # The workload (chatprobe.workload): lengths and samples from the seed, the synthetic
        # words also from this process's id (processes send different prompts).
        spec = WorkloadSpec.from_settings(s, completion=self.profile.body == "completion")
        self.workload = build_workload(spec, text_seed=s.seed ^ os.getpid())
        self.prepared = [self._prepare(it.messages, model, max_tokens=it.max_tokens, item=it)
                         for it in self.workload.items]
        self._cycle = itertools.cycle(self.prepared)
        # Requests built later (a session's later turns): output caps cycled from the workload's.
        self._caps = itertools.cycle([it.max_tokens for it in self.workload.items])
        # Trace replay: every request of the trace, prepared now, with when it is due (ns after
        # the start), and what was read (summary.json "trace").
        self.trace_info: dict[str, Any] | None = None
        self.trace: list[tuple[int, Prepared]] = self._trace(model) if s.trace else []

    def _trace(self, model: str | None) -> list[tuple[int, Prepared]]:
        """The trace's requests (chatprobe.traces: its prompts, its output caps), each with its due time."""
        s = self.settings
        assert s.trace is not None
        replay = read_trace(s.trace, s.trace_format, speed=s.trace_speed, window=s.trace_window,
                            limit=s.trace_limit)
        self.trace_info = replay.to_json()
        counter = self.workload.counter  # its one-token words; what it counts is the length asked
        blocks: dict[int, str] = {}
        out = []
        for r in replay.requests:
            messages = [{"role": "user", "content": prompt_words(r, s.seed, blocks, counter.pieces)}]
            item = WorkItem(messages, counter.prompt(messages), r.output_tokens)
            out.append((int(r.t_s * 1e9), self._prepare(messages, model, max_tokens=r.output_tokens, item=item)))
        return out

    def _prepare(self, messages: list[dict[str, Any]], model: str | None, *,
                 max_tokens: int | None = None, item: WorkItem | None = None) -> Prepared:
        """One conversation's request, built by the builder conformance uses (once, at start-up;
        a multi-turn session's later turns as they come). ``max_tokens``: this request's cap
        (default the settings')."""
        s = self.settings
        extra: dict[str, Any] = {"ignore_eos": True} if s.ignore_eos else {}
        spec = conversation_request(self.profile, messages, model=model,
                                    max_tokens=next(self._caps) if max_tokens is None else max_tokens,
                                    stream=s.stream, include_usage=True if s.include_usage else None, **extra)
        path = self.base_path + spec.path
        if spec.query:
            path += "?" + "&".join(f"{k}={v}" for k, v in spec.query.items())
        tail = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
        head_tail = f"Content-Length: {len(orjson.dumps(spec.body))}\r\n{tail}\r\n".encode("latin-1")
        return Prepared(spec.method, path, spec.body, spec.stream, head_tail, item,
                        cap_sent=self.profile.max_tokens_field is not None)

    def next(self) -> Prepared:
        return next(self._cycle)

    def turn_request(self, messages: list[dict[str, Any]]) -> Prepared:
        """A multi-turn session's later turn (chatprobe.load.sessions), built as it comes."""
        return self._prepare(list(messages), self.model)

    def head(self, req: Prepared, request_id: str) -> bytes:
        return (f"{req.method} {req.path} HTTP/1.1\r\nHost: {self.host_header}\r\n"
                f"X-Request-Id: {request_id}\r\n").encode("latin-1") + req.head_tail


def new_request_id() -> str:
    """The X-Request-Id of one request: a random (version 4) UUID in its canonical form.

    Some real servers validate the header and answer 400 to any value that is not a
    UUID, which would fail every request of the run. os.urandom-backed: unique across
    processes and machines without coordination."""
    return str(uuid.uuid4())



class Failure(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------------------
# The exchange: send, read, stamp, decode, validate
# ---------------------------------------------------------------------------
class Parser(HTTPResponse):
    """llhttp via geventhttpclient; body bytes go to the exchange with the current recv's stamp."""

    def __init__(self, ex: Exchange) -> None:
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
            raise Failure("http.body_too_large")
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


class Exchange:
    """One request's decoding state; feeds the record as bytes arrive."""

    __slots__ = ("body", "check_schema", "decoder", "decoding", "detail", "due_ns", "now", "pending", "record",
                 "status", "stream", "validator")

    def __init__(self, record: RequestRecord, profile: Profile, req: Prepared, check_schema: bool) -> None:
        self.record = record
        self.stream = req.stream
        self.decoding = False  # a 200 stream: body bytes go to the SSE decoder
        self.decoder = SSEDecoder()
        self.validator = stream_validator(profile, req.body, check_schema=check_schema)
        self.check_schema = check_schema
        self.body: list[bytes] = []
        self.pending: list[bytes] = []  # body pieces of the recv() being parsed
        self.now = 0  # perf_counter_ns of the recv() being parsed
        self.status = 0
        self.detail: str | None = None  # evidence for a failure: an error body, a finding's message
        # A trace replay's request, prepared ahead: its bytes go out at this perf_counter_ns (0: at once).
        self.due_ns = 0
        record.requested_prompt_tokens = req.prompt_tokens
        record.requested_output_tokens = req.want_tokens
        record.prefix_group = req.prefix_group

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
        last = res.last_choices_ns
        if res.token_arrivals_ns and (last is None or res.token_arrivals_ns[-1] > last):
            last = res.token_arrivals_ns[-1]
        r.t_last_choices_ns = last
        usage = res.usage if isinstance(res.usage, dict) else None
        completion = usage.get("completion_tokens") if usage else None
        prompt = usage.get("prompt_tokens") if usage else None
        r.output_tokens, r.output_tokens_source = resolve_output_tokens(
            completion if isinstance(completion, int) else None, len(res.token_arrivals_ns), res.text())
        r.prompt_tokens = prompt if isinstance(prompt, int) else None
        if res.reasoning_events or (usage and "completion_tokens_details" in usage):  # reasoning, maybe
            _reasoning(r, usage, res.reasoning_events, res.output_from)
        failure = None
        found = (*self.decoder.findings, *v.findings)
        state.protocol.streams += 1
        if found:
            state.protocol.note(found, time.perf_counter_ns(), state.in_flight)
        for f in found:
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
        """A non-stream answer, read as conformance reads it: every choice, usage from the body."""
        r = self.record
        assert r.t_end_ns is not None
        raw = b"".join(self.body)
        found, body = response_body_findings(raw, self.status, self.validator.profile,
                                             check_schema=self.check_schema)
        outcome = Outcome(found, response=body, profile=self.validator.profile)
        choices = choices_of(outcome)
        failure = None
        for f in found:
            if f.severity is Severity.ERROR and f.rule in FAILURE_RULES:
                if failure is None:
                    failure, self.detail = f.rule, (_snippet(raw) if body is None else f.message[:300])
            else:
                state.findings[f.rule] = state.findings.get(f.rule, 0) + 1
        if failure is None and not choices:
            failure, self.detail = "response.schema", "no choice in the answer: " + _snippet(raw)
        if failure is not None:
            r.error = failure
            return
        r.add_token_event(r.t_end_ns)  # the whole body is the one token-bearing "event"
        r.t_first_choices_ns = r.t_end_ns
        usage = usage_of(outcome)
        completion = usage.get("completion_tokens") if usage else None
        r.output_tokens, r.output_tokens_source = resolve_output_tokens(
            completion if isinstance(completion, int) else None, 0, "".join(c.text for c in choices))
        prompt = usage.get("prompt_tokens") if usage else None
        r.prompt_tokens = prompt if isinstance(prompt, int) else None  # as a stream's (the context's growth)
        if usage and "completion_tokens_details" in usage:
            _reasoning(r, usage, 0, 0)
        r.ok = True


def _reasoning(r: RequestRecord, usage: dict[str, Any] | None, events: int, output_from: int | None) -> None:
    """A reasoning model's figures into ``r``: its reasoning tokens (usage's
    completion_tokens_details.reasoning_tokens, else the reasoning-only events) and where its
    output began. Nothing when neither reasoning deltas came nor usage counts reasoning tokens."""
    details = usage.get("completion_tokens_details") if usage else None
    counted = details.get("reasoning_tokens") if isinstance(details, dict) else None
    if not isinstance(counted, int) or isinstance(counted, bool) or counted < 0:
        counted = None
    if events:
        r.reasoning_tokens, r.reasoning_tokens_source = (counted, "usage") if counted is not None else (events, "events")
    elif counted:  # reasoning the server did not stream (hidden): output began with the first token
        r.reasoning_tokens, r.reasoning_tokens_source = counted, "usage"
    else:
        return
    r.first_output_index = output_from


def reply_text(ex: Exchange) -> str:
    """The assistant's reply of a finished exchange (choice 0's content), as the next turn of
    a multi-turn session carries it: the stream's deltas assembled, or the answer's message."""
    if ex.stream:
        return ex.validator.result.text()
    try:
        body = orjson.loads(b"".join(ex.body))
    except orjson.JSONDecodeError:
        return ""
    for choice in choices_of(Outcome([], response=body, profile=ex.validator.profile)):
        return choice.text
    return ""


def _snippet(body: bytes, limit: int = 300) -> str:
    text = body[:limit * 4].decode("utf-8", errors="replace").strip()
    return (text[:limit] + "…") if len(text) > limit else text or "(empty body)"


def _open_socket(host: str, port: int, timeout: float) -> Any:
    """A connected gevent socket. An IP literal (127.0.0.1, the usual target) is connected
    directly: gevent's create_connection first resolves every address in a thread, measured
    at 0.36 ms p50 and 3.3 ms p99 per connection on a 2-core VM (a direct connect: 0.08 and
    0.9 ms), which a request sent on schedule (open loop, trace replay) pays when it needs a
    new connection. A name goes through the resolver, as before."""
    try:
        family = _stdsocket.AF_INET6 if ipaddress.ip_address(host).version == 6 else _stdsocket.AF_INET
    except ValueError:
        return gevent.socket.create_connection((host, port), timeout=timeout)
    sock = gevent.socket.socket(family, _stdsocket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class Connection:
    """One keep-alive HTTP/1.1 connection.

    Plain TCP (the usual case) keeps a non-blocking stdlib socket and a libev
    read watcher: the response is read from the watcher's callback, in gevent's
    hub, one recv() per readiness and no greenlet switch per read (a switch and
    gevent's recv wrapper per event were the largest per-token cost). TLS keeps
    a gevent socket read by the user's greenlet.
    """

    def __init__(self, b: RequestBuilder, read_timeout_s: float) -> None:
        sock = _open_socket(b.host, b.port, min(read_timeout_s, 10.0))
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


class Stale(Exception):
    """A reused keep-alive socket the server had closed: resend once on a new one."""


class WatchedRead:
    """Reads one response on a plain-TCP connection from its libev watcher callback.

    ``on_readable`` runs in the hub: one recv(), the stamp, llhttp, then the
    SSE decoder and validator through :class:`Parser`. It never blocks and
    never raises; it ends by stopping the watcher and setting ``done``.
    """

    __slots__ = ("conn", "done", "ex", "outcome", "parser", "reused")

    def __init__(self, conn: Connection, ex: Exchange, parser: Parser, reused: bool) -> None:
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
            self._end(Stale() if self.reused and r.t_first_byte_ns is None else Failure("reset"))
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
        except Failure as failure:
            self._end(failure)
        except HTTPParseError:  # garbage on the wire
            self._end(Failure("http.parse"))
        except Exception as exc:  # a bug of ours: counted with its name, never fatal to the run
            self._end(Failure(f"client error: {type(exc).__name__}: {exc}"[:200]))

    def _eof(self, now: int) -> None:
        r = self.ex.record
        parser = self.parser
        if self.reused and r.t_first_byte_ns is None:
            self._end(Stale())
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
        self._end(Failure("reset"))


class GeventClient:
    """Connections for one user (closed loop: one; open loop: a shared pool)."""

    def __init__(self, b: RequestBuilder, s: LoadSettings,
                 connect: Callable[[RequestBuilder, float], Connection] | None = None) -> None:
        self.b = b
        self.s = s
        self.idle: list[Connection] = []
        # The transport seam: how a new connection is opened (tests pass scripted ones).
        self.connect: Callable[[RequestBuilder, float], Connection] = connect or Connection

    def _idle_connection(self) -> Connection | None:
        """A pooled connection the server has not visibly closed (a FIN or RST already
        received is seen here, without sending anything on it); None when there is none."""
        while self.idle:
            conn = self.idle.pop()
            if conn.raw is None or conn.open_for_reuse():
                return conn
            state.reconnects["closed while idle"] = state.reconnects.get("closed while idle", 0) + 1
            conn.close()
        return None

    def exchange(self, ex: Exchange, req: Prepared, fresh: bool = False) -> None:
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
                conn = self.connect(self.b, self.s.read_timeout_s)
            except TimeoutError:
                raise Failure("connect timeout") from None
            except OSError as exc:
                raise Failure(f"connect: {exc.strerror or exc}") from None
        payload = self.b.head(req, ex.record.request_id) + req.body_json
        parser = Parser(ex)
        try:
            if conn.raw is not None:
                self._watched(conn, ex, parser, payload, reused)
            else:
                self._blocking(conn, ex, parser, payload, reused)
        except Stale:
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

    def _watched(self, conn: Connection, ex: Exchange, parser: Parser, payload: bytes, reused: bool) -> None:
        r = ex.record
        raw = conn.raw
        assert raw is not None
        read = WatchedRead(conn, ex, parser, reused)
        if ex.due_ns:
            sleep_until(ex.due_ns)
        r.t_sent_ns = time.perf_counter_ns()
        try:
            view = memoryview(payload)
            while view:
                with contextlib.suppress(BlockingIOError):
                    view = view[raw.send(view):]
                if view:
                    gevent.get_hub().wait(conn.writer)
        except OSError:
            raise Stale() if reused else Failure("reset") from None
        conn.reader.start(read.on_readable)
        try:
            # The watcher does the reading; this greenlet only enforces the read timeout
            # (silence on the wire since the last recv, or since the request went out).
            limit_ns = int(self.s.read_timeout_s * 1e9)
            while not read.done.wait(timeout=(limit_ns - (time.perf_counter_ns() - max(ex.now, r.t_sent_ns))) / 1e9):
                if time.perf_counter_ns() - max(ex.now, r.t_sent_ns) >= limit_ns:
                    raise Failure("timeout")
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

    def _blocking(self, conn: Connection, ex: Exchange, parser: Parser, payload: bytes, reused: bool) -> None:
        """TLS: the user's greenlet reads its gevent socket."""
        r = ex.record
        sock = conn.sock
        try:
            if ex.due_ns:
                sleep_until(ex.due_ns)
            r.t_sent_ns = time.perf_counter_ns()
            sock.sendall(payload)
            while True:
                data = sock.recv(_RECV_BYTES)
                ex.now = now = time.perf_counter_ns()
                if not data:
                    if reused and r.t_first_byte_ns is None:
                        raise Stale
                    r.t_end_ns = now
                    conn.reusable = False
                    if parser.headers_complete:
                        # EOF ends a body delimited by the connection's close, and cuts any other.
                        with contextlib.suppress(HTTPParseError):
                            parser.feed(b"")
                        if parser.message_complete:
                            break
                    raise Failure("reset")
                if r.t_first_byte_ns is None:
                    r.t_first_byte_ns = now
                parser.feed(data)
                if parser.message_complete:
                    r.t_end_ns = now
                    break
        except (Failure, Stale):
            raise
        except TimeoutError:
            raise Failure("timeout") from None
        except OSError:
            if reused and r.t_first_byte_ns is None:
                raise Stale from None
            raise Failure("reset") from None
        except HTTPParseError:  # garbage on the wire
            raise Failure("http.parse") from None
        except Exception as exc:  # a bug of ours: counted with its name, never fatal to the run
            raise Failure(f"client error: {type(exc).__name__}: {exc}"[:200]) from None

    def open_ahead(self, n: int) -> None:
        """Open ``n`` idle connections now (a trace replay, before its clock starts: its first
        requests must not pay for connecting). A failure is left for the requests to meet."""
        for _ in range(n):
            try:
                self.idle.append(self.connect(self.b, self.s.read_timeout_s))
            except OSError:
                return

    def close(self) -> None:
        for c in self.idle:
            c.close()
        self.idle.clear()


class HttpxClient:
    """httpx (sync) under gevent: the alternative measured by benchmarks/load_cost.py."""

    def __init__(self, b: RequestBuilder, s: LoadSettings) -> None:
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

    def exchange(self, ex: Exchange, req: Prepared, retried: bool = False) -> None:
        """As :meth:`GeventClient.exchange`, stale keep-alive connections included: httpcore
        drops an idle connection already seen closed; one closed after the request went out
        and before any response byte fails here and the request is sent once more."""
        httpx = self.httpx
        r = ex.record
        headers = {**self.b.headers, "X-Request-Id": r.request_id}
        maybe_reused = not retried and bool(self._idle())
        try:
            if ex.due_ns:
                sleep_until(ex.due_ns)
            r.t_sent_ns = time.perf_counter_ns()
            with self.client.stream(req.method, req.path, content=req.body_json, headers=headers) as resp:
                r.t_first_byte_ns = time.perf_counter_ns()  # headers parsed: the best httpx offers
                ex.status = resp.status_code
                for chunk in resp.iter_raw(_RECV_BYTES):
                    ex.now = time.perf_counter_ns()
                    ex.on_body(chunk)
                r.t_end_ns = time.perf_counter_ns()
        except httpx.TimeoutException:
            raise Failure("timeout") from None
        except httpx.ConnectError as exc:
            raise Failure(f"connect: {exc}") from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
            if not (maybe_reused and r.t_first_byte_ns is None):
                raise Failure("reset") from None
            state.reconnects["closed before the response"] = (
                state.reconnects.get("closed before the response", 0) + 1)
            for conn in self._idle():  # likely dead too; httpcore drops closed ones
                conn.close()
            self.exchange(ex, req, retried=True)
            return
        except httpx.HTTPError:
            raise Failure("reset") from None
        ex.finish(complete=True)

    def close(self) -> None:
        self.client.close()


_SPIN_NS = 1_200_000  # the event loop's timer: wakes up to ~1.2 ms late (whole-millisecond epoll waits)


class _Quantile:
    """A running estimate of a quantile ``q`` of a stream of values (stochastic tracking:
    up ``step * q`` after a value above it, down ``step * (1 - q)`` after one at or below),
    kept between ``lo`` and ``hi``."""

    __slots__ = ("hi", "lo", "q", "step", "value")

    def __init__(self, q: float, start: int, lo: int, hi: int, step: int) -> None:
        self.q, self.value, self.lo, self.hi, self.step = q, start, lo, hi, step

    def add(self, x: int) -> None:
        v = self.value + (self.step * self.q if x > self.value else -self.step * (1.0 - self.q))
        self.value = int(min(max(v, self.lo), self.hi))


class _WakeLead:
    """How far ahead of a due time a kernel deadline timer is set, from how late this process
    wakes from one: its 90th percentile while the spins that end the waits (yielding until
    the due time) cost under :data:`SPIN_BUDGET` of the wall time, else its median (half the
    writes then go out as late as the wake-up was). A quiet machine wakes within tens of
    microseconds, a busy VM within a few hundred; spinning for every write at a high rate
    would saturate the generator's core (benchmarks/open_loop_slip.py)."""

    SPIN_BUDGET = 0.02
    WINDOW_NS = 1_000_000_000

    def __init__(self) -> None:
        self.p50 = _Quantile(0.5, 200_000, 10_000, 1_000_000, 10_000)
        self.p90 = _Quantile(0.9, 300_000, 10_000, 1_000_000, 10_000)
        self.window_start_ns = time.perf_counter_ns()
        self.spun_ns = 0
        self.over_budget = False

    @property
    def ns(self) -> int:
        return self.p50.value if self.over_budget else self.p90.value

    def woke(self, late_ns: int) -> None:
        self.p50.add(late_ns)
        self.p90.add(late_ns)

    def spun(self, spin_ns: int, now_ns: int) -> None:
        self.spun_ns += spin_ns
        elapsed = now_ns - self.window_start_ns
        if elapsed >= self.WINDOW_NS:
            self.over_budget = self.spun_ns > self.SPIN_BUDGET * elapsed
            self.window_start_ns, self.spun_ns = now_ns, 0


wake_lead = _WakeLead()


def sleep_until(due_ns: int) -> None:
    """Return at ``due_ns`` (perf_counter_ns), late by microseconds, not by the event loop's
    timer granularity (libev's epoll wait counts whole milliseconds, rounded up: its timer
    fires 0.2-1.2 ms late). On Linux a kernel timer (clocks.DeadlineTimers) wakes the loop
    :data:`wake_lead` short of the due time; elsewhere the loop's own timer does,
    :data:`_SPIN_NS` short of it. The rest is spent yielding to the other greenlets
    (``sleep(0)``: the hub still polls every socket) until it is there."""
    lead, woke = wake_lead.ns, 0
    if due_ns - time.perf_counter_ns() > lead and deadline_timers.available:
        try:
            fd = deadline_timers.arm(due_ns - lead)
        except OSError:  # no timer to be had (fd limit): the loop's own below
            pass
        else:
            try:
                gevent.socket.wait_read(fd)
            finally:
                deadline_timers.release(fd)
            woke = time.perf_counter_ns()
            wake_lead.woke(woke - (due_ns - lead))
    # (after the kernel timer, under 1 ms is left, never over _SPIN_NS: only yields here)
    while (left := due_ns - time.perf_counter_ns()) > 0:
        gevent.sleep((left - _SPIN_NS) / 1e9 if left > _SPIN_NS else 0)
    if woke:
        now = time.perf_counter_ns()
        wake_lead.spun(now - woke, now)


def make_client(s: LoadSettings) -> GeventClient | HttpxClient:
    b = state.builder
    return HttpxClient(b, s) if s.client == "httpx" else GeventClient(b, s)




def transport_detail(reason: str | None) -> str:
    return {
        "reset": "the connection closed before the response was complete",
        "timeout": "no complete response within the request's time limit, or silence past the read timeout",
        "http.parse": "the bytes received are not an HTTP/1.1 response",
    }.get(reason or "", reason or "unknown")

