"""Ctrl-C still writes the report; master + 2 workers merge their records exactly."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from chatprobe.metrics import RequestRecord, summarize

from .conftest import load_env, read_summary, run_load


@pytest.mark.slow  # (default tier trim: CI's slow tier runs it)
def test_sigint_writes_report_of_what_was_measured(paced_server: str, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatprobe", "load", "--target", paced_server, "--users", "2",
         "--duration", "60", "--max-tokens", "8", "--report-dir", str(tmp_path)],
        env=load_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # progress lines: wait until requests have completed
            if "requests" in line and "requests 0 " not in line:
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    doc = read_summary(tmp_path)
    assert doc["run"]["interrupted"] is True
    assert doc["summary"]["requests"]["total"] > 0
    assert doc["run"]["measured_s"] < 30
    assert (tmp_path / "report.html").is_file()
    assert "interrupted" in out


def test_master_and_two_workers_merge_exactly(paced_server: str, tmp_path: Path) -> None:
    proc = run_load(["--target", paced_server, "--users", "4", "--processes", "2", "--duration", "2",
                     "--max-tokens", "8", "--no-progress"], tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    doc = read_summary(tmp_path)
    with open(tmp_path / "records.jsonl", encoding="utf-8") as f:
        records = [RequestRecord.from_json(json.loads(line)) for line in f]
    assert len({r.worker_id for r in records}) == 2  # both workers' records reached the master
    assert len({r.request_id for r in records}) == len(records)
    roles = sorted(p["role"] for p in doc["health"]["processes"])
    assert roles == ["master", "worker", "worker"]
    # Workers on the master's machine share its clock: nothing is shifted.
    assert [p["clock_offset_ms"] for p in doc["health"]["processes"]] == [0, 0, 0]
    w = doc["summary"]["window"]
    union = summarize(records, (w["start_ns"], w["end_ns"])).to_json()
    got = doc["summary"]
    assert got["requests"] == union["requests"] and got["requests"]["total"] > 0
    for metric in ("ttft_ms", "itl_ms", "tpot_ms", "e2e_ms"):
        assert got["latency_ms"][metric] == union["latency_ms"][metric]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow  # (default tier trim: CI's slow tier runs it)
def test_master_waits_for_a_worker_started_elsewhere(paced_server: str, tmp_path: Path) -> None:
    """The across-machines mode, on loopback: the master listens on --master-bind and
    waits for --expect-workers; the worker is a `chatprobe load --worker HOST:PORT`
    started on its own (here: after the master), with the same request flags."""
    bind = f"127.0.0.1:{_free_port()}"
    common = ["--target", paced_server, "--max-tokens", "8", "--no-progress", "--rate", "20",
              "--arrivals", "constant"]
    master = subprocess.Popen(
        [sys.executable, "-m", "chatprobe", "load", *common, "--duration", "2",
         "--master-bind", bind, "--expect-workers", "1", "--report-dir", str(tmp_path / "m")],
        env=load_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        worker = subprocess.run(
            [sys.executable, "-m", "chatprobe", "load", *common, "--worker", bind],
            env=load_env(), capture_output=True, text=True, timeout=90)
        _out, err = master.communicate(timeout=90)
    finally:
        master.kill()
    assert worker.returncode == 0, worker.stderr
    assert master.returncode == 0, err
    assert "waiting for 1 remote worker" in err
    doc = read_summary(tmp_path / "m")
    assert doc["run"]["generators"] == 2  # the local worker and the remote one
    with open(tmp_path / "m" / "records.jsonl", encoding="utf-8") as f:
        records = [RequestRecord.from_json(json.loads(line)) for line in f]
    assert len({r.worker_id for r in records}) == 2
    # Open loop at 20/s shared by two dispatchers: about 40 requests in 2 s, not 80.
    assert 25 <= len(records) <= 55, len(records)


def test_worker_flag_errors_are_one_line(tmp_path: Path) -> None:
    for args in (["--worker", "nohost"], ["--worker", "127.0.0.1:1"],
                 ["--target", "http://127.0.0.1:9", "--worker", "127.0.0.1:5557", "--expect-workers", "1"],
                 ["--target", "http://127.0.0.1:9", "--worker", "127.0.0.1:5557", "--trace", "trace.jsonl"],
                 ["--master-bind", "x", "--expect-workers", "1"], ["--expect-workers", "-1"]):
        proc = run_load(args, tmp_path, timeout=30)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, (args, proc.stderr)
