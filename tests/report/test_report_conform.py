"""`chatprobe report` on conformance runs: findings.html, junit.xml and checks.csv from findings.json."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chatprobe.cli import main
from chatprobe.reports.junit import render_junit
from chatprobe.server.runner import running_server
from tests.report.report_run import KEY_ENV, SECRET, assert_no_secret, csv_rows, report, take

RENDERINGS = ["findings.html", "junit.xml", "checks.csv"]


def _conform(report_dir: Path, *argv: str) -> int:
    return main(["conform", "--report-dir", str(report_dir), "--timeout", "1", "--quiet", *argv])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A clean run of the embedded server, and a run of a faulty server that wants a key."""
    root = tmp_path_factory.mktemp("conform")
    assert _conform(root / "clean") == 0
    with pytest.MonkeyPatch.context() as mp, running_server(faults=["no-done"], api_key=SECRET) as url:
        mp.setenv(KEY_ENV, SECRET)
        assert _conform(root / "faulty", "--target", url, "--api-key-env", KEY_ENV) == 1
    yield {"clean": root / "clean", "faulty": root / "faulty"}


@pytest.fixture
def clean(runs: dict[str, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(runs["clean"], tmp_path / "clean"))


@pytest.fixture
def faulty(runs: dict[str, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(runs["faulty"], tmp_path / "faulty"))


def _cases(junit: bytes) -> dict[tuple[str, str], tuple[str, str]]:
    """(classname, name) -> (verdict property, outcome element) of every testcase."""
    out = {}
    for case in ET.fromstring(junit).iter("testcase"):
        verdict = case.find("properties/property[@name='chatprobe_verdict']")
        assert verdict is not None
        outcome = next((c.tag for c in case if c.tag in ("failure", "skipped", "error")), "passed")
        out[(case.get("classname", ""), case.get("name", ""))] = (verdict.get("value", ""), outcome)
    return out


def _suite_counts(junit: bytes) -> dict[str, str | None]:
    suite = ET.fromstring(junit).find("testsuite")
    assert suite is not None
    return {k: suite.get(k) for k in ("tests", "failures", "skipped", "errors")}


@pytest.mark.parametrize("run", ["clean", "faulty"])
def test_renderings_recreated(run: str, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> None:
    directory: Path = request.getfixturevalue(run)
    document = json.loads((directory / "findings.json").read_text(encoding="utf-8"))
    original = take(directory, RENDERINGS)
    code, out, err = report(capsys, str(directory))
    assert (code, err) == (0, "")
    assert out.splitlines() == [f"wrote {directory / name}" for name in RENDERINGS]
    # Deterministic renderings of the JSON: byte for byte what the run wrote.
    assert (directory / "findings.html").read_bytes() == original["findings.html"]
    assert (directory / "checks.csv").read_bytes() == original["checks.csv"]
    # pytest wrote the run's junit.xml live; ours, from the JSON, has the same cases and outcomes.
    junit = (directory / "junit.xml").read_bytes()
    assert _cases(junit) == _cases(original["junit.xml"])
    assert _suite_counts(junit) == _suite_counts(original["junit.xml"])
    rows = csv_rows(directory / "checks.csv")
    assert rows[0][:5] == ["check", "area", "verdict", "rules", "message"]
    assert len(rows) - 1 == len(document["checks"]) == document["summary"]["total"]
    verdicts = [r[2] for r in rows[1:]]
    counted = [v for v in document["summary"] if v not in ("total", "root_causes", "warning_causes")]
    assert {v: verdicts.count(v) for v in counted} == {v: document["summary"][v] for v in counted}


def test_failures_carry_their_rules(faulty: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = json.loads((faulty / "findings.json").read_text(encoding="utf-8"))
    assert report(capsys, str(faulty), "--format", "csv,junit")[0] == 0
    failed = {c["id"]: c for c in document["checks"] if c["verdict"] == "fail"}
    assert failed
    for row in csv_rows(faulty / "checks.csv")[1:]:
        if row[5] in failed:
            assert "stream.terminator_missing" in row[3].split()
            assert "stream.terminator_missing" in row[4]
    root = ET.fromstring((faulty / "junit.xml").read_bytes())
    messages = [f.get("message", "") for f in root.iter("failure")]
    # Each failure leads with its root cause: one cause (no [DONE]) behind every failing check.
    (cause,) = [c for c in document["root_causes"] if c["severity"] == "error"]
    assert len(messages) == len(failed) and all(m.startswith(f"RC1 {cause['rule']}: ") for m in messages)
    texts = [f.text or "" for f in root.iter("failure")]
    assert all(t.startswith("root cause RC1 [stream.terminator_missing]") and "reproduce: curl" in t for t in texts)


def test_secret_never_rendered(faulty: Path, capsys: pytest.CaptureFixture[str]) -> None:
    findings = (faulty / "findings.json").read_text(encoding="utf-8")
    assert "<redacted>" in findings  # the key was sent, and redacted in the JSON
    take(faulty, RENDERINGS)
    assert report(capsys, str(faulty))[0] == 0
    assert_no_secret(faulty)


def test_out_dir_and_formats(clean: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "elsewhere" / "deep"
    code, stdout, _ = report(capsys, str(clean), "--format", "junit,html", "--out", str(out))
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["findings.html", "junit.xml"]
    assert stdout.splitlines() == [f"wrote {out / 'findings.html'}", f"wrote {out / 'junit.xml'}"]
    assert (out / "findings.html").read_bytes() == (clean / "findings.html").read_bytes()


def test_server_text_stays_inert(runs: dict[str, Path]) -> None:
    """A server's bytes in a reason: XML-illegal characters do not break junit.xml, a formula
    does not start a CSV cell."""
    from chatprobe.reports.csv import render_checks

    document: dict[str, Any] = json.loads((runs["faulty"] / "findings.json").read_text(encoding="utf-8"))
    check = next(c for c in document["checks"] if c["verdict"] == "fail")
    check["reason"] = "bad \x00\x1b bytes"
    check["findings"] = [{"rule": "stream.terminator_missing", "severity": "error", "message": "x", "exchange": None}]
    check["name"] = "=HYPERLINK(\"http://evil\")"
    failure = ET.fromstring(render_junit(document)).find(".//failure")
    assert failure is not None and (failure.text or "").endswith("\n\nbad #x00#x1B bytes")
    text = render_checks(document)
    assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text
