"""Load mode does not invent trouble (issue 13, item 7).

- the X-Request-Id chatprobe adds is a UUID (some servers answer 400 to anything else);
- a server closing an idle keep-alive connection (legal, RFC 9112 §9.3.1) costs no
  request: one that failed on the reused connection before any response byte is sent
  again on a fresh one, and counted as a reconnect, not a failure;
- a run whose requests mostly failed says so first (summary.json ``verdict``, the
  console, the top of report.html), is never labelled trustworthy, and names the
  failure reasons with their counts and an example.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from chatprobe.metrics import MOSTLY_FAILED_FRACTION, failure_kind, load_verdict
from chatprobe.server.runner import spawn_server

from .conftest import QUICK, STUB, read_summary, run_load


# ---------------------------------------------------------------------------
# A small HTTP/1.1 server with a chosen keep-alive behaviour
# ---------------------------------------------------------------------------
def _sse_body() -> bytes:
    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    events = [
        {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
        {**chunk, "choices": [{"index": 0, "delta": {"content": "hello"}, "finish_reason": None}]},
        {**chunk, "choices": [{"index": 0, "delta": {"content": " world"}, "finish_reason": None}]},
        {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]},
        {**chunk, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}},
    ]
    text = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    return text.encode()


SSE = _sse_body()
STREAM_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: keep-alive\r\n"
                   b"Content-Length: " + str(len(SSE)).encode() + b"\r\n\r\n" + SSE)
_BAD_ID_BODY = b'{"error": {"message": "X-Request-Id must be a UUID"}}'
BAD_ID = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: "
          + str(len(_BAD_ID_BODY)).encode() + b"\r\n\r\n" + _BAD_ID_BODY)
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def _read_request(conn: socket.socket, buf: bytearray) -> bytes | None:
    """One request's head (the body is skipped by its Content-Length); None at EOF."""
    while b"\r\n\r\n" not in buf:
        data = conn.recv(65536)
        if not data:
            return None
        buf += data
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(rest) < length:
        data = conn.recv(65536)
        if not data:
            return None
        rest += data
    buf[:] = rest[length:]
    return head


