"""While a load runs the collector is kept to young objects (HealthMonitor), so
garbage in reference cycles piles up until the run ends: a request, failed or
not, must leave none."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chatprobe.server.runner import spawn_server

from .conftest import load_env

PROBE = Path(__file__).with_name("cycle_probe.py")


@pytest.mark.parametrize(("faults", "error"), [([], None), (["reset-mid-stream"], "reset")])
def test_requests_leave_no_cyclic_garbage(faults: list[str], error: str | None) -> None:
    n = 40
    with spawn_server(ttft_ms=1, itl_ms=1, faults=faults) as url:
        proc = subprocess.run([sys.executable, str(PROBE), url, str(n)], env=load_env(),
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["errors"] == [error] * n
    assert out["cyclic"] < n, out["cyclic"]  # under one object per request (was ~50 per failure)
