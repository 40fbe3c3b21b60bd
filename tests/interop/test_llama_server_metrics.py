"""`chatprobe load` and `sweep` against llama.cpp's `llama-server --metrics`: the server's token
counters over the measured window match the client's counts (within the requests in flight at
the window's edges).

llama-server (tools/server/server-task.cpp, to_metrics) exports ``llamacpp:`` series: requests
processing and deferred, prompt tokens (``prompt_tokens_total`` without the cached ones, which
``prompt_tokens_cached_total`` counts) and generated tokens (``tokens_predicted_total``, added
when a request finishes); no request counter and no latency histogram. Its /metrics is behind
its --api-key (the fixture sets one): the scraper sends the run's key to the target's own origin.
The server is the one of test_llama_server.py (its fixture: started on a free port by the shared
``realservers/llama_server.sh``, or ``CHATPROBE_LLAMA_URL``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from . import test_llama_server
from .test_llama_server import KEY_ENV, MODEL, Server

llama_server = test_llama_server.llama_server  # its fixture: the same server, started once per module

pytestmark = pytest.mark.interop

RUN_TIMEOUT_S = 240.0


def _env(server: Server) -> dict[str, str]:
    env = dict(os.environ)
    if server.api_key:
        env[KEY_ENV] = server.api_key
    return env


def _key_args(server: Server) -> list[str]:
    return ["--api-key-env", KEY_ENV] if server.api_key else []


def _matches(block: dict[str, Any]) -> None:
    assert block["status"] == "scraped" and block["engine"] == "llama.cpp", block.get("reason")
    counters = block["counters"]
    assert "requests" not in counters  # llama-server exports no request counter
    for key in ("prompt_tokens", "generation_tokens"):
        c = counters[key]
        assert c["client"] > 0 and c["matches"], (key, c)


def test_load_run_counters_match_the_clients(llama_server: Server, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "chatprobe", "load", "--target", llama_server.url, *_key_args(llama_server),
         "--model", MODEL, "--users", "4", "--duration", "10", "--warmup", "2", "--max-tokens", "32",
         "--ignore-eos", "--scrape-interval", "0.5", "--no-progress", "--report-dir", str(tmp_path)],
        env=_env(llama_server), capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert proc.returncode in (0, 1), proc.stderr
    doc = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert doc["summary"]["requests"]["ok"] > 0
    _matches(doc["server_metrics"])
    running = [p["running"] for p in doc["server_metrics"]["series"] if p["in_window"]]
    assert running and max(running) <= 4  # its 4 slots
    assert "server metrics (llama.cpp" in proc.stdout


def test_sweep_levels_counters_match_the_clients(llama_server: Server, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "chatprobe", "sweep", "--target", llama_server.url, *_key_args(llama_server),
         "--model", MODEL, "--slo", "ttft_p95_ms=10000", "--max", "8", "--level-duration", "6",
         "--budget", "90s", "--max-tokens", "32", "--ignore-eos", "--scrape-interval", "0.5", "--no-progress",
         "--report-dir", str(tmp_path)],
        env=_env(llama_server), capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert proc.returncode in (0, 1), proc.stderr
    doc = json.loads((tmp_path / "sweep.json").read_text(encoding="utf-8"))
    assert len(doc["levels"]) >= 2
    for level in doc["levels"]:
        view = level["server"]
        assert view["status"] == "scraped" and view["engine"] == "llama.cpp"
        for key in ("prompt_tokens", "generation_tokens"):
            assert view[key]["matches"], (level["load"], key, view[key])
    # beyond its 4 slots the server defers requests: the queue shows at 8 users
    eight = [lv["server"] for lv in doc["levels"] if lv["users"] == 8]
    assert not eight or eight[0]["waiting"]["max"] >= 1
