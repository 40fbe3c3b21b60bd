"""`chatprobe sweep --baseline DIR`: each load both sweeps measured, compared (chatprobe.metrics.compare)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from chatprobe.paths import specs_dir
from tests.load.conftest import load_env

SWEEP_SCHEMA = json.loads((specs_dir() / "sweep.schema.json").read_text(encoding="utf-8"))


def sweep(report_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatprobe", "sweep", "--report-dir", str(report_dir), "--max", "2",
         "--level-duration", "2", "--budget", "60s", "--slo", "ttft_p95_ms=10000", "--max-tokens", "8",
         "--server-itl-ms", "1", "--no-progress", *args],
        env=load_env(), capture_output=True, text=True, timeout=120)


@pytest.mark.slow  # ~20 s: two sweeps of two levels
def test_a_slower_server_fails_the_sweep_gate(tmp_path: Path) -> None:
    base = sweep(tmp_path / "base", "--server-ttft-ms", "5")
    assert base.returncode == 0, base.stderr[-2000:]
    slow = sweep(tmp_path / "slow", "--server-ttft-ms", "40", "--baseline", str(tmp_path / "base"))
    assert slow.returncode == 1, slow.stderr[-2000:]
    doc = json.loads((tmp_path / "slow" / "sweep.json").read_text(encoding="utf-8"))
    jsonschema.validate(doc, SWEEP_SCHEMA)
    c = doc["comparison"]
    assert [lv["load"] for lv in c["levels"]] == ["1 user", "2 users"]
    assert not c["passed"] and {"1 user: ttft_p50", "2 users: ttft_p50"} <= set(c["regressed"])
    assert c["answer"] == {"baseline": 2, "current": 2, "unit": "users"}
    for level in c["levels"]:
        assert level["levels"] == {"baseline": 1, "current": 1}
        ttft = next(r for r in level["results"] if r["name"] == "ttft_p50")
        assert ttft["verdict"] == "regressed" and ttft["change_pct"]["low"] > 100
    assert "performance gate FAILED" in slow.stdout and "at 2 users" in slow.stdout
    assert "Compared with the baseline sweep" in (tmp_path / "slow" / "sweep.html").read_text(encoding="utf-8")
    # A load run's directory is not a sweep's: one line, exit 2, before anything runs.
    level = json.loads((tmp_path / "base" / "sweep.json").read_text(encoding="utf-8"))["levels"][0]["report_dir"]
    wrong = sweep(tmp_path / "again", "--baseline", str(tmp_path / "base" / level))
    assert wrong.returncode == 2 and "no sweep.json in it" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1
