"""Inside GitHub Actions (GITHUB_ACTIONS=true): the job summary and the error annotations that
`conform` and `audit` write (issue 18, item 5). Escaping by GitHub's workflow-command rules, the
run's secrets scrubbed before anything is escaped or written, nothing at all outside Actions."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chatprobe import redact
from chatprobe.cli import main
from chatprobe.reports import github
from chatprobe.server.runner import running_server
from tests.report.report_run import KEY_ENV, SECRET

ACTIONS = {"GITHUB_ACTIONS": "true"}


@pytest.fixture
def registry() -> Iterator[None]:
    redact.reset()
    yield
    redact.reset()


def test_escaping_follows_the_workflow_command_rules() -> None:
    assert github.escape_data("50% done\r\nnext: a,b") == "50%25 done%0D%0Anext: a,b"
    assert github.escape_property("a:b,c%\r\n") == "a%3Ab%2Cc%25%0D%0A"
    line = github.annotation("error", "chatprobe: rule, section", "line one\nline two: 100%")
    assert line == "::error title=chatprobe%3A rule%2C section::line one%0Aline two: 100%25"
    assert "\n" not in line and "\r" not in line


def test_annotations_scrub_secrets_before_escaping(registry: None) -> None:
    """A secret with characters escaping would change is still found (scrubbed first)."""
    secret = "k3y:with,odd%chars"
    redact.add_secret(secret, "MY_KEY")
    line = github.annotation("error", f"title {secret}", f"the server echoed {secret}\nagain {secret}")
    for form in (secret, github.escape_data(secret), github.escape_property(secret)):
        assert form not in line
    assert line.count(redact.REDACTED) == 3


def _cause(n: int, severity: str = "error", **extra: Any) -> dict[str, Any]:
    return {
        "id": f"RC{n}", "rule": "stream.no_done", "severity": severity, "symptom": f"symptom {n}",
        "section": "WHATWG SSE, 9.2.6", "first": {"check": f"test_streaming.py::test_{n}"},
        "checks": [f"test_streaming.py::test_{n}"], "consequences": [], "not_run": [], **extra,
    }  # fmt: skip


def _document(causes: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"root_causes": causes, "checks": [], **extra}


def test_one_annotation_per_root_cause_and_at_most_ten_per_level() -> None:
    lines = github.conform_annotations(_document([_cause(i) for i in range(1, 13)] + [_cause(20, "warning")]))
    errors = [line for line in lines if line.startswith("::error ")]
    assert len(errors) == github.MAX_ANNOTATIONS
    # the message (data) keeps its ":" and ","; only the title (a property) escapes them
    assert errors[0].startswith("::error title=chatprobe stream.no_done (RC1)::symptom 1%0ADocument: WHATWG SSE, 9.2.6%0A")
    assert errors[-1].endswith("(and 2 more errors: see the job summary)")
    assert [line for line in lines if line.startswith("::warning ")] == [
        "::warning title=chatprobe stream.no_done (RC20)::symptom 20%0ADocument: WHATWG SSE, 9.2.6%0A"
        "First in: test_streaming.py::test_20%0ABroke 1 check(s)"
    ]


def test_accepted_causes_are_not_annotated_stale_acceptances_are() -> None:
    document = _document(
        [_cause(1, accepted=True), _cause(2)],
        checks=[{"verdict": "fail", "area": "errors", "name": "test_crash", "reason": "KeyError: 'x'", "findings": []}],
        acceptances=[{"id": "usage.merged", "status": "stale", "source": "accept.yaml:3", "detail": "matched no failure"}],
    )
    lines = github.conform_annotations(document)
    assert [line.split("::")[1] for line in lines] == [
        "error title=chatprobe stream.no_done (RC2)",
        "error title=chatprobe check failed%3A errors%3A%3Atest_crash",
        "warning title=chatprobe stale acceptance usage.merged",
    ]
    assert lines[1].endswith("::KeyError: 'x'")


def test_audit_regressions_are_errors_unreachable_targets_warnings() -> None:
    document = {
        "targets": [{"name": "ours", "status": "ok"}, {"name": "theirs", "status": "unreachable", "reason": "cannot reach it"}],
        "comparison": {"targets": [{"name": "ours", "regressions": [{"check": "basics::test_models_list", "was": "pass", "now": "fail"}]}]},
    }
    assert github.audit_annotations(document) == [
        "::error title=chatprobe audit regression%3A ours::basics::test_models_list: pass -> fail",
        "::warning title=chatprobe audit%3A theirs unreachable::cannot reach it",
    ]


def test_nothing_outside_github_actions(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    out = io.StringIO()
    for environ in ({}, {"GITHUB_ACTIONS": "false", "GITHUB_STEP_SUMMARY": str(summary)}):
        assert not github.publish("# s", ["::error::x"], environ=environ, out=out)
    assert out.getvalue() == "" and not summary.exists()


def test_publish_appends_to_the_step_summary(tmp_path: Path, registry: None) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("from an earlier step\n")
    redact.add_secret(SECRET, KEY_ENV)
    out = io.StringIO()
    assert github.publish(f"### ours {SECRET}", ["::error::one"], environ={**ACTIONS, "GITHUB_STEP_SUMMARY": str(summary)}, out=out)
    assert github.publish("### again", [], environ={**ACTIONS, "GITHUB_STEP_SUMMARY": str(summary)}, out=out)
    assert summary.read_text() == f"from an earlier step\n### ours {redact.REDACTED}\n### again\n"
    assert out.getvalue() == "::error::one\n"


def test_an_unwritable_summary_is_one_line_not_a_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert github.publish("x", [], environ={**ACTIONS, "GITHUB_STEP_SUMMARY": str(tmp_path / "no" / "dir" / "s.md")})
    err = capsys.readouterr().err
    assert err.startswith("chatprobe: cannot write the job summary to ") and err.count("\n") == 1


def test_conform_in_github_actions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Through the CLI, against a faulty server that wants a key: the summary is appended, one
    ::error per root cause of failure is printed, the key is nowhere, junit.xml is still there."""
    summary = tmp_path / "summary.md"
    summary.write_text("earlier\n")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv(KEY_ENV, SECRET)
    report_dir = tmp_path / "report"
    with running_server(faults=["no-done"], api_key=SECRET) as url:
        code = main(["conform", "--target", url, "--api-key-env", KEY_ENV, "--report-dir", str(report_dir),
                     "--timeout", "1", "--quiet", "-k", "basics or streaming"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1
    document = json.loads((report_dir / "findings.json").read_text())
    failing = [c for c in document["root_causes"] if c["severity"] == "error"]
    assert failing
    errors = [line for line in out.splitlines() if line.startswith("::error ")]
    assert [re.match(r"::error title=chatprobe (\S+) \((RC\d+)\)::", e).groups() for e in errors] == [  # type: ignore[union-attr]
        (c["rule"], c["id"]) for c in failing
    ][: github.MAX_ANNOTATIONS]
    assert all("%0ADocument: " in e and "%0AReproduce: curl" in e for e in errors)
    text = summary.read_text()
    assert text.startswith("earlier\n### ❌ chatprobe conform: failed")
    for cause in failing:
        assert f"| {cause['id']} error | `{cause['rule']}` |" in text
    assert "```sh\ncurl " in text and "actions/upload-artifact" in text
    assert SECRET not in text and SECRET not in out
    assert (report_dir / "junit.xml").is_file()
