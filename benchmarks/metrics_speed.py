"""How much the metrics core costs per token and per request (a script, not a test).

Side by side in one run: our exact percentile vs numpy.percentile (when
installed) on the same samples; exact samples vs the log-linear histogram for
summarising the same records; the per-token cost of stamping records; and the
size of a record shipped as JSON. Prints a small table; best of --repeat runs.

    PYTHONPATH=src .venv/bin/python benchmarks/metrics_speed.py [--requests N] [--tokens N]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable

from chatprobe.metrics import (
    ExactSamples,
    MetricsCollector,
    RequestRecord,
    parse_slos,
    percentile,
)

MS = 1_000_000


def make_records(n_requests: int, tokens: int, seed: int = 1) -> list[RequestRecord]:
    """Records shaped like a 50 ms TTFT / 5 ms ITL server, with jitter."""
    rng = random.Random(seed)
    out = []
    for i in range(n_requests):
        sent = i * 3 * MS
        rec = RequestRecord(
            f"r{i}", "openai", t_sent_ns=sent, t_first_byte_ns=sent + 2 * MS, ok=True
        )
        t = sent + int(rng.gauss(50, 3) * MS)
        for _ in range(tokens):
            rec.add_token_event(t)
            t += int(rng.gauss(5, 0.5) * MS)
        rec.t_end_ns = t
        rec.output_tokens, rec.output_tokens_source = tokens, "usage"
        out.append(rec)
    return out


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    n, k, rep = args.requests, args.tokens, args.repeat
    total_tokens = n * k
    rows: list[tuple[str, str]] = []

    t = best(lambda: make_records(n, k), rep)
    rows.append(("build records (incl. RNG), per token", f"{t / total_tokens * 1e9:8.0f} ns"))

    records = make_records(n, k)
    slos = parse_slos(["ttft_ms=100", "tpot_ms=10", "ttft_p95_ms=200"])

    exact = MetricsCollector(slos=slos)
    exact.extend(records)
    t_exact = best(lambda: exact.summary(), rep)
    rows.append(("summary, exact samples, per token", f"{t_exact / total_tokens * 1e9:8.0f} ns"))

    def compact_run() -> object:
        c = MetricsCollector(keep_records=False, window=(0, 10**18), slos=slos)
        c.extend(records)
        return c.summary()

    t_hist = best(compact_run, rep)
    rows.append(
        ("summary, histogram (add + summary), per token", f"{t_hist / total_tokens * 1e9:8.0f} ns")
    )
    rows.append(("  histogram / exact", f"{t_hist / t_exact:8.2f} x"))

    itls = [x for r in records for x in r.itls_ms]
    qs = (50.0, 90.0, 95.0, 99.0)

    def ours_percentiles() -> list[float | None]:
        samples = ExactSamples(itls)
        return [samples.percentile(q) for q in qs]

    t_ours = best(ours_percentiles, rep)
    rows.append((f"4 percentiles of {len(itls):,} ITLs, ours", f"{t_ours * 1e3:8.1f} ms"))
    try:
        import numpy as np

        t_np = best(lambda: np.percentile(np.array(itls), qs), rep)
        rows.append((f"4 percentiles of {len(itls):,} ITLs, numpy", f"{t_np * 1e3:8.1f} ms"))
        ours = [percentile(itls, q) for q in qs]
        theirs = [float(x) for x in np.percentile(np.array(itls), qs)]
        diff = max(abs(a - b) for a, b in zip(ours, theirs, strict=True))
        rows.append(("  max |ours - numpy|", f"{diff:8.2g} ms"))
    except ImportError:
        rows.append(("numpy", "not installed"))

    approx = compact_run()
    summary = exact.summary()
    worst = 0.0
    for name, stats in summary.stats.items():
        for label, value in stats.percentiles.items():
            other = approx.stats[name].percentiles[label]  # type: ignore[attr-defined]
            if value is not None and other is not None and value > 0:
                worst = max(worst, abs(other - value) / max(value, 10.0))
    rows.append(("histogram worst error (rel., or vs 10 ms)", f"{worst * 100:8.3f} %"))

    size = sum(len(json.dumps(r.to_json(), separators=(",", ":"))) for r in records) / n
    rows.append((f"record as JSON ({k} tokens)", f"{size:8.0f} B"))
    t_ship = best(lambda: MetricsCollector.from_json(json.loads(json.dumps(exact.to_json()))), rep)
    rows.append(("ship collector via JSON, per request", f"{t_ship / n * 1e6:8.1f} us"))

    print(f"metrics_speed: {n} requests x {k} tokens, best of {rep}")
    width = max(len(a) for a, _ in rows)
    for a, b in rows:
        print(f"  {a:<{width}}  {b}")


if __name__ == "__main__":
    main()
