"""`chatprobe load` against the reference server: every dialect, SLO gate, reports."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema
import pytest

from chatprobe.metrics import RequestRecord, parse_slos, summarize
from chatprobe.paths import specs_dir
from chatprobe.specs import bundled_dialects

from .conftest import QUICK, read_summary, run_load

SUMMARY_SCHEMA = json.loads((specs_dir() / "summary.schema.json").read_text(encoding="utf-8"))


def _records(report_dir: Path) -> list[RequestRecord]:
    with open(report_dir / "records.jsonl", encoding="utf-8") as f:
        return [RequestRecord.from_json(json.loads(line)) for line in f]


# openai and elastic-completion (the two body shapes) by default; the rest in the slow tier (tox -e slow;
# the typed dialects' runs: tests/load/test_load_typed.py)
@pytest.mark.parametrize("dialect", [
    pytest.param(d, marks=() if d in ("openai", "elastic-completion") else (pytest.mark.slow,)) for d in bundled_dialects()
])
def test_short_run_per_dialect(dialect: str, paced_server: str, tmp_path: Path) -> None:
    proc = run_load(["--target", paced_server, "--dialect", dialect, "--users", "2",
                     "--duration", "1.5", "--ignore-eos", *QUICK], tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = read_summary(tmp_path)
    jsonschema.validate(doc, SUMMARY_SCHEMA)
    req = doc["summary"]["requests"]
    assert req["total"] > 0 and req["failed"] == 0, req
    ttft = doc["summary"]["latency_ms"]["ttft_ms"]
    assert ttft["count"] == req["ok"] and ttft["p50"] >= 5.0  # never below the server's TTFT
    itl = doc["summary"]["latency_ms"]["itl_ms"]
    assert itl["count"] > 0
    # The summary is exactly what chatprobe.metrics computes from the records it wrote.
    w = doc["summary"]["window"]
    again = summarize(_records(tmp_path), (w["start_ns"], w["end_ns"])).to_json()
    assert again["latency_ms"] == doc["summary"]["latency_ms"]
    (local,) = doc["health"]["processes"]
    assert isinstance(local["gc_pauses"], int) and local["gc_pause_total_ms"] >= 0
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert html.count("<svg") >= 5 and "GC pauses" in html
    assert "<script" not in html and 'src="http' not in html and "href=\"http" not in html


@pytest.mark.slow  # (default tier trim: CI's slow tier runs it)
def test_stamps_flag_reaches_the_summary_and_report(paced_server: str, tmp_path: Path) -> None:
    user = run_load(["--target", paced_server, "--users", "1", "--duration", "1", "--stamps", "user",
                     *QUICK], tmp_path / "user")
    assert user.returncode == 0, user.stderr
    assert read_summary(tmp_path / "user")["run"]["stamps"] == "user"
    assert "reads stamped by user space" in (tmp_path / "user" / "report.html").read_text(encoding="utf-8")
    default = run_load(["--target", paced_server, "--users", "1", "--duration", "1", *QUICK],
                       tmp_path / "default")
    assert default.returncode == 0, default.stderr
    expected = "kernel" if sys.platform == "linux" else "user"
    assert read_summary(tmp_path / "default")["run"]["stamps"] == expected
    # That each connection then asks the kernel for stamps, or not: test_kernel_stamps.py.


def test_slo_missed_exits_1_and_met_exits_0(paced_server: str, tmp_path: Path) -> None:
    missed = run_load(["--target", paced_server, "--users", "2", "--duration", "1",
                       "--slo", "ttft_p95_ms=0.001", "--slo", "error_rate=0.5", *QUICK], tmp_path / "a")
    assert missed.returncode == 1, missed.stderr
    gates = {g["name"]: g["passed"] for g in read_summary(tmp_path / "a")["summary"]["slo"]["gates"]}
    assert gates == {"ttft_p95_ms": False, "error_rate": True}
    assert "SLO MISS ttft_p95_ms" in missed.stdout
    met = run_load(["--target", paced_server, "--users", "2", "--duration", "1",
                    "--slo", "ttft_p95_ms=5000", *QUICK], tmp_path / "b")
    assert met.returncode == 0, met.stderr


@pytest.mark.parametrize("args", [
    ["--slo", "ttft_p95=3"],
    ["--users", "0"],
    ["--rate", "-1"],
    ["--duration", "2", "--warmup", "5"],
    ["--target", "ftp://x"],
    ["--target", "http://127.0.0.1:9"],  # nothing listens on the discard port
])
def test_bad_input_exits_2_with_one_line(args: list[str], tmp_path: Path) -> None:
    proc = run_load(args, tmp_path, timeout=30)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert len(proc.stderr.strip().splitlines()) == 1 and "error" in proc.stderr


def test_open_loop_records_queue_delay(paced_server: str, tmp_path: Path) -> None:
    proc = run_load(["--target", paced_server, "--rate", "40", "--arrivals", "constant",
                     "--duration", "1.5", *QUICK], tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = read_summary(tmp_path)
    total = doc["summary"]["requests"]["total"]
    assert total > 10
    assert doc["summary"]["latency_ms"]["queue_delay_ms"]["count"] == total
    records = _records(tmp_path)
    assert all(r.t_scheduled_ns is not None for r in records)
    # Prepared ahead, written at its time: never before it (the slip is never negative).
    assert all(r.t_sent_ns >= (r.t_scheduled_ns or 0) for r in records)
    assert doc["health"]["dispatch_lag_p99_ms"] is not None


@pytest.mark.slow  # (default tier trim: CI's slow tier runs it)
def test_plan_stages_drive_users(paced_server: str, tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("max_tokens: 8\nslo: {ttft_p99_ms: 5000}\nstages:\n"
                    "  - {duration: 1, users: 1}\n  - {duration: 1.5, users: 3}\n", encoding="utf-8")
    proc = run_load(["--target", paced_server, "--plan", str(plan), "--no-progress"], tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    doc = read_summary(tmp_path / "out")
    assert doc["settings"]["duration_s"] == 2.5
    profile = doc["load_profile"]
    assert max(p["users"] for p in profile) == 3, profile
    assert [p["users"] for p in profile if 0.4 <= p["t_s"] <= 0.9] == [1], profile
    assert [g["name"] for g in doc["summary"]["slo"]["gates"]] == ["ttft_p99_ms"]


def test_bad_plan_exits_2(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("stages:\n  - {duration: 1, users: 2, rate: 3}\n", encoding="utf-8")
    proc = run_load(["--plan", str(plan)], tmp_path / "out", timeout=30)
    assert proc.returncode == 2 and "plan" in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_parse_slos_matches_cli_vocabulary() -> None:
    spec = parse_slos(["ttft_p95_ms=500", "tpot_p99_ms=50", "e2e_p95_ms=2000", "error_rate=0.01", "goodput=1"])
    assert len(spec.gates) == 5
