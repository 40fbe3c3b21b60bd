"""The reference server is safe to expose on a laptop (issue 14, item 2).

Through ``chatprobe serve --port 0`` in a child process: a huge request (output
cap 10**9 with ``ignore_eos``, stream and non-stream) is refused 400 with a
clear message and the server's RSS stays under 300 MB; long answers inside the
caps are generated as they are written (RSS flat); a body over the cap gets
413, one stream too many 429 with Retry-After; SIGTERM or SIGINT with streams
open ends the process within 2 s; a bad number on the command line is one
line and exit 2. In-process: the limits hold whatever faults are on, the plan
holds no token list, generated values stay within their budget.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from random import Random
from typing import IO, Any

import httpx
import orjson
import pytest

from chatprobe import children
from chatprobe.cli import main
from chatprobe.server import chunks, runner
from chatprobe.server.generate import (
    ECHO_MAX_CHARS,
    GENERATED_CHARS,
    Quirks,
    make_plan,
    value_for_schema,
)
from chatprobe.server.runner import read_listening_line, running_server, serve_argv
from chatprobe.server.truth import TruthLog, TruthRecord

CHAT = "/v1/chat/completions"
RSS_LIMIT_MB = 300
EXIT_WITHIN_S = 2.0
HUGE = 10**9


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hello"}], **extra}


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def exit_time(child: subprocess.Popen[bytes], sig: int) -> float:
    """Send ``sig``; seconds until the child is gone (polled, at most 10 s)."""
    start = time.monotonic()
    child.send_signal(sig)
    deadline = start + 10
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert child.poll() is not None, "the server did not exit within 10 s"
    return time.monotonic() - start


@contextlib.contextmanager
def serve(**options: Any) -> Iterator[tuple[str, subprocess.Popen[bytes], IO[bytes]]]:
    """``chatprobe serve --port 0`` (runner.serve_argv) as a child: its URL, the child, its stderr."""
    with tempfile.TemporaryFile() as errors, children.started(
            serve_argv(**options), stdout=subprocess.PIPE, stderr=errors, env=children.python_env()) as child:
        yield read_listening_line(child, errors), child, errors


def stderr_of(errors: IO[bytes]) -> str:
    errors.seek(0)
    return errors.read().decode(errors="replace")


@contextlib.contextmanager
def open_streams(url: str, count: int, **extra: Any) -> Iterator[list[Iterator[bytes]]]:
    """``count`` streams of 32768 tokens at the server's ITL, each past its first bytes
    (its reader kept: a reader dropped closes its connection)."""
    with httpx.Client(base_url=url, timeout=10, limits=httpx.Limits(max_connections=count + 8)) as client, \
            contextlib.ExitStack() as stack:
        readers = []
        for _ in range(count):
            response = stack.enter_context(client.stream(
                "POST", CHAT, json=chat(stream=True, max_tokens=32768, ignore_eos=True, **extra)))
            assert response.status_code == 200
            reader = response.iter_raw()
            assert next(reader).startswith(b"data: ")
            readers.append(reader)
        yield readers


def test_huge_request_is_refused_memory_bounded_and_sigterm_ends_open_streams() -> None:
    with serve(itl_ms=2, max_concurrent_streams=12) as (url, child, errors):
        with httpx.Client(base_url=url, timeout=30) as client:
            for field in ("max_tokens", "max_completion_tokens", "min_tokens"):
                for stream in (True, False):
                    response = client.post(CHAT, json=chat(stream=stream, ignore_eos=True, **{field: HUGE}))
                    assert response.status_code == 400, response.text
                    error = response.json()["error"]
                    assert field in error["message"] and "--max-output-tokens" in error["message"]
                    assert error["param"] == field and error["type"] == "invalid_request_error"
            elastic = client.post("/_inference/chat_completion/e/_stream",
                                  json={"messages": [{"role": "user", "content": "hi"}],
                                        "max_completion_tokens": HUGE})
            assert elastic.status_code == 400 and "max_completion_tokens is too large" in elastic.text
            assert rss_mb(child.pid) < RSS_LIMIT_MB

            over = client.post(CHAT, content=b" " * (4 * 1024 * 1024 + 1),
                               headers={"content-type": "application/json"})
            assert over.status_code == 413 and "--max-body-bytes" in over.json()["error"]["message"]

        with open_streams(url, 12):
            with httpx.Client(base_url=url, timeout=10) as client:
                refused = client.post(CHAT, json=chat(stream=True))
                assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
                assert "--max-concurrent-streams" in refused.json()["error"]["message"]
                assert client.get("/_chatprobe/health").status_code == 200  # the control plane is not counted
            assert rss_mb(child.pid) < RSS_LIMIT_MB
            took = exit_time(child, signal.SIGTERM)
        assert took < EXIT_WITHIN_S, f"exited {took:.2f} s after SIGTERM"
        assert "Traceback" not in stderr_of(errors) and "Exception" not in stderr_of(errors)


def test_long_answers_within_the_caps_keep_rss_flat_and_sigint_ends_the_server() -> None:
    with serve() as (url, child, errors):
        before = rss_mb(child.pid)
        with httpx.Client(base_url=url, timeout=60) as client:
            body = client.post(CHAT, json=chat(max_tokens=32768, ignore_eos=True, n=8))
            assert body.status_code == 200 and body.headers.get("transfer-encoding") == "chunked"
            answer = body.json()
            assert answer["usage"]["completion_tokens"] == 8 * 32768
            assert {c["finish_reason"] for c in answer["choices"]} == {"length"}
            del body, answer
            logprobs = client.post(CHAT, json=chat(max_tokens=32768, ignore_eos=True, logprobs=True,
                                                   top_logprobs=3))
            assert len(logprobs.json()["choices"][0]["logprobs"]["content"]) == 32768
            del logprobs
            with client.stream("POST", CHAT, json=chat(stream=True, max_tokens=32768, ignore_eos=True,
                                                       n=4)) as stream:
                assert sum(len(piece) for piece in stream.iter_raw()) > 4 * 32768 * 100
        # a client that asks for a long stream and reads nothing: writes wait for it
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as idle:
            payload = json.dumps(chat(stream=True, max_tokens=32768, ignore_eos=True, n=64)).encode()
            idle.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                         b"content-length: %d\r\n\r\n" % len(payload) + payload)
            time.sleep(0.5)  # not synchronisation: the time the server has to grow, were it to
            assert rss_mb(child.pid) < before + 60
            took = exit_time(child, signal.SIGINT)
        assert took < EXIT_WITHIN_S, f"exited {took:.2f} s after SIGINT"
        assert "Traceback" not in stderr_of(errors)


BAD_NUMBERS = [
    ["--port", "-1"], ["--port", "65536"], ["--ttft-ms", "nan"], ["--itl-ms", "inf"], ["--jitter-ms", "-1"],
    ["--itl-per-active-ms", "1e400"], ["--seed", str(2**80)], ["--max-concurrency", "0"],
    ["--max-queue", "-1", "--max-concurrency", "2"], ["--max-output-tokens", "0"], ["--max-body-bytes", "1e9"],
    ["--max-concurrent-streams", "-5"], ["--truth-records", "-1"], ["--port", "1e3"],
]


@pytest.mark.parametrize("argv", [BAD_NUMBERS[0], BAD_NUMBERS[2], BAD_NUMBERS[10]])
def test_bad_numbers_are_one_line_and_exit_2(argv: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "chatprobe", "serve", *argv], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert argv[0] in done.stderr and done.stdout == ""


@pytest.mark.parametrize("argv", BAD_NUMBERS)
def test_every_numeric_option_is_range_checked(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(["serve", *argv])
    except SystemExit as exc:  # argparse's own refusal (not a number at all): also one line, 2
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and argv[0] in err and "Traceback" not in err


# --- in process (a thread server): the classes behind the must-show ------------------------------


@pytest.mark.parametrize("faults", [(), ("out-of-range-accepted", "max-tokens-ignored", "error-envelope-detail")])
def test_limits_hold_whatever_faults_are_on(faults: tuple[str, ...]) -> None:
    with running_server(faults=list(faults), max_output_tokens=64) as url, \
            httpx.Client(base_url=url, timeout=10) as client:
        assert client.post(CHAT, json=chat(max_tokens=64)).status_code == 200
        for extra in ({"max_tokens": 65}, {"n": 5000}, {"logprobs": True, "top_logprobs": 500},
                      {"stop": ["a"] * 40}, {"max_completion_tokens": 2**31 + 5}):
            response = client.post(CHAT, json=chat(**extra))
            assert response.status_code == 400, (extra, response.text)
            if faults:  # served past validation: refused by the limits, whatever the fault
                assert "This server allows at most" in response.text or "too large" in response.text
        # an answer longer than the cap (a long echo) is cut there: finish_reason length
        words = " ".join(["word"] * 200)
        answer = client.post(CHAT, json=chat(messages=[{"role": "user", "content": f"say: {words}"}])).json()
        assert answer["usage"]["completion_tokens"] == 64 and answer["choices"][0]["finish_reason"] == "length"


def test_body_caps_in_the_dialect_envelope() -> None:
    with running_server(max_body_bytes=2048) as url, httpx.Client(base_url=url, timeout=10) as client:
        big = json.dumps(chat(messages=[{"role": "user", "content": "x" * 4096}])).encode()
        declared = client.post(CHAT, content=big, headers={"content-type": "application/json"})
        assert declared.status_code == 413 and declared.headers["connection"] == "close"
        assert declared.json()["error"]["code"] == "request_too_large"

        def pieces() -> Iterator[bytes]:  # chunked: no Content-Length, the cap found while reading
            yield from (big[i:i + 512] for i in range(0, len(big), 512))

        streamed = client.post(CHAT, content=pieces(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413
        elastic = client.post("/_inference/completion/e/_stream", content=big,
                              headers={"content-type": "application/json"})
        assert elastic.status_code == 413 and elastic.json()["status"] == 413  # Elasticsearch's envelope
        assert client.post(CHAT, json=chat()).status_code == 200


def recv_until_closed(sock: socket.socket, deadline_s: float) -> bytes:
    sock.settimeout(deadline_s)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_a_request_head_is_bounded_in_size_and_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "HEAD_TIMEOUT_S", 0.3)
    with running_server() as url:
        address = ("127.0.0.1", int(url.rsplit(":", 1)[1]))
        with socket.create_connection(address) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
            with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                for k in range(64):  # 4 MiB of headers: refused at 64 KiB, never held
                    sock.sendall(b"x-pad-%d: %s\r\n" % (k, b"a" * 65536))
            assert recv_until_closed(sock, 5).startswith(b"HTTP/1.1 431 ")
        with socket.create_connection(address) as sock:  # a head that never ends
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
            assert recv_until_closed(sock, 5).startswith(b"HTTP/1.1 408 ")
        with socket.create_connection(address) as sock:  # a connection that never says anything
            assert recv_until_closed(sock, 5).startswith(b"HTTP/1.1 408 ")
        with httpx.Client(base_url=url, timeout=10) as client:  # a long keep-alive pause is fine
            assert client.post(CHAT, json=chat()).status_code == 200
            time.sleep(0.5)  # longer than the head timeout, between requests (not synchronisation)
            assert client.post(CHAT, json=chat()).status_code == 200


def test_thread_server_stops_at_once_with_streams_open() -> None:
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(running_server(itl_ms=5, max_concurrent_streams=4))
        streams = stack.enter_context(open_streams(url, 4))
        with httpx.Client(base_url=url, timeout=10) as client:
            refused = client.post("/api/v1/chat/completions", json=chat(stream=True))
            assert refused.status_code == 429 and refused.json()["error"]["type"] == "rate_limit_error"
        start = time.monotonic()
        stack.pop_all().close()  # the server stops first (LIFO: streams, then server)
        assert time.monotonic() - start < EXIT_WITHIN_S
        assert streams


def test_a_plan_holds_no_token_list() -> None:
    body = chat(max_tokens=1 << 20, ignore_eos=True, n=4, logprobs=True, top_logprobs=5, stream=True)
    tracemalloc.start()
    try:
        plan = make_plan(body, dialect="openai", model="m", server_seed=0, created=0, quirks=Quirks(),
                         max_output_tokens=1 << 20)
        items = chunks.stream_items(plan, "openai")
        first = [next(items) for _ in range(100)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert plan.completion_tokens == 4 << 20 and len(first) == 100
    assert peak < 1 << 20, f"{peak} bytes traced for a plan of 4M tokens"


def test_a_long_echo_is_cut_and_a_stop_found_within_the_cap() -> None:
    echo = "say: " + "word " * 100_000 + "STOP"
    plan = make_plan(chat(messages=[{"role": "user", "content": echo}], stop=["STOP"]), dialect="openai",
                     model="m", server_seed=0, created=0, quirks=Quirks())
    content = plan.choices[0].content
    assert content.startswith("word word") and ECHO_MAX_CHARS <= len(content) < ECHO_MAX_CHARS + 500
    plan = make_plan(chat(messages=[{"role": "user", "content": "say: " + "a " * 1000 + "STOP"}],
                          stop=["STOP", "a a a"]), dialect="openai", model="m", server_seed=0, created=0,
                     quirks=Quirks(), max_output_tokens=100)
    assert plan.choices[0].content == "" and plan.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("schema", [
    {"type": "array", "minItems": 10**9, "items": {"type": "string", "minLength": 10**9}},
    {"type": "array", "minItems": 64, "items": {"type": "array", "minItems": 64, "items": {
        "type": "array", "minItems": 64, "items": {"type": "array", "minItems": 64, "items": {"type": "integer"}}}}},
    {"type": "string", "minLength": "many", "maxLength": None},
    {"type": "number", "minimum": "low", "maximum": float("inf")},
    orjson.loads('{"anyOf": [' * 500 + '{"type": "integer"}' + "]}" * 500),  # as deep as a body parses
])
def test_generated_values_stay_within_their_budget(schema: Any) -> None:
    value = value_for_schema(schema, Random(1))
    assert len(json.dumps(value)) <= GENERATED_CHARS + 1024


def test_unchecked_fields_of_a_dialect_do_not_break_the_server() -> None:
    with running_server() as url, httpx.Client(base_url=url, timeout=10) as client:
        response = client.post("/_inference/completion/e/_stream", json={
            "input": "say: hello", "n": "two", "stop": 5, "tools": 7, "tool_choice": {"function": "x"},
            "messages": 3, "response_format": {"type": "json_schema", "json_schema": "s"}})
        assert response.status_code == 200 and "hello" in response.text


def test_truth_log_is_bounded_in_times_not_only_records() -> None:
    log = TruthLog(capacity=100, max_stamps=1000)
    records = [TruthRecord(str(k), "/", "openai", 0) for k in range(10)]
    for record in records:
        log.add(record)
        log.stamp(record, 5, 300)
    assert sum(len(r.token_ns) for r in log.records) <= 1000
    assert [r.key for r in log.records] == ["7", "8", "9"]
    assert records[0].tokens == 300  # counted, though no longer held
    parts = json.loads(b"".join(log.json_parts()))
    assert [r["tokens"] for r in parts["records"]] == [300, 300, 300]
