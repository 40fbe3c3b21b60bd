"""Accepted deviations in an audit (a target's own `accept` file, audit's --accept for every
target), and `chatprobe report diff` of two audits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest

from chatprobe.cli import main
from chatprobe.paths import specs_dir
from tests.audit.audit_run import audit, by_name, write_targets
from tests.audit.conftest import Audited
from tests.audit.test_baseline import MAYBE, USAGE_CHECKS


@pytest.mark.slow  # (default tier trim: CI's slow tier runs it)
def test_a_targets_accept_file_and_the_global_one(
    audited: Audited, servers: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "merged.yaml").write_text("accept:\n  - {id: usage.not_separate, reason: known (TICKET-9)}\n")
    (tmp_path / "all.yaml").write_text("accept:\n  - {id: stream.id_changed, reason: no target does this}\n")
    targets = write_targets(tmp_path / "T.yaml", [
        {"name": "usage-merged", "url": servers["usage-merged"], "dialect": "openai", "accept": "merged.yaml"},
    ])  # fmt: skip
    code, document = audit(targets, tmp_path / "report", "--accept", str(tmp_path / "all.yaml"),
                           "--baseline", str(audited.report_dir))  # fmt: skip
    assert code == 0, capsys.readouterr()
    jsonschema.Draft202012Validator(json.loads((specs_dir() / "audit.schema.json").read_text())).validate(document)
    target = by_name(document)["usage-merged"]
    accepted = {key for key, verdict in target["checks"].items() if verdict == "accepted"}
    assert USAGE_CHECKS <= accepted <= USAGE_CHECKS | MAYBE
    assert "fail" not in target["checks"].values()
    assert [(a["id"], a["status"]) for a in target["acceptances"]] == [("usage.not_separate", "live"), ("stream.id_changed", "stale")]
    # against the audit where those checks failed: accepted is a change, not a regression
    (item,) = document["comparison"]["targets"]
    assert item["regressions"] == [] and {c["check"] for c in item["changes"] if c["now"] == "accepted"} >= USAGE_CHECKS
    markdown = (tmp_path / "report" / "audit.md").read_text()
    assert "| accepted |" in markdown.splitlines()[2] or " accepted |" in markdown.splitlines()[2]
    assert "usage-merged: stale acceptance stream.id_changed" in markdown

    # report diff of the two audits: the same judgement as --baseline, exit 0
    capsys.readouterr()
    code = main(["report", "diff", str(audited.report_dir), str(tmp_path / "report"), "--format", "json"])
    diff = json.loads(capsys.readouterr().out)
    assert code == 0 and diff["kind"] == "audit" and "usage-merged" in [r["name"] for r in diff["runs"]]
    jsonschema.Draft202012Validator(json.loads((specs_dir() / "diff.schema.json").read_text())).validate(diff)
    run = next(r for r in diff["runs"] if r["name"] == "usage-merged")
    assert {c["check"] for c in run["accepted"]} >= USAGE_CHECKS and [a["id"] for a in run["stale"]] == ["stream.id_changed"]


def test_an_accept_file_mistake_is_one_line_with_its_target(servers: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.yaml").write_text("accept:\n  - {id: 'test_usage.py::test_nope', reason: r}\n")
    targets = write_targets(tmp_path / "T.yaml", [
        {"name": "x", "url": servers["clean"], "dialect": "openai", "accept": "bad.yaml"},
    ])  # fmt: skip
    code, _ = audit(targets, tmp_path / "report")
    err = capsys.readouterr().err
    assert code == 2 and "T.yaml:5: targets[0].accept:" in err and "unknown id 'test_usage.py::test_nope'" in err
    code, _ = audit(write_targets(tmp_path / "U.yaml", [{"name": "x", "url": servers["clean"], "dialect": "openai"}]),
                    tmp_path / "report", "--accept", str(tmp_path / "missing.yaml"))  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "missing.yaml" in err and len(err.strip().splitlines()) == 1


def test_report_diff_of_two_audits_exits_1_on_a_regression(audited: Audited, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new = tmp_path / "new"
    shutil.copytree(audited.report_dir, new)
    document = json.loads((new / "audit.json").read_text())
    clean = by_name(document)["clean"]
    key = next(k for k, v in clean["checks"].items() if v == "pass")
    clean["checks"][key] = "fail"
    clean["evidence"][key] = {"anchor": "x", "rules": ["stream.id_changed"], "reason": ""}
    (new / "audit.json").write_text(json.dumps(document))
    code = main(["report", "diff", str(audited.report_dir / "audit.json"), str(new), "--format", "markdown"])
    out = capsys.readouterr().out
    assert code == 1 and out.startswith("### ❌ chatprobe audit: 1 regression")
    assert "| target | change | check | was | now | detail |" in out
    assert f"| clean | **regression** | `{key}` | pass | fail | stream.id_changed |" in out
