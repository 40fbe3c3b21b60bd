"""`chatprobe sweep` against the reference server with a known capacity (its latency model)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from chatprobe.paths import specs_dir
from tests.load.conftest import load_env

from .model import ServerModel

SWEEP_SCHEMA = json.loads((specs_dir() / "sweep.schema.json").read_text(encoding="utf-8"))
TOKENS = 8
LEVEL_S = 2.0


def server_args(m: ServerModel) -> list[str]:
    return ["--server-max-concurrency", str(m.max_concurrency), "--server-ttft-ms", str(m.ttft_ms),
            "--server-itl-ms", str(m.itl_ms), "--server-itl-per-active-ms", str(m.itl_per_active_ms),
            "--max-tokens", str(m.tokens), "--prompt-tokens", "16"]


def sweep_cmd(args: list[str], report_dir: Path) -> list[str]:
    return [sys.executable, "-m", "chatprobe", "sweep", "--report-dir", str(report_dir),
            "--level-duration", str(LEVEL_S), "--budget", "150s", *args]


def run_sweep(args: list[str], report_dir: Path, timeout: float = 170.0) -> dict[str, Any]:
    proc = subprocess.run(sweep_cmd(args, report_dir), env=load_env(), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc: dict[str, Any] = json.loads((report_dir / "sweep.json").read_text(encoding="utf-8"))
    jsonschema.validate(doc, SWEEP_SCHEMA)
    assert doc["answer"]["sentence"] in proc.stdout
    return doc


@pytest.mark.slow  # ~20 s: a real capacity search (tox -e slow)
def test_concurrency_capacity_by_ttft_k4(tmp_path: Path) -> None:
    m = ServerModel(max_concurrency=4, ttft_ms=50, itl_ms=5, itl_per_active_ms=2, tokens=TOKENS)
    # TTFT limit halfway between the model's TTFT at 8 and at 9 users: capacity 8.
    limit = (m.closed_ttft_ms(8) + m.closed_ttft_ms(9)) / 2
    capacity = m.closed_capacity(ttft_limit_ms=limit)
    assert capacity == 8
    doc = run_sweep([*server_args(m), "--slo", f"ttft_p95_ms={limit:.1f}"], tmp_path)
    answer = doc["answer"]
    assert answer["mode"] == "concurrency" and answer["unit"] == "users"
    assert abs(answer["value"] - capacity) <= 0.1 * capacity, doc["levels"]
    assert answer["ci"][0] <= answer["value"] <= answer["ci"][1]
    assert answer["sentence"].startswith(f"at most {int(answer['value'])} concurrent users at TTFT p95")
    assert doc["levels"][0]["phase"] == "baseline" and doc["levels"][0]["users"] == 1
    # The knee of the throughput curve sits at the server's slot count.
    assert doc["knee"] is not None and doc["knee"]["load"] in (4.0, 8.0)
    html = (tmp_path / "sweep.html").read_text(encoding="utf-8")
    assert html.count("<svg") >= 4 and answer["sentence"].split(";")[0] in html
    assert "<script" not in html
    for lv in doc["levels"]:
        assert (tmp_path / lv["report_dir"] / "summary.json").is_file()


@pytest.mark.slow
def test_concurrency_capacity_by_user_tokens_k16(tmp_path: Path) -> None:
    m = ServerModel(max_concurrency=16, ttft_ms=50, itl_ms=5, itl_per_active_ms=2, tokens=TOKENS)
    limit = (m.closed_user_tokens_per_s(10) + m.closed_user_tokens_per_s(11)) / 2
    capacity = m.closed_capacity(user_tps_min=limit)
    assert capacity == 10
    doc = run_sweep([*server_args(m), "--slo", f"user_tokens_per_s_p50={limit:.2f}"], tmp_path)
    assert abs(doc["answer"]["value"] - capacity) <= 0.1 * capacity, doc["levels"]


@pytest.mark.slow
@pytest.mark.parametrize("k", [4, 8])
def test_rate_capacity(k: int, tmp_path: Path) -> None:
    m = ServerModel(max_concurrency=k, ttft_ms=50, itl_ms=5, itl_per_active_ms=2, tokens=TOKENS)
    capacity = m.saturation_rate()  # above it the queue grows without bound
    doc = run_sweep([*server_args(m), "--mode", "rate", "--arrivals", "constant",
                     "--slo", f"ttft_p95_ms={m.ttft_ms + 60:g}"], tmp_path)
    answer = doc["answer"]
    assert answer["mode"] == "rate" and answer["unit"] == "requests/s"
    assert abs(answer["value"] - capacity) <= 0.1 * capacity, (capacity, doc["levels"])
    assert "requests/s (constant arrivals)" in answer["sentence"]


@pytest.mark.slow  # ~20 s: a real capacity search (tox -e slow)
def test_server_failing_under_load_stops_early(tmp_path: Path) -> None:
    # Two slots and room for two more in the queue: above 4 concurrent requests the server
    # refuses with 503 (--max-queue), as an overloaded gateway does. The SLO itself is lenient.
    m = ServerModel(max_concurrency=2, ttft_ms=50, itl_ms=5, itl_per_active_ms=1, tokens=TOKENS)
    doc = run_sweep([*server_args(m), "--server-max-queue", "2", "--slo", "ttft_p95_ms=5000", "--max", "64"], tmp_path)
    stop = doc["stop"]
    assert stop["early"] and "errors" in stop["reason"] and "pointless" in stop["reason"], stop
    loads = [lv["load"] for lv in doc["levels"]]
    assert max(loads) <= 8 < 64  # nothing above the first failing level
    failing = [lv for lv in doc["levels"] if any(p.startswith("errors") for p in lv["problems"])]
    assert failing and all(lv["requests"]["failed"] > 0 for lv in failing)
    assert min(lv["load"] for lv in failing) > 4  # at most K + queue = 4 are ever served
    assert doc["answer"]["value"] is not None and 4 <= doc["answer"]["value"] < min(lv["load"] for lv in failing)


@pytest.mark.slow  # (default tier trim: CI's slow tier runs it)
def test_ctrl_c_writes_the_levels_measured_so_far(tmp_path: Path) -> None:
    m = ServerModel(max_concurrency=4, ttft_ms=20, itl_ms=2, itl_per_active_ms=0, tokens=TOKENS)
    proc = subprocess.Popen(sweep_cmd([*server_args(m), "--slo", "ttft_p95_ms=10000"], tmp_path),
                            env=load_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        third = False
        for line in proc.stderr:  # progress lines: interrupt once the third level's generator runs
            third = third or line.startswith("sweep level 3 ")
            if third and line.startswith("["):
                break
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130
    doc = json.loads((tmp_path / "sweep.json").read_text(encoding="utf-8"))
    jsonschema.validate(doc, SWEEP_SCHEMA)
    assert doc["stop"]["kind"] == "interrupted" and doc["run"]["interrupted"]
    assert 2 <= len(doc["levels"]) <= 3
    assert doc["answer"]["value"] == 2  # 1 and 2 users measured and passed
    assert "cut short" in out


@pytest.mark.parametrize("args", [
    ["--slo", "ttft_p95_ms=500", "--budget", "5 minutes"],
    ["--slo", "ttft_p95_ms=500", "--repeats", "0"],
    ["--slo", "ttft_p95_ms=500", "--min", "2.5"],
    ["--slo", "ttft_p95_ms=500", "--min", "8", "--max", "4"],
    ["--slo", "ttft_ms=500"],  # a per-request threshold alone: nothing to meet
    [],
])
def test_bad_input_exits_2_with_one_line(args: list[str], tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "chatprobe", "sweep", "--report-dir", str(tmp_path), *args],
                          env=load_env(), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert len(proc.stderr.strip().splitlines()) == 1 and "error" in proc.stderr
