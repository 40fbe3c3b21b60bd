"""Root causes: one fault is one finding however many checks it broke (chatprobe.rootcause), and
the severity policy of specs/SEVERITY.md (a profile lowers what its document leaves unspecified;
an optional feature accepted but ignored is unsupported)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chatprobe import rootcause
from chatprobe.conformance import CheckRecord, Verdict
from chatprobe.findings import error
from chatprobe.reports.conform import render_table
from chatprobe.server.runner import running_server
from chatprobe.specs import load_profile
from tests.conform.conform_run import conform


def _finding(rule: str, exchange: int | None = 0, severity: str = "error", **extra: Any) -> dict[str, Any]:
    return {"rule": rule, "severity": severity, "message": f"{rule} seen", "exchange": exchange, **extra}


def _check(name: str, findings: list[dict[str, Any]], verdict: str = "fail", **extra: Any) -> dict[str, Any]:
    exchange = {
        "request": {"method": "POST", "url": "http://127.0.0.1:1/v1/chat/completions"},
        "response": {"status": 200},
        "transport_error": None,
        "reproducer": f"curl {name}",
    }
    return {"id": f"test_x.py::{name}", "name": name, "verdict": verdict, "findings": findings, "exchanges": [exchange], **extra}


def test_one_rule_across_checks_is_one_cause_with_its_first_evidence() -> None:
    checks = [_check(f"c{i}", [_finding("stream.terminator_missing", offset=10 + i)]) for i in range(5)]
    causes, by_check = rootcause.group(checks)
    assert len(causes) == 1
    cause = causes[0]
    assert (cause["id"], cause["rule"], cause["first"]["check"]) == ("RC1", "stream.terminator_missing", "test_x.py::c0")
    assert cause["evidence"]["offset"] == 10 and cause["reproducer"] == "curl c0"
    assert cause["checks"] == [c["id"] for c in checks]
    assert set(map(tuple, by_check.values())) == {("RC1",)}
    assert cause["section"]  # the generic source when no profile says more


def test_a_cut_stream_makes_what_follows_on_that_exchange_consequences() -> None:
    cut = [_finding("http.reset"), _finding("stream.terminator_missing"), _finding("param.n_ignored", exchange=None)]
    independent = [_finding("stream.id_changed", exchange=1)]
    causes, _ = rootcause.group([_check("a", cut + independent)])
    assert [c["rule"] for c in causes] == ["http.reset", "stream.id_changed"]
    assert {c["rule"] for c in causes[0]["consequences"]} == {"stream.terminator_missing", "param.n_ignored"}


def test_independent_faults_on_one_exchange_stay_separate() -> None:
    causes, _ = rootcause.group([_check("a", [_finding("stream.id_changed"), _finding("stream.model_changed")])])
    assert [c["rule"] for c in causes] == ["stream.id_changed", "stream.model_changed"]


def test_http_status_groups_by_status_and_warnings_come_last() -> None:
    checks = [
        _check("w", [_finding("error.envelope", severity="warning")], verdict="warn"),
        _check("a", [_finding("http.status", evidence={"status": 400})]),
        _check("b", [_finding("http.status", evidence={"status": 500})]),
        _check("c", [_finding("http.status", evidence={"status": 400})]),
    ]
    causes, _ = rootcause.group(checks)
    assert [(c["rule"], c["severity"], len(c["checks"])) for c in causes] == [
        ("http.status", "error", 2),
        ("http.status", "error", 1),
        ("error.envelope", "warning", 1),
    ]
    assert rootcause.counts(causes) == {"root_causes": 2, "accepted_causes": 0, "warning_causes": 1}


def test_checks_not_run_are_listed_under_the_cause_that_stopped_the_run() -> None:
    checks = [
        _check("first", [_finding("http.timeout")]),
        _check("later1", [], verdict="not-run", not_run_cause={"rule": "http.timeout", "check": "test_x.py::first"}),
        _check("later2", [], verdict="not-run", reason="run deadline"),
    ]
    causes, _ = rootcause.group(checks)
    assert len(causes) == 1
    assert causes[0]["not_run"] == ["test_x.py::later1", "test_x.py::later2"]


# --------------------------------------------------------------------------- severity policy


class _Target:
    def __init__(self, profile: str) -> None:
        self.profile = load_profile(profile)


def _record(profile: str, *features: str) -> CheckRecord:
    return CheckRecord(_Target(profile), name="t", features=features)  # type: ignore[arg-type]


def test_a_rule_the_document_leaves_unspecified_is_a_warning() -> None:
    atoma = _record("atoma")
    atoma.add([error("error.envelope", "not the envelope")])
    assert atoma.conclude() == Verdict.WARN
    assert atoma.findings[0][0].evidence["lowered"].startswith("seed 003")
    openai = _record("openai")
    openai.add([error("error.envelope", "not the envelope")])
    assert openai.conclude() == Verdict.FAIL


def test_an_optional_feature_accepted_but_ignored_is_unsupported() -> None:
    record = _record("openai", "n")  # n: may
    record.add([error("param.n_ignored", "n=2 but 1 choice(s) came back")])
    assert record.conclude() == Verdict.UNSUPPORTED
    assert "param.n_ignored" in record.reason
    broken = _record("openai", "n")
    broken.add([error("param.n_ignored", "n=2 but 1"), error("stream.role_missing", "no role")])
    assert broken.conclude() == Verdict.FAIL  # ignored AND broken: a failure
    # ... of the broken part: the ignored optional feature is no root cause of it (a warning)
    assert [(f.rule, f.severity) for f, _ in broken.findings] == [("param.n_ignored", "warning"), ("stream.role_missing", "error")]
    causes, _ = rootcause.group([_check("t", [{**f.to_json(), "exchange": None} for f, _ in broken.findings])])
    assert [(c["rule"], c["severity"]) for c in causes] == [("stream.role_missing", "error"), ("param.n_ignored", "warning")]
    required = _record("openai", "stop")  # stop: must
    required.add([error("param.stop_ignored", "ran past the stop")])
    assert required.conclude() == Verdict.FAIL


def test_logprobs_missing_is_ignored_but_malformed_is_broken() -> None:
    missing = _record("openai", "logprobs")
    missing.add([error("param.logprobs", "none came back", evidence={"ignored": True})])
    assert missing.conclude() == Verdict.UNSUPPORTED
    malformed = _record("openai", "logprobs")
    malformed.add([error("param.logprobs", "entry 0 is malformed")])
    assert malformed.conclude() == Verdict.FAIL


# --------------------------------------------------------------------------- through conform


@pytest.mark.parametrize("fault", ["reset-mid-stream", "invalid-json-frame"])
def test_a_stream_broken_early_leads_with_one_root_cause(fault: str, tmp_path: Path) -> None:
    with running_server(faults=[fault]) as url:
        code, document = conform(tmp_path, "--target", url)
    assert code == 1
    errors = [c for c in document["root_causes"] if c["severity"] == "error"]
    assert len(errors) == 1, [(c["rule"], c["symptom"]) for c in errors]
    assert document["summary"]["root_causes"] == 1
    assert len(errors[0]["checks"]) > 10  # it broke every stream check; it is still one cause
    assert errors[0]["reproducer"].startswith("curl ") and errors[0]["section"]
    table = render_table(document)
    assert table.startswith("1 root cause:\n  RC1 error")
    # The failing checks are named under their cause, not listed again one line each.
    assert "\n  fail " not in table
    junit = (tmp_path / "report" / "junit.xml").read_text()
    assert f"RC1 {errors[0]['rule']}" in junit


def test_findings_are_written_as_the_run_goes(tmp_path: Path) -> None:
    """Each check's result reaches findings.json before the next check runs: a run killed from
    outside (here while a stalled stream holds it) still leaves what it had found."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    report = tmp_path / "report"
    findings = report / "findings.json"
    with running_server(faults=["stall"]) as url:
        argv = [sys.executable, "-m", "chatprobe", "conform", "--target", url, "--report-dir", str(report),
                "--timeout", "60", "--quiet", "-k", "test_non_stream_response or test_stream_response"]
        child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            document: dict[str, Any] = {}
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not document.get("checks"):
                time.sleep(0.1)
                if findings.is_file():
                    document = json.loads(findings.read_text(encoding="utf-8"))
        finally:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
    assert document.get("state") == "running", document
    assert [c["name"] for c in document["checks"]] == ["test_non_stream_response"]
    assert document["checks"][0]["verdict"] == "pass"
