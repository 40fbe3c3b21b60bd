"""Did the one-engine move cost speed or accuracy? chatprobe now vs an earlier checkout, side by side
with a plain locustfile, in one run.

The server is benchmarks/fast_server.py pinned to the last CPU (TTFT 50 ms, ITL 5 ms, 256 tokens per
request, truth records kept); each generator is pinned to CPU 0. For every round and every stream
count, the three clients run one after another, in an order rotated each round (so a drift in the
machine's load does not favour one of them):

* ``before``: ``chatprobe load`` from the earlier checkout (``--before DIR``: a clone with its own
  ``.venv``, e.g. ``git worktree add /tmp/before 197f277`` then ``pip install -e .`` in its venv);
* ``after``: ``chatprobe load`` from this checkout;
* ``typical``: benchmarks/typical_locustfile.py (FastHttpUser.iter_lines + json.loads), the control:
  it did not change, so its spread is the machine's noise.

Per client it prints tokens/s per core (tokens parsed / the generator's CPU seconds between test
start and stop) and the TTFT error against the server's truth (client TTFT - server's first write -
received, matched by X-Request-Id, requests of the warm-up left out). The summary gives, per stream
count, each client's median and range over the rounds, and the median over rounds of the per-round
ratio after/before (the ratio taken inside one round, so both sides saw the same machine).

    .venv/bin/python benchmarks/engine_before_after.py --before /tmp/before \
        [--streams 128 512] [--rounds 3] [--duration 10] [--warmup 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import httpx
from load_cost import (
    ACC_TTFT_MS,
    TOKENS,
    _errors,
    _pct,
    _truth,
    acc_chatprobe,
    acc_typical,
    fast_server,
)

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", type=Path, required=True, help="the earlier checkout (with its own .venv)")
    ap.add_argument("--also", action="append", default=[], metavar="NAME=DIR",
                    help="another checkout to run beside them (this checkout's venv, its src on PYTHONPATH)")
    ap.add_argument("--streams", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    args = ap.parse_args()
    before_python = args.before / ".venv" / "bin" / "python"
    if not before_python.is_file():
        sys.exit(f"engine_before_after: no {before_python} (make a venv in the earlier checkout)")
    cpus = sorted(os.sched_getaffinity(0))
    also = dict(item.split("=", 1) for item in args.also)
    clients = ["before", *also, "after", "typical"]
    rows: dict[tuple[str, int], list[dict[str, float]]] = {}
    print(f"fast server on CPU {cpus[-1]}, generators on CPU 0; TTFT {ACC_TTFT_MS} ms, ITL 5 ms, "
          f"{TOKENS} tokens/request, {args.duration:g} s per run ({args.warmup:g} s warm-up)")
    print(f"{'round':>5} {'client':8} {'streams':>7} {'tok/s':>8} {'gen CPU%':>8} {'tok/s/core':>10} "
          f"{'err p50':>8} {'err p99':>8} {'health':>6}", flush=True)
    with fast_server(cpus[-1], ACC_TTFT_MS, 5) as (url, _child):
        for rnd in range(args.rounds):
            order = clients[rnd % len(clients):] + clients[:rnd % len(clients)]
            for users in args.streams:
                for client in order:
                    httpx.delete(url + "/_chatprobe/truth", timeout=30)
                    if client == "typical":
                        r, pairs = acc_typical(url, users, args.duration, "iter_lines")
                    else:
                        checkout, python = ((args.before, str(before_python)) if client == "before"
                                            else (Path(also[client]), sys.executable) if client in also
                                            else (ROOT, sys.executable))
                        r, pairs = acc_chatprobe(url, users, args.duration, args.warmup, python, checkout)
                    errs, _itls, _send, _deliver = _errors(pairs, _truth(url), int(args.warmup * 1e9))
                    row = {"tpc": r["tokens_per_core_s"], "p50": _pct(errs, 50), "p99": _pct(errs, 99)}
                    rows.setdefault((client, users), []).append(row)
                    print(f"{rnd + 1:5d} {client:8} {users:7d} {r['tokens_per_s']:8,.0f} {r['cpu_percent']:8.1f} "
                          f"{r['tokens_per_core_s']:10,.0f} {row['p50']:8.2f} {row['p99']:8.2f} {r['trust']:>6}",
                          flush=True)
    print("\nsummary (median over rounds [min-max])")
    print(f"{'streams':>7} {'client':8} {'tok/s/core':>28} {'TTFT err p50 ms':>16} {'TTFT err p99 ms':>16}")
    for users in args.streams:
        for client in clients:
            got = rows[(client, users)]
            tpc = [g["tpc"] for g in got]
            print(f"{users:7d} {client:8} {statistics.median(tpc):10,.0f} [{min(tpc):7,.0f}-{max(tpc):7,.0f}] "
                  f"{statistics.median(g['p50'] for g in got):16.2f} {statistics.median(g['p99'] for g in got):16.2f}")
        ratios = [a["tpc"] / b["tpc"] for a, b in zip(rows[("after", users)], rows[("before", users)], strict=True)
                  if b["tpc"]]
        control = [t["tpc"] / statistics.median(x["tpc"] for x in rows[("typical", users)])
                   for t in rows[("typical", users)]]
        for name in also:
            mid = [a["tpc"] / b["tpc"] for a, b in zip(rows[("after", users)], rows[(name, users)], strict=True)
                   if b["tpc"]]
            print(f"{users:7d} after/{name} tokens/s per core, per round: "
                  f"{', '.join(f'{x:.3f}' for x in mid)} (median {statistics.median(mid):.3f})")
        print(f"{users:7d} after/before tokens/s per core, per round: "
              f"{', '.join(f'{x:.3f}' for x in ratios)} (median {statistics.median(ratios):.3f}); "
              f"typical's own spread around its median: {min(control):.3f}-{max(control):.3f}")


if __name__ == "__main__":
    main()
