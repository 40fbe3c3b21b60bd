"""Conformance under load: the report's "protocol under load" section.

The reference server's ``id-changes-under-load`` fault breaks streams only while
more than UNDER_LOAD_STREAMS generate at once: a plan of 2 users then 8 users
shows stream.id_changed (conform's rule id) first at the 8-user stage, never at 2.
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

from chatprobe.paths import data_dir
from chatprobe.server.faults import UNDER_LOAD_STREAMS
from chatprobe.server.runner import spawn_server

from .conftest import QUICK, read_summary, run_load


def _schema_ok(doc: dict[str, object]) -> None:
    import json

    schema = json.loads((data_dir("specs") / "summary.schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(doc, schema)


@pytest.mark.slow  # (default tier trim: CI's slow tier runs it)
def test_violation_starts_above_concurrency(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("max_tokens: 16\nstages:\n  - {duration: 2, users: 2}\n  - {duration: 2, users: 8}\n",
                    encoding="utf-8")
    assert 2 <= UNDER_LOAD_STREAMS < 8
    with spawn_server(faults=["id-changes-under-load"], ttft_ms=5, itl_ms=5) as url:
        proc = run_load(["--target", url, "--plan", str(plan), "--no-progress"], tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    doc = read_summary(tmp_path / "out")
    _schema_ok(doc)
    pul = doc["protocol_under_load"]
    assert pul["fraction_checked"] == 1 and pul["streams_checked"] == doc["summary"]["requests"]["total"]
    rules = {r["rule"]: r for r in pul["rules"]}
    assert set(rules) == {"stream.id_changed"}, pul
    first = rules["stream.id_changed"]
    assert first["first_level"]["stage"] == 1 and first["first_level"]["users"] == 8, first
    assert first["first_t_s"] >= 2.0 and first["count"] > 0 and "id changed" in first["message"]
    assert "protocol under load: 1 rules broken" in proc.stdout
    assert "stream.id_changed (error)" in proc.stdout and "stage 2: 8 users" in proc.stdout
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "Protocol under load" in html and "stage 2: 8 users" in html


def test_clean_run_says_no_violation(paced_server: str, tmp_path: Path) -> None:
    proc = run_load(["--target", paced_server, "--users", "2", "--duration", "1", *QUICK], tmp_path)
    assert proc.returncode == 0, proc.stderr
    pul = read_summary(tmp_path)["protocol_under_load"]
    assert pul["rules"] == [] and pul["streams_checked"] > 0
    assert f"protocol under load: no violation in {pul['streams_checked']} streams checked" in proc.stdout
