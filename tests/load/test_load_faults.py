"""A misbehaving target is counted as failures with reasons; the run never hangs."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatprobe.server.runner import spawn_server

from .conftest import QUICK, STUB, read_summary, run_load


@pytest.mark.parametrize(("fault", "reason"), [
    ("reset-mid-stream", "reset"),
    # the rest in the slow tier (tox -e slow): the default run keeps one transport fault
    pytest.param("stall", "timeout", marks=pytest.mark.slow),
    pytest.param("truncated-event", "sse.unterminated_event", marks=pytest.mark.slow),
    pytest.param("no-done", "stream.terminator_missing", marks=pytest.mark.slow),
])
def test_fault_counted_as_failure(fault: str, reason: str, tmp_path: Path) -> None:
    with spawn_server(faults=[fault]) as url:
        started = time.monotonic()
        proc = run_load(["--target", url, "--users", "2", "--duration", "1.5",
                         "--timeout", "0.6", "--read-timeout", "0.4", *QUICK], tmp_path, timeout=30)
        took = time.monotonic() - started
    # Every request failed: the run measured nothing and says so in one line, exit 1.
    assert proc.returncode == 1 and "nothing was measured" in proc.stderr, proc.stderr
    req = read_summary(tmp_path)["summary"]["requests"]
    assert req["total"] > 0 and req["ok"] == 0, req
    assert set(req["failed_by_reason"]) == {reason}, req
    assert took < 15  # duration + start-up: the stalls did not hold the run


def _stub(behaviour: bytes | None) -> Iterator[str]:
    """A loopback TCP server answering every request with ``behaviour`` (None: close at once)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                    if behaviour is not None:
                        conn.sendall(behaviour)
                except OSError:
                    pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stop.set()
        t.join(5)
        srv.close()


ERROR_500 = (b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
             b"Content-Length: 17\r\nConnection: close\r\n\r\n{\"error\": \"boom\"}")


@pytest.mark.parametrize(("behaviour", "reason"), [
    pytest.param(ERROR_500, "http 500", marks=pytest.mark.slow),
    (b"garbage, not HTTP at all\r\n\r\n", "http.parse"),
    pytest.param(None, "reset", marks=pytest.mark.slow),  # (reset: also test_fault_counted_as_failure)
])
def test_stub_target_failures(behaviour: bytes | None, reason: str, tmp_path: Path) -> None:
    for url in _stub(behaviour):
        proc = run_load(["--target", url, "--users", "2", "--duration", "1", "--timeout", "1", *QUICK, *STUB],
                        tmp_path, timeout=30)
        assert proc.returncode == 1 and "nothing was measured" in proc.stderr, proc.stderr
        req = read_summary(tmp_path)["summary"]["requests"]
        assert req["total"] > 0 and req["ok"] == 0
        assert set(req["failed_by_reason"]) == {reason}, req



def test_refused_connections_are_retried_with_backoff(tmp_path: Path) -> None:
    """A server that dies once the run started (it accepts the reachability check, then stops
    listening): each closed-loop user backs off (10 ms doubling to 1 s), so a 2 s run sends
    tens of requests, not the thousands a refused connect's microseconds would allow; each is
    counted with its reason."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    url = f"http://127.0.0.1:{srv.getsockname()[1]}"

    def die_after_first() -> None:
        conn, _ = srv.accept()  # the CLI's reachability check
        conn.close()
        srv.close()  # from now on: refused

    t = threading.Thread(target=die_after_first, daemon=True)
    t.start()
    try:
        proc = run_load(["--target", url, "--users", "2", "--duration", "2", *QUICK, *STUB], tmp_path, timeout=30)
    finally:
        t.join(5)
        srv.close()
    assert proc.returncode == 1 and "nothing was measured" in proc.stderr, proc.stderr
    req = read_summary(tmp_path)["summary"]["requests"]
    assert [r.startswith("connect: ") for r in req["failed_by_reason"]] == [True], req
    # 2 users x (10+20+...+640 ms, then 1 s apart) in 2 s: about 18; without the back-off, thousands.
    assert 4 <= req["total"] <= 60, req
