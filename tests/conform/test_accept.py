"""Accepted deviations (chatprobe.accept): the accept file, matching, stale and expired acceptances,
what every rendering shows, and the flow end to end through `chatprobe conform`."""

from __future__ import annotations

import datetime as dt
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from chatprobe import accept, rootcause, rules
from chatprobe.cli import main
from chatprobe.conformance import AcceptSettings, findings_document
from chatprobe.errors import UsageError
from chatprobe.paths import specs_dir
from chatprobe.reports.conform import render_html, render_table
from chatprobe.reports.junit import render_junit
from chatprobe.server.runner import running_server
from tests.conform.conform_run import conform

pytest_plugins = ["pytester"]

TODAY = dt.date(2025, 6, 15)  # injected: no test depends on the clock


def _file(tmp_path: Path, text: str, name: str = "accept.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _load(tmp_path: Path, text: str) -> tuple[accept.Acceptance, ...]:
    return accept.load([_file(tmp_path, text)])


# --------------------------------------------------------------------------- the file


def test_a_valid_file_loads_with_kinds_dates_and_lines(tmp_path: Path) -> None:
    loaded = _load(tmp_path, (
        "accept:\n"
        "  - id: usage.not_separate\n"
        "    reason: the gateway merges usage (TICKET-1)\n"
        "    expires: 2025-06-30\n"
        "  - id: test_errors.py::test_unknown_model\n"
        "    reason: '  every model id is served\n    on purpose '\n"
        "    expires: '2025-07-01'\n"
    ))  # fmt: skip
    assert [(a.id, a.kind, a.expires) for a in loaded] == [
        ("usage.not_separate", "rule", dt.date(2025, 6, 30)),
        ("test_errors.py::test_unknown_model", "check", dt.date(2025, 7, 1)),
    ]
    assert loaded[1].reason == "every model id is served on purpose"
    assert [a.source.rsplit(":", 1)[1] for a in loaded] == ["2", "5"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("accept: [\n", "accept.yaml:2: not valid YAML"),
        ("", "accept.yaml:1: empty file"),
        ("- id: usage.totals\n", "accept.yaml:1: expected a mapping with an `accept:` list"),
        ("acept: []\n", "unknown key 'acept'"),
        ("accept: {id: usage.totals}\n", "`accept` must be a list"),
        ("accept:\n  - id: usage.totals\n", "accept.yaml:2: accept[0].reason: required"),
        ("accept:\n  - id: usage.totals\n    reason: '  '\n", "accept.yaml:3: accept[0].reason: required"),
        ("accept:\n  - reason: why\n", "accept[0].id: required"),
        ("accept:\n  - id: usage.totals\n    reason: r\n    expiry: 2025-01-01\n", "accept.yaml:4: accept[0]: unknown key 'expiry'"),
        ("accept:\n  - id: usage.totals\n    reason: r\n    expires: 2025-02-30\n", "accept.yaml:4: not valid YAML: day is out of range"),
        ("accept:\n  - id: usage.totals\n    reason: r\n    expires: next June\n", "accept[0].expires: 'next June' is not a date"),
        ("accept:\n  - id: usage.totals\n    reason: r\n    expires: '2025-6-1'\n", "is not a date (YYYY-MM-DD)"),
        ("accept:\n  - id: usage.totals\n    reason: r\n    expires: 2025-06-01T10:00:00\n", "is not a date"),
        ("accept:\n  - id: usage.totals\n    reason: r\n    expires:\n", "is not a date"),
        ("accept:\n  - id: usage.nope\n    reason: r\n", "accept.yaml:2: accept[0].id: unknown id 'usage.nope'"),
        ("accept:\n  - id: test_stream_response\n    reason: r\n", "unknown id 'test_stream_response'"),
        ("accept:\n  - {id: usage.totals, reason: a}\n  - {id: usage.totals, reason: b}\n", "accept.yaml:3: accept[1]: 'usage.totals' is accepted twice"),
        ("accept:\n  - {id: usage.totals, reason: a, id: usage.missing}\n", "duplicate key 'id'"),
    ],
)
def test_every_mistake_is_one_line_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        _load(tmp_path, text)
    assert message in str(caught.value) and str(tmp_path / "accept.yaml") in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_unreadable_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        accept.load([tmp_path / "missing.yaml"])
    with pytest.raises(UsageError):
        accept.load([tmp_path])  # a directory


