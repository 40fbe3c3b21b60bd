"""`chatprobe conform` (the real CLI, in a subprocess) against hostile servers (tests/hostile.py):

- a target that accepts and says nothing, sends headers and nothing, or streams only comments
  gets exit 1 well within 60 s, the check that saw it failed, every other check not-run with
  that root cause (the default settings: slow tier; with --timeout 1: the default tier);
- a correct server that closes keep-alive connections after every stream, or after a 500, gets
  no http.reset blamed on any request: the stale connection is retried, at most noted;
- the run deadline (--max-duration) reports the checks left as not-run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from chatprobe.server.runner import running_server
from tests import hostile

CHATPROBE = str(Path(sys.executable).parent / "chatprobe")
BOUND_S = 60.0

SILENT_KINDS: dict[str, Callable[[], AbstractContextManager[hostile.Server]]] = {
    "silent": hostile.silent,
    "headers_then_silent": hostile.headers_then_silent,
    "comments_only": hostile.comments_only,
}


def conform_cli(url: str, report_dir: Path, *argv: str, limit_s: float = 2 * BOUND_S) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    done = subprocess.run(
        [CHATPROBE, "conform", "--target", url, "--report-dir", str(report_dir), "--quiet", *argv],
        capture_output=True,
        text=True,
        timeout=limit_s,
    )
    elapsed = time.monotonic() - started
    findings = report_dir / "findings.json"
    assert findings.is_file(), done.stdout + done.stderr
    return done.returncode, json.loads(findings.read_text()), elapsed


def rules_of(document: dict[str, Any], severity: str = "error") -> set[str]:
    return {f["rule"] for c in document["checks"] for f in c["findings"] if f["severity"] == severity}


def assert_stopped_by_the_first_stall(code: int, document: dict[str, Any], elapsed: float) -> None:
    assert code == 1, document["summary"]
    assert elapsed < BOUND_S
    failed = [c for c in document["checks"] if c["verdict"] == "fail"]
    not_run = [c for c in document["checks"] if c["verdict"] == "not-run"]
    assert len(failed) == 1 and "http.timeout" in {f["rule"] for f in failed[0]["findings"]}
    assert len(not_run) == len(document["checks"]) - 1
    assert document["summary"]["not-run"] == len(not_run)
    for check in not_run:
        assert check["exchanges"] == []  # nothing sent
        assert check["not_run_cause"]["check"] == failed[0]["id"]
        assert check["not_run_cause"]["rule"] == "http.timeout"
        assert failed[0]["id"] in check["reason"]
    assert document["exit_code"] == 1


# The client-level tests cover each kind of silence in a second; one CLI run here in the default tier.
@pytest.mark.parametrize(
    "kind", [k if k == "comments_only" else pytest.param(k, marks=pytest.mark.slow) for k in sorted(SILENT_KINDS)]
)
def test_silent_target_short_timeout(kind: str, tmp_path: Path) -> None:
    with SILENT_KINDS[kind]() as server:
        code, document, elapsed = conform_cli(server.url, tmp_path / "report", "--timeout", "1")
    assert_stopped_by_the_first_stall(code, document, elapsed)
    assert elapsed < 20


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(SILENT_KINDS))
def test_silent_target_default_settings_under_60_s(kind: str, tmp_path: Path) -> None:
    with SILENT_KINDS[kind]() as server:
        code, document, elapsed = conform_cli(server.url, tmp_path / "report")
    assert_stopped_by_the_first_stall(code, document, elapsed)
    if kind == "comments_only":
        failed = next(c for c in document["checks"] if c["verdict"] == "fail")
        assert "only comments for 30 s" in failed["exchanges"][0]["transport_detail"]


@pytest.fixture(scope="module")
def reference() -> Iterator[str]:
    with running_server() as url:
        yield url


@pytest.mark.parametrize("reset", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["eof", "rst"])
def test_close_after_every_stream_is_not_blamed(reference: str, tmp_path: Path, reset: bool) -> None:
    """llama-server's habit: keep-alive advertised, connection closed after each stream."""
    with hostile.closing_proxy(reference, "stream", reset=reset) as proxy:
        code, document, _ = conform_cli(proxy.url, tmp_path / "report", "--timeout", "5")
    assert "http.reset" not in rules_of(document) | rules_of(document, "warning")
    retried = [e for c in document["checks"] for e in c["exchanges"] if e.get("stale_connection_retry")]
    assert retried, "the proxy closed connections: some request must have met a stale one"
    assert code == 0, document["summary"]


def test_close_after_a_500_is_not_blamed(tmp_path: Path) -> None:
    """uvicorn apps close the connection after an unhandled 500 (here: out-of-range values get
    500): that fault is reported, and nothing else: no request is blamed for the dead connection."""
    with running_server(faults=["out-of-range-500"]) as upstream, hostile.closing_proxy(upstream, "error") as proxy:
        code, document, _ = conform_cli(proxy.url, tmp_path / "report", "--timeout", "5")
    assert code == 1
    assert "validation.server_error" in rules_of(document)
    assert "http.reset" not in rules_of(document)
    assert document["summary"]["not-run"] == 0


@pytest.mark.slow
def test_bare_500_then_close(tmp_path: Path) -> None:
    """Every request answered 500 then the connection dropped: failures on the status, not resets,
    and the target still answers, so every check runs."""
    with hostile.error_500() as server:
        code, document, elapsed = conform_cli(server.url, tmp_path / "report", "--timeout", "2")
    assert code == 1 and elapsed < BOUND_S
    assert "http.reset" not in rules_of(document)
    assert document["summary"]["not-run"] == 0


def test_run_deadline_reports_the_rest_not_run(reference: str, tmp_path: Path) -> None:
    code, document, _ = conform_cli(reference, tmp_path / "report", "--max-duration", "0.001")
    not_run = [c for c in document["checks"] if c["verdict"] == "not-run"]
    assert not_run and document["summary"]["fail"] == 0
    for check in not_run:
        assert check["not_run_cause"]["rule"] == "run.max_duration" and check["not_run_cause"]["check"] is None
        assert "--max-duration" in check["reason"]
    assert code == document["exit_code"]