@contextmanager
def keepalive_server(answers_per_connection: int, reject_all: bool = False) -> Iterator[dict[str, int]]:
    """Answers ``answers_per_connection`` requests on each connection, then reads the next
    request and closes without a byte of response (a server dropping a keep-alive
    connection just as the client reused it). A non-UUID X-Request-Id gets 400, as
    every request does with ``reject_all``."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    srv.settimeout(0.2)
    stop = threading.Event()
    stats = {"port": srv.getsockname()[1], "answered": 0, "dropped": 0, "bad_ids": 0}
    lock = threading.Lock()

    def handle(conn: socket.socket) -> None:
        buf = bytearray()
        with conn:
            conn.settimeout(5)
            try:
                for _ in range(answers_per_connection):
                    head = _read_request(conn, buf)
                    if head is None:
                        return
                    rid = re.search(rb"(?i)x-request-id:\s*(\S+)", head)
                    ok = rid is not None and UUID_RE.fullmatch(rid.group(1).decode()) is not None
                    conn.sendall(STREAM_RESPONSE if ok and not reject_all else BAD_ID)
                    with lock:
                        stats["answered" if ok else "bad_ids"] += 1
                if _read_request(conn, buf) is not None:
                    with lock:
                        stats["dropped"] += 1
            except OSError:
                pass

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield stats
    finally:
        stop.set()
        t.join(5)
        srv.close()


@pytest.mark.parametrize("client", ["gevent", pytest.param("httpx", marks=pytest.mark.slow)])
def test_dropped_keepalive_connection_is_not_a_failure(client: str, tmp_path: Path) -> None:
    with keepalive_server(answers_per_connection=2) as stats:
        proc = run_load(["--target", f"http://127.0.0.1:{stats['port']}", "--users", "2", "--duration", "1.5",
                         "--timeout", "2", "--client", client, *QUICK, *STUB], tmp_path, timeout=30)
    assert proc.returncode == 0, proc.stderr
    doc = read_summary(tmp_path)
    req = doc["summary"]["requests"]
    assert req["total"] > 4 and req["failed"] == 0, req
    assert stats["dropped"] > 0 and stats["bad_ids"] == 0, stats  # the server did drop reused connections
    assert doc["run"]["reconnects"].get("closed before the response", 0) > 0, doc["run"]
    # (trustworthy also needs an unsaturated generator: not this test's business on a busy machine)
    assert not doc["verdict"]["mostly_failed"] and doc["verdict"]["failures"] == [], doc["verdict"]
    assert "note: the server closed keep-alive connections" in proc.stdout


def test_request_ids_are_uuids(tmp_path: Path) -> None:
    with keepalive_server(answers_per_connection=1000) as stats:
        proc = run_load(["--target", f"http://127.0.0.1:{stats['port']}", "--users", "2", "--duration", "1",
                         "--timeout", "2", *QUICK, *STUB], tmp_path, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert stats["answered"] > 0 and stats["bad_ids"] == 0, stats
    lines = (tmp_path / "records.jsonl").read_text(encoding="utf-8").splitlines()
    ids = [json.loads(line)["request_id"] for line in lines]
    assert ids and len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in ids)


def _assert_untrustworthy(tmp_path: Path, stdout: str, reason: str, kind: str) -> dict[str, object]:
    doc = read_summary(tmp_path)
    verdict = doc["verdict"]
    assert not verdict["trustworthy"] and verdict["mostly_failed"], verdict
    assert verdict["reasons"][0].startswith("most requests failed"), verdict
    assert reason in verdict["reasons"][0]
    failures = {f["reason"]: f for f in verdict["failures"]}
    assert failures[reason]["kind"] == kind and failures[reason]["count"] == doc["summary"]["requests"]["failed"]
    assert failures[reason]["example"], failures
    # The console's first line and the top of the page say so.
    assert stdout.splitlines()[0].startswith("NOT TRUSTWORTHY: most requests failed"), stdout
    assert f"failed {failures[reason]['count']}: {reason}" in stdout
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    top = html.index("NOT TRUSTWORTHY")
    assert top < html.index("Requests and throughput") and top < html.index("Latency")
    assert "generator healthy: the figures describe the server" not in html
    return failures[reason]


@pytest.mark.parametrize(("fault", "reason", "kind", "rule"), [
    pytest.param("reset-mid-stream", "reset", "transport", "http.reset", marks=pytest.mark.slow),
    ("no-done", "stream.terminator_missing", "protocol", "stream.terminator_missing"),
    pytest.param("midstream-error-200", "stream.error_in_200", "protocol", "stream.error_in_200", marks=pytest.mark.slow),
])
def test_failing_reference_server_marks_run_untrustworthy(fault: str, reason: str, kind: str, rule: str,
                                                          tmp_path: Path) -> None:
    with spawn_server(faults=[fault]) as url:
        proc = run_load(["--target", url, "--users", "2", "--duration", "1", "--timeout", "2", *QUICK],
                        tmp_path, timeout=30)
    # Every request failed: nothing was measured, so the run exits 1 with the reason in one line.
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "nothing was measured" in proc.stderr
    failure = _assert_untrustworthy(tmp_path, proc.stdout, reason, kind)
    assert failure["rule"] == rule


def test_rejected_requests_are_named_with_status_and_body(tmp_path: Path) -> None:
    """A server answering 400 to every request: the verdict names the status and quotes its body."""
    with keepalive_server(answers_per_connection=1000, reject_all=True) as stats:
        proc = run_load(["--target", f"http://127.0.0.1:{stats['port']}", "--users", "2", "--duration", "1",
                         "--timeout", "2", *QUICK, *STUB], tmp_path, timeout=30)
    assert proc.returncode == 1 and "nothing was measured" in proc.stderr, proc.stderr
    failure = _assert_untrustworthy(tmp_path, proc.stdout, "http 400", "http status")
    assert failure["rule"] == "http.status" and "must be a UUID" in str(failure["example"])


# ---------------------------------------------------------------------------
# The verdict itself (pure)
# ---------------------------------------------------------------------------
def _requests(total: int, failed: dict[str, int]) -> dict[str, object]:
    n = sum(failed.values())
    return {"total": total, "ok": total - n, "failed": n, "failed_by_reason": failed}


def test_verdict_threshold() -> None:
    assert MOSTLY_FAILED_FRACTION == 0.5
    half = load_verdict(_requests(10, {"http 503": 5}))
    assert half["trustworthy"] and not half["mostly_failed"]  # exactly half: a measured outcome, reported
    assert half["headline"].startswith("5 of 10 requests failed") and "http 503: 5" in half["headline"]
    most = load_verdict(_requests(10, {"http 503": 4, "reset": 2}))
    assert not most["trustworthy"] and most["mostly_failed"]
    assert [f["reason"] for f in most["failures"]] == ["http 503", "reset"]  # most frequent first
    assert "6 of 10" in most["reasons"][0] and "http 503: 4, reset: 2" in most["reasons"][0]
    nothing = load_verdict(_requests(0, {}))
    assert not nothing["trustworthy"] and "nothing was measured" in nothing["reasons"][0]
    clean = load_verdict(_requests(10, {}))
    assert clean["trustworthy"] and clean["headline"] == "all 10 requests succeeded"
    saturated = load_verdict(_requests(10, {}), ["gevent loop lag p99 9.0 ms > 5.0 ms"])
    assert not saturated["trustworthy"] and not saturated["mostly_failed"]
    assert saturated["reasons"] == ["the generator was saturated: gevent loop lag p99 9.0 ms > 5.0 ms"]


@pytest.mark.parametrize(("reason", "kind", "rule"), [
    ("http 400", "http status", "http.status"),
    ("http 503", "http status", "http.status"),
    ("reset", "transport", "http.reset"),
    ("timeout", "transport", "http.timeout"),
    ("connect: Connection refused", "transport", None),
    ("http.parse", "transport", "http.reset"),  # conform sees the same bytes as a reset
    ("connect timeout", "transport", None),
    ("http.body_too_large", "protocol", "http.body_too_large"),
    ("stream.terminator_missing", "protocol", "stream.terminator_missing"),
    ("sse.unterminated_event", "protocol", "sse.unterminated_event"),
    ("stream.error_event", "protocol", None),
    ("client error: KeyError: 'x'", "client", None),
])
def test_failure_kinds(reason: str, kind: str, rule: str | None) -> None:
    assert failure_kind(reason) == (kind, rule)
