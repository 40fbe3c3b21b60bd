"""The scraper of a server's /metrics: wrong or missing endpoints never disturb a run.

A fake server on 127.0.0.1 (stdlib, one thread per connection) serves each misbehaviour on a
path of its own; each is noted once (with how often) and ends the scraping, or is retried up
to the limit, and the scraper's stop() always returns. Short timeouts and small caps keep
every test to a fraction of a second.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from chatprobe.scraper import MAX_FAILURES_IN_A_ROW, Scraper, parse_exposition, scrape_once

PAGE = ('# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name="m"} 2\n'
        '# TYPE vllm:request_success_total counter\nvllm:request_success_total{model_name="m"} %d\n')


class _Handler(BaseHTTPRequestHandler):
    hits: ClassVar[dict[str, int]] = {}

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        path = self.path
        _Handler.hits[path] = _Handler.hits.get(path, 0) + 1
        if path == "/metrics":
            self._send(200, (PAGE % _Handler.hits[path]).encode(), "text/plain; version=0.0.4")
        elif path == "/missing":
            self._send(404, b"not found", "text/plain")
        elif path == "/auth":
            self._send(401, b'{"error": "unauthorized"}', "application/json")
        elif path == "/html":
            self._send(200, b"<!doctype html><html><body>dashboard</body></html>\n", "text/html")
        elif path == "/empty":
            self._send(200, b"", "text/plain")
        elif path == "/error":
            self._send(503, b"busy", "text/plain")
        elif path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/metrics")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/huge":
            body = b"# a comment line that goes on\n" * 40_000  # 1.2 MB, past the test's 64 KiB cap
            self._send(200, body, "text/plain")
        elif path == "/hang":
            time.sleep(1.0)  # past the test's 0.2 s deadline
            self._send(200, b"x 1\n", "text/plain")
        elif path == "/drip":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            for _ in range(20):  # a byte every 50 ms: never a read timeout, past the deadline
                try:
                    self.wfile.write(b"#")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.05)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def fake() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _until(predicate: object, limit_s: float = 5.0) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.01)


@pytest.mark.parametrize(("path", "said"), [
    ("/missing", "answered 404"),
    ("/auth", "needs credentials (HTTP 401)"),
    ("/html", "did not answer Prometheus text"),
    ("/empty", "no Prometheus sample"),
    ("/redirect", "redirects (HTTP 302)"),
    ("/huge", "more than 65536 bytes"),
])
def test_an_endpoint_that_will_not_give_metrics_ends_the_scraping_noted_once(fake: str, path: str, said: str) -> None:
    scraper = Scraper(fake + path, 0.02, timeout_s=0.5, max_bytes=65536).start()
    _until(lambda: scraper.log.gave_up is not None)
    log = scraper.stop()
    assert log.gave_up is not None and said in log.gave_up
    assert list(log.notes) == [log.gave_up] and log.notes[log.gave_up] == 1  # once, not every tick
    assert log.points == []


@pytest.mark.parametrize(("path", "said"), [
    ("/error", "answered HTTP 503"),
    ("/hang", "did not answer within 0.2 s"),
    ("/drip", "did not finish its answer within 0.2 s"),
])
def test_failing_scrapes_are_retried_then_given_up(fake: str, path: str, said: str) -> None:
    scraper = Scraper(fake + path, 0.02, timeout_s=0.2).start()
    _until(lambda: scraper.log.gave_up is not None)
    log = scraper.stop()
    assert log.failures == MAX_FAILURES_IN_A_ROW and log.gave_up is not None
    assert len(log.notes) == 1 and said in next(iter(log.notes)) and next(iter(log.notes.values())) == 3


def test_nothing_listening_is_a_failure_not_an_exception() -> None:
    log = scrape_once("http://127.0.0.1:9/metrics", timeout_s=0.5)
    assert log.failures == 1 and "could not be read" in next(iter(log.notes))


def test_scrapes_aim_at_the_window_the_generator_announces(fake: str, tmp_path: Path) -> None:
    window = tmp_path / "window.json"
    scraper = Scraper(fake + "/metrics", 0.5, window_file=window).start()
    now = time.perf_counter_ns()
    start, end = now + 150_000_000, now + 400_000_000
    window.write_text(json.dumps({"t0_ns": now, "start_ns": start, "end_ns": end}), encoding="utf-8")
    _until(lambda: sum(p.edge for p in scraper.log.points) == 2)
    log = scraper.stop()
    edges = [p for p in log.points if p.edge]
    assert len(edges) == 2
    assert edges[0].t_ns >= start and edges[1].t_ns >= end  # aimed at the edges, never before them
    assert log.points[-1].scalars["requests"] >= 1  # the last reading, taken on stop
    assert log.gave_up is None and not log.notes


OPENMETRICS = """\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} 2.0
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.05",model_name="m"} 3.0
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="m"} 4.0
vllm:time_to_first_token_seconds_count{model_name="m"} 4.0
vllm:time_to_first_token_seconds_sum{model_name="m"} 0.2
# TYPE python_gc_objects_collected counter
python_gc_objects_collected_total{generation="0"} 77.0
# TYPE my_app_queue gauge
my_app_queue 5.0
# EOF
"""


def test_only_the_wanted_lines_reach_the_parser() -> None:
    scraper = Scraper("http://127.0.0.1:1/metrics", 1.0, ("my_app_queue",))
    light = parse_exposition(scraper._only_wanted(OPENMETRICS, histograms=False), "application/openmetrics-text")
    assert {s.name for s in light} == {"vllm:num_requests_running", "my_app_queue"}
    full = parse_exposition(scraper._only_wanted(OPENMETRICS, histograms=True), "application/openmetrics-text")
    assert "vllm:time_to_first_token_seconds_bucket" in {s.name for s in full}
    assert "python_gc_objects_collected_total" not in {s.name for s in full}