def test_an_unknown_check_id_is_refused_by_name(tmp_path: Path) -> None:
    from chatprobe.conformrun import load_accept

    good = _file(tmp_path, "accept:\n  - {id: 'test_errors.py::test_unknown_model[x]', reason: r}\n")
    assert load_accept([good])[0].kind == "check"  # its parameters are the run's to check
    bad = _file(tmp_path, "accept:\n  - {id: usage.totals, reason: r}\n  - {id: 'test_errors.py::test_unknwn_model', reason: r}\n", "b.yaml")
    with pytest.raises(UsageError, match=r"b.yaml:3: unknown id 'test_errors.py::test_unknwn_model': no such check"):
        load_accept([bad])


# --------------------------------------------------------------------------- matching


def _finding(rule: str, exchange: int | None = 0, severity: str = "error") -> dict[str, Any]:
    return {"rule": rule, "severity": severity, "message": f"{rule} seen", "exchange": exchange}


def _check(check_id: str, verdict: str = "fail", *rules_: str, **extra: Any) -> dict[str, Any]:
    exchange = {
        "dialect": "openai", "request": {"method": "POST", "url": "http://127.0.0.1:1/v1/chat/completions", "headers": {}, "body": {}},
        "response": {"status": 200, "headers": {}, "body_excerpt": "", "body_truncated": False, "bytes_received": 0, "events": 0},
        "transport_error": None, "reproducer": "curl x",
    }  # fmt: skip
    module, _, name = check_id.partition("::")
    return {
        "id": check_id, "name": name, "area": module.removeprefix("test_").removesuffix(".py"), "verdict": verdict,
        "reason": "", "duration_s": 0.1, "findings": [_finding(r) for r in rules_], "exchanges": [exchange], **extra,
    }  # fmt: skip


def _acceptance(ident: str, expires: dt.date | None = None) -> accept.Acceptance:
    target = rules.canonical(ident)
    kind = "check" if "::" in target else "rule"
    return accept.Acceptance(ident, target, kind, f"because {ident}", expires, f"a.yaml:{len(ident)}")


def test_a_check_id_accepts_that_check_and_without_parameters_every_parametrization() -> None:
    exact, base = _acceptance("test_p.py::test_n[stream]"), _acceptance("test_p.py::test_n")
    for check_id, by in (("test_p.py::test_n[stream]", exact), ("test_p.py::test_n[non_stream]", base)):
        judgement = accept.judge(_check(check_id, "fail", "param.n_ignored"), [exact, base], TODAY)
        assert judgement is not None and judgement.accepted == (by,) and not judgement.expired
    assert accept.judge(_check("test_p.py::test_nope", "fail", "param.n_ignored"), [exact, base], TODAY) is None


def test_a_rule_id_accepts_a_check_only_when_it_covers_every_rule_of_the_failure() -> None:
    merged = _acceptance("usage.not_separate")
    only = _check("test_u.py::test_a", "fail", "usage.not_separate")
    both = _check("test_u.py::test_b", "fail", "usage.not_separate", "stream.id_changed")
    judgement = accept.judge(only, [merged], TODAY)
    assert judgement is not None and judgement.accepted == (merged,)
    assert accept.judge(both, [merged], TODAY) is None  # another rule still fails it
    assert accept.judge(_check("test_u.py::test_c", "fail"), [merged], TODAY) is None  # a crash: no rule
    # Consequences of an accepted cause are accepted with it (a cut stream has no [DONE]).
    cut = _check("test_u.py::test_d", "fail", "http.reset", "stream.terminator_missing")
    judgement = accept.judge(cut, [_acceptance("http.reset")], TODAY)
    assert judgement is not None and [a.id for a in judgement.accepted] == ["http.reset"]


def test_an_expired_acceptance_does_not_apply_and_says_when_it_expired() -> None:
    check = _check("test_u.py::test_a", "fail", "usage.not_separate")
    last_day = _acceptance("usage.not_separate", TODAY)
    judgement = accept.judge(check, [last_day], TODAY)
    assert judgement is not None and judgement.accepted  # it applies through its date
    expired = _acceptance("usage.not_separate", TODAY - dt.timedelta(days=1))
    judgement = accept.judge(check, [expired], TODAY)
    assert judgement is not None and judgement.accepted == () and judgement.expired == (expired,)
    assert judgement.to_json()["status"] == "expired"
    assert "usage.not_separate expired on 2025-06-14: the failure counts again" in judgement.text()


