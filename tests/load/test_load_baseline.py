"""`chatprobe load --baseline DIR`: the performance gate through the CLI (chatprobe.metrics.compare)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from chatprobe.cli import main
from chatprobe.paths import specs_dir
from chatprobe.server.runner import spawn_server

from .conftest import QUICK, load_env, read_summary, run_load

SUMMARY_SCHEMA = json.loads((specs_dir() / "summary.schema.json").read_text(encoding="utf-8"))
SHORT = ["--users", "2", "--duration", "1.5", "--ignore-eos", *QUICK]


@pytest.mark.slow  # two load runs, a server and a re-render: ~10 s (tox -e slow)
def test_a_slower_server_fails_the_gate_against_a_baseline(paced_server: str, tmp_path: Path) -> None:
    base = run_load(["--target", paced_server, *SHORT], tmp_path / "base")
    assert base.returncode == 0, base.stderr
    with spawn_server(ttft_ms=40, itl_ms=1) as slow:  # TTFT 5 -> 40 ms
        proc = run_load(["--target", slow, *SHORT, "--baseline", str(tmp_path / "base"),
                         "--gate", "itl_p95=off"], tmp_path / "slow")
    assert proc.returncode == 1, proc.stderr
    doc = read_summary(tmp_path / "slow")
    jsonschema.validate(doc, SUMMARY_SCHEMA)
    c = doc["comparison"]
    assert not c["passed"] and "ttft_p50" in c["regressed"]
    assert c["baseline"]["dir"] == str((tmp_path / "base").resolve())
    ttft = next(r for r in c["results"] if r["name"] == "ttft_p50")
    assert ttft["verdict"] == "regressed" and ttft["change_pct"]["low"] > 100  # ~ +700 %
    assert ttft["baseline"] == read_summary(tmp_path / "base")["summary"]["latency_ms"]["ttft_ms"]["p50"]
    assert ttft["current"] == doc["summary"]["latency_ms"]["ttft_ms"]["p50"]
    assert next(r for r in c["results"] if r["name"] == "itl_p95")["verdict"] in ("not gated", "too few data")
    assert c["method"]["resamples"] == 2000 and c["method"]["block_length"]["baseline"] >= 1
    lines = proc.stdout.splitlines()
    assert any(line.split()[:2] == ["REGRESSED", "ttft_p50"] and "limit +10 %" in line for line in lines)
    assert lines[-2].startswith("performance gate FAILED: regressed beyond the limit: ") and "ttft_p50" in lines[-2]
    html = (tmp_path / "slow" / "report.html").read_text(encoding="utf-8")
    assert "Compared with the baseline" in html and "ttft_p50" in html
    # `chatprobe report` validates summary.json (its comparison too) and draws the section again.
    again = subprocess.run([sys.executable, "-m", "chatprobe", "report", str(tmp_path / "slow"), "--format", "html",
                            "--out", str(tmp_path / "again")], env=load_env(), capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert "Compared with the baseline" in (tmp_path / "again" / "report.html").read_text(encoding="utf-8")


def _fake_run(directory: Path, summary: object, records: str | None = "") -> Path:
    directory.mkdir(parents=True)
    (directory / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    if records is not None:
        (directory / "records.jsonl").write_text(records, encoding="utf-8")
    return directory


@pytest.mark.parametrize(("case", "message"), [
    ("missing", "no such directory"),
    ("sweep", "sweep.json, a sweep's"),
    ("not chatprobe", "not a chatprobe load summary"),
    ("no records", "no records.jsonl in it"),
    ("broken record", "records.jsonl:2: a broken record"),
    ("itself", "is this run's --report-dir"),
    ("gate alone", "need --baseline"),
    ("bad gate", "unknown statistic"),
])
def test_a_bad_baseline_is_one_line_and_exit_2(case: str, message: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    summary = {"schema": "chatprobe.load.summary/1", "settings": {}, "run": {"records_file": "records.jsonl"},
               "summary": {"window": {"start_ns": 0, "end_ns": 10}}}
    report = tmp_path / "out"
    args = ["--baseline", str(tmp_path / "base")]
    if case == "sweep":
        (tmp_path / "base").mkdir()
        (tmp_path / "base" / "sweep.json").write_text("{}", encoding="utf-8")
    elif case == "not chatprobe":
        _fake_run(tmp_path / "base", {"schema": "something else"})
    elif case == "no records":
        _fake_run(tmp_path / "base", summary, None)
    elif case == "broken record":
        _fake_run(tmp_path / "base", summary, '{"request_id": "a", "dialect": "openai", "t_sent_ns": 1, "ok": true}\n{"ok"\n')
    elif case == "itself":
        report = _fake_run(tmp_path / "base", summary)
    elif case == "gate alone":
        args = ["--gate", "ttft_p95=+5%"]
    elif case == "bad gate":
        _fake_run(tmp_path / "base", summary)
        args += ["--gate", "latency=+5%"]
    # Refused before anything starts (no server, no generator): in process.
    code = main(["load", "--target", "http://127.0.0.1:9", "--report-dir", str(report), *args])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1 and message in err and err.startswith("chatprobe load: error: "), err
    if case == "itself":
        assert (report / "summary.json").is_file()  # not cleared

