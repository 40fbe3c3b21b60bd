"""`chatprobe report diff OLD NEW`: what changed between two conform runs (hand-built findings
documents) or two audits; exit 1 on a regression, 2 on bad input; text, Markdown, JSON."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from chatprobe import accept, rules
from chatprobe.conformance import AcceptSettings, findings_document
from chatprobe.paths import specs_dir
from chatprobe.rundiff import diff
from tests.report.report_run import report

TODAY = dt.date(2025, 6, 15)


def _check(check_id: str, verdict: str, *rules_: str, status: int | None = None, **extra: Any) -> dict[str, Any]:
    module, _, name = check_id.partition("::")
    findings = [
        {"rule": r, "severity": "error", "message": f"{r} seen", "exchange": None,
         **({"evidence": {"status": status}} if r == "http.status" and status else {})}
        for r in rules_
    ]  # fmt: skip
    return {
        "id": check_id, "name": name, "area": module.removeprefix("test_").removesuffix(".py"), "verdict": verdict,
        "reason": "", "duration_s": 0.1, "findings": findings, "exchanges": [], **extra,
    }  # fmt: skip


def _run(directory: Path, checks: list[dict[str, Any]], *acceptances: tuple[str, str | None]) -> Path:
    """A findings.json as a run writes it (validated), with its acceptances judged."""
    accepted = tuple(
        accept.Acceptance(i, rules.canonical(i), "check" if "::" in i else "rule", f"because {i}",
                          dt.date.fromisoformat(e) if e else None, f"a.yaml:{n}")
        for n, (i, e) in enumerate(acceptances, 1)
    )  # fmt: skip
    for check in checks:
        if check["verdict"] == "fail" and accepted:
            judgement = accept.judge(check, accepted, TODAY)
            if judgement is not None:
                check["acceptance"] = judgement.to_json()
                if judgement.accepted:
                    check["verdict"] = "accepted"
    document = findings_document(
        checks, target="http://127.0.0.1:1", dialect="openai", profile="", model=None, embedded=False,
        started_unix=0.0, duration_s=1.0, hypothesis_profile=None,
        accept=AcceptSettings(("a.yaml",), accepted, False, TODAY) if acceptances else None,
    )  # fmt: skip
    directory.mkdir(parents=True)
    (directory / "findings.json").write_text(json.dumps(document), encoding="utf-8")
    return directory


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path]:
    old = _run(tmp_path / "old", [
        _check("test_a.py::test_newly_failing", "pass"),
        _check("test_a.py::test_fixed", "fail", "stream.terminator_missing"),
        _check("test_a.py::test_other_reason", "fail", "http.status", status=400),
        _check("test_a.py::test_same", "fail", "usage.totals"),
        _check("test_a.py::test_was_accepted", "fail", "usage.not_separate"),
        _check("test_a.py::test_gets_accepted", "pass"),
        _check("test_a.py::test_warns", "pass"),
        _check("test_a.py::test_dropped", "pass"),
    ], ("usage.not_separate", None))  # fmt: skip
    new = _run(tmp_path / "new", [
        _check("test_a.py::test_newly_failing", "fail", "stream.id_changed"),
        _check("test_a.py::test_fixed", "warn"),
        _check("test_a.py::test_other_reason", "fail", "http.status", status=500),
        _check("test_a.py::test_same", "fail", "usage.totals"),
        _check("test_a.py::test_was_accepted", "fail", "usage.not_separate"),
        _check("test_a.py::test_gets_accepted", "fail", "param.stop_ignored"),
        _check("test_a.py::test_warns", "warn"),
        _check("test_a.py::test_added", "fail", "usage.missing"),
        _check("test_a.py::test_added_passing", "pass"),
    ], ("usage.not_separate", "2025-01-01"), ("param.stop_ignored", None), ("stream.empty", None))  # fmt: skip
    return old, new


def test_conform_diff_sorts_every_change(runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    old, new = runs
    code, out, err = report(capsys, "diff", str(old), str(new / "findings.json"), "--format", "json")
    assert (code, err) == (1, "")
    document = json.loads(out)
    jsonschema.Draft202012Validator(json.loads((specs_dir() / "diff.schema.json").read_text())).validate(document)
    (run,) = document["runs"]
    short = {kind: [(c["check"].split("::")[1], c["was"], c["now"]) for c in run[kind]]
             for kind in ("regressions", "fixes", "evidence_changed", "accepted", "changes")}  # fmt: skip
    assert short == {
        "regressions": [
            ("test_newly_failing", "pass", "fail"),
            ("test_was_accepted", "accepted", "fail"),  # its acceptance expired
            ("test_added", None, "fail"),  # absent before: a new failure too
        ],
        "fixes": [("test_fixed", "fail", "warn")],
        "evidence_changed": [("test_other_reason", "fail", "fail")],
        "accepted": [("test_gets_accepted", "pass", "accepted")],
        "changes": [("test_warns", "pass", "warn")],  # not judged: warn does not fail conform
    }
    assert run["evidence_changed"][0]["was_rules"] == ["http.status 400"] and run["evidence_changed"][0]["rules"] == ["http.status 500"]
    assert run["regressions"][0]["rules"] == ["stream.id_changed"]
    assert run["still_failing"] == 1 and run["removed"] == ["test_a.py::test_dropped"]
    assert [a["id"] for a in run["stale"]] == ["stream.empty"]
    assert [a["id"] for a in run["expired"]] == ["usage.not_separate"]
    assert document["exit_code"] == 1 and document["regressed"] == [run["name"]]


def test_text_and_markdown(runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    old, new = runs
    code, text, _ = report(capsys, "diff", str(old), str(new))
    assert code == 1
    assert "NEW FAILURE         test_a.py::test_newly_failing  pass -> fail  stream.id_changed: stream.id_changed seen" in text
    assert "ACCEPTANCE EXPIRED  usage.not_separate" in text and "ACCEPTANCE STALE    stream.empty" in text
    assert "1 check(s) still fail the same way" in text and "1 check(s) of OLD are not in NEW" in text
    assert text.rstrip().endswith("REGRESSION: 3 new failures, 1 fixed, 5 other changes")
    code, markdown, _ = report(capsys, "diff", str(old), str(new), "--format", "markdown")
    assert code == 1
    lines = markdown.splitlines()
    assert lines[0] == "### ❌ chatprobe conform: 3 new failures, 1 fixed, 5 other changes"
    assert "| change | check | was | now | detail |" in lines
    assert "| **new failure** | `test_a.py::test_added` | absent | fail | usage.missing: usage.missing seen |" in lines
    assert "| evidence changed | `test_a.py::test_other_reason` | fail | fail | http.status 400 → http.status 500: http.status seen |" in lines
    assert "| newly accepted | `test_a.py::test_gets_accepted` | pass | accepted | param.stop_ignored: because param.stop_ignored |" in lines


def test_no_regression_exits_0(runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, new = runs
    fixed = _run(tmp_path / "fixed", [_check("test_a.py::test_newly_failing", "pass"), _check("test_a.py::test_warns", "pass")])
    code, out, _ = report(capsys, "diff", str(new), str(fixed), "--format", "md")
    assert code == 0 and out.startswith("### ✅ chatprobe conform: no new failure, 1 fixed, 1 other change\n")
    assert "| fixed | `test_a.py::test_newly_failing` | fail | pass |  |" in out
    code, out, _ = report(capsys, "diff", str(new), str(new))
    assert code == 0 and "no regression: no new failure, 0 fixed, 0 other changes" in out


def test_renamed_ids_compare_through_the_alias_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = _run(tmp_path / "old", [_check("test_a.py::test_before_rename", "fail", "usage.not_separate")])
    new = _run(tmp_path / "new", [_check("test_a.py::test_after_rename", "fail", "usage.not_separate")])
    before = json.loads((old / "findings.json").read_text())
    after = json.loads((new / "findings.json").read_text())
    assert diff(before, after, "conform", "o", "n")["exit_code"] == 1  # a new failure, without the alias
    monkeypatch.setitem(rules.ALIASES, "test_a.py::test_before_rename", "test_a.py::test_after_rename")
    document = diff(before, after, "conform", "o", "n")
    assert document["exit_code"] == 0 and document["runs"][0]["still_failing"] == 1


def test_audit_diff_judges_as_the_baseline_does() -> None:
    def audit(**checks: str) -> dict[str, Any]:
        evidence = {k: {"anchor": "", "rules": [f"rule.{v}"], "reason": ""} for k, v in checks.items() if v in ("fail", "accepted")}
        return {"targets": [{"name": "t", "status": "ok", "checks": checks, "evidence": evidence}], "run": {}}

    old = audit(**{"a::x": "pass", "a::y": "fail", "a::z": "accepted", "a::w": "pass"})
    new = audit(**{"a::x": "warn", "a::y": "pass", "a::z": "fail", "a::w": "accepted", "a::v": "fail"})
    document = diff(old, new, "audit", "old", "new")
    (run,) = document["runs"]
    assert [(c["check"], c["was"], c["now"]) for c in run["regressions"]] == [
        ("a::x", "pass", "warn"), ("a::z", "accepted", "fail"), ("a::v", None, "fail")
    ]
    assert [c["check"] for c in run["fixes"]] == ["a::y"] and [c["check"] for c in run["accepted"]] == ["a::w"]
    assert document["exit_code"] == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["diff", "{old}"], "report diff takes two runs"),
        (["diff", "{old}", "{tmp}/nowhere"], "NEW {tmp}/nowhere: no such file or directory"),
        (["diff", "{old}", "{tmp}"], "holds no run to compare"),
        (["diff", "{old}", "{tmp}/other.json"], "compares conform runs (findings.json) or audits (audit.json)"),
        (["diff", "{old}", "{broken}"], "does not match specs/findings.schema.json"),
        (["diff", "{old}", "{old}", "--format", "html"], "report diff --format wants one of text, markdown, json"),
        (["diff", "{old}", "{old}", "--out", "{tmp}"], "--out is for re-rendering"),
        (["{old}", "{old}"], "report takes one run's directory"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    old, _ = runs
    (tmp_path / "other.json").write_text("{}")
    broken = tmp_path / "broken" / "findings.json"
    broken.parent.mkdir()
    broken.write_text('{"format": "chatprobe.findings/1"}')
    values = {"old": str(old), "tmp": str(tmp_path), "broken": str(broken.parent)}
    code, out, err = report(capsys, *(a.format(**values) for a in argv))
    assert code == 2 and out == ""
    assert message.format(**values) in err and len(err.strip().splitlines()) == 1


def test_a_conform_run_and_an_audit_do_not_compare(runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    audit = tmp_path / "audit"
    audit.mkdir()
    (audit / "audit.json").write_text(json.dumps({
        "format": "chatprobe.audit/1", "tool": {"name": "chatprobe", "version": "0"},
        "run": {"targets_file": "T.yaml", "started_unix": 0, "duration_s": 0, "workers": 1, "hypothesis_profile": "dev", "load_probe": False},
        "rows": [], "features": [], "targets": [], "comparison": None, "exit_code": 0,
    }))  # fmt: skip
    code, _, err = report(capsys, "diff", str(runs[0]), str(audit))
    assert code == 2 and "OLD is a conform run and NEW a audit run" in err
