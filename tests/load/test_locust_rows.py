"""The plain locustfile (`locust -f loadtests/chatprobe_locust.py`) as a Locust user runs it, and
the metric rows it adds to Locust's own stats (web UI and --csv): TTFT, TPOT and ITL."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from tests.load.conftest import load_env

ROOT = Path(__file__).resolve().parents[2]


_LOG_MANY_PROBE = """
from locust.stats import RequestStats
from chatprobe.load.users import log_many

values = [0.4, 3.2, 5.0, 5.49, 99.6, 147.0, 999.0, 3432.5, 58760.0, 2.0]
bulk, one_by_one = RequestStats().get("openai", "ITL"), RequestStats().get("openai", "ITL")
log_many(bulk, values)
for v in values:
    one_by_one.log(v, 0)
for field in ("num_requests", "total_response_time", "min_response_time", "max_response_time",
              "response_times", "num_reqs_per_sec", "total_content_length", "num_none_requests"):
    a, b = getattr(bulk, field), getattr(one_by_one, field)
    assert (abs(a - b) < 1e-6 if isinstance(a, float) else a == b), (field, a, b)
assert bulk.get_response_time_percentile(0.5) == one_by_one.get_response_time_percentile(0.5)
log_many(bulk, [])
assert bulk.num_requests == len(values)
print("same")
"""


def test_log_many_is_locust_log_for_every_value() -> None:
    """One bulk call gives the entry exactly what one Locust ``log`` per value gives it. (In a child:
    importing locust monkey-patches the process with gevent.)"""
    result = subprocess.run([sys.executable, "-c", _LOG_MANY_PROBE], env=load_env(), capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.strip() == "same", result.stderr[-2000:]


def test_plain_locustfile_runs_headless_with_metric_rows_in_its_csv(paced_server: str, tmp_path: Path) -> None:
    """`locust -f loadtests/chatprobe_locust.py --host URL` with Locust's own options and chatprobe's
    settings as Locust options (no CHATPROBE_LOAD_SETTINGS): the CSV has POST, TTFT, TPOT and ITL rows,
    ITL counting every gap (max_tokens - 1 per request under ignore_eos)."""
    env = load_env()
    env.pop("CHATPROBE_LOAD_SETTINGS", None)
    prefix = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "chatprobe_locust.py"),
         "--host", paced_server, "--headless", "-u", "2", "-r", "2", "-t", "3s", "--csv", str(prefix),
         "--only-summary", "--loglevel", "ERROR", "--max-tokens", "8", "--ignore-eos", "--dialect", "openai"],
        env=env, capture_output=True, text=True, timeout=90, cwd=tmp_path,
    )
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    with open(f"{prefix}_stats.csv", newline="") as f:
        rows = {(row["Type"], row["Name"]): row for row in csv.DictReader(f)}
    post = next(row for (kind, _), row in rows.items() if kind == "POST")
    requests = int(post["Request Count"])
    assert requests > 0 and int(post["Failure Count"]) == 0, post
    ttft, tpot, itl = (rows[(kind, "openai")] for kind in ("TTFT", "TPOT", "ITL"))
    assert int(ttft["Request Count"]) == requests == int(tpot["Request Count"])
    assert int(itl["Request Count"]) == requests * 7  # 8 tokens, 7 gaps, every request
    # The metric rows stay out of Locust's "Aggregated" row: it counts requests.
    assert int(rows[("", "Aggregated")]["Request Count"]) == requests


def _locust(server: str, tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    env = load_env()
    env.pop("CHATPROBE_LOAD_SETTINGS", None)
    return subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "chatprobe_locust.py"),
         "--host", server, "--headless", "-u", "2", "-r", "2", "-t", "2s", "--csv", str(tmp_path / "run"),
         "--only-summary", "--loglevel", "ERROR", *options],
        env=env, capture_output=True, text=True, timeout=90, cwd=tmp_path,
    )


def test_plain_locustfile_takes_length_distributions_and_shared_prefixes(paced_server: str, tmp_path: Path) -> None:
    """The locustfile's options shape the workload as `chatprobe load`'s do: an output length
    drawn per request (uniform:4:6 under ignore_eos: 3 to 5 ITL gaps each), prompts of a
    given token length behind shared prefixes."""
    result = _locust(paced_server, tmp_path, "--max-tokens", "uniform:4:6", "--ignore-eos", "--prompt-tokens", "16",
                     "--prefix-groups", "2", "--prefix-tokens", "8")
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    with open(tmp_path / "run_stats.csv", newline="") as f:
        rows = {(row["Type"], row["Name"]): row for row in csv.DictReader(f)}
    post = next((row for (kind, _), row in rows.items() if kind == "POST"), None)
    assert post is not None, result.stderr[-3000:]
    requests = int(post["Request Count"])
    assert requests >= 20 and int(post["Failure Count"]) == 0, post
    gaps = int(rows[("ITL", "openai")]["Request Count"])
    assert 3 * requests < gaps < 5 * requests, (gaps, requests)  # drawn per request, not fixed


def test_plain_locustfile_bad_length_is_one_clear_line(paced_server: str, tmp_path: Path) -> None:
    result = _locust(paced_server, tmp_path, "--max-tokens", "uniform:9:3")
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "--max-tokens" in result.stderr and result.returncode != 0, (result.returncode, result.stderr[-2000:])