def test_statuses_live_stale_expired() -> None:
    checks = [
        _check("test_u.py::test_a", "accepted", "usage.not_separate"),
        _check("test_u.py::test_b", "fail", "stream.id_changed"),
        _check("test_b.py::test_ok", "pass"),
    ]
    acceptances = [
        _acceptance("usage.not_separate"),
        _acceptance("stream.id_changed", TODAY - dt.timedelta(days=3)),
        _acceptance("test_b.py::test_ok"),
        _acceptance("test_b.py::test_gone"),
        _acceptance("usage.totals"),
    ]
    got = {a["id"]: (a["status"], a["checks"], a["detail"]) for a in accept.statuses(acceptances, checks, TODAY)}
    assert got["usage.not_separate"][:2] == ("live", ["test_u.py::test_a"])
    assert got["stream.id_changed"][:2] == ("expired", ["test_u.py::test_b"])
    assert "expired on 2025-06-12" in got["stream.id_changed"][2]
    assert got["test_b.py::test_ok"][0] == "stale" and "did not fail in this run (pass)" in got["test_b.py::test_ok"][2]
    assert got["test_b.py::test_gone"][0] == "stale" and "no check of this run has this id" in got["test_b.py::test_gone"][2]
    assert got["usage.totals"][0] == "stale" and "no failing check" in got["usage.totals"][2]


def test_old_ids_resolve_through_the_alias_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(rules.ALIASES, "usage.merged", "usage.not_separate")
    monkeypatch.setitem(rules.ALIASES, "test_old.py::test_was", "test_u.py::test_a")
    assert rules.canonical("test_old.py::test_was[stream]") == "test_u.py::test_a[stream]"
    loaded = _load(tmp_path, "accept:\n  - {id: usage.merged, reason: r}\n  - {id: 'test_old.py::test_was', reason: r}\n")
    assert [(a.id, a.target) for a in loaded] == [("usage.merged", "usage.not_separate"), ("test_old.py::test_was", "test_u.py::test_a")]
    judgement = accept.judge(_check("test_u.py::test_b", "fail", "usage.not_separate"), loaded, TODAY)
    assert judgement is not None and judgement.accepted == (loaded[0],)
    assert judgement.to_json()["entries"][0]["means"] == "usage.not_separate"
    judgement = accept.judge(_check("test_u.py::test_a[stream]", "fail", "stream.id_changed"), loaded, TODAY)
    assert judgement is not None and judgement.accepted == (loaded[1],)


# --------------------------------------------------------------------------- the document and its renderings


