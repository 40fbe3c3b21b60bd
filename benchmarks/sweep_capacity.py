"""The sweep's answer vs the capacity computed from the reference server's model.

Realistic numbers: K = 16 and 32 slots, TTFT 50 ms, ITL 5 ms plus 0.5 ms per
other active request, 64 output tokens; SLO TTFT p95 <= 500 ms (and per-user
tokens/s p50 >= 20, which does not bind here). Concurrency mode (closed loop,
two searches for a CI) and rate mode (constant arrivals). Each case is one
`chatprobe sweep` (the reference server pinned to its own CPU, started once).

    PYTHONPATH=. .venv/bin/python benchmarks/sweep_capacity.py [--quick]

(``PYTHONPATH=.``: the capacity model is the tests' own, tests/sweep/model.py.)
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

# The capacity model is the tests' own (run with PYTHONPATH=.).
from tests.sweep.model import ServerModel

ROOT = Path(__file__).resolve().parents[1]

TTFT_LIMIT_MS = 500.0
USER_TPS_MIN = 20.0


def run_case(m: ServerModel, mode: str, level_s: float, repeats: int) -> tuple[dict[str, object], float]:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "chatprobe", "sweep", "--mode", mode, "--report-dir", tmp,
               "--level-duration", str(level_s), "--budget", "10m", "--repeats", str(repeats),
               "--server-max-concurrency", str(m.max_concurrency), "--server-ttft-ms", str(m.ttft_ms),
               "--server-itl-ms", str(m.itl_ms), "--server-itl-per-active-ms", str(m.itl_per_active_ms),
               "--max-tokens", str(m.tokens), "--prompt-tokens", "64", "--no-progress",
               "--slo", f"ttft_p95_ms={TTFT_LIMIT_MS:g}", "--slo", f"user_tokens_per_s_p50={USER_TPS_MIN:g}"]
        if mode == "rate":
            cmd += ["--arrivals", "constant"]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
        t0 = time.monotonic()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        wall = time.monotonic() - t0
        if proc.returncode != 0:
            raise SystemExit(f"sweep failed ({proc.returncode}): {proc.stderr[-2000:]}")
        doc: dict[str, object] = json.loads((Path(tmp) / "sweep.json").read_text(encoding="utf-8"))
        return doc, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="K=16 only, 3 s levels, one search")
    args = ap.parse_args()
    ks = (16,) if args.quick else (16, 32)
    # Rate levels must outlast the transient (the slots filling: ~E2E ~ 1.3 s) many times over.
    level_s = {"concurrency": 3.0 if args.quick else 5.0, "rate": 6.0 if args.quick else 12.0}
    print(f"{'K':>3} {'mode':<12} {'model':>9} {'sweep':>9} {'CI':>15} {'error':>7} {'levels':>6} {'wall s':>7}"
          "  untrusted levels")
    for k in ks:
        m = ServerModel(max_concurrency=k, ttft_ms=50, itl_ms=5, itl_per_active_ms=0.5, tokens=64)
        for mode in ("concurrency", "rate"):
            repeats = 1 if args.quick or mode == "rate" else 2
            if mode == "concurrency":
                model = float(m.closed_capacity(ttft_limit_ms=TTFT_LIMIT_MS, user_tps_min=USER_TPS_MIN))
            else:
                model = m.saturation_rate()
            doc, wall = run_case(m, mode, level_s[mode], repeats)
            answer = doc["answer"]
            assert isinstance(answer, dict)
            value, ci = answer["value"], answer["ci"]
            levels = doc["levels"]
            assert isinstance(levels, list)
            untrusted = sum(1 for lv in levels if not lv["trustworthy"])
            err = f"{(value - model) / model:+.1%}" if value is not None else "-"
            ci_text = f"{ci[0]:g}-{ci[1]:g}" if ci else "-"
            print(f"{k:>3} {mode:<12} {model:>9.2f} {value if value is not None else '-':>9} {ci_text:>15}"
                  f" {err:>7} {len(levels):>6} {wall:>7.0f}  {untrusted}")
            print(f"    {answer['sentence']}")


if __name__ == "__main__":
    main()
