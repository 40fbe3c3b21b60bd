"""Accuracy of `chatprobe load` against the reference server's truth records.

The server (pinned to the last CPU; TTFT 50 ms, ITL 5 ms) records, per
request id, when it received the request and when it wrote each token
(perf_counter_ns, CLOCK_MONOTONIC: the same clock as the generator's). The
generator (pinned to CPU 0) sends X-Request-Id, so every client record is
matched with its truth:

* TTFT error = client TTFT - (first token write - received), per request;
* ITL: client ITL p50 vs the server's (gaps between token writes), and the
  per-gap error (client gap - server gap) p50 / p99.

Goal: |TTFT p50 error| <= 2 ms and |ITL p50 error| <= 0.5 ms at 1, 32, 128 streams.

``--stamps kernel user`` runs each step with the kernel's receive stamps
(SO_TIMESTAMPNS, the default) and with user-space stamps
(``chatprobe load --stamps user``), side by side.

``--dialects`` (default: openai anthropic-messages openai-responses) runs each
step in every dialect, one after the other, against the same server (the typed
dialects' TTFT is their first text delta, their ITL the gaps between delta
events; the server stamps the same deltas). Each row also gives "p99 later"
(the TTFT error p99 of requests sent after the warm-up: no connection's first
request, whose TCP connect the server never sees) and the generator's output
tokens/s per core (tokens in the window / its CPU seconds over the run; at
1 stream the run's fixed costs dominate it). ``--runs N`` repeats the grid and
ends with the medians [min..max] and each dialect's tokens/s per core as a ratio
of the first's, step by step; ``--max-load L`` starts each run once the 1-minute
load average is <= L.

    PYTHONPATH=src .venv/bin/python benchmarks/load_accuracy.py [--users 1 32 128] [--duration 6] \
        [--stamps kernel user] [--dialects openai anthropic-messages openai-responses] [--runs 3] \
        [--max-load 1.0]

Measured (2-core VM, quiet, 3 runs, medians; ms; after the typed armed fast path):

    PYTHONPATH=src .venv/bin/python benchmarks/load_accuracy.py --users 1 32 128 --duration 6 --runs 3 \
        --max-load 1.0

    dialect             streams  TTFT err p50   p99  p99 later  ITL err p50   p99  tok/s/core  vs openai
    openai                    1        0.176  0.272    0.273        0.000  0.065       2,467       1.00
    anthropic-messages        1        0.173  0.238    0.237        0.000  0.065       2,919       1.17
    openai-responses          1        0.183  0.269    0.270        0.000  0.061       2,542       0.97
    openai                   32        0.220  1.371    1.347        0.000  0.021      18,618       1.00
    anthropic-messages       32        0.213  1.678    1.738        0.000  0.032      17,465       0.93
    openai-responses         32        0.310  3.141    3.231        0.000  0.037      18,357       1.01
    openai                  128        1.420  7.599    7.649        0.000  0.018      24,773       1.00
    anthropic-messages      128        0.817  6.675    6.685        0.000  0.024      26,353       1.01
    openai-responses        128        0.871 10.694   10.146        0.000  0.021      27,291       1.12

The typed dialects are measured as accurately as chat. At 128 streams the
reference server is near its own limit (its TTFT p50 52-56 ms for a nominal 50)
and one openai-responses run of three was flagged saturated; the tokens/s per
core there and at 1 stream (fixed costs) say little: benchmarks/load_cost.py
--accuracy compares the per-token cost against the fast server.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
from load_cost import _wait_for_quiet  # (benchmarks/ is the script's own directory)

from chatprobe.metrics import RequestRecord, percentile
from chatprobe.metrics.accuracy import measurement_error
from chatprobe.server.runner import spawn_server

ROOT = Path(__file__).resolve().parents[1]

MAX_TOKENS = 64


def measure(url: str, users: int, duration: float, stamps: str = "kernel",
            dialect: str = "openai") -> dict[str, float | str]:
    httpx.delete(url + "/_chatprobe/truth")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            ["taskset", "-c", "0", sys.executable, "-m", "chatprobe", "load", "--target", url,
             "--dialect", dialect,
             "--users", str(users), "--spawn-rate", str(max(users / 2, 1)), "--duration", str(duration),
             "--warmup", "2", "--max-tokens", str(MAX_TOKENS), "--ignore-eos", "--no-progress",
             "--stamps", stamps,
             "--report-dir", out],
            env=env, check=False, capture_output=True, timeout=duration + 120,
        )
        doc = json.loads((Path(out) / "summary.json").read_text())
        with open(Path(out) / "records.jsonl") as f:
            records = [RequestRecord.from_json(json.loads(line)) for line in f]
    truth = {t["request_id"]: t for t in httpx.get(url + "/_chatprobe/truth").json()["records"]}
    start, end = doc["summary"]["window"]["start_ns"], doc["summary"]["window"]["end_ns"]
    m = measurement_error(records, truth, (start, end))  # the package's matching (chatprobe load --calibrate)
    client_ttft, server_ttft, ttft_err = m.client_ttft_ms, m.server_ttft_ms, m.ttft_error_ms
    client_itl, server_itl, gap_err = m.client_itl_ms, m.server_itl_ms, m.itl_error_ms
    # The same, of requests sent after the warm-up: no connection's first request (its TCP
    # connect, which the server's clock never sees), the ramp left out.
    later = measurement_error(records, truth, (start, end), sent_after_ns=start, gaps=False).ttft_error_ms
    proc = next(p for p in doc["health"]["processes"] if p["role"] == "local")
    gen_cpu_s = (proc["cpu_percent_mean"] or 0.0) / 100 * doc["run"]["measured_s"]
    tokens = (doc["summary"]["throughput"]["output_tokens_per_s"] or 0.0) * doc["summary"]["window"]["duration_s"]
    return {
        "matched": len(ttft_err),
        "ttft_p50_client": percentile(client_ttft, 50),
        "ttft_p50_server": percentile(server_ttft, 50),
        "ttft_err_p50": percentile(ttft_err, 50),
        "ttft_err_p99": percentile(ttft_err, 99),
        "ttft_err_p99_later": percentile(later, 99) if later else float("nan"),
        "itl_p50_client": percentile(client_itl, 50),
        "itl_p50_server": percentile(server_itl, 50),
        "gap_err_p50": percentile(gap_err, 50) if gap_err else float("nan"),
        "gap_err_p99": percentile(gap_err, 99) if gap_err else float("nan"),
        "cpu": proc["cpu_percent_mean"],
        "tokens_per_core_s": tokens / gen_cpu_s if gen_cpu_s else float("nan"),
        "trust": "ok" if doc["health"]["trustworthy"] else "SATURATED",
    }


DIALECTS = ("openai", "anthropic-messages", "openai-responses")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, nargs="+", default=[1, 32, 128])
    ap.add_argument("--duration", type=float, default=6.0)
    ap.add_argument("--stamps", nargs="+", choices=["kernel", "user"], default=["kernel"])
    ap.add_argument("--dialects", nargs="+", choices=DIALECTS, default=list(DIALECTS),
                    help="measured one after the other at each step (default: all three)")
    ap.add_argument("--runs", type=int, default=1, help="the whole grid this many times (the spread)")
    ap.add_argument("--max-load", type=float, default=None,
                    help="start each run once the 1-minute load average is <= this (60 s waits, at most 10)")
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    print(f"server on CPU {cpus[-1]} (TTFT 50 ms, ITL 5 ms, {MAX_TOKENS} tokens), generator on CPU 0")
    print(f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'run':>3} {'dialect':>18} {'stamps':>6} {'streams':>7} {'matched':>7} {'TTFT p50 c/s (ms)':>19} "
          f"{'err p50':>8} {'err p99':>8} {'p99 later':>9} {'ITL p50 c/s (ms)':>17} {'gap err p50':>11} {'p99':>7} "
          f"{'gen CPU%':>8} {'tok/s/core':>10} {'health':>9}")
    rows: dict[tuple[str, str, int], list[dict[str, float | str]]] = {}
    with spawn_server(cpu=cpus[-1], ttft_ms=50, itl_ms=5, truth_records=200_000) as url:
        for run in range(1, args.runs + 1):
            load = _wait_for_quiet(args.max_load)
            print(f"run {run}: load average at start {load:.2f}", flush=True)
            for users in args.users:
                for stamps in args.stamps:
                    for dialect in args.dialects:
                        m = measure(url, users, args.duration, stamps, dialect)
                        rows.setdefault((dialect, stamps, users), []).append(m)
                        print(f"{run:3d} {dialect:>18} {stamps:>6} {users:7d} {m['matched']:7d}"
                              f" {m['ttft_p50_client']:9.2f}/{m['ttft_p50_server']:<9.2f}"
                              f" {m['ttft_err_p50']:8.3f} {m['ttft_err_p99']:8.3f} {m['ttft_err_p99_later']:9.3f}"
                              f" {m['itl_p50_client']:8.3f}/{m['itl_p50_server']:<8.3f} {m['gap_err_p50']:11.3f}"
                              f" {m['gap_err_p99']:7.3f} {m['cpu']:8.1f} {m['tokens_per_core_s']:10,.0f}"
                              f" {m['trust']!s:>9}", flush=True)
    if args.runs > 1 or len(args.dialects) > 1:
        _summary(rows, args.dialects)


def _summary(rows: dict[tuple[str, str, int], list[dict[str, float | str]]], dialects: list[str]) -> None:
    """Per dialect and step: the median over the runs (min-max), and tokens/s per core as a
    ratio of the first dialect's at the same step (measured in the same run)."""
    print("\nmedian over runs [min..max]; tok/s/core ratio: against the first dialect, same run and step")
    print(f"{'dialect':>18} {'stamps':>6} {'streams':>7} {'TTFT err p50':>20} {'p99':>20} {'p99 later':>20} "
          f"{'ITL err p50':>20} {'p99':>20} {'tok/s/core':>22} {'ratio':>16}")

    def spread(values: list[float], fmt: str) -> str:
        values = sorted(values)
        return f"{format(statistics.median(values), fmt)} [{format(values[0], fmt)}..{format(values[-1], fmt)}]"

    for (dialect, stamps, users), ms in rows.items():
        base = rows[(dialects[0], stamps, users)]
        ratios = [float(m["tokens_per_core_s"]) / float(b["tokens_per_core_s"]) for m, b in zip(ms, base, strict=False)]
        print(f"{dialect:>18} {stamps:>6} {users:7d} "
              + " ".join(f"{spread([float(m[k]) for m in ms], '.3f'):>20}"
                         for k in ("ttft_err_p50", "ttft_err_p99", "ttft_err_p99_later", "gap_err_p50", "gap_err_p99"))
              + f" {spread([float(m['tokens_per_core_s']) for m in ms], ',.0f'):>22} {spread(ratios, '.2f'):>16}")


if __name__ == "__main__":
    main()
