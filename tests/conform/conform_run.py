"""Helpers: run `chatprobe conform` in-process against a reference server and read its report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chatprobe.cli import main
from chatprobe.server.faults import Fault

# A stall must be reported quickly in tests; the default (30 s) suits real targets.
TEST_TIMEOUT_S = "1"


def preferred_dialect(fault: Fault) -> str:
    return "openai" if "openai" in fault.dialects else fault.dialects[0]


def conform(tmp_path: Path, *argv: str) -> tuple[int, dict[str, Any]]:
    report_dir = tmp_path / "report"
    code = main(["conform", "--report-dir", str(report_dir), "--timeout", TEST_TIMEOUT_S, "--quiet", *argv])
    findings = report_dir / "findings.json"
    document = json.loads(findings.read_text()) if findings.is_file() else {}
    return code, document


def failed(document: dict[str, Any]) -> dict[str, set[str]]:
    """Failing check name -> the rules of its error findings."""
    return {
        c["name"]: {f["rule"] for f in c["findings"] if f["severity"] == "error"}
        for c in document["checks"]
        if c["verdict"] == "fail"
    }


def assert_clean(code: int, document: dict[str, Any]) -> None:
    """Exit 0 and not one failing check."""
    assert failed(document) == {}
    assert code == 0
    assert document["summary"]["fail"] == 0 and document["exit_code"] == 0
