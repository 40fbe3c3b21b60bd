"""The performance gate's error rates: false alarms on an unchanged server, detections of a slower one.

Two reference servers on 127.0.0.1 (pinned to the last CPU, one serving at a time): the
baseline one (TTFT 50 ms, ITL 5 ms, jitter 0-10 ms on every token) and a *regressed* one,
the same with its TTFT setting +20 % (60 ms). One `chatprobe load` run against the first
is the baseline; then ``--runs`` more runs against the same server, each with
``--baseline`` (every exit 1 is a false alarm), interleaved with ``--regressed-runs`` runs
against the regressed server (every exit 1 is a detection). Each run is short (a few
seconds, a handful of users): the whole script takes about ten seconds per run. The
machine is shared: whatever else runs on it is the noise the gate must stand.

    PYTHONPATH=src .venv/bin/python benchmarks/perf_gate.py [--runs 20] [--regressed-runs 5] \
        [--users 8] [--duration 5] [--warmup 1] [--max-tokens 32] [--regression 0.2] [--gate STAT=LIMIT ...]

Exit 0 when at most one of the unchanged runs failed the gate and every regressed run did.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from chatprobe.server.runner import spawn_server

ROOT = Path(__file__).resolve().parents[1]


def load(url: str, out: Path, args: argparse.Namespace, baseline: Path | None) -> tuple[int, dict[str, Any]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "chatprobe", "load", "--target", url, "--users", str(args.users),
           "--duration", str(args.duration), "--warmup", str(args.warmup), "--max-tokens", str(args.max_tokens),
           "--ignore-eos", "--no-progress", "--report-dir", str(out)]
    if baseline is not None:
        cmd += ["--baseline", str(baseline), *[f"--gate={g}" for g in args.gate]]
        if args.max_regression:
            cmd += ["--max-regression", args.max_regression]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.duration + 180)
    if not (out / "summary.json").is_file():
        sys.exit(f"the load run wrote no summary (exit {proc.returncode}): {proc.stderr[-2000:]}")
    doc: dict[str, Any] = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return proc.returncode, doc


def describe(code: int, doc: dict[str, Any]) -> str:
    c = doc["comparison"]
    parts = []
    for r in c["results"]:
        if r["name"] in ("ttft_p50", "ttft_p95") and r["change_pct"]:
            p = r["change_pct"]
            parts.append(f"{r['name']} {p['estimate']:+5.1f} % [{p['low']:+5.1f}, {p['high']:+5.1f}]")
        elif r["name"] in ("ttft_p50", "ttft_p95"):
            parts.append(f"{r['name']} {r['verdict']}")
    for r in c["results"]:  # anything else that did not pass: its change and interval
        if r["name"] not in ("ttft_p50", "ttft_p95") and r["verdict"] in ("regressed", "inconclusive"):
            p = r["change_pct"]
            parts.append(f"{r['name']} {r['verdict']} {p['estimate']:+.1f} % [{p['low']:+.1f}, {p['high']:+.1f}]"
                         f" ({r['baseline']:.2f} -> {r['current']:.2f})")
    regressed = ",".join(c["regressed"]) or "-"
    trust = "" if doc["verdict"]["trustworthy"] else "  (generator NOT TRUSTWORTHY)"
    return (f"exit {code}  {doc['summary']['requests']['ok']:4d} requests  {'  '.join(parts)}"
            f"  regressed: {regressed}{trust}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=20, help="runs of the unchanged server (default 20)")
    ap.add_argument("--regressed-runs", type=int, default=5, help="runs of the regressed server (default 5)")
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--ttft-ms", type=float, default=50.0)
    ap.add_argument("--itl-ms", type=float, default=5.0)
    ap.add_argument("--jitter-ms", type=float, default=10.0)
    ap.add_argument("--regression", type=float, default=0.2, help="the regressed server's TTFT setting: x (1 + this)")
    ap.add_argument("--gate", action="append", default=[], help="passed on to chatprobe load")
    ap.add_argument("--max-regression", help="passed on to chatprobe load (default: its own, 10 %%)")
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    slow_ttft = args.ttft_ms * (1 + args.regression)
    print(f"servers on CPU {cpus[-1]}: TTFT {args.ttft_ms:g} ms (regressed: {slow_ttft:g} ms), ITL {args.itl_ms:g} ms,"
          f" jitter 0-{args.jitter_ms:g} ms; each run: {args.users} users, {args.duration:g} s"
          f" ({args.warmup:g} s warm-up), {args.max_tokens} tokens per answer (ignore_eos);"
          f" gate: chatprobe load --baseline defaults{' ' + ' '.join(args.gate) if args.gate else ''}"
          f"{' --max-regression ' + args.max_regression if args.max_regression else ''}")
    print(f"load average at start {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    common = {"itl_ms": args.itl_ms, "jitter_ms": args.jitter_ms, "cpu": cpus[-1] if len(cpus) > 1 else None}
    started = time.monotonic()
    false_alarms = detections = 0
    untrusted = 0
    with tempfile.TemporaryDirectory(prefix="chatprobe-perf-gate-") as tmp, \
            spawn_server(ttft_ms=args.ttft_ms, **common) as same_url, \
            spawn_server(ttft_ms=slow_ttft, **common) as slow_url:
        base = Path(tmp) / "baseline"
        code, doc = load(same_url, base, args, None)
        s = doc["summary"]["latency_ms"]["ttft_ms"]
        print(f"baseline: exit {code}, {doc['summary']['requests']['ok']} requests, TTFT p50 {s['p50']:.2f} ms,"
              f" p95 {s['p95']:.2f} ms{'' if doc['verdict']['trustworthy'] else ' (generator NOT TRUSTWORTHY)'}")
        # Interleaved, so that a noisy minute on the machine does not fall on one kind of run only.
        every = max(1, args.runs // max(1, args.regressed_runs))
        plan = []
        same_left, slow_left = args.runs, args.regressed_runs
        while same_left or slow_left:
            for _ in range(min(every, same_left)):
                plan.append("same")
                same_left -= 1
            if slow_left:
                plan.append("regressed")
                slow_left -= 1
        for i, kind in enumerate(plan, 1):
            url = same_url if kind == "same" else slow_url
            code, doc = load(url, Path(tmp) / f"run-{i:02d}", args, base)
            if code not in (0, 1):
                sys.exit(f"run {i} ended with exit {code}")
            untrusted += not doc["verdict"]["trustworthy"]
            if kind == "same":
                false_alarms += code == 1
            else:
                detections += code == 1
            print(f"{i:3d} {kind:9}  {describe(code, doc)}", flush=True)
    print(f"false alarms: {false_alarms} of {args.runs} unchanged runs ({100 * false_alarms / max(args.runs, 1):.0f} %);"
          f" detections: {detections} of {args.regressed_runs} regressed runs"
          f" ({100 * detections / max(args.regressed_runs, 1):.0f} %); {untrusted} run(s) flagged untrustworthy;"
          f" {time.monotonic() - started:.0f} s; load average at the end {os.getloadavg()[0]:.2f}")
    return 0 if false_alarms <= 1 and detections == args.regressed_runs else 1


if __name__ == "__main__":
    sys.exit(main())
