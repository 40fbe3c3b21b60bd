"""Reasoning mode: TTFT (first token of any kind) vs TTFO (first output token), per request.

Issue 16's must-show: against the reference server set to reason ``R`` ms before each
answer (``serve --reasoning-ms R``: reasoning deltas from the first token on, the answer's
first token due exactly R ms after it), `chatprobe load` reports TTFT and TTFO that differ
by R, within 2 ms. Per request, matched with the server's truth records by X-Request-Id:

* client gap = TTFO - TTFT (chatprobe's ``reasoning_ms``), against R;
* the server's own gap (when it wrote the answer's first token - when it wrote the first
  reasoning token), and the client gap against it (the measurement error).

The server (TTFT 20 ms, ITL 2 ms) runs pinned to the last CPU, the generator on the others.

    PYTHONPATH=src .venv/bin/python benchmarks/reasoning_gap.py [--reasoning-ms 50 200] [--users 1 16] \
        [--duration 6]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from chatprobe.metrics import RequestRecord, percentile
from chatprobe.server.runner import spawn_server

ROOT = Path(__file__).resolve().parents[1]
MS = 1_000_000


def measure(url: str, reasoning_ms: float, users: int, duration: float) -> None:
    httpx.delete(url + "/_chatprobe/truth")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    cpus = sorted(os.sched_getaffinity(0))
    generator = ",".join(str(c) for c in cpus[:-1]) or str(cpus[0])
    max_tokens = int(reasoning_ms / 2) + 64  # the reasoning (1 token per 2 ms) and a 64-token answer
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(["taskset", "-c", generator, sys.executable, "-m", "chatprobe", "load", "--target", url,
                        "--users", str(users), "--duration", str(duration), "--warmup", "1",
                        "--max-tokens", str(max_tokens), "--ignore-eos", "--no-progress", "--report-dir", out],
                       env=env, capture_output=True, timeout=duration + 120, check=False)
        doc = json.loads((Path(out) / "summary.json").read_text(encoding="utf-8"))
        with open(Path(out) / "records.jsonl", encoding="utf-8") as f:
            records = [RequestRecord.from_json(json.loads(line)) for line in f]
    truth = {t["request_id"]: t for t in httpx.get(url + "/_chatprobe/truth").json()["records"]}
    start, end = doc["summary"]["window"]["start_ns"], doc["summary"]["window"]["end_ns"]
    gaps, server_gaps, vs_setting, vs_truth = [], [], [], []
    for r in records:
        t = truth.get(r.request_id)
        if not r.ok or r.reasoning_ms is None or t is None or not start <= r.t_finished_ns <= end:
            continue
        server = (t["first_output_ns"] - t["first_token_ns"]) / MS
        gaps.append(r.reasoning_ms)
        server_gaps.append(server)
        vs_setting.append(abs(r.reasoning_ms - reasoning_ms))
        vs_truth.append(abs(r.reasoning_ms - server))
    lat = doc["summary"]["latency_ms"]
    health = doc["health"]
    print(f"{reasoning_ms:9g} {users:5d} {len(gaps):7d} {lat['ttft_ms']['p50']:9.2f} {lat['ttfo_ms']['p50']:9.2f}"
          f" {percentile(gaps, 50):9.3f} {percentile(server_gaps, 50):9.3f}"
          f" {percentile(vs_setting, 50):7.3f} {percentile(vs_setting, 99):7.3f} {max(vs_setting):7.3f}"
          f" {percentile(vs_truth, 50):7.3f} {percentile(vs_truth, 99):7.3f} {max(vs_truth):7.3f}"
          f" {'ok' if health['trustworthy'] else 'SATURATED':>9}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--reasoning-ms", type=float, nargs="+", default=[50.0, 200.0])
    ap.add_argument("--users", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--duration", type=float, default=6.0)
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    print(f"server on CPU {cpus[-1]} (TTFT 20 ms, ITL 2 ms); load average {os.getloadavg()[0]:.2f}")
    print("gap = TTFO - TTFT (client); |gap - R| and |gap - server's gap| in ms")
    print(f"{'R (ms)':>9} {'users':>5} {'matched':>7} {'TTFT p50':>9} {'TTFO p50':>9} {'gap p50':>9}"
          f" {'srv p50':>9} {'|-R| p50':>7} {'p99':>7} {'max':>7} {'|-srv| 50':>7} {'p99':>7} {'max':>7} {'health':>9}")
    for reasoning_ms in args.reasoning_ms:
        with spawn_server(cpu=cpus[-1], ttft_ms=20, itl_ms=2, reasoning_ms=reasoning_ms,
                          truth_records=200_000) as url:
            for users in args.users:
                measure(url, reasoning_ms, users, args.duration)


if __name__ == "__main__":
    main()
