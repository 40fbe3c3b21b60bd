"""Helpers: write a TARGETS.yaml, run `chatprobe audit` in-process, read its audit.json."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from chatprobe.cli import main

# A stall must be reported quickly in tests; the default (30 s) suits real targets.
TEST_TIMEOUT_S = "1"
UNREACHABLE_URL = "http://127.0.0.1:9"  # the discard port: nothing listens there


def write_targets(path: Path, targets: Sequence[Mapping[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"targets": [dict(t) for t in targets]}, sort_keys=False), encoding="utf-8")
    return path


def audit(targets_file: Path, report_dir: Path, *argv: str) -> tuple[int, dict[str, Any]]:
    code = main(["audit", str(targets_file), "--report-dir", str(report_dir), "--timeout", TEST_TIMEOUT_S, "--quiet", *argv])
    path = report_dir / "audit.json"
    return code, json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def by_name(document: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in document["targets"]}


def findings_of(report_dir: Path, target: Mapping[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((report_dir / target["report"]).read_text(encoding="utf-8"))
    return document


def rules_by_check(findings: Mapping[str, Any], severity: str) -> dict[str, set[str]]:
    """area::name -> the rules of its findings of ``severity``."""
    return {
        f"{c['area']}::{c['name']}": {f["rule"] for f in c["findings"] if f["severity"] == severity}
        for c in findings["checks"]
    }


def cells(target: Mapping[str, Any]) -> dict[str, str]:
    """The target's column of the matrix."""
    return dict(target["checks"])
