"""What `chatprobe report` costs on a large load run: records.csv vs reading records.jsonl and the HTML page.

Synthetic records (N requests of 64 tokens, a 200 ms TTFT, 5 ms ITL) are written as the generator
writes them; then, side by side on the same file: parsing records.jsonl (read_records), rendering
records.csv from the parsed records, rendering report.html, and the whole `chatprobe report DIR`
(validation included). Prints a small table per round;
run: PYTHONPATH=src .venv/bin/python benchmarks/report_render.py [N] [ROUNDS]
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from chatprobe.cli import main
from chatprobe.metrics import RequestRecord, summarize, time_series
from chatprobe.reports.csv import render_records
from chatprobe.reports.load import read_records, render


def synthetic(n: int, seed: int = 1) -> list[RequestRecord]:
    rng = random.Random(seed)
    records = []
    t = 1_000_000_000
    for i in range(n):
        r = RequestRecord(request_id=f"r{i}", dialect="openai", t_sent_ns=t, user_id=f"u{i % 64}")
        r.t_first_byte_ns = t + 150_000_000
        arrival = t + int(rng.gauss(200, 20) * 1e6)
        for _ in range(64):
            r.add_token_event(arrival)
            arrival += int(rng.gauss(5, 0.5) * 1e6)
        r.t_first_choices_ns = r.t_first_token_ns
        r.t_end_ns = arrival
        r.output_tokens, r.output_tokens_source, r.ok, r.status = 64, "usage", True, 200
        records.append(r)
        t += 2_000_000
    return records


def write_run(directory: Path, records: list[RequestRecord]) -> dict[str, Any]:
    with open(directory / "records.jsonl", "wb") as f:
        for r in records:
            f.write(json.dumps(r.to_json(), separators=(",", ":")).encode() + b"\n")
    t0 = records[0].t_sent_ns
    window = (t0, max(r.t_finished_ns for r in records))
    doc = {
        "schema": "chatprobe.load.summary/1",
        "settings": {"target": "http://127.0.0.1:1", "dialect": "openai", "mode": "closed", "duration_s": 60.0,
                     "users": 64},
        "run": {"started_at": "2026-01-01T00:00:00+00:00", "interrupted": False, "planned_duration_s": 60.0,
                "measured_s": (window[1] - t0) / 1e9, "warmup_s": 0.0, "t0_ns": t0, "processes": 1,
                "client": "gevent", "records_file": "records.jsonl", "records": len(records)},
        "summary": summarize(records, window).to_json(),
        "time_series": [b.to_json() for b in time_series(records, origin_ns=t0)],
        "load_profile": [],
        "health": {"processes": [], "thresholds": {"cpu_percent": 90.0, "loop_lag_p99_ms": 5.0,
                                                  "dispatch_lag_p99_ms": 10.0},
                   "loop_lag_ms": {"p50": None, "p99": None, "max": None, "samples": 0},
                   "dispatch_lag_p99_ms": None, "trustworthy": True, "untrustworthy_reasons": []},
        "protocol_findings": {},
    }
    (directory / "summary.json").write_text(json.dumps(doc), encoding="utf-8")
    return doc


def timed(fn: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def main_() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        doc = write_run(directory, synthetic(n))
        for _ in range(rounds):
            t_read, records = timed(lambda: read_records(directory / "records.jsonl"))
            t_csv, _ = timed(functools.partial(render_records, doc, records))
            t_html, _ = timed(functools.partial(render, doc, records))
            with contextlib.redirect_stdout(io.StringIO()):
                t_cmd, code = timed(lambda: main(["report", str(directory)]))
            assert code == 0
            for name, value in (("read records.jsonl", t_read), ("render records.csv", t_csv),
                                ("render report.html", t_html), ("chatprobe report DIR", t_cmd)):
                results.setdefault(name, []).append(value)
        size = (directory / "records.csv").stat().st_size
    print(f"{n} records, {rounds} rounds; records.csv {size / 1e6:.1f} MB")
    print(f"{'step':<22} {'median s':>9} {'min s':>7} {'max s':>7} {'records/s':>10}")
    for name, values in results.items():
        med = statistics.median(values)
        print(f"{name:<22} {med:>9.3f} {min(values):>7.3f} {max(values):>7.3f} {n / med:>10,.0f}")
    csv_ratio = statistics.median(results["render records.csv"]) / statistics.median(results["read records.jsonl"])
    print(f"records.csv costs {csv_ratio:.2f} x reading records.jsonl")


if __name__ == "__main__":
    main_()
