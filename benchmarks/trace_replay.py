"""Trace replay's schedule: a 1,000-request Mooncake trace against the reference server.

Issue 16's must-show: the trace replayed at its own pace, send-time slip (t_sent -
t_scheduled) p99 under 2 ms with no drift over the run, and latency from the scheduled
start reported next to latency from the actual send.

The trace is made here, like a production one: Poisson arrivals at ``--rate`` requests/s
(a pace the reference server carries), prompt lengths drawn log-normally (median ~600
tokens, 50..4,000), outputs 16..128 tokens, and prefix blocks (Mooncake's 512-token
``hash_ids``): a third of the requests open with one of four shared "system prompt"
blocks, a third continue a conversation (the previous prompt's blocks, plus new ones),
the rest are unique. The server (TTFT 20 ms, ITL 2 ms) runs pinned to the last CPU, the
generator (``chatprobe load --trace``, the package's own CLI) on the others.

    PYTHONPATH=src .venv/bin/python benchmarks/trace_replay.py [--requests 1000] [--rate 20] \
        [--repeat 1] [--keep DIR] [--nice -10]

Prints, per run: slip p50 / p90 / p99 / max, the requests sent over 1 ms late, slip p99
per tenth of the run with its least-squares slope (drift), and TTFT / E2E p50 / p99 from
the actual send and from the scheduled start; the generator's CPU and health; and the
machine's load average (other processes on a shared machine show up as slip).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BLOCK = 512


def make_trace(path: Path, requests: int, rate: float, seed: int = 16) -> None:
    rng = random.Random(seed)
    t = 0.0
    next_block = 1000
    system = [[k] for k in range(4)]  # four shared one-block system prompts
    previous: list[int] = []
    with open(path, "w", encoding="utf-8") as f:
        for i in range(requests):
            if i:
                t += rng.expovariate(rate)
            n_in = int(min(4000, max(50, rng.lognormvariate(math.log(600), 0.8))))
            blocks = -(-n_in // BLOCK)
            kind = i % 3
            if kind == 0:
                head = list(rng.choice(system))
            elif kind == 1 and previous:
                head = previous[: blocks - 1]
            else:
                head = []
            hashes = head[:blocks]
            while len(hashes) < blocks:
                hashes.append(next_block)
                next_block += 1
            previous = hashes
            f.write(json.dumps({"timestamp": int(t * 1000), "input_length": n_in,
                                "output_length": rng.randint(16, 128), "hash_ids": hashes}) + "\n")


def run(trace: Path, out: Path, nice: int = 0) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [*(["nice", "-n", str(nice)] if nice else []), sys.executable, "-m", "chatprobe", "load", "--trace", str(trace), "--server-ttft-ms", "20",
         "--server-itl-ms", "2", "--no-progress", "--report-dir", str(out)],
        env=env, capture_output=True, text=True, timeout=3600, check=False)
    if not (out / "summary.json").is_file():
        raise SystemExit(f"the run failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    doc: dict[str, Any] = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return doc


def show(doc: dict[str, Any]) -> None:
    s, sched = doc["summary"], doc["schedule"]
    req = s["requests"]
    slip = sched["slip_ms"]
    print(f"requests {req['total']} (failed {req['failed']}), trace span {doc['trace']['span_s']:.1f} s, "
          f"measured {doc['run']['measured_s']:.1f} s")
    print(f"slip (t_sent - t_scheduled): p50 {slip['p50']:.3f} ms  p90 {slip['p90']:.3f} ms  "
          f"p99 {slip['p99']:.3f} ms  max {slip['max']:.3f} ms;  {sched['late_over_1ms']} of "
          f"{sched['requests']} sent over 1 ms late")
    parts = sched["drift"]["parts"]
    print("slip p99 per tenth (ms): " + " ".join("-" if p["p99_ms"] is None else f"{p['p99_ms']:.3f}" for p in parts)
          + f";  drift slope {sched['drift']['slope_ms_per_min']:+.4f} ms/min")
    for key, label in (("ttft_ms", "TTFT"), ("e2e_ms", "E2E")):
        a, b = sched["latency_from_sent_ms"][key], sched["latency_from_scheduled_ms"][key]
        print(f"{label:4} from the actual send p50 {a['p50']:8.2f} p99 {a['p99']:8.2f} ms | "
              f"from the scheduled start p50 {b['p50']:8.2f} p99 {b['p99']:8.2f} ms")
    health = doc["health"]
    cpu = next((p["cpu_percent_mean"] for p in health["processes"] if p["role"] == "local"), None)
    print(f"generator CPU {cpu:.1f} %, loop lag p99 {health['loop_lag_ms']['p99']:.2f} ms, "
          f"{'healthy' if health['trustworthy'] else 'NOT healthy: ' + '; '.join(health['untrustworthy_reasons'])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=20.0, help="Poisson arrivals per second (default 20)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--keep", metavar="DIR", help="keep the trace and the reports here")
    ap.add_argument("--nice", type=int, default=0, metavar="N",
                    help="run chatprobe (generator and server) at this niceness, e.g. -10 (root) on a "
                         "machine shared with unrelated work, as if it had its cores to itself")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(args.keep or scratch)
        base.mkdir(parents=True, exist_ok=True)
        trace = base / "mooncake.jsonl"
        make_trace(trace, args.requests, args.rate)
        print(f"trace {trace}: {args.requests} requests, Poisson at {args.rate:g}/s; "
              f"load average {os.getloadavg()[0]:.2f} (2 min: {os.getloadavg()[1]:.2f})")
        for k in range(args.repeat):
            print(f"--- run {k + 1}")
            show(run(trace, base / f"run{k + 1}", args.nice))
            print(f"load average now {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
