"""`chatprobe report` on an audit of one reference server: audit.html, audit.md and matrix.csv."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatprobe.server.runner import running_server
from tests.audit.audit_run import UNREACHABLE_URL, audit, write_targets
from tests.report.report_run import (
    KEY_ENV,
    SECRET,
    assert_no_secret,
    assert_recreated,
    csv_rows,
    report,
)

RENDERINGS = ["audit.html", "audit.md", "matrix.csv"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One reference server that wants a key (sent from the environment), and one unreachable target."""
    root = tmp_path_factory.mktemp("audit")
    with pytest.MonkeyPatch.context() as mp, running_server(api_key=SECRET) as url:
        mp.setenv(KEY_ENV, SECRET)
        targets = write_targets(root / "TARGETS.yaml", [
            {"name": "reference", "url": url, "dialect": "openai", "api_key_env": KEY_ENV},
            {"name": "down", "url": UNREACHABLE_URL, "dialect": "openai"},
        ])
        code, document = audit(targets, root / "report")
    assert code == 0 and [t["status"] for t in document["targets"]] == ["ok", "unreachable"]
    yield root / "report"


def test_renderings_recreated(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = Path(shutil.copytree(run_dir, tmp_path / "report"))
    assert_recreated(capsys, copy, RENDERINGS)
    assert_no_secret(copy)


def test_matrix_csv_agrees_with_audit_json(run_dir: Path) -> None:
    document = json.loads((run_dir / "audit.json").read_text(encoding="utf-8"))
    header, *rows = csv_rows(run_dir / "matrix.csv")
    assert header == ["area", "check", "reference", "down"]
    assert len(rows) == len(document["rows"]) > 0
    reference = document["targets"][0]["checks"]
    for row, spec in zip(rows, document["rows"], strict=True):
        assert row[:2] == [spec["area"], spec["name"]]
        assert row[2] == reference.get(spec["key"], "n/a") and row[3] == ""  # "down" was not audited


def test_broken_target_findings(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """audit.html embeds each target's findings.json: a broken one is named, not a traceback."""
    copy = Path(shutil.copytree(run_dir, tmp_path / "report"))
    document = json.loads((copy / "audit.json").read_text(encoding="utf-8"))
    findings = copy / document["targets"][0]["report"]
    findings.write_text('{"format": "chatprobe.findings/1"}', encoding="utf-8")
    code, _, err = report(capsys, str(copy), "--format", "html")
    assert code == 2 and len(err.splitlines()) == 1 and str(findings) in err
    # Markdown and CSV need only audit.json.
    assert report(capsys, str(copy), "--format", "md,csv")[0] == 0
