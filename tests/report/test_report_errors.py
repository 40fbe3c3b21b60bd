"""`chatprobe report` on a directory it cannot render: exit 2 and one line naming the file and the problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatprobe.cli import main
from tests.report.report_run import report


def _one_line(code: int, out: str, err: str) -> str:
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("chatprobe report: error: "), err
    return err


def test_not_a_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "is not a directory" in _one_line(*report(capsys, str(tmp_path / "missing")))
    err = _one_line(*report(capsys, str(tmp_path)))
    assert "holds no run JSON" in err and "findings.json" in err and "audit.json" in err


def test_several_run_jsons(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "findings.json").write_text("{}", encoding="utf-8")
    (tmp_path / "sweep.json").write_text("{}", encoding="utf-8")
    err = _one_line(*report(capsys, str(tmp_path)))
    assert "several run JSONs (findings.json, sweep.json)" in err


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("findings.json", "{\"format\": ", "not JSON: Expecting value (line 1, column 12)"),
        ("summary.json", "\xff\xfe", "not UTF-8"),
        ("findings.json", json.dumps({"format": "junit", "checks": []}),
         "does not match specs/findings.schema.json at /"),
        ("audit.json", json.dumps([1, 2]), "does not match specs/audit.schema.json at /: [1, 2] is not of type 'object'"),
        ("sweep.json", json.dumps({"schema": "chatprobe.load.summary/1"}), "does not match specs/sweep.schema.json"),
    ],
)
def test_broken_or_foreign_json(
    name: str, content: str, problem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / name
    path.write_bytes(content.encode("latin-1") if name == "summary.json" else content.encode())
    err = _one_line(*report(capsys, str(tmp_path)))
    assert f"{path}: {problem}" in err
    assert list(tmp_path.iterdir()) == [path]  # nothing rendered


def test_foreign_json_names_the_place(tmp_path: Path) -> None:
    """A findings.json of a future format: the pointer says where it stops matching."""
    from chatprobe.commands.report import load_document
    from chatprobe.errors import UsageError

    path = tmp_path / "findings.json"
    path.write_text(json.dumps({
        "format": "chatprobe.findings/1", "tool": {"name": "chatprobe", "version": "9"},
        "run": {"target": "", "embedded": True, "dialect": "openai", "profile": "", "model": None,
                "started_unix": 0, "duration_s": 0},
        "summary": {"pass": 0, "fail": 0, "warn": 0, "unsupported": 0, "n/a": 0, "total": 1},
        "exit_code": 0, "checks": [{"id": "x", "name": "x", "area": "x", "verdict": "maybe", "reason": "",
                                     "duration_s": 0, "findings": [], "exchanges": []}],
    }), encoding="utf-8")
    with pytest.raises(UsageError, match=r"at /checks/0/verdict: 'maybe' is not one of"):
        load_document(path, "findings.schema.json")


def test_bad_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sweep.json").write_text("{}", encoding="utf-8")
    assert "--format wants a comma-separated list" in _one_line(*report(capsys, str(tmp_path), "--format", "pdf"))
    err = _one_line(*report(capsys, str(tmp_path), "--format", "html,junit"))
    assert "a sweep run has no junit rendering (it has html, csv)" in err


def test_help_lists_report(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "re-render a run's JSON" in capsys.readouterr().out
