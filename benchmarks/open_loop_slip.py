"""Open-loop send-time slip and what it costs: ``chatprobe load --rate R`` at several rates.

Each request of an open loop is due at its scheduled time; its slip is ``t_sent -
t_scheduled``. The generator starts each request's greenlet 3 ms ahead, gets its
connection and request ready, waits for the due time (``load.client.sleep_until``: a
kernel deadline timer, then yielding) and writes. This prints, per rate and run, the slip
p50 / p90 / p99, the share sent over 1 ms late, and the generator's CPU (its mean over the
run, % of one core) and loop lag p99, so a change to the wait can be judged on both: a
precise wait that burns the core is no better than a late one.

    PYTHONPATH=src .venv/bin/python benchmarks/open_loop_slip.py [--rates 200 800] [--runs 2] \
        [--duration 6] [--max-tokens 32] [--arrivals constant|poisson]

The embedded reference server (TTFT 50 ms, ITL 5 ms by default) is pinned to the last CPU
and the generator to the others (chatprobe's own split). Run it on a quiet machine: other
processes show up as slip and CPU. Everything is on 127.0.0.1 and bounded in time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run(rate: float, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", "chatprobe", "load", "--rate", f"{rate:g}", "--arrivals", args.arrivals,
         "--duration", f"{args.duration:g}", "--warmup", "1", "--max-tokens", str(args.max_tokens),
         "--no-progress", "--report-dir", str(out)],
        env=env, capture_output=True, text=True, timeout=args.duration + 120, check=False)
    if not (out / "summary.json").is_file():
        raise SystemExit(f"the run failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    doc: dict[str, Any] = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return doc


def line(rate: float, doc: dict[str, Any]) -> str:
    sched = doc["schedule"]
    slip = sched["slip_ms"]
    health = doc["health"]
    cpu = [p["cpu_percent_mean"] for p in health["processes"] if p["role"] != "master"]
    late = sched.get("late_over_1ms", 0) / max(slip["count"], 1)
    return (f"rate {rate:>6g}/s  requests {doc['summary']['requests']['total']:>6}  slip p50 {slip['p50']:.3f} "
            f"p90 {slip['p90']:.3f} p99 {slip['p99']:.3f} ms  over 1 ms late {late:5.1%}  generator CPU "
            f"{max(cpu):5.1f} %  loop lag p99 {health['loop_lag_ms']['p99'] or 0:.2f} ms"
            f"{'' if health['trustworthy'] else '  (flagged: ' + '; '.join(health['untrustworthy_reasons']) + ')'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rates", type=float, nargs="+", default=[200.0, 800.0])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--duration", type=float, default=6.0)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--arrivals", choices=["constant", "poisson"], default="constant")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="chatprobe-slip-") as tmp:
        for i in range(1, args.runs + 1):
            print(f"--- run {i}")
            for rate in args.rates:
                print(line(rate, run(rate, args, Path(tmp) / f"r{i}-{rate:g}")), flush=True)
    print(f"load average now {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
