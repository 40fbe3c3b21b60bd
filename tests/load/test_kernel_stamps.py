"""Kernel receive stamps (SO_TIMESTAMPNS) in the load users' read path.

Both paths read the same reference-server streams (the server's tokens are a
function of the request, which cycles through the same prompts): the events and
tokens must be identical, and the kernel path's stamps must be ordered, inside
the exchange (after the send, before perf_counter read right after it) and no
later than the user-space end stamp. No timing is asserted beyond that sanity.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import load_env

PROBE = Path(__file__).with_name("kstamp_probe.py")
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="SO_TIMESTAMPNS is Linux's")


def _probe(url: str, n: int) -> dict[str, list[dict[str, Any]]]:
    proc = subprocess.run([sys.executable, str(PROBE), url, str(n)], env=load_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    runs = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {r["mode"]: r["requests"] for r in runs}


def test_same_events_and_sane_stamps_with_and_without_kernel_stamps(paced_server: str) -> None:
    runs = _probe(paced_server, 6)
    kernel, plain = runs["1"], runs["0"]
    assert len(kernel) == len(plain) == 6
    assert all(r["kernel"] is True for r in kernel)  # the kernel path really ran
    assert all(r["kernel"] is False for r in plain)
    for k, p in zip(kernel, plain, strict=True):
        assert k["ok"] and p["ok"], (k["error"], p["error"])
        assert (k["text"], k["tokens"], k["output_tokens"]) == (p["text"], p["tokens"], p["output_tokens"])
        assert k["tokens"] == 24
    for r in kernel:
        stamps = r["stamps"]
        assert stamps == sorted(stamps)
        assert r["t_sent"] <= r["t_first_byte"] <= stamps[0]
        assert stamps[-1] <= r["t_end"] <= r["after"]
        # Sanity only: the server waits 5 ms before the first token; nothing takes seconds.
        # Its uvloop timers have millisecond granularity and may fire up to 1 ms early
        # (seen: first write 4.15 ms after the request started), hence 4 ms.
        assert 4_000_000 <= stamps[0] - r["t_sent"] < 5_000_000_000
        # The server paces tokens 1 ms apart: stamps that were all equal would mean
        # one stamp per request, not per read.
        assert len(set(stamps)) > 1
