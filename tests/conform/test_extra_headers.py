"""Extra headers (conform --header, the plugin's headers setting) reach the server on
every request, the unauthenticated ones included, and secret ones never reach a report."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from chatprobe.cli import main


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, str]]] = []

    def _answer(self) -> None:
        if self.path != "/":  # "/" is conform's reachability probe, not a check's request
            self.seen.append(dict(self.headers.items()))
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = json.dumps({"error": {"message": "nope", "type": "invalid_request_error", "param": None, "code": None}})
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_extra_headers_reach_every_request_and_secrets_stay_out_of_reports(
    recorder: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "tenant-secret-value-42"
    code = main(
        [
            "conform", "--target", recorder, "--report-dir", str(tmp_path), "--quiet", "-k", "basics or auth",
            "--header", "X-Org: acme", "--header", f"X-Api-Key: {secret}",
        ]
    )  # fmt: skip
    assert code == 1  # every request got a 400
    assert _Recorder.seen, "no request reached the server"
    assert all(h.get("X-Org") == "acme" and h.get("X-Api-Key") == secret for h in _Recorder.seen)
    for name in ("findings.json", "findings.html", "junit.xml"):
        assert secret not in (tmp_path / name).read_text(encoding="utf-8"), name
    out = capsys.readouterr()
    assert secret not in out.out + out.err


def test_a_malformed_header_is_a_usage_error(
    recorder: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a reachable target: exit 2 must come from the header, not from a refused connection
    assert main(["conform", "--target", recorder, "--header", "no-colon", "--report-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["chatprobe conform: error: --header wants 'NAME: VALUE', got 'no-colon'"]
    assert _Recorder.seen == []  # nothing was sent
