"""A sweep shows the server's own signals at each level: from each level's summary.json
``server_metrics`` (sweep.LevelResult) into sweep.json and sweep.html."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from chatprobe.metrics.server_metrics import ScrapeLog, read_samples, server_block
from chatprobe.paths import specs_dir
from chatprobe.reports.serverside import sweep_server_html
from chatprobe.scraper import parse_exposition

from ..load.conftest import load_env

SWEEP_SCHEMA = json.loads((specs_dir() / "sweep.schema.json").read_text(encoding="utf-8"))
PAGE = ("# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running {running}\n"
        "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting {waiting}\n"
        "# TYPE vllm:request_success_total counter\nvllm:request_success_total {done}\n"
        "# TYPE vllm:time_to_first_token_seconds histogram\n"
        'vllm:time_to_first_token_seconds_bucket{{le="0.05"}} {fast}\n'
        'vllm:time_to_first_token_seconds_bucket{{le="+Inf"}} {done}\n'
        "vllm:time_to_first_token_seconds_count {done}\nvllm:time_to_first_token_seconds_sum 1\n")


def _block(users: int) -> dict[str, Any]:
    log = ScrapeLog("http://127.0.0.1:1/metrics", 1.0)
    for t, done in ((0, 0), (1, 10 * users), (2, 20 * users)):
        text = PAGE.format(running=min(users, 4), waiting=max(users - 4, 0), done=done, fast=done // 2)
        reading = read_samples(parse_exposition(text), int(t * 1e9))
        reading.edge = t in (0, 2)
        log.add(reading)
    return server_block(log, (0, int(2e9)), 0)


def test_levels_carry_the_server_view_and_the_page_shows_it() -> None:
    from chatprobe.metrics.server_metrics import level_view

    levels = [{"load": float(u), "users": u, "rate": None, "latency_ms": {"ttft_ms": {"p50": 40.0, "p95": 60.0}},
               "server": level_view(_block(u))} for u in (8, 2)]
    assert levels[0]["server"]["waiting"] == {"mean": 4.0, "max": 4.0}
    assert levels[0]["server"]["requests"]["per_s"] == 80.0
    html = "".join(sweep_server_html({"levels": levels}))
    assert "The server&#x27;s side at each level" in html or "The server's side at each level" in html
    assert html.count("<svg") == 2 and "8 users" in html and "2 users" in html


@pytest.mark.slow
def test_a_sweep_against_the_reference_server_reports_its_metrics(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "chatprobe", "sweep", "--slo", "ttft_p95_ms=2000", "--max", "4",
         "--level-duration", "2", "--budget", "60s", "--max-tokens", "8", "--server-ttft-ms", "5",
         "--server-itl-ms", "1", "--server-max-concurrency", "2", "--no-progress", "--report-dir", str(tmp_path)],
        env=load_env(), capture_output=True, text=True, timeout=170)
    assert proc.returncode in (0, 1), proc.stderr
    doc = json.loads((tmp_path / "sweep.json").read_text(encoding="utf-8"))
    jsonschema.validate(doc, SWEEP_SCHEMA)
    views = [lv["server"] for lv in doc["levels"]]
    assert views and all(v["status"] == "scraped" for v in views)
    assert all(v["requests"]["matches"] for v in views), views
    # with 2 slots, 4 users queue at the server: its queue depth shows the knee
    four = next(lv["server"] for lv in doc["levels"] if lv["users"] == 4)
    assert four["waiting"]["max"] >= 1
    assert "The server's side at each level" in (tmp_path / "sweep.html").read_text(encoding="utf-8")
