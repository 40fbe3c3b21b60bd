"""`chatprobe load` with the server's side: its /metrics beside the client's counts, and the
measurement error (--calibrate), against the reference server on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from chatprobe.paths import specs_dir

from .conftest import QUICK, read_summary, run_load

SUMMARY_SCHEMA = json.loads((specs_dir() / "summary.schema.json").read_text(encoding="utf-8"))


def test_the_servers_counters_match_the_clients_over_the_window(paced_server: str, tmp_path: Path) -> None:
    proc = run_load(["--target", paced_server, "--users", "3", "--duration", "2.5", "--warmup", "0.5",
                     "--ignore-eos", "--scrape-interval", "0.5", "--server-metric", "vllm:num_requests_waiting",
                     *QUICK], tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = read_summary(tmp_path)
    jsonschema.validate(doc, SUMMARY_SCHEMA)
    block = doc["server_metrics"]
    assert block["status"] == "scraped" and block["engine"] == "vLLM" and not block["notes"]
    requests = block["counters"]["requests"]
    assert requests["client"] == doc["summary"]["requests"]["ok"] > 0
    for key in ("requests", "prompt_tokens", "generation_tokens"):
        assert block["counters"][key]["matches"], block["counters"][key]
    assert block["latency_ms"]["ttft"]["server"]["p50"] >= 5.0  # the server's TTFT, at least its model's
    assert any(p["in_window"] for p in block["series"]) and block["user_series"][0]["points"]
    # a --target that is not the embedded server: the error is not measured, and the report says so
    assert doc["measurement_error"]["status"] == "not measured"
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "The server&#x27;s own metrics" in html or "The server's own metrics" in html
    assert "Measurement error (the generator" in html and "not measured: the target is not the reference server" in html
    assert "server metrics (vLLM" in proc.stdout


@pytest.mark.slow  # the scraper's own tests cover each wrong endpoint with fake pages
def test_a_missing_endpoint_is_noted_once_and_the_run_goes_on(paced_server: str, tmp_path: Path) -> None:
    proc = run_load(["--target", paced_server, "--users", "1", "--duration", "2", "--scrape-interval", "0.2",
                     "--server-metrics", paced_server + "/no-metrics-here", *QUICK], tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = read_summary(tmp_path)
    jsonschema.validate(doc, SUMMARY_SCHEMA)
    block = doc["server_metrics"]
    assert block["status"] == "not scraped" and "404" in block["reason"] and len(block["notes"]) == 1
    assert doc["summary"]["requests"]["ok"] > 0


@pytest.mark.slow
def test_calibrate_prints_and_records_the_measurement_error(tmp_path: Path) -> None:
    proc = run_load(["--calibrate", "--users", "2", "--duration", "2", "--warmup", "0.5", "--max-tokens", "8",
                     "--server-ttft-ms", "5", "--server-itl-ms", "1", "--no-progress"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("measurement error at this load (2 streams)"))
    assert "TTFT p50" in line and "ITL p50" in line
    doc = read_summary(tmp_path)
    jsonschema.validate(doc, SUMMARY_SCHEMA)
    error = doc["measurement_error"]
    assert error["status"] == "measured" and error["matched"] > 0 and error["sentence"] == line
    # the server's histogram and its truth agree on the TTFT p50 (buckets 1 ms wide)
    truth = error["truth"]["ttft_ms"]["p50"]
    assert abs(doc["server_metrics"]["latency_ms"]["ttft"]["server"]["p50"] - truth) < 1.0
    assert "Measurement error (the generator" in (tmp_path / "report.html").read_text(encoding="utf-8")
