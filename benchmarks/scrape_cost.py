"""What scraping the server's /metrics costs the generator: tokens/s per core, with and without.

Side by side in one run, rounds alternating: ``chatprobe load`` against the
reference server (pinned to the last CPU; TTFT 50 ms, ITL 10 ms, 256 tokens per
request, no truth records) with ``--no-server-metrics``, then scraping every
1 s (the default) and every 0.1 s (ten times as often, to make any cost
visible). The whole CLI is pinned to CPU 0 with ``taskset``, so the scraper
thread (in the CLI's process) shares the generator's core: the worst case.

tokens/s per core = the window's output tokens/s / the generator's CPU share
(health.processes[].cpu_percent_mean / 100). Printed per run, then the median
of each configuration, its spread (min-max) and its ratio to the runs without
scraping. Also, exactly: the scraper thread's own CPU time
(server_metrics.scraper_cpu_s, ``time.thread_time()`` in the thread), per
scrape and as a share of one core over the run: the most it can take from a
generator saturating the core it shares (the side-by-side ratio is that, plus
the machine's noise).

    PYTHONPATH=src .venv/bin/python benchmarks/scrape_cost.py [--users 128] [--duration 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from chatprobe.server.runner import spawn_server

ROOT = Path(__file__).resolve().parents[1]
TOKENS = 256
CONFIGS = {"no scraping": ["--no-server-metrics"], "scrape 1 s": ["--scrape-interval", "1"],
           "scrape 0.1 s": ["--scrape-interval", "0.1"]}


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run(url: str, users: int, duration: float, extra: list[str]) -> dict[str, float]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory() as out:
        cpu0 = _children_cpu()
        subprocess.run(
            ["taskset", "-c", "0", sys.executable, "-m", "chatprobe", "load", "--target", url,
             "--users", str(users), "--spawn-rate", str(max(users / 2, 1)), "--duration", str(duration),
             "--warmup", "2", "--max-tokens", str(TOKENS), "--ignore-eos", "--no-progress", "--report-dir", out,
             *extra],
            env=env, check=False, capture_output=True, timeout=duration + 120,
        )
        all_cpu = _children_cpu() - cpu0
        doc = json.loads((Path(out) / "summary.json").read_text())
    s = doc["summary"]
    proc = next(p for p in doc["health"]["processes"] if p["role"] == "local")
    tokens_per_s = s["throughput"]["output_tokens_per_s"] or 0.0
    share = (proc["cpu_percent_mean"] or 0.0) / 100
    generator_cpu_s = share * doc["run"]["measured_s"]
    block = doc.get("server_metrics") or {}
    scraper_cpu_s = block.get("scraper_cpu_s") or 0.0
    return {"tokens_per_s": tokens_per_s, "cpu_percent": proc["cpu_percent_mean"] or 0.0,
            "tokens_per_core_s": tokens_per_s / share if share else 0.0,
            "cli_cpu_s": all_cpu - generator_cpu_s, "scrapes": float(block.get("scrapes", 0)),
            "scraper_cpu_s": scraper_cpu_s, "scraper_share": 100 * scraper_cpu_s / doc["run"]["measured_s"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=128)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    print(f"reference server on CPU {cpus[-1]} (TTFT 50 ms, ITL 10 ms, {TOKENS} tokens), the CLI and its generator on"
          f" CPU 0; {args.users} users, {args.duration:g} s, {args.rounds} rounds; load average {os.getloadavg()[0]:.2f}")
    print(f"{'round':>5} {'config':14} {'tok/s':>9} {'gen CPU%':>8} {'tok/s/core':>11} {'CLI CPU s':>9} {'scrapes':>7}"
          f" {'scraper CPU ms':>14} {'/scrape':>8} {'% of a core':>11}")
    results: dict[str, list[dict[str, float]]] = {name: [] for name in CONFIGS}
    with spawn_server(cpu=cpus[-1], ttft_ms=50, itl_ms=10, truth_records=0) as url:
        for r in range(1, args.rounds + 1):
            for name, extra in CONFIGS.items():
                m = run(url, args.users, args.duration, extra)
                results[name].append(m)
                per = 1000 * m["scraper_cpu_s"] / m["scrapes"] if m["scrapes"] else 0.0
                print(f"{r:5d} {name:14} {m['tokens_per_s']:9,.0f} {m['cpu_percent']:8.1f} {m['tokens_per_core_s']:11,.0f}"
                      f" {m['cli_cpu_s']:9.2f} {m['scrapes']:7.0f} {1000 * m['scraper_cpu_s']:14.1f} {per:8.2f}"
                      f" {m['scraper_share']:11.3f}", flush=True)
    base = statistics.median(m["tokens_per_core_s"] for m in results["no scraping"])
    print("\nconfig          tok/s/core median (min-max)    vs no scraping   scraper: % of a core (max)")
    for name, runs in results.items():
        values = [m["tokens_per_core_s"] for m in runs]
        mid = statistics.median(values)
        share = max(m["scraper_share"] for m in runs)
        print(f"{name:14} {mid:11,.0f} ({min(values):,.0f}-{max(values):,.0f})   {100 * (mid / base - 1):+6.2f} %"
              f"         {share:.3f} %")
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