def _document(checks: list[dict[str, Any]], acceptances: list[accept.Acceptance], strict: bool = False) -> dict[str, Any]:
    for check in checks:  # what the plugin does as each check ends
        if check["verdict"] == "fail":
            judgement = accept.judge(check, acceptances, TODAY)
            if judgement is not None:
                check["acceptance"] = judgement.to_json()
                if judgement.accepted:
                    check["verdict"], check["reason"] = "accepted", judgement.text()
    document = findings_document(
        checks, target="http://127.0.0.1:1", dialect="openai", profile="", model=None, embedded=False,
        started_unix=0.0, duration_s=1.0, hypothesis_profile=None,
        accept=AcceptSettings(("a.yaml",), tuple(acceptances), strict, TODAY),
    )  # fmt: skip
    schema = json.loads((specs_dir() / "findings.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(document)
    return document


def test_accepted_failures_pass_the_run_and_every_rendering_shows_them() -> None:
    checks = [_check(f"test_u.py::test_{n}", "fail", "usage.not_separate") for n in "ab"]
    checks += [_check("test_b.py::test_ok", "pass")]
    document = _document(checks, [_acceptance("usage.not_separate"), _acceptance("test_b.py::test_ok")])
    assert document["exit_code"] == 0
    assert (document["summary"]["fail"], document["summary"]["accepted"]) == (0, 2)
    (cause,) = document["root_causes"]
    assert cause["accepted"] is True and cause["accepted_by"] == ["usage.not_separate"]
    assert (document["summary"]["root_causes"], document["summary"]["accepted_causes"]) == (0, 1)
    assert [a["status"] for a in document["acceptances"]] == ["live", "stale"]

    table = render_table(document)
    assert "1 accepted root cause:" in table and "RC1 accepted usage.not_separate" in table
    assert "LIVE     usage.not_separate" in table and "reason: because usage.not_separate" in table
    assert "STALE    test_b.py::test_ok" in table and "2 accepted" in table and "1 stale acceptance(s)" in table
    html = render_html(document)
    assert "Accepted deviations" in html and 'class="v v-stale"' in html and "because usage.not_separate" in html

    suite = ET.fromstring(render_junit(document)).find("testsuite")
    assert suite is not None and (suite.get("failures"), suite.get("skipped")) == ("0", "2")
    skipped = [case.find("skipped") for case in suite.iter("testcase") if case.find("skipped") is not None]
    assert {s.get("type") for s in skipped if s is not None} == {"pytest.xfail"}
    assert all("because usage.not_separate" in (s.get("message") or "") for s in skipped if s is not None)
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert "test_b.py::test_ok" in (properties.get("chatprobe_acceptance_stale_1") or "")


def test_a_cause_with_one_check_still_failing_is_not_accepted() -> None:
    checks = [
        _check("test_u.py::test_a", "fail", "usage.not_separate"),
        _check("test_u.py::test_b", "fail", "usage.not_separate", "stream.id_changed"),
    ]
    document = _document(checks, [_acceptance("test_u.py::test_a")])
    assert document["exit_code"] == 1
    assert [(c["rule"], c["accepted"]) for c in document["root_causes"]] == [
        ("usage.not_separate", False), ("stream.id_changed", False)
    ]
    assert [c["verdict"] for c in document["checks"]] == ["accepted", "fail"]
    assert rootcause.failing_rules(checks[1]) == ["usage.not_separate", "stream.id_changed"]


def test_strict_accept_fails_a_run_with_a_stale_acceptance() -> None:
    checks = [_check("test_b.py::test_ok", "pass")]
    assert _document(checks, [_acceptance("usage.totals")])["exit_code"] == 0
    strict = _document([_check("test_b.py::test_ok", "pass")], [_acceptance("usage.totals")], strict=True)
    assert strict["exit_code"] == 1
    assert "the run fails (--strict-accept)" in render_table(strict)
    suite = ET.fromstring(render_junit(strict)).find("testsuite")
    assert suite is not None and suite.get("failures") == "1"
    assert any(case.get("name") == "accept" and case.find("failure") is not None for case in suite.iter("testcase"))


def test_an_expired_acceptance_fails_again_and_every_rendering_says_so() -> None:
    checks = [_check("test_u.py::test_a", "fail", "usage.not_separate")]
    document = _document(checks, [_acceptance("usage.not_separate", dt.date(2025, 1, 31))])
    assert document["exit_code"] == 1 and document["checks"][0]["verdict"] == "fail"
    assert document["checks"][0]["acceptance"]["status"] == "expired"
    assert document["acceptances"][0]["status"] == "expired"
    assert "EXPIRED  usage.not_separate" in render_table(document)
    assert "expired on 2025-01-31" in render_table(document)
    assert "expired on 2025-01-31" in render_html(document)
    assert "chatprobe_acceptance_expired_1" in render_junit(document)


# --------------------------------------------------------------------------- end to end


def test_accept_flow_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The usage-merged server fails three checks on one rule: accepted (exit 0) with one stale
    acceptance beside it; the same acceptance expired (exit 1, the report says when); an unknown
    id refused before anything runs (exit 2)."""
    select = ["-k", "test_stream_usage_chunk or test_usage_stream or test_stream_response"]
    live = _file(tmp_path, (
        "accept:\n"
        "  - id: usage.not_separate\n"
        "    reason: our gateway merges usage into the last chunk (TICKET-42)\n"
        "    expires: 2999-12-31\n"
        "  - id: test_basics.py::test_stream_response\n"
        "    reason: flaky last spring\n"
    ), "live.yaml")  # fmt: skip
    expired = _file(tmp_path, live.read_text().replace("2999-12-31", "2001-01-01"), "expired.yaml")
    unknown = _file(tmp_path, "accept:\n  - {id: 'test_basics.py::test_stream_respons', reason: typo}\n", "unknown.yaml")
    with running_server(faults=["usage-merged"]) as url:
        code, document = conform(tmp_path / "live", "--target", url, *select, "--accept", str(live))
        out = capsys.readouterr().out
        assert code == 0 and document["exit_code"] == 0
        verdicts = {c["name"]: c["verdict"] for c in document["checks"]}
        assert verdicts == {
            "test_stream_response": "pass", "test_stream_usage_chunk": "accepted",
            "test_usage_stream": "accepted", "test_usage_stream_agrees_with_non_stream": "accepted",
        }  # fmt: skip
        assert [(a["id"], a["status"]) for a in document["acceptances"]] == [
            ("usage.not_separate", "live"), ("test_basics.py::test_stream_response", "stale")
        ]
        assert "3 accepted" in out and "reason: our gateway merges usage into the last chunk (TICKET-42)" in out
        assert "STALE    test_basics.py::test_stream_response" in out
        report = tmp_path / "live" / "report"
        assert "TICKET-42" in (report / "findings.html").read_text()
        junit = ET.fromstring((report / "junit.xml").read_bytes())
        assert [s.get("type") for s in junit.iter("skipped")] == ["pytest.xfail"] * 3

        code, document = conform(tmp_path / "expired", "--target", url, *select, "--accept", str(expired))
        out = capsys.readouterr().out
        assert code == 1 and document["summary"]["fail"] == 3 and document["summary"]["accepted"] == 0
        assert document["acceptances"][0]["status"] == "expired"
        assert "expired on 2001-01-01" in out
        failing = [c for c in document["checks"] if c["verdict"] == "fail"]
        assert all(c["acceptance"]["status"] == "expired" and "expired on 2001-01-01" in c["reason"] for c in failing)

        code, document = conform(tmp_path / "unknown", "--target", url, *select, "--accept", str(unknown))
        err = capsys.readouterr().err
        assert code == 2 and document == {}
        assert "unknown id 'test_basics.py::test_stream_respons'" in err and len(err.strip().splitlines()) == 1
        # parameters the suites do not have: the plugin refuses them as it collects, before any check runs
        bogus = _file(tmp_path, "accept:\n  - {id: 'test_basics.py::test_stream_response[bogus]', reason: typo}\n", "bogus.yaml")
        code, document = conform(tmp_path / "bogus", "--target", url, *select, "--accept", str(bogus))
        err = capsys.readouterr().err
        assert code == 2 and document == {}
        assert err.strip() == f"chatprobe conform: error: {bogus}:2: unknown id 'test_basics.py::test_stream_response[bogus]': no such check in the suites"
    # The expiry shows in the diff of the two runs: three new failures, a regression (exit 1).
    assert main(["report", "diff", str(tmp_path / "live" / "report"), str(tmp_path / "expired" / "report"), "--format", "markdown"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("### ❌ chatprobe conform: 3 new failures")
    assert "| **new failure** | `test_usage.py::test_usage_stream` | accepted | fail | usage.not_separate: " in out
    assert "| **acceptance expired** | `usage.not_separate` |" in out


# --------------------------------------------------------------------------- in a user's own pytest suite

_USER_TESTS = '''
from chatprobe.findings import error

def test_merged(chatprobe_check):
    chatprobe_check.add([error("usage.not_separate", "usage merged into the last chunk")])

def test_other(chatprobe_check):
    chatprobe_check.add([error("stream.id_changed", "the id changed")])

def test_own_assert(chatprobe_check):
    assert 1 == 2, "the test's own assertion"
'''


@pytest.mark.slow
def test_the_plugin_honours_the_accept_file(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """`pytest` with the ini key chatprobe_accept: accepted failures are expected failures
    (xfailed), the rest fail as before; a check id that names no test of a collected module is
    a usage error before anything runs."""
    import os

    import chatprobe
    from chatprobe.conformrun import plugin_args

    source_root = str(Path(chatprobe.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (source_root, os.environ.get("PYTHONPATH")) if p))
    for name in ("CHATPROBE_TARGET", "CHATPROBE_ACCEPT", "CHATPROBE_REPORT_DIR", "CHATPROBE_STRICT_ACCEPT"):
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(test_mine=_USER_TESTS)
    pytester.makefile(".yaml", accept=(
        "accept:\n"
        "  - {id: usage.not_separate, reason: the gateway merges usage}\n"
        "  - {id: 'test_mine.py::test_own_assert', reason: a known bug (TICKET-7)}\n"
    ))  # fmt: skip
    pytester.makeini("[pytest]\nchatprobe_accept = accept.yaml\n")
    result = pytester.runpytest_subprocess(*plugin_args(), "--chatprobe-report-dir", "rep", "-p", "no:cacheprovider", "-rx")
    result.assert_outcomes(failed=1, xfailed=2)
    result.stdout.fnmatch_lines(["*XFAIL*test_merged*accepted: the gateway merges usage*"])
    document = json.loads((pytester.path / "rep" / "findings.json").read_text(encoding="utf-8"))
    assert {c["name"]: c["verdict"] for c in document["checks"]} == {
        "test_merged": "accepted", "test_other": "fail", "test_own_assert": "accepted"
    }
    assert document["exit_code"] == 1 and [a["status"] for a in document["acceptances"]] == ["live", "live"]

    pytester.makefile(".yaml", accept="accept:\n  - {id: 'test_mine.py::test_nope', reason: typo}\n")
    result = pytester.runpytest_subprocess(*plugin_args(), "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown id 'test_mine.py::test_nope': no such check*"])
