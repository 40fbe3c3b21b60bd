"""Helpers for the load tests: every run is a real `chatprobe load` subprocess on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chatprobe.server.runner import spawn_server

SRC = str(Path(__file__).resolve().parents[2] / "src")
# Small, fast runs: the reference server paced at 5 ms TTFT / 1 ms ITL.
QUICK = ["--max-tokens", "8", "--no-progress"]
# A stub target that answers only the load's own requests: no GET /metrics sent to it.
STUB = ["--no-server-metrics"]


def load_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, env.get("PYTHONPATH")) if p)
    return env


def run_load(args: list[str], report_dir: Path, timeout: float = 45.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatprobe", "load", "--report-dir", str(report_dir), *args],
        env=load_env(), capture_output=True, text=True, timeout=timeout,
    )


def read_summary(report_dir: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((report_dir / "summary.json").read_text(encoding="utf-8"))
    return doc


@pytest.fixture(scope="session")
def paced_server() -> Iterator[str]:
    with spawn_server(ttft_ms=5, itl_ms=1) as url:
        yield url
