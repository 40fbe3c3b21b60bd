"""Every stream fault and legal variant of the reference server, captured to a
file and linted with `chatprobe lint-stream`: faults fail naming their rule,
variants pass (warnings allowed where the catalogue names a hazard)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatprobe.cli import main
from chatprobe.client import Client, Limits
from chatprobe.server.faults import Fault
from tests.catalogue import cases, fault_servers, trigger

# Rules a captured stream shows by itself (the others need the HTTP exchange
# or the request's semantics: the conformance suite covers them).
STREAM_LAYERS = ("sse.", "stream.", "usage.", "tools.index", "tools.id", "tools.arguments")
# Transport faults: the capture is cut short; the file shows the cut, not its cause.
TRANSPORT = {"http.reset", "http.timeout"}
# Stream-layer rules one captured stream cannot show: they compare two exchanges.
ACROSS_EXCHANGES = {"usage.stream_mismatch"}


def lintable(fault: Fault) -> bool:
    rule = fault.rule
    if fault.kind == "load":  # shows only with several streams at once: not in one captured stream
        return False
    if fault.kind == "variant":  # a variant whose hazard is HTTP-level (e.g. http.unknown_model) has none in the file
        return rule is None or rule.startswith(STREAM_LAYERS)
    if rule in ACROSS_EXCHANGES:
        return False
    return rule is not None and (rule.startswith(STREAM_LAYERS) or rule in TRANSPORT)


CASES = [(f, d) for f, d in cases() if lintable(f) and "api_key" not in f.needs]


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    """One reference server per fault, started lazily and kept for the module."""
    with fault_servers() as urls:
        yield urls


def capture(url: str, fault: Fault, dialect: str, tmp_path: Path) -> tuple[Path, Path]:
    spec = trigger(fault, dialect)
    limits = Limits(read_timeout_s=1.0, total_timeout_s=10.0, capture_bytes=9 << 20, max_frame_bytes=1 << 30)
    with Client(url, limits=limits) as client:
        ex = client.send(dialect, spec.method, spec.path, json_body=spec.body, stream=True, params=dict(spec.query))
    assert ex.status == 200, (ex.status, ex.body[:300])
    stream_file = tmp_path / "capture.sse"
    stream_file.write_bytes(ex.body)
    request_file = tmp_path / "request.json"
    request_file.write_text(json.dumps(spec.body))
    return stream_file, request_file


@pytest.mark.parametrize(("fault", "dialect"), CASES, ids=[f"{f.name}-{d}" for f, d in CASES])
def test_lint_stream_on_captured_catalogue(
    fault: Fault, dialect: str, servers: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream_file, request_file = capture(servers[fault.name], fault, dialect, tmp_path)
    code = main(["lint-stream", "--dialect", dialect, "--request", str(request_file), str(stream_file)])
    report = json.loads(capsys.readouterr().out)
    errors = {f["rule"] for f in report["findings"] if f["severity"] == "error"}
    warnings = {f["rule"] for f in report["findings"] if f["severity"] == "warning"}
    if fault.kind == "variant":
        assert code == 0, report["findings"]
        assert not errors
        assert warnings <= ({fault.rule} if fault.rule else set())
        if fault.rule:
            assert fault.rule in warnings
    elif fault.rule in TRANSPORT:
        assert code == 1 and errors, "a cut-short capture must not lint clean"
    else:
        assert code == 1
        assert fault.rule in errors, report["findings"]
