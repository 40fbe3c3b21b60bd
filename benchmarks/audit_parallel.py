"""Wall time of `chatprobe audit` over N reference servers: one target at a time vs in parallel.

Each server is its own child process (spawn_server), each target's conformance run another
child: the figure is what the audit's parallelism buys on this machine. Prints a small table;
run: PYTHONPATH=src .venv/bin/python benchmarks/audit_parallel.py [N] [ROUNDS]
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

from chatprobe.cli import main
from chatprobe.server.runner import spawn_server


def run_audit(targets_file: Path, report_dir: Path, workers: int) -> tuple[float, int]:
    started = time.perf_counter()
    code = main(["audit", str(targets_file), "--report-dir", str(report_dir), "--workers", str(workers), "--quiet"])
    elapsed = time.perf_counter() - started
    document = json.loads((report_dir / "audit.json").read_text())
    assert code == 0, code
    return elapsed, sum(t["summary"]["total"] for t in document["targets"] if t["summary"])


def main_(n: int, rounds: int) -> None:
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        urls = [stack.enter_context(spawn_server()) for _ in range(n)]
        targets_file = Path(tmp) / "TARGETS.yaml"
        targets = [{"name": f"server-{i}", "url": url, "dialect": "openai"} for i, url in enumerate(urls)]
        targets_file.write_text(yaml.safe_dump({"targets": targets}))
        rows = []
        for workers in (1, 2, 4):
            times = []
            for r in range(rounds):
                with contextlib.redirect_stdout(None):
                    elapsed, checks = run_audit(targets_file, Path(tmp) / f"w{workers}-{r}", workers)
                times.append(elapsed)
            rows.append((workers, min(times), max(times), checks))
        serial = rows[0][1]
        print(f"{n} targets (clean reference servers), {rounds} rounds each")
        print(f"{'workers':>7} {'best s':>8} {'worst s':>8} {'checks':>7} {'speed-up':>9}")
        for workers, best, worst, checks in rows:
            print(f"{workers:>7} {best:>8.2f} {worst:>8.2f} {checks:>7} {serial / best:>8.2f}x")


if __name__ == "__main__":
    main_(int(sys.argv[1]) if len(sys.argv) > 1 else 4, int(sys.argv[2]) if len(sys.argv) > 2 else 2)
