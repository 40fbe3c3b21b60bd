"""Generator cost: output tokens/s per core, chatprobe's users vs a typical locustfile.

Side by side in one run, on the same server (reference server pinned to the
last CPU, TTFT 50 ms, ITL 5 ms, 256 tokens per request) with the generator
pinned to CPU 0:

* ``chatprobe``: ``chatprobe load`` (gevent socket + llhttp + SSEDecoder +
  StreamValidator without per-chunk schema validation), exact per-event stamps;
* ``chatprobe-httpx``: the same users on httpx under gevent (the alternative client);
* ``typical``: benchmarks/typical_locustfile.py (FastHttpUser.iter_lines + json.loads).

tokens/s per core = tokens parsed / the generator's CPU seconds during the
load (process time from test start to stop, for both: start-up, and
chatprobe's report writing, excluded). Also printed: chatprobe's TTFT p50 / p99 against the
nominal 50 ms, and its health flag.

    PYTHONPATH=src .venv/bin/python benchmarks/load_cost.py [--users 64 128] [--duration 8]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from chatprobe.server.runner import spawn_server  # noqa: E402

TOKENS = 256


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    return env


def run_chatprobe(url: str, users: int, duration: float, client: str) -> dict[str, float | str]:
    with tempfile.TemporaryDirectory() as out:
        cpu0 = _children_cpu()
        subprocess.run(
            ["taskset", "-c", "0", sys.executable, "-m", "chatprobe", "load", "--target", url,
             "--users", str(users), "--spawn-rate", str(max(users / 2, 1)), "--duration", str(duration),
             "--max-tokens", str(TOKENS), "--ignore-eos", "--no-progress", "--client", client,
             "--report-dir", out],
            env=_env(), check=False, capture_output=True, timeout=duration + 120,
        )
        cpu = _children_cpu() - cpu0
        doc = json.loads((Path(out) / "summary.json").read_text())
    s = doc["summary"]
    proc = next(p for p in doc["health"]["processes"] if p["role"] == "local")
    window = s["window"]["duration_s"]
    tokens_per_s = s["throughput"]["output_tokens_per_s"] or 0.0
    gen_cpu_s = (proc["cpu_percent_mean"] or 0.0) / 100 * doc["run"]["measured_s"]
    lat = s["latency_ms"]["ttft_ms"]
    return {
        "tokens_per_s": tokens_per_s,
        "cpu_percent": proc["cpu_percent_mean"],
        "tokens_per_core_s": tokens_per_s * window / gen_cpu_s if gen_cpu_s else 0.0,
        "ttft_p50": lat["p50"] or float("nan"),
        "ttft_p99": lat["p99"] or float("nan"),
        "trust": "ok" if doc["health"]["trustworthy"] else "SATURATED",
        "all_cpu_s": cpu,
    }


def run_typical(url: str, users: int, duration: float) -> dict[str, float | str]:
    cpu0 = _children_cpu()
    proc = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-m", "locust", "-f", str(ROOT / "benchmarks" / "typical_locustfile.py"),
         "--headless", "-u", str(users), "-r", str(max(users / 2, 1)), "-t", f"{int(duration)}s",
         "--host", url, "--only-summary", "--loglevel", "ERROR"],
        env=_env(), check=False, capture_output=True, text=True, timeout=duration + 120,
    )
    cpu = _children_cpu() - cpu0
    line = next(x for x in proc.stdout.splitlines() if x.startswith("TYPICAL "))
    total = json.loads(line[len("TYPICAL "):])
    # Its CPU between test start and stop, as chatprobe's (start-up and report excluded).
    run_cpu, wall = total["cpu_s"], total["wall_s"]
    return {
        "tokens_per_s": total["tokens"] / wall,
        "cpu_percent": 100 * run_cpu / wall,
        "tokens_per_core_s": total["tokens"] / run_cpu if run_cpu else 0.0,
        "ttft_p50": float("nan"),
        "ttft_p99": float("nan"),
        "trust": "-",
        "all_cpu_s": cpu,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--clients", nargs="+", default=["chatprobe", "chatprobe-httpx", "typical"])
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    print(f"server on CPU {cpus[-1]}, generator on CPU 0; TTFT 50 ms, ITL 5 ms, {TOKENS} tokens/request")
    print(f"{'client':16} {'users':>5} {'tok/s':>9} {'gen CPU%':>8} {'tok/s/core':>11} "
          f"{'TTFT p50':>9} {'TTFT p99':>9} {'health':>9}")
    with spawn_server(cpu=cpus[-1], ttft_ms=50, itl_ms=5, truth_records=0) as url:
        for users in args.users:
            for client in args.clients:
                if client == "typical":
                    r = run_typical(url, users, args.duration)
                else:
                    r = run_chatprobe(url, users, args.duration, "httpx" if client.endswith("httpx") else "gevent")
                print(f"{client:16} {users:5d} {r['tokens_per_s']:9,.0f} {r['cpu_percent']:8.1f} "
                      f"{r['tokens_per_core_s']:11,.0f} {r['ttft_p50']:9.2f} {r['ttft_p99']:9.2f} {r['trust']!s:>9}",
                      flush=True)


if __name__ == "__main__":
    main()
