"""--baseline: regressions and fixes per target against an earlier audit.json; exit 1 on a regression."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chatprobe.audit import compare
from tests.audit.audit_run import audit, write_targets
from tests.audit.conftest import Audited

# the checks the usage-merged fault fails (the stream_usage requests, and max_tokens, which asks for usage)
USAGE_CHECKS = {
    "streaming::test_stream_usage_chunk",
    "usage::test_usage_stream",
    "usage::test_usage_stream_agrees_with_non_stream",
    "parameters::test_max_tokens[stream]",
}
# The property check also fails there when its generated requests happen to ask for stream usage
# (which examples it draws can differ between environments): allowed, not required.
MAYBE = {"properties::test_generated_valid_requests"}


def _only(document: dict[str, Any]) -> dict[str, Any]:
    (item,) = document["comparison"]["targets"]
    assert isinstance(item, dict)
    return item


def test_a_regressed_target_exits_1(audited: Audited, servers: dict[str, str], tmp_path: Path) -> None:
    """`clean` is now served by the server that merges stream usage into the finish chunk."""
    targets = write_targets(tmp_path / "T.yaml", [{"name": "clean", "url": servers["usage-merged"], "dialect": "openai"}])
    code, document = audit(targets, tmp_path / "report", "--baseline", str(audited.report_dir))
    assert code == 1 and document["exit_code"] == 1
    item = _only(document)
    failing = {key for key, verdict in document["targets"][0]["checks"].items() if verdict == "fail"}
    assert USAGE_CHECKS <= failing <= USAGE_CHECKS | MAYBE
    assert USAGE_CHECKS <= {c["check"] for c in item["regressions"]} <= USAGE_CHECKS | MAYBE
    assert all(c["was"] == "pass" and c["now"] == "fail" for c in item["regressions"])
    assert item["fixes"] == [] and document["comparison"]["regressed"] == ["clean"]
    assert "usage-merged" in document["comparison"]["missing"]
    assert "regression" in (tmp_path / "report" / "audit.md").read_text()


@pytest.mark.slow  # (default tier trim: CI's slow tier runs it)
def test_a_fixed_target_exits_0(audited: Audited, servers: dict[str, str], tmp_path: Path) -> None:
    """`usage-merged` is now served by the clean server: its failures are fixes."""
    targets = write_targets(tmp_path / "T.yaml", [{"name": "usage-merged", "url": servers["clean"], "dialect": "openai"}])
    code, document = audit(targets, tmp_path / "report", "--baseline", str(audited.report_dir / "audit.json"))
    item = _only(document)
    assert code == 0
    assert item["regressions"] == []
    assert USAGE_CHECKS <= {c["check"] for c in item["fixes"]} <= USAGE_CHECKS | MAYBE


def _doc(status: str = "ok", **checks: str) -> dict[str, Any]:
    return {"targets": [{"name": "t", "status": status, "checks": checks}]}


def test_verdict_order() -> None:
    old = _doc(a="pass", b="fail", c="pass", d="n/a", e="unsupported", f="warn")
    new = _doc(a="warn", b="unsupported", c="n/a", d="pass", e="fail", f="warn", g="pass")
    (item,) = compare(new, old, "base")["targets"]
    assert [(c["check"], c["was"], c["now"]) for c in item["regressions"]] == [("a", "pass", "warn"), ("e", "unsupported", "fail")]
    assert [c["check"] for c in item["fixes"]] == ["b"]
    assert [c["check"] for c in item["changes"]] == ["c", "d"]  # to or from n/a: not judged
    unreachable = compare(_doc("unreachable"), old, "base")["targets"][0]
    assert unreachable["status"] == "not compared" and not unreachable["regressions"]


def test_unreadable_baseline_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    targets = write_targets(tmp_path / "T.yaml", [{"name": "x", "url": "http://127.0.0.1:9", "dialect": "openai"}])
    code, _ = audit(targets, tmp_path / "report", "--baseline", str(tmp_path / "nowhere"))
    err = capsys.readouterr().err
    assert code == 2 and "no such file" in err and len(err.strip().splitlines()) == 1


def test_no_target_reachable_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    targets = write_targets(tmp_path / "T.yaml", [{"name": "x", "url": "http://127.0.0.1:9", "dialect": "openai"}])
    code, document = audit(targets, tmp_path / "report")
    assert code == 2 and document["targets"][0]["status"] == "unreachable"  # the report is still written
    assert "not one target" in capsys.readouterr().err
